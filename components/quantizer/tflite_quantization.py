"""Converting a frozen graph to TFLite: float32, float16 weights, dynamic-range or full int8.

    >>> result = quantize_to_tflite(frozen.graph_def, frozen.signature, "int8", "/out/int8",
    ...                             calibration_inputs=eval_images, batch_size=1)
    >>> result.size_bytes, result.float_ops, result.xnnpack_partitions

Output layout::

    {output_dir}/
      model.tflite             # static batch `batch_size`
      signature.json           # the frozen graph's signature with that static batch
      quantization.json        # mode, sizes, calibration count, io types, op coverage,
                               # ops left in float, XNNPACK partitions, warnings
      batch_<n>/model.tflite   # one per `extra_batch_sizes` entry, with its signature.json

Why a subprocess: the TFLite converter can abort the whole process (`LLVM ERROR: Failed
to infer result type(s)`), so every conversion runs `convert_all` in a process of its
own (components/common/isolation.py). The graph, signature and calibration inputs
travel through files; a crash, an exit code or a converter error
becomes `QuantizationFailed` with the reason, and a `quantization.json` with
`status: failed` is still written so a failed variant can be published and shown.

Why one file per batch size: a dynamic batch dimension can leave dynamic-shaped tensors
(a `None` batch into `Flatten`), which XNNPACK silently skips, and resizing a static
model's input is only safe when no batch-sized shape was folded into a constant. A
static model per batch size is exactly what gets analyzed and checked here.
Conversions are cheap next to the subprocess's TensorFlow import (0.1-0.3 s against
about 10 s on the digits CNN), so all batch sizes of one call share one subprocess;
int8 calibrates once per batch size.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from components.common.calibration import DEFAULT_NUM_CALIBRATION
from components.common.errors import UserInputError
from components.common.graph_io import load_graph_def, save_graph_def
from components.common.signature import GraphSignature, TensorDescription
from components.quantizer.weights_int8_graph import float_constant_bytes
from components.runtimes.tflite import BATCH_DIR_PREFIX, TFLITE_FILENAME

if TYPE_CHECKING:
    import tensorflow as tf

logger = logging.getLogger(__name__)

TFLITE_MODES = ("float32", "float16", "dynamic_range", "int8")
IO_TYPES = ("float32", "int8")
QUANTIZATION_FILENAME = "quantization.json"
SCHEMA_VERSION = 1
DEFAULT_TIMEOUT_SECONDS = 1800.0
_CHILD_MODULE = "components.quantizer.tflite_quantization"
_STDERR_TAIL_LINES = 25
_MAX_REASON_CHARS = 3000
# Lines every TensorFlow process prints on import; they never explain a failure.
_STARTUP_NOISE = (
    "Unable to register cu",
    "Could not find cuda drivers",
    "TF-TRT Warning",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized",
    "To enable the following instructions",
    "FutureWarning",
    "warnings.warn(",
)


class QuantizationFailed(RuntimeError):
    """A conversion failed or crashed; `reason` says how, `stderr_tail` shows the last lines."""

    def __init__(
        self, mode: str, reason: str, returncode: int | None = None, stderr_tail: str = ""
    ) -> None:
        super().__init__(f"TFLite {mode} quantization failed: {reason}")
        self.mode = mode
        self.reason = reason
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        # The `quantization.json` with `status: failed`, once quantize_to_tflite wrote it.
        self.report_path: str | None = None


@dataclasses.dataclass(frozen=True)
class QuantizationResult:
    """What `quantize_to_tflite` wrote and measured; `report` is quantization.json's content."""

    mode: str
    output_dir: str
    model_path: str
    batch_size: int
    size_bytes: int
    float32_tflite_size_bytes: int | None
    frozen_graph_size_bytes: int
    float_weight_bytes: int
    calibration_samples: int
    inference_input_type: str
    inference_output_type: str
    op_coverage: dict[str, dict[str, int]]
    float_ops: list[dict[str, Any]]
    quantized_op_fraction: float
    xnnpack_partitions: int
    fully_delegated: bool
    extra_model_paths: dict[int, str]
    warnings: list[str]
    report: dict[str, Any]


