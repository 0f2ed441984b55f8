"""Accuracy-aware ONNX int8: ORT's QDQ debugging ranks the quantized tensors, then float
fallback through `nodes_to_exclude` until the task metric fits the budget.

    onnx_int8_aa   onnx_int8's model, with the most harmful layers left in float

How:
1. tf2onnx converts the frozen graph and `quant_pre_process` prepares it, once
   (onnx_model.py). Step 0 quantizes it fully. With `--int8-calibration auto` every
   activation-range method ORT offers (MinMax, Percentile, Entropy) is tried on full
   int8, and the one with the smallest held-out drop is kept for the whole search.
2. Sensitivity comes from ORT's own QDQ debugger (`onnxruntime.quantization.
   qdq_loss_debug`): every tensor's value before and after its QuantizeLinear ->
   DequantizeLinear pair on the calibration rows, and every weight before and after.
   The error is per channel (`ChannelErrors`, as for TFLite): one outlier channel that
   sets a per-tensor scale crushes the others, which a whole-tensor SQNR hides.
3. A candidate layer is a weighted node (Conv, Gemm, MatMul) with its *segment*: the
   MAC-free nodes after it (Relu, MaxPool, Reshape, ...) up to the next weighted nodes,
   which are in the segment too. ORT puts a QDQ pair on every tensor that any
   quantized node touches, so a tensor goes back to float only when its producer and
   all its consumers are excluded. Measured on the outlier digits CNN: excluding the
   reading Conv with the MaxPool and Relu before it leaves top-1 at 10%; adding the
   producing Conv brings it back to 92.7%. The candidate's error is the sum of its
   segment's activation errors and its own weights' error. The graph's inputs get a
   segment of their own, named by their first consumer.
4. The shared policy (common/int8_fallback.py) picks the candidates; each step
   re-quantizes with their nodes in `nodes_to_exclude` and scores the model with the
   task's metric on the held-out examples, never the calibration ones.

The search runs in one child process (`search_onnx_int8`), like every ORT quantization
here; the parent publishes the chosen model as onnx_int8 publishes its own.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from components.common.held_out import HeldOut
from components.common.int8_fallback import (
    CALIBRATION_METHODS,
    FallbackSearch,
    Int8SearchSettings,
    LayerSensitivity,
    StepMeasurement,
    excluded_layers,
    search_fallback,
    search_properties,
    search_record,
    write_search_record,
)
from components.common.isolation import scratch_directory
from components.common.signature import GraphSignature
from components.runtime_converter.modes import ConversionOutcome, ConvertSettings, register_mode
from components.runtime_converter.onnx_model import (
    MODEL_FILENAME,
    _graph_input_names,
    _OnnxInt8Base,
    _publish,
    _run_child,
    int8_weight_range,
    pre_process,
    quantize_qdq,
    read_calibration,
    require_onnx_modules,
)
from components.runtimes.onnx import FORMAT_ONNX, match_names

MODE = "onnx_int8"
ERROR_METRIC = "channel_normalized_mse"
# This project's method names (int8_fallback.CALIBRATION_METHODS) in ORT's terms.
ORT_CALIBRATION = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# qdq_loss_debug keeps every intermediate tensor of every feed, before and after its
# QDQ pair: every activation of the model, twice, per row (a ResNet50 row holds about
# 100 MB of activations). Per channel, 16 rows of a convolution's output are still
# thousands of values.
SENSITIVITY_SAMPLES = 16
DEBUG_BATCH = 8
EVALUATION_BATCH = 32
_SEARCH_FUNCTION = "components.runtime_converter.onnx_accuracy_aware:search_onnx_int8"


@dataclasses.dataclass(frozen=True)
class Segment:
    """One fallback candidate: the nodes that go back to float together."""

    name: str  # The weighted node (or, for a graph input, its first consumer).
    op: str
    nodes: tuple[str, ...]  # `name` first, then the rest of the segment.
    tensors: tuple[str, ...]  # The activations inside it (a QDQ pair each, at most).
    weight: str | None  # The weighted node's weight initializer.


def onnx_segments(model: Any) -> list[Segment]:
    """The fallback candidates of an ONNX model (module doc, point 3), in graph order."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def weight_of(node: Any) -> str | None:
        return next((n for n in node.input[1:2] if n in initializers), None)

    def weighted(node: Any) -> bool:
        return node.op_type in WEIGHTED_OPS

    def walk(start: Iterable[str]) -> tuple[list[str], list[str]]:
        """Nodes and tensors from `start` through MAC-free nodes to the next weighted."""
        nodes: list[str] = []
        tensors: list[str] = []
        pending = list(start)
        seen: set[str] = set()
        while pending:
            tensor = pending.pop(0)
            if tensor in seen or tensor in initializers:
                continue
            seen.add(tensor)
            tensors.append(tensor)
            for node in consumers.get(tensor, []):
                if node.name in nodes:
                    continue
                nodes.append(node.name)
                if not weighted(node):
                    pending.extend(node.output)
        return nodes, tensors

    segments: dict[str, Segment] = {}
    graph_inputs = [i.name for i in graph.input if i.name not in initializers]
    for name in graph_inputs:
        nodes, tensors = walk([name])
        if nodes:
            first = next(n for n in graph.node if n.name == nodes[0])
            segments.setdefault(
                nodes[0], Segment(nodes[0], first.op_type, tuple(nodes), tuple(tensors), None)
            )
    for node in graph.node:
        if not weighted(node):
            continue
        nodes, tensors = walk(node.output)
        own = Segment(node.name, node.op_type, (node.name, *nodes), tuple(tensors), weight_of(node))
        if node.name in segments:  # An input's segment that begins with this node.
            earlier = segments[node.name]
            own = dataclasses.replace(
                own,
                nodes=tuple(dict.fromkeys((*own.nodes, *earlier.nodes))),
                tensors=tuple(dict.fromkeys((*earlier.tensors, *own.tensors))),
            )
        segments[node.name] = own
    return list(segments.values())


