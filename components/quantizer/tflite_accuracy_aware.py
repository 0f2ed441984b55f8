"""Accuracy-aware TFLite int8: the QuantizationDebugger's per-layer error, then float
fallback through `denylisted_nodes` until the task metric fits the budget.

    result = search_tflite_int8(graph_def, signature, calibration, held_out,
                                Int8SearchSettings(max_accuracy_drop=0.01))
    result.model_content          # the chosen .tflite (batch 1)
    result.search.fallback_layers, result.search.summary()
    result.sensitivity            # [LayerSensitivity], graph order

How:
1. TF's own `tf.lite.experimental.QuantizationDebugger` calibrates once and builds a
   debug model in which every quantized layer's output is checked against the same op
   run in float on the same (dequantized) inputs: the error that layer adds.
2. The error is the per-channel normalized MSE of that output (`channel_normalized_mse`):
   the mean over channels of |dequantized - float|^2 / |float|^2. Per channel, because the
   classic int8 failure is one outlier channel setting a per-tensor scale that leaves the
   others a few levels; measured over the whole tensor, the outlier's own power would
   hide that. Each layer's MACs come from its weight and output shapes (`layer_macs`).
3. The shared policy (common/int8_fallback.py) picks the layers to leave in float. Each
   step re-quantizes the calibrated model with those layers denylisted (TF's
   `mlir_quantize`, what the debugger itself uses) and scores it with the task's metric
   on the held-out examples, never the calibration ones.

Runs in the producer's isolated child, like every conversion (quantizer/modes.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from components.common.held_out import HeldOut
from components.common.int8_fallback import (
    FallbackSearch,
    Int8SearchSettings,
    LayerSensitivity,
    StepMeasurement,
    excluded_layers,
    search_fallback,
    search_record,
    write_search_record,
)
from components.common.signature import GraphSignature

if TYPE_CHECKING:
    import tensorflow as tf

MODE = "tflite_int8"
ERROR_METRIC = "channel_normalized_mse"
# Sensitivity is an average: this many calibration samples measure it well enough, and
# the debug model runs one at a time.
SENSITIVITY_SAMPLES = 64
LATENCY_CALLS = 50  # Per step, after LATENCY_WARMUP: a rough figure to stop on.
LATENCY_WARMUP = 5


@dataclasses.dataclass(frozen=True)
class AccuracyAwareResult:
    model_content: bytes
    search: FallbackSearch
    sensitivity: list[LayerSensitivity]
    float_metric: float
    float_latency_ms: float  # The float TFLite model's, timed as the steps are.
    max_drop: float  # The budget the search kept to, in the metric's units.
    held_out_examples: int
    sensitivity_samples: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return search_record(
            MODE,
            ERROR_METRIC,
            self.float_metric,
            self.float_latency_ms,
            self.max_drop,
            self.held_out_examples,
            self.sensitivity_samples,
            self.sensitivity,
            self.search,
            self.seconds,
        )


def channel_normalized_mse(
    float_values: np.ndarray, quantized_values: np.ndarray, scale: float, zero_point: int
) -> float:
    """Mean over channels (last axis) of the int8 error power over the float power.

    Channels that are all zero in float (dead ReLUs) carry no signal to lose and are
    left out; NaN when every channel is zero.
    """
    reference = np.asarray(float_values, dtype=np.float64)
    dequantized = (np.asarray(quantized_values, dtype=np.float64) - zero_point) * scale
    channels = reference.shape[-1] if reference.ndim else 1
    reference = reference.reshape(-1, channels)
    error = (dequantized.reshape(-1, channels) - reference) ** 2
    power = np.sum(reference**2, axis=0)
    live = power > 0
    if not np.any(live):
        return float("nan")
    return float(np.mean(np.sum(error, axis=0)[live] / power[live]))


def layer_macs(
    op_name: str, weight_shapes: Sequence[Sequence[int]], output_shape: Sequence[int]
) -> int:
    """Multiply-accumulates per example of one TFLite op (0 for ops without weights).

    `weight_shapes` are its inputs' shapes after the first (the activation); the batch is
    the output's first axis.
    """
    per_example_outputs = int(np.prod(output_shape[1:])) if len(output_shape) > 1 else 1
    if not weight_shapes or not weight_shapes[0]:
        return 0
    weights = list(weight_shapes[0])
    if op_name == "CONV_2D" and len(weights) == 4:  # [out, kh, kw, in]
        return per_example_outputs * weights[1] * weights[2] * weights[3]
    if op_name == "DEPTHWISE_CONV_2D" and len(weights) == 4:  # [1, kh, kw, out]
        return per_example_outputs * weights[1] * weights[2]
    if op_name == "FULLY_CONNECTED" and len(weights) == 2:  # [out, in]
        return per_example_outputs * weights[1]
    if op_name == "BATCH_MATMUL" and len(weights) >= 2:  # [..., k, n]
        return per_example_outputs * weights[-2]
    if op_name == "CONV_3D" and len(weights) == 5:  # [kd, kh, kw, in, out]
        return per_example_outputs * weights[0] * weights[1] * weights[2] * weights[3]
    return 0


def search_tflite_int8(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    calibration: list[np.ndarray],
    held_out: HeldOut,
    settings: Int8SearchSettings,
    num_threads: int = 1,
) -> AccuracyAwareResult:
    """Calibrates once, ranks the layers, and searches the float fallback (module doc).

    The budget is the Benchmarker's (settings.budget), in the task metric's units, and
    `settings.exclude` layers stay in float from the start.
    """
    from components.common.graph_io import graph_def_callable

    started = time.monotonic()
    debugger, measured = _debugger(graph_def, signature, calibration)
    sensitivity = layer_sensitivity(debugger, measured)
    user_excluded = excluded_layers(settings.exclude, sensitivity, MODE)
    float_metric = held_out.metric(graph_def_callable(graph_def, signature))
    budget = settings.budget(held_out.plan.task_name, float_metric)
    float_latency = _latency_ms(_float_model(graph_def, signature), held_out, num_threads)
    models: dict[tuple[str, ...], bytes] = {}

    def evaluate(excluded: tuple[str, ...]) -> StepMeasurement:
        content = quantize_with_float_layers(debugger, excluded)
        models[excluded] = content
        metric = held_out.metric(_runner(content, num_threads))
        return StepMeasurement(
            metric_drop=held_out.drop(float_metric, metric),
            metric=metric,
            latency_ms=_latency_ms(content, held_out, num_threads),
        )

    search = search_fallback(sensitivity, evaluate, budget, user_excluded=user_excluded)
    return AccuracyAwareResult(
        model_content=models[search.chosen.excluded],
        search=search,
        sensitivity=sensitivity,
        float_metric=float_metric,
        float_latency_ms=float_latency,
        max_drop=budget.max_drop,
        held_out_examples=len(held_out.labels),
        sensitivity_samples=len(measured),
        seconds=time.monotonic() - started,
    )


def layer_sensitivity(
    debugger: Any, samples: Sequence[Sequence[np.ndarray]]
) -> list[LayerSensitivity]:
    """Every quantized layer's added error over `samples`, its MACs and its group.

    Reads the debugger's debug model as its own `layer_statistics_dump` does: each
    NumericVerify op takes a quantized layer's output and the same op's output computed
    in float from the same (dequantized) inputs. The error is summed per channel over
    all samples before it is divided (`ChannelErrors`), so that a channel that is small
    in one sample does not weigh like one that is small in all.
    """
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(
        model_content=debugger.quant_model, experimental_preserve_all_tensors=True
    )
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()  # noqa: SLF001 - as the debugger itself reads it
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    producer = {out: op for op in ops for out in op["outputs"]}
    consumers: dict[int, list[dict[str, Any]]] = {}
    for op in ops:
        for index in op["inputs"]:
            consumers.setdefault(index, []).append(op)
    verified = {}  # quantized output tensor -> (float reference tensor, layer name)
    for op in ops:
        if op["op_name"] == _NUMERIC_VERIFY:
            quantized, reference = op["inputs"][:2]
            verify_name = tensors[op["outputs"][0]]["name"]
            name, _ = debugger._get_operand_name_and_index(verify_name)  # noqa: SLF001
            verified[quantized] = (reference, name)
    errors = {index: ChannelErrors() for index in verified}
    inputs = interpreter.get_input_details()
    for sample in samples:
        for detail, array in zip(inputs, sample, strict=True):
            interpreter.set_tensor(detail["index"], _to_input_dtype(array, detail))
        interpreter.invoke()
        for quantized, (reference, _) in verified.items():
            params = tensors[quantized]["quantization_parameters"]
            errors[quantized].add(
                interpreter.get_tensor(reference),
                interpreter.get_tensor(quantized),
                float(params["scales"][0]) if len(params["scales"]) else 1.0,
                int(params["zero_points"][0]) if len(params["zero_points"]) else 0,
            )
    layers = []
    for quantized, (_, name) in verified.items():
        op = producer[quantized]
        macs = layer_macs(
            op["op_name"],
            [[int(d) for d in tensors[i]["shape"]] for i in op["inputs"][1:] if i >= 0],
            [int(d) for d in tensors[quantized]["shape"]],
        )
        layers.append(
            LayerSensitivity(
                name=name,
                op=op["op_name"],
                error=errors[quantized].normalized_mse(),
                macs=macs,
                error_metric=ERROR_METRIC,
                group=_followers(quantized, verified, producer, consumers, tensors),
            )
        )
    return layers


_NUMERIC_VERIFY = "NumericVerify"


class ChannelErrors:
    """Per-channel sums of the int8 error power and the float power, over samples."""

    def __init__(self) -> None:
        self.error: np.ndarray | None = None
        self.power: np.ndarray | None = None

    def add(self, reference: np.ndarray, quantized: np.ndarray, scale: float, zero_point: int):
        reference = np.asarray(reference, dtype=np.float64)
        channels = reference.shape[-1] if reference.ndim else 1
        dequantized = (np.asarray(quantized, dtype=np.float64) - zero_point) * scale
        error = np.sum(
            (dequantized.reshape(-1, channels) - reference.reshape(-1, channels)) ** 2, 0
        )
        power = np.sum(reference.reshape(-1, channels) ** 2, axis=0)
        self.error = error if self.error is None else self.error + error
        self.power = power if self.power is None else self.power + power

    def normalized_mse(self) -> float:
        """Mean over live channels of error / power (channel_normalized_mse, summed)."""
        if self.error is None or self.power is None or not np.any(self.power > 0):
            return 0.0
        live = self.power > 0
        return float(np.mean(self.error[live] / self.power[live]))


def _followers(
    tensor: int,
    verified: dict[int, tuple[int, str]],
    producer: dict[int, dict[str, Any]],
    consumers: dict[int, list[dict[str, Any]]],
    tensors: dict[int, dict[str, Any]],
) -> tuple[str, ...]:
    """The quantized MAC-free layers fed by `tensor`, transitively, up to layers with weights."""
    group: list[str] = []
    frontier = [tensor]
    seen = {tensor}
    while frontier:
        current = frontier.pop()
        for op in consumers.get(current, []):
            if op["op_name"] == _NUMERIC_VERIFY:
                continue
            for out in op["outputs"]:
                if out in seen or out not in verified:
                    continue
                weights = [
                    [int(d) for d in tensors[i]["shape"]] for i in op["inputs"][1:] if i >= 0
                ]
                shape = [int(d) for d in tensors[out]["shape"]]
                if layer_macs(op["op_name"], weights, shape) > 0:
                    continue
                seen.add(out)
                group.append(verified[out][1])
                frontier.append(out)
    return tuple(group)


def _to_input_dtype(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float inputs quantized for an int8 input, as the debugger feeds them."""
    if np.issubdtype(detail["dtype"], np.integer) and np.issubdtype(array.dtype, np.floating):
        scale, zero_point = detail["quantization"]
        if scale:
            return np.round(array / scale + zero_point).astype(detail["dtype"])
    return array.astype(detail["dtype"], copy=False)