def quantize_to_tflite(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    mode: str,
    output_dir: str,
    calibration_inputs: np.ndarray | Sequence[np.ndarray] | None = None,
    num_calibration: int = DEFAULT_NUM_CALIBRATION,
    inference_io_type: str = "float32",
    batch_size: int = 1,
    *,
    extra_batch_sizes: Sequence[int] = (),
    allow_float_fallback: bool = True,
    float_layers: Sequence[str] = (),
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> QuantizationResult:
    """Converts a frozen graph to a static-batch .tflite in `mode`, in a subprocess.

    Args:
      calibration_inputs: model inputs for int8 calibration (one array for a one-input
        model, else a sequence in signature order), first axis = samples. Required for
        `int8`, ignored otherwise. The first `num_calibration` samples are used.
      inference_io_type: `int8` makes an int8 model take and return int8 tensors
        (only for mode `int8`); `TFLiteModel` quantizes at the boundary.
      batch_size: the static batch of `model.tflite`; `extra_batch_sizes` adds
        `batch_<n>/model.tflite` files converted in the same subprocess.
      allow_float_fallback: for `int8`, let ops without an int8 kernel stay in float
        (they are listed in `float_ops`); False makes such a model fail to convert.
      float_layers: for `int8`, layers (output tensor names) to leave in float, as
        the accuracy-aware search chose them (tflite_accuracy_aware.py).

    Raises:
      UserInputError: bad arguments (unknown mode, missing calibration data, ...).
      QuantizationFailed: the converter failed, crashed or timed out.
    """
    batch_sizes = _validate(mode, inference_io_type, batch_size, extra_batch_sizes, num_calibration)
    arrays = _calibration_arrays(mode, signature, calibration_inputs, num_calibration)
    started = time.monotonic()
    from components.common.isolation import scratch_directory

    # Removed on every exit path, even if this process is SIGKILLed (isolation.py).
    with scratch_directory("tflite_quantization_") as work_dir:
        request = {
            "mode": mode,
            "inference_io_type": inference_io_type,
            "allow_float_fallback": allow_float_fallback,
            "float_layers": list(float_layers),
            "graph_dir": work_dir,
            "calibration_path": None,
            "models_dir": os.path.join(work_dir, "models"),
        }
        save_graph_def(graph_def, work_dir)
        signature.save(work_dir)
        if arrays is not None:
            request["calibration_path"] = os.path.join(work_dir, "calibration.npz")
            np.savez(request["calibration_path"], *arrays)
        try:
            child = _convert_each(request, batch_sizes, work_dir, mode, timeout_seconds)
        except QuantizationFailed as failure:
            failure.report_path = _write_failure(output_dir, mode, failure)
            raise
        report = _build_report(child, mode, graph_def, inference_io_type, batch_sizes)
        report["seconds"] = round(time.monotonic() - started, 3)
        extra_paths = _write_outputs(output_dir, signature, child, batch_sizes, report)
    for warning in report["warnings"]:
        logger.warning("TFLite %s: %s", mode, warning)
    return QuantizationResult(
        mode=mode,
        output_dir=output_dir,
        model_path=os.path.join(output_dir, TFLITE_FILENAME),
        batch_size=batch_sizes[0],
        size_bytes=report["sizes"]["model_bytes"],
        float32_tflite_size_bytes=report["sizes"]["float32_tflite_bytes"],
        frozen_graph_size_bytes=report["sizes"]["frozen_graph_bytes"],
        float_weight_bytes=report["sizes"]["float_weight_bytes"],
        calibration_samples=report["calibration_samples"],
        inference_input_type=report["inference_input_type"],
        inference_output_type=report["inference_output_type"],
        op_coverage=report["op_coverage"],
        float_ops=report["float_ops"],
        quantized_op_fraction=report["quantized_op_fraction"],
        xnnpack_partitions=report["xnnpack"]["partitions"],
        fully_delegated=report["xnnpack"]["fully_delegated"],
        extra_model_paths=extra_paths,
        warnings=report["warnings"],
        report=report,
    )


def read_quantization_report(directory: str) -> dict[str, Any]:
    """Reads `quantization.json` from a Quantizer output directory."""
    import tensorflow as tf

    with tf.io.gfile.GFile(os.path.join(directory, QUANTIZATION_FILENAME)) as f:
        return json.loads(f.read())


# ---------------------------------------------------------------------------- parent side


def _validate(
    mode: str,
    io_type: str,
    batch_size: int,
    extra_batch_sizes: Sequence[int],
    num_calibration: int,
) -> list[int]:
    if mode not in TFLITE_MODES:
        raise UserInputError(
            f"Unknown TFLite quantization mode {mode!r}; choose one of {', '.join(TFLITE_MODES)}."
        )
    if io_type not in IO_TYPES:
        raise UserInputError(
            f"Unknown inference io type {io_type!r}; choose one of {', '.join(IO_TYPES)}."
        )
    if io_type == "int8" and mode != "int8":
        raise UserInputError(
            f"inference_io_type 'int8' needs mode 'int8' (full integer quantization); mode "
            f"{mode!r} keeps float inputs and outputs. Use inference_io_type 'float32'."
        )
    sizes = [batch_size, *[b for b in extra_batch_sizes if b != batch_size]]
    if any(int(b) != b or b < 1 for b in sizes):
        raise UserInputError(f"Batch sizes must be positive integers, got {sizes}.")
    if num_calibration < 1:
        raise UserInputError(f"num_calibration must be at least 1, got {num_calibration}.")
    return list(dict.fromkeys(int(b) for b in sizes))


def _calibration_arrays(
    mode: str,
    signature: GraphSignature,
    calibration_inputs: np.ndarray | Sequence[np.ndarray] | None,
    num_calibration: int,
) -> list[np.ndarray] | None:
    """Checks calibration inputs against the signature; None when the mode needs none."""
    from components.common.calibration import check_calibration_inputs

    if mode != "int8":
        return None
    return check_calibration_inputs(signature, calibration_inputs, num_calibration, mode)


def _convert_each(
    request: dict[str, Any],
    batch_sizes: list[int],
    work_dir: str,
    mode: str,
    timeout_seconds: float,
) -> dict[str, Any]:
    """One child per conversion (each batch size, then the float32 reference size).

    TF's converter keeps what it allocated: after one float16 conversion of a 440 MB
    BERT-base graph (208 MiB out), its process stayed at 10.8 GiB. So no conversion
    starts on top of another's leftovers: each runs in a child of its own, and the
    peak is one conversion's (11.5-13.9 GiB per conversion on BERT-base).
    """
    merged: dict[str, Any] = {"models": {}, "conversion_seconds": 0.0}
    jobs: list[dict[str, Any]] = [{"batch_sizes": [size]} for size in batch_sizes]
    if mode != "float32":
        jobs.append({"batch_sizes": [], "float32_batch_size": batch_sizes[0]})
    for job in jobs:
        child = _run_child({**request, **job}, work_dir, mode, timeout_seconds)
        merged["models"].update(child["models"])
        merged["conversion_seconds"] = round(
            merged["conversion_seconds"] + child["conversion_seconds"], 3
        )
        merged["tensorflow_version"] = child["tensorflow_version"]
        if child.get("float32_tflite_size_bytes") is not None:
            merged["float32_tflite_size_bytes"] = child["float32_tflite_size_bytes"]
    return merged


def _run_child(
    request: dict[str, Any], work_dir: str, mode: str, timeout_seconds: float
) -> dict[str, Any]:
    """Runs the conversion in a process of its own; its result, or raises QuantizationFailed."""
    from components.common.isolation import run_isolated

    outcome = run_isolated(
        f"{_CHILD_MODULE}:convert_all",
        {"request": request},
        work_dir,
        timeout_s=timeout_seconds,
        env={"TF_CPP_MIN_LOG_LEVEL": "1"},  # Keep warnings and errors in the tail.
        name="tflite",
    )
    tail = _tail(outcome.stderr) or "(no stderr output beyond TensorFlow's start-up lines)"
    if outcome.ok:
        return outcome.result
    if outcome.timed_out:
        reason = f"the conversion did not finish within {timeout_seconds:.0f} s."
    elif outcome.error_type:
        reason = f"{outcome.error_type}: {summarize_converter_error(outcome.error_message)}"
    else:
        reason = outcome.failure("the converter process")
    raise QuantizationFailed(mode, reason[:_MAX_REASON_CHARS], outcome.returncode, tail)


def _build_report(
    child: dict[str, Any],
    mode: str,
    graph_def: tf.compat.v1.GraphDef,
    io_type: str,
    batch_sizes: list[int],
) -> dict[str, Any]:
    primary = child["models"][str(batch_sizes[0])]
    model_bytes = primary["size_bytes"]
    float32_bytes = model_bytes if mode == "float32" else child.get("float32_tflite_size_bytes")
    frozen_bytes = graph_def.ByteSize()
    weight_bytes = float_constant_bytes(graph_def)
    analysis = primary["analysis"]
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": "ok",
        "mode": mode,
        "batch_size": batch_sizes[0],
        "batch_sizes": batch_sizes,
        "inference_input_type": io_type,
        "inference_output_type": io_type,
        "calibration_samples": primary["calibration_samples"],
        "sizes": {
            "model_bytes": model_bytes,
            "float32_tflite_bytes": float32_bytes,
            "frozen_graph_bytes": frozen_bytes,
            "float_weight_bytes": weight_bytes,
            "ratio_to_float32_tflite": _ratio(model_bytes, float32_bytes),
            "ratio_to_float_weights": _ratio(model_bytes, weight_bytes),
            "ratio_to_frozen_graph": _ratio(model_bytes, frozen_bytes),
        },
        "op_coverage": analysis["op_coverage"],
        "quantized_op_fraction": analysis["quantized_op_fraction"],
        "float_ops": analysis["float_ops"],
        "xnnpack": analysis["xnnpack"],
        "dynamic_shape_tensors": analysis["dynamic_shape_tensors"],
        "inputs": analysis["inputs"],
        "outputs": analysis["outputs"],
        "max_abs_diff_vs_frozen_graph": primary["max_abs_diff_vs_frozen_graph"],
        "ops": analysis["ops"],
        "per_batch_size": {
            size: {
                "model_bytes": model["size_bytes"],
                "xnnpack_partitions": model["analysis"]["xnnpack"]["partitions"],
                "fully_delegated": model["analysis"]["xnnpack"]["fully_delegated"],
                "calibration_samples": model["calibration_samples"],
            }
            for size, model in child["models"].items()
        },
        "converter": {
            "tensorflow_version": child["tensorflow_version"],
            "conversion_seconds": child["conversion_seconds"],
        },
    }
    report["warnings"] = _warnings(mode, report)
    return report