def node_macs(op: str, weight_shape: Sequence[int] | None, output_shape: Sequence[int]) -> int:
    """Multiply-accumulates per example of an ONNX contraction (0 for other ops).

    Conv weights are [out, in/groups, kh, kw] (ONNX's layout for every Conv); Gemm and
    MatMul weights [in, out] (tf2onnx's Gemm keeps TF's layout, transB unset).
    """
    if not weight_shape:
        return 0
    per_example = int(np.prod(output_shape[1:])) if len(output_shape) > 1 else 1
    weights = list(weight_shape)
    if op in ("Conv", "ConvTranspose") and len(weights) >= 3:
        return per_example * int(np.prod(weights[1:]))
    if op in ("Gemm", "MatMul") and len(weights) == 2:
        return per_example * int(weights[0])
    return 0


def tensor_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape after its batch axis, where ONNX's shape inference knows it."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    shapes = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        dims = info.type.tensor_type.shape.dim
        rest = [d.dim_value for d in dims[1:]]
        if dims and all(v > 0 for v in rest):
            shapes[info.name] = tuple(rest)
    return shapes


def channel_errors(
    before: Sequence[np.ndarray], after: Sequence[np.ndarray], shape: Sequence[int] | None = None
) -> float:
    """Per-channel normalized MSE of a tensor's QDQ, summed over the calibration feeds.

    qdq_loss_debug saves tensors flattened; `shape` (after the batch axis) restores them.
    Channels are axis 1 of a rank >= 3 tensor (ONNX's NCHW) and the last axis otherwise;
    without a shape, the whole tensor is one channel.
    """
    from components.quantizer.tflite_accuracy_aware import ChannelErrors

    errors = ChannelErrors()
    for reference, quantized in zip(before, after, strict=True):
        reference, quantized = np.asarray(reference), np.asarray(quantized)
        if shape is not None and reference.ndim == 1:
            per_example = int(np.prod(shape)) if len(shape) else 1
            if reference.size % per_example == 0:
                full = (reference.size // per_example, *shape)
                reference, quantized = reference.reshape(full), quantized.reshape(full)
        if reference.ndim == 1:
            reference, quantized = reference[:, None], quantized[:, None]
        elif reference.ndim >= 3:
            reference, quantized = np.moveaxis(reference, 1, -1), np.moveaxis(quantized, 1, -1)
        errors.add(reference, quantized, 1.0, 0)  # Both dequantized already.
    return errors.normalized_mse()


def segment_sensitivity(
    source: str,
    qdq_path: str,
    names: Sequence[str],
    arrays: Sequence[np.ndarray],
    work_dir: str,
) -> list[LayerSensitivity]:
    """Each segment's error in the fully quantized model (ORT's QDQ debugger) and MACs."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug

    from components.runtime_converter.onnx_model import _ArrayReader

    augmented = os.path.join(work_dir, "debug_augmented.onnx")
    qdq_loss_debug.modify_model_output_intermediate_tensors(qdq_path, augmented)
    rows = [a[:SENSITIVITY_SAMPLES] for a in arrays]
    activations = qdq_loss_debug.collect_activations(
        augmented, _ArrayReader(names, rows, DEBUG_BATCH)
    )
    matched = qdq_loss_debug.create_activation_matching(activations)
    weights = qdq_loss_debug.create_weight_matching(source, qdq_path)
    model = onnx.load(source)
    shapes = tensor_shapes(model)
    weight_shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    layers = []
    for segment in onnx_segments(model):
        error = sum(
            channel_errors(matched[t]["pre_qdq"], matched[t]["post_qdq"], shapes.get(t))
            for t in segment.tensors
            if t in matched
        )
        if segment.weight in weights:
            pair = weights[segment.weight]
            # Weights' channels are their first axis (Conv) or last (Gemm [in, out]).
            axis = 0 if segment.op in ("Conv", "ConvTranspose") else -1
            error += channel_errors(
                [np.moveaxis(pair["float"], axis, -1).reshape(-1, pair["float"].shape[axis])],
                [
                    np.moveaxis(pair["dequantized"], axis, -1).reshape(
                        -1, pair["dequantized"].shape[axis]
                    )
                ],
            )
        weight_shape = weight_shapes.get(segment.weight) if segment.weight else None
        output = segment.tensors[0] if segment.weight else None
        layers.append(
            LayerSensitivity(
                name=segment.name,
                op=segment.op,
                error=float(error),
                macs=node_macs(segment.op, weight_shape, (1, *shapes.get(output, ()))),
                error_metric=ERROR_METRIC,
                group=segment.nodes[1:],
            )
        )
    return layers


def search_onnx_int8(
    model_path: str,
    output_path: str,
    calibration_path: str,
    held_out_dir: str,
    signature: dict[str, Any],
    work_dir: str,
    reduce_range: bool,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Child process: the whole search (module doc); writes the chosen model to
    `output_path` and returns the facts and the search record."""
    import onnxruntime

    from components.runtime_converter.onnx_model import checked_quantized_summary
    from components.runtimes.base import ThreadSettings
    from components.runtimes.onnx import create_session

    started = time.monotonic()
    search_settings = Int8SearchSettings.from_json(settings)
    sig = GraphSignature.from_json(signature)
    held_out = HeldOut.load(held_out_dir)
    source, pre_process_options, pre_process_errors = pre_process(model_path, work_dir)
    arrays = read_calibration(calibration_path, sig)
    names = match_names(sig.inputs, _graph_input_names(source), "inputs")
    threads = ThreadSettings(intra_op=1, inter_op=1)
    inputs = [
        a.astype(t.dtype, copy=False) for a, t in zip(held_out.inputs, sig.inputs, strict=True)
    ]
    held_out = dataclasses.replace(held_out, inputs=inputs)

    def runner(path: str) -> Any:
        session = create_session(path, threads)
        outputs = match_names(sig.outputs, [o.name for o in session.get_outputs()], "outputs")

        def run(*batch: np.ndarray) -> list[np.ndarray]:
            return session.run(outputs, dict(zip(names, batch, strict=True)))

        return run

    def measure(path: str) -> tuple[float, float]:
        run = runner(path)
        return held_out.metric(run, EVALUATION_BATCH), held_out.latency_ms(run)

    float_metric, float_latency = measure(source)
    budget = search_settings.budget(held_out.plan.task_name, float_metric)

    # Step 0's calibration method: each one offered, on full int8.
    trials = []
    for method in search_settings.calibration_methods(MODE + "_aa", CALIBRATION_METHODS):
        begun = time.monotonic()
        path = os.path.join(work_dir, f"full_int8_{method}.onnx")
        quantize_qdq(source, path, names, arrays, reduce_range, ORT_CALIBRATION[method])
        metric = held_out.metric(runner(path), EVALUATION_BATCH)
        trials.append(
            {
                "method": method,
                "metric": metric,
                "metric_drop": held_out.drop(float_metric, metric),
                "seconds": round(time.monotonic() - begun, 3),
                "path": path,
            }
        )
    best = min(trials, key=lambda t: t["metric_drop"])
    method = best["method"]
    sensitivity = segment_sensitivity(source, best["path"], names, arrays, work_dir)
    user_excluded = _expanded(
        excluded_layers(search_settings.exclude, sensitivity, MODE), sensitivity
    )
    step_path = os.path.join(work_dir, "step.onnx")

    def evaluate(excluded: tuple[str, ...]) -> StepMeasurement:
        quantize_qdq(
            source, step_path, names, arrays, reduce_range, ORT_CALIBRATION[method], excluded
        )
        metric, latency = measure(step_path)
        return StepMeasurement(held_out.drop(float_metric, metric), metric, latency)

    search = search_fallback(sensitivity, evaluate, budget, user_excluded=user_excluded)
    quantize_qdq(
        source,
        output_path,
        names,
        arrays,
        reduce_range,
        ORT_CALIBRATION[method],
        search.chosen.excluded,
    )
    summary = checked_quantized_summary(output_path)
    seconds = time.monotonic() - started
    record = search_record(
        MODE,
        ERROR_METRIC,
        float_metric,
        float_latency,
        budget.max_drop,
        len(held_out.labels),
        int(min(len(arrays[0]), SENSITIVITY_SAMPLES)),
        sensitivity,
        search,
        seconds,
        calibration_method=method,
        calibration_trials=[{k: v for k, v in t.items() if k != "path"} for t in trials],
    )
    return {
        "onnxruntime_version": onnxruntime.__version__,
        "record": record,
        "calibrate_method": ORT_CALIBRATION[method],
        "calibration_samples": int(arrays[0].shape[0]),
        "reduce_range": reduce_range,
        "pre_processed": pre_process_options is not None,
        "pre_process_options": pre_process_options,
        "pre_process_errors": pre_process_errors,
        "nodes_to_exclude": list(search.chosen.excluded),
        "quantize_linear_ops": summary["quantize_linear"],
        "dequantize_linear_ops": summary["dequantize_linear"],
        "quantized_ops": summary["quantized_ops"],
        "size_bytes": os.path.getsize(output_path),
        "seconds": round(seconds, 3),
    }


def _expanded(names: Sequence[str], layers: Sequence[LayerSensitivity]) -> tuple[str, ...]:
    """A user's excluded layer with its segment: alone, ORT would still QDQ its tensors."""
    by_name = {layer.name: layer for layer in layers}
    out: list[str] = []
    for name in names:
        out.extend((name, *by_name[name].group))
    return tuple(dict.fromkeys(out))


@register_mode
class OnnxInt8AccuracyAware(_OnnxInt8Base):
    """onnx_int8 with its most harmful layers in float until the metric fits the budget."""

    name = "onnx_int8_aa"
    needs_held_out = True
    calibration_methods = CALIBRATION_METHODS
    description = (
        "ONNX Runtime static QDQ int8, harmful layers in float (nodes_to_exclude) until the "
        "metric fits the budget; the calibration method chosen on held-out examples"
    )
    default = False  # The search quantizes and scores the model once per step.

    def run(
        self,
        graph_dir: str,
        signature: GraphSignature,
        calibration: list[np.ndarray] | None,
        output_dir: str,
        settings: ConvertSettings,
        held_out: HeldOut | None = None,
    ) -> ConversionOutcome:
        from components.common.errors import UserInputError

        require_onnx_modules()
        if held_out is None:
            raise UserInputError(f"{self.name} needs held-out examples.")
        reduce_range, reduce_range_reason = int8_weight_range()
        with scratch_directory("onnx_int8_aa_") as work:
            staging, fp32_path, converted, calibration_path = self.stage(
                graph_dir, signature, calibration, settings, work
            )
            held_out_dir = held_out.save(os.path.join(work, "held_out"))
            found = _run_child(
                _SEARCH_FUNCTION,
                {
                    "model_path": fp32_path,
                    "output_path": os.path.join(staging, MODEL_FILENAME),
                    "calibration_path": calibration_path,
                    "held_out_dir": held_out_dir,
                    "signature": signature.to_json(),
                    "work_dir": work,
                    "reduce_range": reduce_range,
                    "settings": settings.int8_search.to_json(),
                },
                work,
                settings,
                "the accuracy-aware ONNX int8 search",
            )
            record = found.pop("record")
            found["reduce_range_reason"] = reduce_range_reason
            facts = {
                "mode": self.name,
                "dynamic_batch": True,
                **converted,
                "size_bytes": found["size_bytes"],
                "fp32_size_bytes": converted["size_bytes"],
                "quantization": found,
            }
            size = _publish(staging, output_dir, graph_dir, facts)
        write_search_record(record, output_dir)
        search = FallbackSearch.from_json(record["search"])
        return ConversionOutcome(
            model_format=FORMAT_ONNX,
            size_bytes=size,
            calibration_samples=found["calibration_samples"],
            properties={
                **self._properties(converted),
                "calibrate_method": found["calibrate_method"],
                "reduce_range": reduce_range,
                "reduce_range_reason": reduce_range_reason,
                "quantize_linear_ops": found["quantize_linear_ops"],
                "quantized_ops": found["quantized_ops"],
                **search_properties(search, record["seconds"]),
            },
        )
