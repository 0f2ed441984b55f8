"""ONNX modes: a frozen graph converted by tf2onnx, run by ONNX Runtime.

    onnx_fp32   tf2onnx from the frozen graph (opset 17, dynamic batch)
    onnx_int8   the same model, quantized by ORT's static QDQ quantizer on the
                calibration inputs (MinMax ranges, per-channel int8 weights)

The artifact (components/runtimes/onnx.py reads it):

    {output_dir}/model.onnx       the model
    {output_dir}/signature.json   the frozen graph's GraphSignature
    {output_dir}/onnx.json        the mode, opset, versions, quantization facts

Every conversion and quantization runs in a process of its own (run_isolated): the
children take and return JSON-able values only (paths; the calibration arrays go
through an .npz in the work directory), and write into a local work directory that the
parent copies into `output_dir` (which may be a gs:// URI).

A converted model is checked in the conversion's process: ORT loads it with the
options the Benchmarker uses and runs one batch of two rows. tf2onnx does not fail on
an op it has no handler for: it logs "Tensorflow op [Substr: Substr] is not supported"
and leaves the TF op in the ONNX graph, which only ORT refuses ("No Op registered for
Substr with domain_version of 17"). So the failure is raised at conversion time with
both messages, not when the Benchmarker loads the model. (Not every string op is
refused: an AsString -> StringToNumber round trip becomes Casts, which ORT runs, after
the warning "ONNX does not support precision, scientific and fill attributes for
AsString": a round trip that rounds through `precision` converts without the rounding.
tf2onnx's warnings are recorded as `converter_warnings`.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from components.common.isolation import scratch_directory
from components.common.signature import GraphSignature
from components.runtime_converter.modes import (
    ConversionOutcome,
    ConvertMode,
    ConvertSettings,
    register_mode,
)
from components.runtimes.base import MissingRuntime, ThreadSettings, missing_runtime
from components.runtimes.onnx import (
    FORMAT_ONNX,
    MODEL_FILENAME,
    ONNX_EXTRA,
    ONNX_JSON,
    match_names,
    numpy_dtype,
)

MODE_FP32 = "onnx_fp32"
MODE_INT8 = "onnx_int8"
# The newest opset both pins handle well: tf2onnx 1.17 maps ops up to opset 18, but 18
# changes every Reduce* op's schema (axes become an input), a path less exercised than
# 17's; ORT 1.23 runs newer opsets than either, and per-channel QDQ needs opset 13.
ONNX_OPSET = 17
# Modules both modes need, all installed by the `onnx` extra.
REQUIRED_MODULES = ("onnxruntime", "onnx", "tf2onnx")
VALIDATION_BATCH = 2
CALIBRATION_BATCH = 16

# Static QDQ settings of onnx_int8.
QUANT_FORMAT = "QDQ"
CALIBRATE_METHOD = "MinMax"
PER_CHANNEL = True
# Activations u8 (asymmetric: a post-ReLU range uses all 256 levels), weights s8
# (symmetric): ORT's CPU int8 kernels (QLinearConv, QGemm, MatMulInteger) take u8
# activations and s8 weights, and the quantize_static docs recommend asymmetric
# activations with symmetric weights on CPU. (S8 activations would only be shifted to u8
# by ORT's QDQS8ToU8Transformer at load time.)
ACTIVATION_TYPE = "QUInt8"
WEIGHT_TYPE = "QInt8"
# quant_pre_process options, tried in order. Its symbolic shape inference stops with
# "Exception: Incomplete symbolic shape inference" on a tf2onnx model with two inputs
# added together: tf2onnx names each input's batch dimension apart (unk__13, unk__14),
# and only `auto_merge` lets it merge the two. Without symbolic inference, ONNX's own
# shape inference is enough for CNNs and MLPs.
_PRE_PROCESS_ATTEMPTS: tuple[dict[str, Any], ...] = (
    {"auto_merge": True},
    {"skip_symbolic_shape": True},
)
_CONVERT_FUNCTION = "components.runtime_converter.onnx_model:convert_graph_to_onnx"
_QUANTIZE_FUNCTION = "components.runtime_converter.onnx_model:quantize_onnx_model"
_UNSUPPORTED = re.compile(r"Tensorflow op \[(?P<node>.+?): (?P<op>.+?)\] is not supported")
_MAX_LINES = 4
_MAX_CHARS = 800
_MAX_WARNINGS = 10


class OnnxConversionError(RuntimeError):
    """tf2onnx or ONNX Runtime cannot convert, load or run the model; says which and why."""


def summarize_error(text: str, max_lines: int = _MAX_LINES, max_chars: int = _MAX_CHARS) -> str:
    """The first meaningful lines of a converter's message, without a traceback."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("Traceback (most recent", 'File "', "^")):
            continue
        lines.append(stripped)
        if len(lines) == max_lines:
            break
    summary = " | ".join(lines) or text.strip()
    return summary if len(summary) <= max_chars else summary[: max_chars - 3] + "..."