def _warnings(mode: str, report: dict[str, Any]) -> list[str]:
    """Plain-language notes on what did not happen as the mode's name suggests."""
    notes = []
    float_ops = report["float_ops"]
    listed = ", ".join(f"{op['op']}#{op['index']}" for op in float_ops[:12])
    if mode in ("int8", "dynamic_range") and report["quantized_op_fraction"] == 0.0:
        notes.append(f"no op was quantized; the {mode} model computes entirely in float.")
    elif mode == "int8" and float_ops:
        notes.append(
            f"{len(float_ops)} op(s) had no int8 kernel and stayed in float: {listed}. "
            f"Each costs a dequantize/quantize pair; allow_float_fallback=False fails instead."
        )
    elif mode == "dynamic_range" and float_ops:
        notes.append(
            f"{len(float_ops)} op(s) compute in float ({listed}): dynamic-range quantization "
            f"only stores weights of 1024+ elements in int8; other ops keep float kernels."
        )
    xnnpack = report["xnnpack"]
    if not xnnpack["fully_delegated"]:
        notes.append(
            f"XNNPACK took {xnnpack['delegated_ops']} of {xnnpack['total_ops']} ops in "
            f"{xnnpack['partitions']} partition(s); the rest run on TFLite's built-in kernels."
        )
    if report["dynamic_shape_tensors"]:
        notes.append(
            f"{report['dynamic_shape_tensors']} tensor(s) have dynamic shapes; XNNPACK skips them."
        )
    return notes


