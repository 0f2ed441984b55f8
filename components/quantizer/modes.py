"""The Quantizer's modes: one small class each, found by name in a registry.

    mode = get_mode("int8")
    outcome = mode.run(graph_def, signature, calibration_inputs, output_dir, settings)

`calibration_inputs` holds one array per signature input (see feeds.ModelFeeder).

Each mode writes its files into `output_dir` and returns the properties its artifact
records. A mode that cannot quantize a model raises; the executor turns that into an
artifact with `status=failed` and the reason, so the pipeline goes on and the
Benchmarker's table shows why (see components/quantizer/executor.py).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from components.common.calibration import DEFAULT_NUM_CALIBRATION
from components.common.errors import UserInputError
from components.common.int8_fallback import Int8SearchSettings, search_properties
from components.common.signature import GraphSignature
from components.runtimes.graphdef import FORMAT_GRAPHDEF
from components.runtimes.tflite import FORMAT_TFLITE

if TYPE_CHECKING:
    import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class QuantizeSettings:
    """Knobs shared by the modes; each mode reads the ones it needs."""

    num_calibration: int = DEFAULT_NUM_CALIBRATION
    inference_io_type: str = "float32"  # TFLite int8 only: "float32" or "int8".
    batch_sizes: tuple[int, ...] = (1, 8, 32)  # TFLite: one static-batch model per size.
    # The accuracy-aware modes' search (common/int8_fallback.py).
    int8_search: Int8SearchSettings = dataclasses.field(default_factory=Int8SearchSettings)

    def __post_init__(self) -> None:
        if self.num_calibration < 1:
            raise UserInputError(f"num_calibration must be at least 1, got {self.num_calibration}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise UserInputError(f"batch_sizes must be positive, got {list(self.batch_sizes)}")


@dataclasses.dataclass
class ModeOutcome:
    """What a mode produced: the artifact format and the facts to record."""

    model_format: str
    size_bytes: int
    calibration_samples: int
    float_ops: list[Any]
    hardware_requirements: list[str]
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)


class QuantizeMode(abc.ABC):
    """One quantization mode."""

    name: str = ""
    variant_name: str = ""  # Also the variant kind's name (components/variant_kinds.py).
    model_format: str = ""
    needs_calibration: bool = False
    #: Scores its work on held-out labelled examples (the accuracy-aware modes): `run`
    #: then takes `held_out=` (common/held_out.py).
    needs_held_out: bool = False
    #: The activation-range methods its quantizer offers (int8_fallback.CALIBRATION_METHODS):
    #: an accuracy-aware mode tries each on full int8 under `--int8-calibration auto`.
    #: TF's TFLite converter and this project's oneDNN calibration take min and max only.
    calibration_methods: tuple[str, ...] = ("minmax",)
    description: str = ""
    #: The mode applies only where the CPU has at least one of these cpuinfo flags.
    cpu_any_of: tuple[str, ...] = ()
    hardware_note: str = ""
    #: False: built only when `--variants` names it.
    default: bool = True

    @abc.abstractmethod
    def run(
        self,
        graph_def: tf.compat.v1.GraphDef,
        signature: GraphSignature,
        calibration: list[np.ndarray] | None,
        output_dir: str,
        settings: QuantizeSettings,
    ) -> ModeOutcome:
        """Quantizes `graph_def` into `output_dir`."""


_MODES: dict[str, QuantizeMode] = {}


def register_mode(cls: type[QuantizeMode]) -> type[QuantizeMode]:
    """Class decorator adding a mode to the registry; a second `name` is an error."""
    if cls.name in _MODES:
        raise ValueError(f"quantization mode {cls.name!r} registered twice")
    _MODES[cls.name] = cls()
    return cls


def mode_names() -> list[str]:
    return list(_MODES)


def variant_kinds() -> list:  # -> list[components.variant_kinds.VariantKind]
    """One variant kind per mode, in registry order."""
    from components.variant_kinds import VariantKind

    return [
        VariantKind(
            name=mode.variant_name,
            producer="Quantizer",
            mode=mode.name,
            artifact_type="QuantizedModel",
            model_format=mode.model_format,
            output_key="quantized_model",
            needs_calibration=mode.needs_calibration,
            description=mode.description,
            cpu_any_of=mode.cpu_any_of,
            hardware_note=mode.hardware_note,
            default=mode.default,
        )
        for mode in _MODES.values()
    ]


def get_mode(name: str) -> QuantizeMode:
    try:
        return _MODES[name]
    except KeyError:
        raise UserInputError(
            f"Unknown quantization mode {name!r}; choose from {', '.join(_MODES)}."
        ) from None


class _TFLiteMode(QuantizeMode):
    """Shared body of the TFLite modes: convert in a subprocess, one model per batch size."""

    tflite_mode: str = ""
    requirements: tuple[str, ...] = ()
    model_format = FORMAT_TFLITE

    def run(
        self,
        graph_def: tf.compat.v1.GraphDef,
        signature: GraphSignature,
        calibration: list[np.ndarray] | None,
        output_dir: str,
        settings: QuantizeSettings,
    ) -> ModeOutcome:
        return self.convert(graph_def, signature, calibration, output_dir, settings)

    def convert(
        self,
        graph_def: tf.compat.v1.GraphDef,
        signature: GraphSignature,
        calibration: list[np.ndarray] | None,
        output_dir: str,
        settings: QuantizeSettings,
        float_layers: tuple[str, ...] = (),
    ) -> ModeOutcome:
        from components.quantizer.tflite_quantization import quantize_to_tflite

        result = quantize_to_tflite(
            graph_def,
            signature,
            self.tflite_mode,
            output_dir,
            calibration_inputs=calibration,
            num_calibration=settings.num_calibration,
            inference_io_type=settings.inference_io_type if self.needs_calibration else "float32",
            batch_size=settings.batch_sizes[0],
            extra_batch_sizes=settings.batch_sizes[1:],
            float_layers=float_layers,
        )
        return ModeOutcome(
            model_format=FORMAT_TFLITE,
            size_bytes=result.size_bytes,
            calibration_samples=result.calibration_samples,
            float_ops=result.float_ops,
            hardware_requirements=list(self.requirements),
            properties={
                "quantized_op_fraction": result.quantized_op_fraction,
                "xnnpack_partitions": result.xnnpack_partitions,
                "xnnpack_fully_delegated": result.fully_delegated,
                "inference_input_type": result.inference_input_type,
                "inference_output_type": result.inference_output_type,
                "warnings": result.warnings,
                "size_ratio_to_float32_tflite": result.report["sizes"].get(
                    "ratio_to_float32_tflite"
                ),
                "max_abs_diff_vs_frozen_graph": result.report.get("max_abs_diff_vs_frozen_graph"),
            },
        )


@register_mode
class Float16(_TFLiteMode):
    """TFLite with float16 weights (XNNPACK dequantizes them to fp32 on CPUs)."""

    name = "float16"
    variant_name = "tflite_float16"
    description = "TFLite, float16 weights (XNNPACK)"
    tflite_mode = "float16"


@register_mode
class DynamicRange(_TFLiteMode):
    """TFLite with int8 weights and float activations (hybrid kernels)."""

    name = "dynamic_range"
    variant_name = "tflite_dynamic_range"
    description = "TFLite, int8 weights, float activations"
    tflite_mode = "dynamic_range"
    requirements = ("int8",)


@register_mode
class FullInt8(_TFLiteMode):
    """TFLite full-integer post-training quantization, calibrated on real examples."""

    name = "int8"
    variant_name = "tflite_int8"
    description = "TFLite full int8, calibrated (XNNPACK)"
    tflite_mode = "int8"
    needs_calibration = True
    requirements = ("int8",)


@register_mode
class FullInt8AccuracyAware(_TFLiteMode):
    """TFLite full int8 with its most harmful layers left in float until the task metric
    fits the accuracy budget (tflite_accuracy_aware.py)."""

    name = "int8_aa"
    variant_name = "tflite_int8_aa"
    description = "TFLite full int8, harmful layers in float until the metric fits the budget"
    tflite_mode = "int8"
    needs_calibration = True
    needs_held_out = True
    requirements = ("int8",)
    # Off by default: the search converts and scores the model once per step.
    default = False

    def run(
        self,
        graph_def: tf.compat.v1.GraphDef,
        signature: GraphSignature,
        calibration: list[np.ndarray] | None,
        output_dir: str,
        settings: QuantizeSettings,
        held_out: Any = None,  # common.held_out.HeldOut
    ) -> ModeOutcome:
        from components.quantizer.tflite_accuracy_aware import search_tflite_int8, write_search

        if calibration is None or held_out is None:
            raise UserInputError(f"{self.name} needs calibration and held-out examples.")
        arrays = [a[: settings.num_calibration] for a in calibration]
        found = search_tflite_int8(graph_def, signature, arrays, held_out, settings.int8_search)
        outcome = self.convert(
            graph_def, signature, calibration, output_dir, settings, found.search.chosen.excluded
        )
        write_search(found, output_dir)
        outcome.properties.update(search_properties(found.search, found.seconds))
        return outcome


@register_mode
class WeightsInt8Graph(QuantizeMode):
    """A TF graph with 8-bit weights and Dequantize ops: small on disk, computes in fp32."""

    name = "weights_int8_graph"
    variant_name = "weights_int8_graph"
    model_format = FORMAT_GRAPHDEF
    description = "TF graph with int8 weights, fp32 compute (small on disk)"

    def run(
        self,
        graph_def: tf.compat.v1.GraphDef,
        signature: GraphSignature,
        calibration: list[np.ndarray] | None,
        output_dir: str,
        settings: QuantizeSettings,
    ) -> ModeOutcome:
        from components.quantizer.weights_int8_graph import (
            quantize_weights_int8_graph,
            write_weights_int8_graph,
        )

        quantized, info = quantize_weights_int8_graph(graph_def, signature)
        write_weights_int8_graph(quantized, signature, info, output_dir)
        return ModeOutcome(
            model_format=FORMAT_GRAPHDEF,
            size_bytes=info.graph_bytes_after,
            calibration_samples=0,
            float_ops=[{"op": op, "name": name} for op, name in info.float_compute_ops],
            hardware_requirements=[],
            properties={"quantized_weights": len(info.quantized_weights)},
        )


@register_mode
class OneDnnInt8(QuantizeMode):
    """A TF graph whose convolutions and matmuls run on oneDNN's int8 (VNNI/AMX) kernels."""

    name = "onednn_int8"
    variant_name = "onednn_int8"
    model_format = FORMAT_GRAPHDEF
    needs_calibration = True
    description = "TF graph on oneDNN int8 kernels, calibrated"
    # Measured: on an AVX2-only CPU, TF 2.16's oneDNN int8 matmul returns no output at
    # all ("Missing 0-th output"), so the kind would only ever fail there.
    cpu_any_of = ("avx512f",)
    hardware_note = "TF 2.16's oneDNN int8 kernels; VNNI or AMX make them fast"

    def run(
        self,
        graph_def: tf.compat.v1.GraphDef,
        signature: GraphSignature,
        calibration: list[np.ndarray] | None,
        output_dir: str,
        settings: QuantizeSettings,
    ) -> ModeOutcome:
        from components.quantizer.onednn_int8 import quantize_onednn_int8

        if calibration is None:
            raise UserInputError("onednn_int8 needs calibration examples; none were given.")
        result = quantize_onednn_int8(
            graph_def, signature, calibration, num_calibration=settings.num_calibration
        )
        return self.publish(result, signature, output_dir)

    def publish(self, result: Any, signature: GraphSignature, output_dir: str) -> ModeOutcome:
        """Writes a OneDnnInt8Result whose kernels run here; raises when they do not."""
        from components.common.graph_io import GRAPH_FILENAME
        from components.quantizer.onednn_int8 import write_onednn_int8

        if result.kernels is not None and result.kernels.error:
            # Publishing it would only move the failure to the Benchmarker, with a vaguer
            # message; on a CPU without AVX-512, TF 2.16's oneDNN int8 matmul returns no
            # output at all ("Missing 0-th output").
            if "MemoryBudgetExceeded" in result.kernels.error:
                # The probe outgrew the memory budget: nothing is known about the kernels.
                raise RuntimeError(
                    f"the oneDNN int8 graph could not be checked: {result.kernels.error}"
                )
            raise RuntimeError(
                f"the oneDNN int8 graph does not run on this machine ({_cpu_summary()}): "
                f"{result.kernels.error}. TensorFlow's oneDNN int8 kernels need AVX-512 "
                f"(VNNI or AMX to be fast)."
            )
        paths = write_onednn_int8(result, signature, output_dir)
        kernels = result.kernels.to_json() if result.kernels else None
        return ModeOutcome(
            model_format=FORMAT_GRAPHDEF,
            size_bytes=_file_size(paths["graph"]) if paths.get("graph") else 0,
            calibration_samples=result.calibration_samples,
            float_ops=[dataclasses.asdict(k) for k in result.kept_float],
            hardware_requirements=["int8", "onednn"],
            properties={
                "quantized_op_counts": result.quantized_op_counts,
                "float_op_counts": result.float_op_counts,
                "onednn_kernels": kernels,
                **int8_isa_summary(result.kernels.isa if result.kernels else ()),
                "graph_file": GRAPH_FILENAME,
            },
        )