def require_onnx_modules() -> None:
    """Raises MissingRuntime naming the `onnx` extra when one of its modules is absent."""
    for module in REQUIRED_MODULES:
        if missing_runtime(module, ONNX_EXTRA):
            raise MissingRuntime(module, ONNX_EXTRA)


def int8_weight_range() -> tuple[bool, str]:
    """(reduce_range, why) for this CPU: whether onnx_int8 quantizes weights to 7 bits.

    Without VNNI (AVX512_VNNI, AVX_VNNI, AMX_INT8) ORT's x86 u8s8 GEMM uses VPMADDUBSW,
    which adds two u8*s8 products into a saturating int16: 2 * 255 * 127 = 64770 > 32767.
    ORT's docs name `reduce_range` (7-bit weights: 2 * 255 * 64 = 32640 fits) as the fix.
    Measured on this project's AVX2-only AMD EPYC with ORT 1.23.2: a QDQ MatMul (and a
    1x1 Conv) with K=256 positive weights and inputs is off by 46% with 8-bit weights and
    by 0.3% with reduce_range. So the range is reduced unless the converting CPU has an
    int8 dot-product instruction, or when its flags are unknown: a 7-bit model is right
    on any CPU, an 8-bit one only where VNNI/AMX does the sums. Both are recorded.
    """
    from components.common.cpu_facts import INT8_DOT_FLAGS, host_cpu

    cpu = host_cpu()
    flags = [flag for flag in INT8_DOT_FLAGS if cpu.has(flag)]
    if flags:
        return False, f"the CPU has {', '.join(flags)}: int8 dot products do not saturate"
    if not cpu.known:
        return True, "the CPU's flags are unknown: 7-bit weights cannot saturate"
    return True, (
        "the CPU has no VNNI/AMX int8 dot product: ORT's AVX2 u8s8 kernels sum products "
        "in saturating int16 (VPMADDUBSW), which 7-bit weights cannot overflow"
    )


# ---- In the child process --------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # A record that cannot format is skipped.
            self.messages.append((record.levelno, record.getMessage()))


@contextlib.contextmanager
def _captured_logs(name: str) -> Iterator[_Records]:
    """Collects the WARNING+ records of logger `name` (tf2onnx logs, does not raise)."""
    logger = logging.getLogger(name)
    handler = _Records()
    logger.addHandler(handler)
    # Whatever the process's logging was set to (a quiet CLI run raises the root level),
    # the converter's warnings must reach the handler: they are the failure's evidence.
    saved_level = logger.level
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        logger.setLevel(saved_level)
        logger.removeHandler(handler)