def _write_outputs(
    output_dir: str,
    signature: GraphSignature,
    child: dict[str, Any],
    batch_sizes: list[int],
    report: dict[str, Any],
) -> dict[int, str]:
    """Copies the models out of the scratch folder and writes signatures and the report."""
    import tensorflow as tf  # gfile, so gs:// and s3:// artifact URIs work.

    extra_paths = {}
    for index, size in enumerate(batch_sizes):
        folder = output_dir if index == 0 else os.path.join(output_dir, f"{BATCH_DIR_PREFIX}{size}")
        tf.io.gfile.makedirs(folder)
        destination = os.path.join(folder, TFLITE_FILENAME)
        tf.io.gfile.copy(child["models"][str(size)]["path"], destination, overwrite=True)
        static_signature(signature, size).save(folder)
        if index:
            extra_paths[size] = destination
    with tf.io.gfile.GFile(os.path.join(output_dir, QUANTIZATION_FILENAME), "w") as f:
        f.write(json.dumps(report, indent=2) + "\n")
    return extra_paths


def _write_failure(output_dir: str, mode: str, failure: QuantizationFailed) -> str:
    import tensorflow as tf

    tf.io.gfile.makedirs(output_dir)
    report = {
        "schema_version": SCHEMA_VERSION,
        "status": "failed",
        "mode": mode,
        "failure_reason": failure.reason,
        "returncode": failure.returncode,
        "stderr_tail": failure.stderr_tail,
    }
    path = os.path.join(output_dir, QUANTIZATION_FILENAME)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(report, indent=2) + "\n")
    return path


