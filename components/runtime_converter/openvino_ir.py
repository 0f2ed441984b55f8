"""The OpenVINO modes: a frozen graph as an OpenVINO IR, in f32, bf16 or int8 (NNCF).

    outcome = get_mode("openvino_int8").run(graph_dir, signature, calibration, output_dir,
                                            ConvertSettings(num_calibration=200))

`graph.pb` is converted with `openvino.convert_model` and no arguments: a frozen
GraphDef carries its own inputs (named like `x:0`) and a dynamic batch dimension. The
IR is saved with `compress_to_fp16=False`, so its weights stay f32 (the default would
halve them to fp16 and make the "fp32" variant something else).

  * `openvino_fp32`: the IR, compiled with `INFERENCE_PRECISION_HINT=f32`.
  * `openvino_bf16`: the same IR, compiled with `bf16`; only where the CPU has
    AVX512-BF16 or AMX-BF16 (components/runtimes/openvino.py refuses it elsewhere).
  * `openvino_int8`: NNCF post-training quantization of the IR (min-max ranges from
    the calibration rows, fed one row at a time), NNCF's defaults spelt out: preset
    PERFORMANCE (symmetric int8 weights and activations), target device ANY, fast bias
    correction on, and the default overflow fix (first layer's weights in 7 bits,
    which keeps AVX2 and AVX-512 without VNNI from saturating). Ranges: weights
    per-channel min-max; activations per-tensor, the *mean* over samples of each
    sample's min and max, so with one row per sample the tails are clipped (on the
    tests' tiny classifier the largest logits come out a few units low while every
    argmax stays; NNCF's choice, robust to outliers).

The conversion runs in a process of its own (components/common/isolation.py): the
child function `convert_to_ir` takes and returns JSON values only, and reads the
calibration rows from an .npz the parent writes in a scratch directory. The artifact
is `model.xml`, `model.bin`, `signature.json` and `openvino.json` (the facts below).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from components.common.cpu_facts import BF16_FLAGS
from components.common.graph_io import GRAPH_FILENAME
from components.common.isolation import run_isolated, scratch_directory
from components.common.signature import GraphSignature
from components.runtime_converter.modes import (
    ConversionOutcome,
    ConvertMode,
    ConvertSettings,
    register_mode,
)
from components.runtimes.openvino import (
    COMPILE_RUNTIME_DEFAULTS,
    COMPILE_TUNED,
    FORMAT_OPENVINO,
    MODEL_BIN,
    MODEL_XML,
    OPENVINO_EXTRA,
    OPENVINO_MODULE,
    PRECISION_BF16,
    PRECISION_F32,
    openvino_module,
    ov_input_names,
    write_openvino_facts,
)

_CHILD_FUNCTION = "components.runtime_converter.openvino_ir:convert_to_ir"
_CALIBRATION_FILE = "calibration.npz"
_SUMMARY_LINES = 6
# Lines of an OpenVINO exception that say where it was raised, not what went wrong.
_BOILERPLATE_PREFIXES = (
    "Check '",
    "FrontEnd API failed with",
    "Summary:",
    "To facilitate the conversion",
    "Exception from src/",
)
# NNCF's defaults for a non-transformer model, passed explicitly so the facts recorded
# in openvino.json stay true if a later NNCF changes a default.
NNCF_PRESET = "performance"
NNCF_TARGET_DEVICE = "ANY"
NNCF_FAST_BIAS_CORRECTION = True
# Not a parameter here: how NNCF's min-max algorithm sets per-tensor activation ranges.
NNCF_ACTIVATION_RANGES = "mean over samples of per-sample min/max (NNCF default)"


class OpenVinoConversionError(RuntimeError):
    """OpenVINO or NNCF could not convert the graph; the message is the converter's own."""


def summarize_converter_error(message: str, max_lines: int = _SUMMARY_LINES) -> str:
    """The first meaningful lines of an OpenVINO/NNCF error, joined on one line.

    OpenVINO's frontend errors open with the C++ check that fired (`Check 'false'
    failed at src/frontends/...cpp:151`) and end with a documentation link; the lines
    that matter are in between ("No conversion rule found for operations: AsString,
    StringToNumber").
    """
    lines = [line.strip() for line in message.splitlines()]
    meaningful = [
        line for line in lines if line and not line.startswith(_BOILERPLATE_PREFIXES)
    ] or [line for line in lines if line]
    summary = " ".join(meaningful[:max_lines])
    return summary or "(no message)"