@contextlib.contextmanager
def _working_directory(path: str) -> Iterator[None]:
    """Runs the block in `path`: when ORT's symbolic shape inference fails, it saves
    `sym_shape_infer_temp.onnx` and uuid-named external-data files in the working
    directory (the repository root, for a child of run_isolated)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _zero_inputs(session: Any, names: Sequence[str], batch_size: int) -> dict[str, np.ndarray]:
    """Zeros for every input: batch `batch_size`, other unknown dimensions 1."""
    by_name = {i.name: i for i in session.get_inputs()}
    feeds = {}
    for name in names:
        spec = by_name[name]
        shape = [
            d if isinstance(d, int) and d > 0 else (batch_size if axis == 0 else 1)
            for axis, d in enumerate(spec.shape or [])
        ]
        dtype = numpy_dtype(spec.type)
        feeds[name] = (
            np.full(shape, "", dtype=object) if dtype is np.object_ else np.zeros(shape, dtype)
        )
    return feeds


def validate_onnx_model(
    model_path: str, signature: GraphSignature, batch_size: int = VALIDATION_BATCH
) -> dict[str, Any]:
    """Loads the model as the Benchmarker does and runs one batch of zeros.

    Raises OnnxConversionError with ORT's message when ORT refuses the model or the
    run, and when an output's batch dimension does not follow the input's (a batch
    dimension that was not kept dynamic).
    """
    from components.runtimes.onnx import create_session

    try:
        session = create_session(model_path, ThreadSettings(intra_op=1, inter_op=1))
        inputs = match_names(signature.inputs, [i.name for i in session.get_inputs()], "inputs")
        outputs = match_names(signature.outputs, [o.name for o in session.get_outputs()], "outputs")
        results = session.run(outputs, _zero_inputs(session, inputs, batch_size))
    except Exception as error:  # ORT's own exception types differ between versions.
        raise OnnxConversionError(
            f"ONNX Runtime cannot run the converted model: {summarize_error(str(error))}"
        ) from None
    for tensor, result in zip(signature.outputs, results, strict=True):
        shape = tuple(np.shape(result))
        if tensor.shape and tensor.shape[0] is None and shape and shape[0] != batch_size:
            raise OnnxConversionError(
                f"the ONNX model's output {tensor.name!r} has shape {list(shape)} for a "
                f"batch of {batch_size}: its batch dimension is not dynamic"
            )
    return {
        "batch_size": batch_size,
        "input_names": inputs,
        "output_names": outputs,
        "output_shapes": [list(np.shape(r)) for r in results],
    }


def convert_graph_to_onnx(
    graph_dir: str, output_path: str, opset: int = ONNX_OPSET
) -> dict[str, Any]:
    """tf2onnx on the frozen graph in `graph_dir`, written to `output_path`, validated.

    Runs in the conversion's child process; returns JSON-able facts.
    """
    import onnx
    import onnxruntime
    import tf2onnx

    from components.common.graph_io import load_graph_def

    graph_def = load_graph_def(graph_dir)
    signature = GraphSignature.load(graph_dir)
    start = time.perf_counter()
    with _captured_logs("tf2onnx") as logs:
        try:
            tf2onnx.convert.from_graph_def(
                graph_def,
                name="model",
                input_names=signature.input_tensor_names,
                output_names=signature.output_tensor_names,
                opset=opset,
                output_path=output_path,
            )
        except Exception as error:  # tf2onnx raises what its op handlers raise.
            raise OnnxConversionError(
                f"tf2onnx cannot convert the graph: {type(error).__name__}: "
                f"{summarize_error(str(error))}"
            ) from None
    conversion_s = time.perf_counter() - start
    unsupported = [m.group("op") for _, text in logs.messages if (m := _UNSUPPORTED.search(text))]
    try:
        validation = validate_onnx_model(output_path, signature)
    except OnnxConversionError as error:
        if unsupported:
            raise OnnxConversionError(
                f"tf2onnx has no conversion for the TensorFlow op(s) "
                f"{', '.join(sorted(set(unsupported)))} and left them in the ONNX graph "
                f'("{next(t for _, t in logs.messages if _UNSUPPORTED.search(t))}"); {error}'
            ) from None
        raise
    warnings = list(dict.fromkeys(text for level, text in logs.messages if level < logging.ERROR))
    return {
        "opset": opset,
        "tf2onnx_version": tf2onnx.__version__,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": onnxruntime.__version__,
        "conversion_s": round(conversion_s, 3),
        "size_bytes": os.path.getsize(output_path),
        "converter_warnings": warnings[:_MAX_WARNINGS],
        "unconverted_ops": sorted(set(unsupported)),
        "validation": validation,
    }


class _ArrayReader:
    """An ORT CalibrationDataReader over arrays (signature order), `batch_size` rows a feed.

    `whole_batches`: leave out a last, shorter batch. ORT's histogram calibrators
    (Percentile, Entropy) stack every feed's activations into one array and fail on a
    ragged last batch ("inhomogeneous shape"; measured with ORT 1.23.2).
    """

    def __init__(
        self,
        names: Sequence[str],
        arrays: Sequence[np.ndarray],
        batch_size: int,
        whole_batches: bool = False,
    ):
        rows = int(arrays[0].shape[0])
        if whole_batches and rows >= batch_size:
            rows -= rows % batch_size
        self._feeds = iter(
            [
                {
                    name: array[start : start + batch_size]
                    for name, array in zip(names, arrays, strict=True)
                }
                for start in range(0, rows, batch_size)
            ]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:  # qdq_loss_debug iterates.
        return self._feeds


def _graph_input_names(model_path: str) -> list[str]:
    import onnx

    model = onnx.load(model_path)
    initializers = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def _compare(
    fp32_path: str,
    int8_path: str,
    signature: GraphSignature,
    names: Sequence[str],
    arrays: Sequence[np.ndarray],
) -> dict[str, Any]:
    """How the int8 model's outputs differ from the fp32 model's on calibration rows
    (`argmax_agreement`: of the signature's first output, when it has classes)."""
    from components.runtimes.onnx import create_session

    settings = ThreadSettings(intra_op=1, inter_op=1)
    feeds = {name: array[:64] for name, array in zip(names, arrays, strict=True)}
    sessions = [create_session(path, settings) for path in (fp32_path, int8_path)]
    fp32, int8 = (
        session.run(
            match_names(signature.outputs, [o.name for o in session.get_outputs()], "outputs"),
            feeds,
        )
        for session in sessions
    )
    facts: dict[str, Any] = {
        "compared_rows": int(next(iter(feeds.values())).shape[0]),
        "max_abs_diff": max(
            float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
            for a, b in zip(fp32, int8, strict=True)
        ),
    }
    first_fp32, first_int8 = fp32[0], int8[0]
    if first_fp32.ndim == 2 and first_fp32.shape[1] > 1:
        agreement = np.mean(np.argmax(first_fp32, 1) == np.argmax(first_int8, 1))
        facts["argmax_agreement"] = round(float(agreement), 4)
    return facts


def quantize_onnx_model(
    model_path: str,
    output_path: str,
    calibration_path: str,
    signature: dict[str, Any],
    work_dir: str,
    reduce_range: bool,
    per_channel: bool = PER_CHANNEL,
    activation_type: str = ACTIVATION_TYPE,
    weight_type: str = WEIGHT_TYPE,
    calibrate_method: str = CALIBRATE_METHOD,
    batch_size: int = CALIBRATION_BATCH,
) -> dict[str, Any]:
    """ORT static QDQ quantization of `model_path` on the .npz calibration arrays
    (pre_process first). Runs in the quantization's child."""
    import onnxruntime

    sig = GraphSignature.from_json(signature)
    start = time.perf_counter()
    source, pre_process_options, pre_process_errors = pre_process(model_path, work_dir)
    arrays = read_calibration(calibration_path, sig)
    names = match_names(sig.inputs, _graph_input_names(source), "inputs")
    quantize_qdq(
        source,
        output_path,
        names,
        arrays,
        reduce_range=reduce_range,
        calibrate_method=calibrate_method,
        per_channel=per_channel,
        activation_type=activation_type,
        weight_type=weight_type,
        batch_size=batch_size,
    )
    quantization_s = time.perf_counter() - start
    summary = checked_quantized_summary(output_path)
    validate_onnx_model(output_path, sig)
    return {
        "onnxruntime_version": onnxruntime.__version__,
        "quantization_s": round(quantization_s, 3),
        "size_bytes": os.path.getsize(output_path),
        "quant_format": QUANT_FORMAT,
        "calibrate_method": calibrate_method,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "activation_type": activation_type,
        "weight_type": weight_type,
        "calibration_samples": int(arrays[0].shape[0]),
        "calibration_batch": batch_size,
        "pre_processed": pre_process_options is not None,
        "pre_process_options": pre_process_options,
        "pre_process_errors": pre_process_errors,
        "quantize_linear_ops": summary["quantize_linear"],
        "dequantize_linear_ops": summary["dequantize_linear"],
        "quantized_ops": summary["quantized_ops"],
        "versus_fp32": _compare(source, output_path, sig, names, arrays),
    }


def pre_process(model_path: str, work_dir: str) -> tuple[str, dict[str, Any] | None, list[str]]:
    """`quant_pre_process` (shape inference and ORT's graph optimization, which ORT asks
    for before quantizing), see _PRE_PROCESS_ATTEMPTS: (the model to quantize, the
    options that worked or None, why the others failed). When every attempt fails the
    raw model is quantized and the reasons are recorded."""
    from onnxruntime import quantization

    preprocessed = os.path.join(work_dir, "preprocessed.onnx")
    errors = []
    for options in _PRE_PROCESS_ATTEMPTS:
        try:
            with _working_directory(work_dir):
                quantization.quant_pre_process(model_path, preprocessed, **options)
        except Exception as error:  # noqa: BLE001 - optional step; the reasons are recorded.
            errors.append(f"{type(error).__name__}: {summarize_error(str(error))}")
            continue
        return preprocessed, options, errors
    return model_path, None, errors


def read_calibration(calibration_path: str, signature: GraphSignature) -> list[np.ndarray]:
    """The arrays the parent wrote with np.savez, in signature order."""
    with np.load(calibration_path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(signature.inputs))]