def static_signature(signature: GraphSignature, batch_size: int) -> GraphSignature:
    """The signature with an unknown leading (batch) dimension fixed to `batch_size`."""

    def fix(tensor: TensorDescription) -> TensorDescription:
        shape = tensor.shape
        if shape and shape[0] is None:
            shape = (batch_size, *shape[1:])
        return dataclasses.replace(tensor, shape=tuple(shape))

    return dataclasses.replace(
        signature,
        inputs=tuple(fix(t) for t in signature.inputs),
        outputs=tuple(fix(t) for t in signature.outputs),
    )


def summarize_converter_error(message: str) -> str:
    """The lines of a converter error that say what failed, without MLIR's source echoes.

    MLIR errors repeat Python source locations, code lines and `^` markers for every
    frame; the `error:` lines and the TF Select summary are what a user can act on.
    """
    lines = message.splitlines()
    kept: list[str] = []
    for line in lines:
        text = line.strip()
        if " error: " in f" {text}" or text.startswith("error:"):
            text = "error: " + text.split("error:", 1)[1].strip()
        elif not text.startswith(("TF Select ops:", "Some ops are not supported", "tf.")):
            continue
        if text not in kept:
            kept.append(text)
    # MLIR glues the first sentence to a source location: "...FlatBuffer./path.py:1:1: ...".
    match = re.match(r"(.+?\.)\s*(?:/|<unknown>|loc\()", lines[0]) if lines else None
    head = match.group(1).strip() if match else ""
    if not kept:
        return "\n".join(lines[:20])
    return "\n".join([head, *kept] if head and head not in kept else kept)


def _ratio(numerator: int | None, denominator: int | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 4)


def _tail(text: str | None) -> str:
    """The last stderr lines, without TensorFlow's start-up chatter about GPUs and CPUs."""
    lines = [
        line
        for line in (text or "").splitlines()
        if line.strip() and not any(noise in line for noise in _STARTUP_NOISE)
    ]
    return "\n".join(lines[-_STDERR_TAIL_LINES:])