def convert_frozen_graph(graph_dir: str) -> Any:
    """`openvino.convert_model` on graph.pb; its failure says what the converter said."""
    ov = openvino_module()
    try:
        return ov.convert_model(os.path.join(graph_dir, GRAPH_FILENAME))
    except Exception as error:
        raise OpenVinoConversionError(
            f"openvino.convert_model: {type(error).__name__}: "
            f"{summarize_converter_error(str(error))}"
        ) from None


def _count_fake_quantize(model: Any) -> int:
    return sum(1 for op in model.get_ops() if op.get_type_name() == "FakeQuantize")


def convert_to_ir(
    graph_dir: str,
    output_dir: str,
    mode: str,
    precision_hint: str,
    signature: dict[str, Any],
    calibration_path: str | None = None,
) -> dict[str, Any]:
    """Child process: graph.pb -> IR in `output_dir` (quantized when calibration is given).

    `signature` is the graph's GraphSignature as JSON (passed so that the child need not
    import TensorFlow to read it). Returns the facts written to `openvino.json`.
    Conversion failures are re-raised as OpenVinoConversionError with the converter's
    message summarized.
    """
    ov = openvino_module()

    started = time.perf_counter()
    model = convert_frozen_graph(graph_dir)
    facts: dict[str, Any] = {
        "mode": mode,
        "precision_hint": precision_hint,
        "openvino_version": ov.get_version(),
        "compress_to_fp16": False,
        "calibration_samples": 0,
        "fake_quantize_ops": 0,
        "nncf": None,
    }
    if calibration_path is not None:
        model, facts["nncf"], facts["calibration_samples"] = _quantize(
            model, GraphSignature.from_json(signature), calibration_path
        )
        facts["fake_quantize_ops"] = _count_fake_quantize(model)
        if facts["fake_quantize_ops"] == 0:
            raise OpenVinoConversionError(
                "NNCF inserted no FakeQuantize op: the graph has no op NNCF quantizes, so "
                "an int8 variant would be the fp32 one under another name"
            )
    os.makedirs(output_dir, exist_ok=True)
    ov.save_model(model, os.path.join(output_dir, MODEL_XML), compress_to_fp16=False)
    facts["conversion_s"] = round(time.perf_counter() - started, 3)
    write_openvino_facts(output_dir, facts)
    return facts


def _quantize(
    model: Any, signature: GraphSignature, calibration_path: str, ignored: Sequence[str] = ()
) -> tuple[Any, dict[str, Any], int]:
    """NNCF post-training quantization on the calibration rows, one row per sample;
    the ops named in `ignored` stay in float (NNCF's ignored_scope)."""
    import nncf

    names = ov_input_names(model, signature)
    with np.load(calibration_path) as stored:
        arrays = [
            stored[f"input_{i}"].astype(t.dtype, copy=False) for i, t in enumerate(signature.inputs)
        ]
    samples = int(arrays[0].shape[0])
    if samples < 1 or any(a.shape[0] != samples for a in arrays):
        raise OpenVinoConversionError(
            f"calibration needs the same number (at least 1) of rows per input, got "
            f"{[a.shape[0] for a in arrays]}"
        )

    def transform(row: int) -> dict[str, np.ndarray]:
        return {name: array[row : row + 1] for name, array in zip(names, arrays, strict=True)}

    try:
        quantized = nncf.quantize(
            model,
            nncf.Dataset(range(samples), transform),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            target_device=nncf.TargetDevice.ANY,
            subset_size=samples,
            fast_bias_correction=NNCF_FAST_BIAS_CORRECTION,
            ignored_scope=nncf.IgnoredScope(names=list(ignored)) if ignored else None,
        )
    except Exception as error:
        raise OpenVinoConversionError(
            f"nncf.quantize: {type(error).__name__}: {summarize_converter_error(str(error))}"
        ) from None
    nncf_facts = {
        "version": nncf.__version__,
        "preset": NNCF_PRESET,
        "target_device": NNCF_TARGET_DEVICE,
        "fast_bias_correction": NNCF_FAST_BIAS_CORRECTION,
        "subset_size": samples,
        "calibration_batch_size": 1,
        "activation_ranges": NNCF_ACTIVATION_RANGES,
    }
    return quantized, nncf_facts, samples


def _size_bytes(output_dir: str) -> int:
    return sum(os.path.getsize(os.path.join(output_dir, name)) for name in (MODEL_XML, MODEL_BIN))