def quantize_qdq(
    source: str,
    output_path: str,
    names: Sequence[str],
    arrays: Sequence[np.ndarray],
    reduce_range: bool,
    calibrate_method: str = CALIBRATE_METHOD,
    nodes_to_exclude: Sequence[str] = (),
    per_channel: bool = PER_CHANNEL,
    activation_type: str = ACTIVATION_TYPE,
    weight_type: str = WEIGHT_TYPE,
    batch_size: int = CALIBRATION_BATCH,
) -> None:
    """One `quantize_static` call with this project's QDQ settings; `nodes_to_exclude`
    stay float (ORT still puts a QDQ pair on a tensor a quantized neighbour touches)."""
    from onnxruntime import quantization

    try:
        quantization.quantize_static(
            source,
            output_path,
            _ArrayReader(names, arrays, batch_size, whole_batches=calibrate_method != "MinMax"),
            quant_format=quantization.QuantFormat[QUANT_FORMAT],
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=quantization.QuantType[activation_type],
            weight_type=quantization.QuantType[weight_type],
            calibrate_method=quantization.CalibrationMethod[calibrate_method],
            nodes_to_exclude=list(nodes_to_exclude),
        )
    except Exception as error:  # What ORT's quantizer raises varies by model.
        raise OnnxConversionError(
            f"ONNX Runtime's quantize_static failed: {type(error).__name__}: "
            f"{summarize_error(str(error))}"
        ) from None