@register_mode
class OneDnnInt8AccuracyAware(OneDnnInt8):
    """oneDNN int8 with its most harmful chains left in float until the task metric fits
    the accuracy budget (onednn_accuracy_aware.py)."""

    name = "onednn_int8_aa"
    variant_name = "onednn_int8_aa"
    needs_held_out = True
    description = "TF graph on oneDNN int8 kernels, harmful layers in float to fit the budget"
    default = False  # The search rewrites and scores the graph once per step.

    def run(
        self,
        graph_def: tf.compat.v1.GraphDef,
        signature: GraphSignature,
        calibration: list[np.ndarray] | None,
        output_dir: str,
        settings: QuantizeSettings,
        held_out: Any = None,  # common.held_out.HeldOut
    ) -> ModeOutcome:
        from components.common.int8_fallback import write_search_record
        from components.quantizer.onednn_accuracy_aware import search_onednn_int8

        if calibration is None or held_out is None:
            raise UserInputError(f"{self.name} needs calibration and held-out examples.")
        found = search_onednn_int8(
            graph_def,
            signature,
            calibration,
            held_out,
            settings.int8_search,
            settings.num_calibration,
        )
        outcome = self.publish(found.int8, signature, output_dir)
        write_search_record(found.to_json(), output_dir)
        outcome.properties.update(search_properties(found.search, found.seconds))
        return outcome


def int8_isa_summary(isa: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Which int8 kernels oneDNN ran (from its verbose ISA names), for the artifact.

    `avx512_core_amx` means AMX tiles, `*_vnni` VNNI dot products; anything else (plain
    `avx512_core`, `avx2`) is the slow int8 path that widens to 16/32 bits first.
    """
    names = list(isa)
    return {
        "int8_kernel_isa": names,
        "amx_kernels_ran": any("amx" in name for name in names),
        "vnni_kernels_ran": any("vnni" in name for name in names),
    }


def _cpu_summary() -> str:
    from components.common.cpu_facts import host_cpu

    return host_cpu().summary()


def _file_size(path: str) -> int:
    import tensorflow as tf

    return int(tf.io.gfile.stat(path).length)