def convert_graph(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    mode: str,
    batch_size: int,
    calibration: list[np.ndarray] | None = None,
    inference_io_type: str = "float32",
    allow_float_fallback: bool = True,
    float_layers: Sequence[str] = (),
) -> tuple[bytes, int]:
    """Converts in this process; returns the flatbuffer and the calibration sample count.

    `float_layers` (int8 only): output tensor names of layers to leave in float, as
    the accuracy-aware search chose them (tflite_accuracy_aware.py).

    Prefer `quantize_to_tflite`, which runs this in a subprocess: the converter can abort.

    From the frozen GraphDef itself (TF's v1 `from_frozen_graph`), with the batch fixed in
    the placeholders, so that no dynamic shape reaches the flatbuffer and XNNPACK takes
    the whole graph. The model's inputs and outputs are in `input_arrays` and
    `output_arrays` order, which is the signature's (runtimes/tflite.py relies on it).
    Not from a concrete function: that path saves a SavedModel of the graph first and
    converts that. A float16 conversion of ResNet50 took 3.6 GiB and 11 s that way,
    against 1.6 GiB and 3 s from the GraphDef (the frozen graph alone holds 0.8 GiB).
    """
    import tensorflow as tf

    converter = frozen_graph_converter(graph_def, signature, batch_size)
    calibration_samples = 0
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        if calibration is None:
            raise ValueError("Mode int8 needs calibration inputs.")
        # A list per batch, in the signature's input order: the model's own input order
        # (input_arrays above), as the calibrator feeds a model without signature defs.
        batches = calibration_batches(calibration, batch_size)
        calibration_samples = len(batches) * batch_size
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(batches)
        if not allow_float_fallback:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if float_layers:
            if inference_io_type == "int8":
                raise ValueError("float layers are kept only with float32 model io")
            return _quantize_leaving_float(converter, float_layers), calibration_samples
        if inference_io_type == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    elif mode != "float32":
        raise ValueError(f"Unknown mode {mode!r}.")
    return converter.convert(), calibration_samples


def frozen_graph_converter(
    graph_def: tf.compat.v1.GraphDef, signature: GraphSignature, batch_size: int
) -> Any:  # tf.lite.TFLiteConverter
    """TF's v1 converter on the frozen graph, its batch fixed (see convert_graph)."""
    import tempfile

    import tensorflow as tf

    fixed = static_signature(signature, batch_size)
    with tempfile.TemporaryDirectory(prefix="tflite_graph_") as folder:
        path = os.path.join(folder, "graph.pb")
        with open(path, "wb") as f:
            f.write(_with_static_batch(graph_def, signature, batch_size).SerializeToString())
        return tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            path,
            input_arrays=[_lite_tensor_name(t.tensor_name) for t in fixed.inputs],
            output_arrays=[_lite_tensor_name(t.tensor_name) for t in fixed.outputs],
            input_shapes={
                _lite_tensor_name(t.tensor_name): list(t.shape) for t in fixed.inputs if t.shape
            }
            or None,
        )


def _quantize_leaving_float(converter: Any, float_layers: Sequence[str]) -> bytes:
    """Calibrates, then quantizes every layer but `float_layers`: TF's selective
    quantization, the QuantizationDebugger's own two steps (calibrate only, then
    `mlir_quantize` with `denylisted_nodes`)."""
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True  # noqa: SLF001 - as the debugger does
    return quantize_calibrated(converter.convert(), float_layers)


def quantize_calibrated(calibrated: bytes, float_layers: Sequence[str] = ()) -> bytes:
    """A calibrated (not yet quantized) model quantized, `float_layers` left in float."""
    from tensorflow.lite.python import convert

    return convert.mlir_quantize(
        calibrated,
        disable_per_channel=False,
        fully_quantize=False,
        enable_numeric_verify=False,
        denylisted_nodes=list(float_layers) or None,
    )


def _lite_tensor_name(tensor_name: str) -> str:
    """TFLite's v1 converter names a tensor `op` for output 0 and `op:N` for the others."""
    return tensor_name[: -len(":0")] if tensor_name.endswith(":0") else tensor_name


def _with_static_batch(
    graph_def: tf.compat.v1.GraphDef, signature: GraphSignature, batch_size: int
) -> tf.compat.v1.GraphDef:
    """A copy whose input placeholders have the leading dimension fixed to `batch_size`."""
    import tensorflow as tf

    static = tf.compat.v1.GraphDef()
    static.CopyFrom(graph_def)
    input_ops = {t.op_name for t in signature.inputs}
    for node in static.node:
        if node.name in input_ops and node.op == "Placeholder" and "shape" in node.attr:
            shape = node.attr["shape"].shape
            if not shape.unknown_rank and shape.dim and shape.dim[0].size < 0:
                shape.dim[0].size = batch_size
    return static