def checked_quantized_summary(path: str) -> dict[str, Any]:
    """quantized_op_summary of a quantized model; raises when nothing was quantized."""
    from components.runtimes.onnx import quantized_op_summary

    summary = quantized_op_summary(path)
    if summary["quantize_linear"] == 0:
        raise OnnxConversionError(
            "ONNX Runtime's quantize_static inserted no QuantizeLinear node: no op of this "
            f"model is one it quantizes (ops: {summary['op_types']})"
        )
    return summary


# ---- In the executor's process -------------------------------------------------


def _run_child(
    function: str, kwargs: dict[str, Any], work_dir: str, settings: ConvertSettings, what: str
) -> dict[str, Any]:
    from components.common.isolation import run_isolated

    outcome = run_isolated(
        function,
        kwargs,
        work_dir,
        timeout_s=settings.timeout_s,
        name=function.rsplit(":", 1)[1],
    )
    if outcome.ok:
        return outcome.result
    outcome.raise_user_error()
    if outcome.error_type:
        message = summarize_error(outcome.error_message, max_chars=2 * _MAX_CHARS)
        raise OnnxConversionError(f"{what} failed: {outcome.error_type}: {message}")
    raise OnnxConversionError(outcome.failure(what))


def _publish(staging: str, output_dir: str, graph_dir: str, facts: dict[str, Any]) -> int:
    """Copies model.onnx and onnx.json into `output_dir` beside signature.json."""
    import tensorflow as tf  # gfile: the output may be a gs:// URI.

    from components.runtimes.onnx import write_onnx_facts

    write_onnx_facts(staging, facts)
    tf.io.gfile.makedirs(output_dir)
    for name in (MODEL_FILENAME, ONNX_JSON):
        tf.io.gfile.copy(
            os.path.join(staging, name), os.path.join(output_dir, name), overwrite=True
        )
    GraphSignature.load(graph_dir).save(output_dir)
    return os.path.getsize(os.path.join(staging, MODEL_FILENAME))