class _OpenVinoMode(ConvertMode):
    """Shared by the three modes: convert in a child process, then record the facts."""

    model_format = FORMAT_OPENVINO
    required_module = OPENVINO_MODULE
    extra = OPENVINO_EXTRA
    precision_hint = PRECISION_F32
    #: How the Benchmarker compiles it: "tuned" (this project's per-scenario settings)
    #: or "runtime_defaults" (OpenVINO's own, as a user calling compile_model gets).
    compile_settings = COMPILE_TUNED

    def run(
        self,
        graph_dir: str,
        signature: GraphSignature,
        calibration: list[np.ndarray] | None,
        output_dir: str,
        settings: ConvertSettings,
    ) -> ConversionOutcome:
        if self.needs_calibration and not calibration:
            raise ValueError(f"the {self.name} mode needs calibration arrays")
        os.makedirs(output_dir, exist_ok=True)
        with scratch_directory(f"{self.name}_") as workdir:
            kwargs: dict[str, Any] = {
                "graph_dir": graph_dir,
                "output_dir": output_dir,
                "mode": self.name,
                "precision_hint": self.precision_hint,
                "signature": signature.to_json(),
            }
            if self.needs_calibration:
                kwargs["calibration_path"] = _write_calibration(
                    workdir, signature, calibration or [], settings.num_calibration
                )
            outcome = run_isolated(_CHILD_FUNCTION, kwargs, workdir, timeout_s=settings.timeout_s)
        outcome.raise_user_error()
        if not outcome.ok:
            raise OpenVinoConversionError(outcome.failure("the OpenVINO conversion"))
        facts = {**outcome.result, "compile_settings": self.compile_settings}
        write_openvino_facts(output_dir, facts)
        signature.save(output_dir)
        properties = {
            "openvino_version": facts["openvino_version"],
            "precision_hint": facts["precision_hint"],
            "fake_quantize_ops": facts["fake_quantize_ops"],
            "conversion_s": facts["conversion_s"],
            "compile_settings": self.compile_settings,
        }
        if facts["nncf"]:
            properties["nncf_version"] = facts["nncf"]["version"]
            properties["nncf_preset"] = facts["nncf"]["preset"]
        return ConversionOutcome(
            model_format=self.model_format,
            size_bytes=_size_bytes(output_dir),
            calibration_samples=facts["calibration_samples"],
            properties=properties,
        )


def _write_calibration(
    workdir: str, signature: GraphSignature, calibration: list[np.ndarray], limit: int
) -> str:
    """The calibration arrays (signature order, at most `limit` rows) as an .npz."""
    if len(calibration) != len(signature.inputs):
        raise ValueError(
            f"calibration has {len(calibration)} arrays, the signature {len(signature.inputs)} "
            f"inputs"
        )
    path = os.path.join(workdir, _CALIBRATION_FILE)
    np.savez(path, **{f"input_{i}": np.asarray(a)[:limit] for i, a in enumerate(calibration)})
    return path


@register_mode
class OpenVinoFp32(_OpenVinoMode):
    name = "openvino_fp32"
    description = "OpenVINO IR, f32 weights, compiled with INFERENCE_PRECISION_HINT=f32"


@register_mode
class OpenVinoBf16(_OpenVinoMode):
    name = "openvino_bf16"
    description = "OpenVINO IR, f32 weights, compiled with INFERENCE_PRECISION_HINT=bf16"
    precision_hint = PRECISION_BF16
    cpu_any_of = BF16_FLAGS
    hardware_note = (
        "bf16 runs natively only with AVX512-BF16 or AMX-BF16; elsewhere OpenVINO's CPU "
        "plugin quietly compiles a bf16 hint as f32, which would time the fp32 variant "
        "under the bf16 name"
    )


@register_mode
class OpenVinoInt8(_OpenVinoMode):
    name = "openvino_int8"
    description = (
        "OpenVINO IR quantized to int8 by NNCF post-training quantization (preset "
        "PERFORMANCE), compiled with INFERENCE_PRECISION_HINT=f32 for the rest"
    )
    needs_calibration = True


@register_mode
class OpenVinoInt8Defaults(OpenVinoInt8):
    """The peer reference: the same NNCF int8 IR, compiled with OpenVINO's own defaults.

    `core.compile_model(model, "CPU")` with no properties, and one synchronous call per
    batch: what a user running OpenVINO by hand gets. Not in the default set; the
    benchmarks (benchmarks/keras_applications.py) ask for it to measure the bars.
    """

    name = "openvino_int8_defaults"
    description = "peer reference: openvino_int8's IR compiled with OpenVINO's defaults"
    compile_settings = COMPILE_RUNTIME_DEFAULTS
    default = False