def calibration_batches(arrays: list[np.ndarray], batch_size: int) -> list[list[np.ndarray]]:
    """Whole batches of the static size; fewer samples than one batch are repeated to fill it."""
    count = len(arrays[0])
    if count < batch_size:
        arrays = [np.resize(a, (batch_size, *a.shape[1:])) for a in arrays]
        count = batch_size
    usable = count - count % batch_size
    return [[a[i : i + batch_size] for a in arrays] for i in range(0, usable, batch_size)]


def _check_against_graph(
    model_content: bytes,
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    batch_size: int,
    calibration: list[np.ndarray] | None,
) -> float:
    """Largest |TFLite - frozen graph| over the outputs on one batch (a wiring check)."""
    from components.common.graph_io import graph_def_callable
    from components.runtimes.tflite import TFLiteModel

    if calibration is not None:
        batch = [np.resize(a, (batch_size, *a.shape[1:])) for a in calibration]
    else:
        rng = np.random.default_rng(0)
        batch = [
            rng.random((batch_size, *[d or 1 for d in t.shape[1:]])).astype(t.dtype)
            for t in signature.inputs
        ]
    reference = graph_def_callable(graph_def, signature)(*batch)
    from components.common.isolation import scratch_directory

    with scratch_directory("tflite_check_") as folder:
        path = os.path.join(folder, TFLITE_FILENAME)
        with open(path, "wb") as f:
            f.write(model_content)
        static_signature(signature, batch_size).save(folder)
        outputs = TFLiteModel(path, num_threads=1).run(*batch)
    return float(
        max(
            np.max(np.abs(o.astype(np.float64) - r))
            for o, r in zip(outputs, reference, strict=True)
        )
    )


def convert_all(request: dict[str, Any]) -> dict[str, Any]:
    """In the isolated child: converts each of `batch_sizes` and analyzes each model; with
    `float32_batch_size`, only measures the float32 model's size (a reference)."""
    import tensorflow as tf

    from components.quantizer.tflite_analysis import analyze_tflite_model

    graph_def = load_graph_def(request["graph_dir"])
    signature = GraphSignature.load(request["graph_dir"])
    calibration = None
    if request["calibration_path"]:
        with np.load(request["calibration_path"]) as data:
            calibration = [data[f"arr_{i}"] for i in range(len(data.files))]
    os.makedirs(request["models_dir"], exist_ok=True)
    conversion_seconds = 0.0
    models = {}
    for size in request["batch_sizes"]:
        started = time.monotonic()
        content, samples = convert_graph(
            graph_def,
            signature,
            request["mode"],
            size,
            calibration,
            request["inference_io_type"],
            request["allow_float_fallback"],
            request.get("float_layers") or (),
        )
        conversion_seconds += time.monotonic() - started
        path = os.path.join(request["models_dir"], f"batch_{size}.tflite")
        with open(path, "wb") as f:
            f.write(content)
        models[str(size)] = {
            "path": path,
            "size_bytes": len(content),
            "calibration_samples": samples,
            "analysis": analyze_tflite_model(content).to_json(),
            "max_abs_diff_vs_frozen_graph": _check_against_graph(
                content, graph_def, signature, size, calibration
            ),
        }
    float32_size = None
    if request.get("float32_batch_size"):
        try:
            content, _ = convert_graph(
                graph_def, signature, "float32", request["float32_batch_size"]
            )
            float32_size = len(content)
        except Exception as error:  # Only a reference size; the requested model is done.
            print(f"No float32 reference size: {type(error).__name__}: {error}", file=sys.stderr)
    return {
        "models": models,
        "float32_tflite_size_bytes": float32_size,
        "conversion_seconds": round(conversion_seconds, 3),
        "tensorflow_version": tf.__version__,
    }