def _check_calibration(
    signature: GraphSignature, calibration: list[np.ndarray] | None, limit: int
) -> list[np.ndarray]:
    if calibration is None:
        raise ValueError(f"{MODE_INT8} needs calibration inputs, got none")
    if len(calibration) != len(signature.inputs):
        raise ValueError(
            f"{MODE_INT8} needs one calibration array per input {signature.input_names}, "
            f"got {len(calibration)}"
        )
    rows = {int(np.shape(array)[0]) for array in calibration}
    if len(rows) != 1 or 0 in rows:
        raise ValueError(f"calibration arrays need the same, non-zero row count; got {rows}")
    # In the signature's dtype: ORT refuses a float64 feed for a float32 input.
    return [
        np.asarray(array)[:limit].astype(tensor.dtype, copy=False)
        for array, tensor in zip(calibration, signature.inputs, strict=True)
    ]


class _OnnxMode(ConvertMode):
    model_format = FORMAT_ONNX
    required_module = "onnxruntime"
    extra = ONNX_EXTRA

    def _convert(
        self, graph_dir: str, output_path: str, work_dir: str, settings: ConvertSettings
    ) -> dict[str, Any]:
        return _run_child(
            _CONVERT_FUNCTION,
            {"graph_dir": graph_dir, "output_path": output_path, "opset": ONNX_OPSET},
            work_dir,
            settings,
            "the ONNX conversion",
        )

    @staticmethod
    def _properties(converted: dict[str, Any]) -> dict[str, Any]:
        return {
            "opset": converted["opset"],
            "tf2onnx_version": converted["tf2onnx_version"],
            "onnx_version": converted["onnx_version"],
            "onnxruntime_version": converted["onnxruntime_version"],
            "conversion_s": converted["conversion_s"],
            "converter_warnings": converted["converter_warnings"] or None,
        }


@register_mode
class OnnxFp32Mode(_OnnxMode):
    """The frozen graph as an fp32 ONNX model (tf2onnx), run by ONNX Runtime."""

    name = MODE_FP32
    needs_calibration = False
    description = "tf2onnx fp32 model (opset 17, dynamic batch) run by ONNX Runtime on the CPU"

    def run(
        self,
        graph_dir: str,
        signature: GraphSignature,
        calibration: list[np.ndarray] | None,
        output_dir: str,
        settings: ConvertSettings,
    ) -> ConversionOutcome:
        require_onnx_modules()
        with scratch_directory("onnx_fp32_") as work:
            staging = os.path.join(work, "out")
            os.makedirs(staging)
            converted = self._convert(
                graph_dir, os.path.join(staging, MODEL_FILENAME), work, settings
            )
            facts = {"mode": self.name, "dynamic_batch": True, **converted, "quantization": None}
            size = _publish(staging, output_dir, graph_dir, facts)
        return ConversionOutcome(
            model_format=FORMAT_ONNX,
            size_bytes=size,
            properties={**self._properties(converted), "quantize_linear_ops": 0},
        )