def quantize_with_float_layers(debugger: Any, excluded: Sequence[str]) -> bytes:
    """The calibrated model quantized with `excluded` layers left in float (no debug ops)."""
    from components.quantizer.tflite_quantization import quantize_calibrated

    return quantize_calibrated(debugger.calibrated_model, excluded)


def _debugger(
    graph_def: tf.compat.v1.GraphDef, signature: GraphSignature, calibration: list[np.ndarray]
) -> tuple[Any, list[list[np.ndarray]]]:
    """TF's QuantizationDebugger on the frozen graph at batch 1, calibrated on all of
    `calibration`; and the samples the sensitivity is measured on."""
    import tensorflow as tf

    from components.quantizer.tflite_quantization import (
        calibration_batches,
        frozen_graph_converter,
    )

    batches = calibration_batches(calibration, 1)
    converter = frozen_graph_converter(graph_def, signature, 1)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: iter(batches)
    measured = batches[:SENSITIVITY_SAMPLES]
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: iter(measured)
    )
    return debugger, measured


def _float_model(graph_def: tf.compat.v1.GraphDef, signature: GraphSignature) -> bytes:
    from components.quantizer.tflite_quantization import convert_graph

    content, _ = convert_graph(graph_def, signature, "float32", 1)
    return content


def _runner(content: bytes, num_threads: int) -> Callable[..., list[np.ndarray]]:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=content, num_threads=num_threads)
    interpreter.allocate_tensors()
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    # The frozen-graph converter keeps the signature's order (tflite_quantization.py).

    def run(*arrays: np.ndarray) -> list[np.ndarray]:
        for detail, array in zip(inputs, arrays, strict=True):
            interpreter.set_tensor(detail["index"], array.astype(detail["dtype"], copy=False))
        interpreter.invoke()
        return [interpreter.get_tensor(detail["index"]) for detail in outputs]

    return run


def _latency_ms(content: bytes, held_out: HeldOut, num_threads: int) -> float:
    """Median wall time of one call on the first held-out example: rough, for stopping."""
    return held_out.latency_ms(_runner(content, num_threads), LATENCY_CALLS, LATENCY_WARMUP)


def write_search(result: AccuracyAwareResult, output_dir: str) -> str:
    """The search record beside the model (int8_fallback.SEARCH_FILENAME)."""
    return write_search_record(result.to_json(), output_dir)