class _OnnxInt8Base(_OnnxMode):
    """What onnx_int8 and onnx_int8_aa share: the fp32 model and calibration, staged."""

    needs_calibration = True

    def stage(
        self,
        graph_dir: str,
        signature: GraphSignature,
        calibration: list[np.ndarray] | None,
        settings: ConvertSettings,
        work: str,
    ) -> tuple[str, str, dict[str, Any], str]:
        """(staging directory, fp32 model, its conversion facts, calibration .npz) in `work`."""
        arrays = _check_calibration(signature, calibration, settings.num_calibration)
        staging = os.path.join(work, "out")
        os.makedirs(staging)
        fp32_path = os.path.join(work, "fp32.onnx")
        converted = self._convert(graph_dir, fp32_path, work, settings)
        calibration_path = os.path.join(work, "calibration.npz")
        np.savez(calibration_path, *arrays)
        return staging, fp32_path, converted, calibration_path


@register_mode
class OnnxInt8Mode(_OnnxInt8Base):
    """The tf2onnx model quantized by ORT's static QDQ quantizer on calibration inputs."""

    name = MODE_INT8
    needs_calibration = True
    description = (
        "tf2onnx model quantized by ONNX Runtime (static QDQ, MinMax, per-channel s8 "
        "weights, u8 activations) run by ONNX Runtime on the CPU"
    )

    def run(
        self,
        graph_dir: str,
        signature: GraphSignature,
        calibration: list[np.ndarray] | None,
        output_dir: str,
        settings: ConvertSettings,
    ) -> ConversionOutcome:
        require_onnx_modules()
        reduce_range, reduce_range_reason = int8_weight_range()
        with scratch_directory("onnx_int8_") as work:
            staging, fp32_path, converted, calibration_path = self.stage(
                graph_dir, signature, calibration, settings, work
            )
            quantized = _run_child(
                _QUANTIZE_FUNCTION,
                {
                    "model_path": fp32_path,
                    "output_path": os.path.join(staging, MODEL_FILENAME),
                    "calibration_path": calibration_path,
                    "signature": signature.to_json(),
                    "work_dir": work,
                    "reduce_range": reduce_range,
                },
                work,
                settings,
                "the ONNX int8 quantization",
            )
            quantized["reduce_range_reason"] = reduce_range_reason
            facts = {
                "mode": self.name,
                "dynamic_batch": True,
                **converted,
                "size_bytes": quantized["size_bytes"],
                "fp32_size_bytes": converted["size_bytes"],
                "quantization": quantized,
            }
            size = _publish(staging, output_dir, graph_dir, facts)
        return ConversionOutcome(
            model_format=FORMAT_ONNX,
            size_bytes=size,
            calibration_samples=quantized["calibration_samples"],
            properties={
                **self._properties(converted),
                "fp32_size_bytes": converted["size_bytes"],
                "quantization_s": quantized["quantization_s"],
                "quant_format": quantized["quant_format"],
                "calibrate_method": quantized["calibrate_method"],
                "per_channel": quantized["per_channel"],
                "reduce_range": quantized["reduce_range"],
                "reduce_range_reason": reduce_range_reason,
                "activation_type": quantized["activation_type"],
                "weight_type": quantized["weight_type"],
                "pre_processed": quantized["pre_processed"],
                "pre_process_options": quantized["pre_process_options"],
                "quantize_linear_ops": quantized["quantize_linear_ops"],
                "dequantize_linear_ops": quantized["dequantize_linear_ops"],
                "quantized_ops": quantized["quantized_ops"],
                "versus_fp32": quantized["versus_fp32"],
            },
        )
