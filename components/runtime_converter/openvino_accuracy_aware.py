"""Accuracy-aware OpenVINO int8: each weighted op's error from the quantized-against-float
IR, then float fallback through NNCF's `ignored_scope` until the task metric fits.

    openvino_int8_aa   openvino_int8's IR, with the most harmful layers left in float

How:
1. The frozen graph becomes an f32 IR (openvino_ir.py). OpenVINO's TensorFlow frontend
   names a convolution `Convolution_29`; the convolutions get their TF names back
   (`name_weighted_ops`), so that the report, the blessing and `--int8-exclude` speak
   the model's own layer names.
2. Step 0 is NNCF's post-training quantization with openvino_int8's settings. The
   sensitivity of a weighted op (Convolution, GroupConvolution, MatMul) is the error it
   *adds*: the per-channel normalized MSE of its output in the int8 IR against the f32
   IR, on calibration rows, less the largest such error among the weighted ops that feed
   it (through MAC-free ops). NNCF puts an activation's FakeQuantize at the input of the
   op that reads it, so the error an outlier channel causes shows at the reader.
3. The shared policy (common/int8_fallback.py) picks the ops; each step re-runs
   `nncf.quantize` with them in `ignored_scope` (NNCF then quantizes neither their
   weights nor their inputs) and scores the compiled IR with the task's metric on the
   held-out examples, never the calibration ones.

NNCF's own `quantize_with_accuracy_control` is not used: its ranking validates the
model once per group of quantizers to rank, and its loop has no time bound, so it could
not keep `--int8-search-budget-s` or share the policy (and the report) of the other modes.

The search runs in the conversion's child process (`search_openvino_int8`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from components.common.held_out import HeldOut
from components.common.int8_fallback import (
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
from components.common.isolation import run_isolated, scratch_directory
from components.common.signature import GraphSignature
from components.runtime_converter.modes import ConversionOutcome, ConvertSettings, register_mode
from components.runtime_converter.openvino_ir import (
    OpenVinoConversionError,
    OpenVinoInt8,
    _count_fake_quantize,
    _quantize,
    _size_bytes,
    _write_calibration,
    convert_frozen_graph,
)
from components.runtimes.openvino import (
    MODEL_XML,
    PRECISION_F32,
    match_ports,
    openvino_module,
    ov_input_names,
    write_openvino_facts,
)

MODE = "openvino_int8"
ERROR_METRIC = "added_channel_normalized_mse"
WEIGHTED_OPS = ("Convolution", "GroupConvolution", "MatMul")
SENSITIVITY_SAMPLES = 64
SENSITIVITY_BATCH = 8
EVALUATION_BATCH = 32
_SEARCH_FUNCTION = "components.runtime_converter.openvino_accuracy_aware:search_openvino_int8"


# The TF contraction behind each OpenVINO op type, and its weights' layout in OpenVINO
# terms: Conv2D HWIO -> [out, in, kh, kw]; depthwise [kh, kw, c, m] -> [c, m, 1, kh, kw].
_TF_COUNTERPARTS = {
    "Convolution": ("Conv2D", lambda w: [w[3], w[2], w[0], w[1]]),
    "GroupConvolution": ("DepthwiseConv2dNative", lambda w: [w[2], w[3], 1, w[0], w[1]]),
}


def tf_contractions(graph_def: Any) -> list[dict[str, Any]]:
    """The frozen graph's convolutions in graph order, with their constant weights' shapes."""
    nodes = {node.name: node for node in graph_def.node}

    def weights(name: str) -> list[int] | None:
        node = nodes.get(name.split(":")[0].lstrip("^"))
        for _ in range(8):  # Through the Identity (ReadVariableOp) a freeze leaves.
            if node is None or node.op != "Identity" or not node.input:
                break
            node = nodes.get(node.input[0].split(":")[0])
        if node is None or node.op != "Const":
            return None
        return [d.size for d in node.attr["value"].tensor.tensor_shape.dim]

    wanted = {tf_op for tf_op, _ in _TF_COUNTERPARTS.values()}
    return [
        {"name": node.name, "op": node.op, "weights": weights(node.input[1])}
        for node in graph_def.node
        if node.op in wanted and len(node.input) > 1
    ]


def name_weighted_ops(model: Any, tf_layers: Sequence[dict[str, Any]]) -> int:
    """Gives OpenVINO's convolutions their TF names; returns how many have them.

    OpenVINO's TF frontend names a convolution `Convolution_29` (its transpose sinking
    drops the TF names), so the report, the blessing and `--int8-exclude` would not speak
    the model's layer names. Per op type, the IR's convolutions and the frozen graph's
    are paired in order, and only when every pair's weight shapes agree: a pairing that
    cannot be checked is not guessed. (MatMuls keep the TF names the frontend gives them.)
    """
    renamed = 0
    ordered = model.get_ordered_ops()
    taken = {op.get_friendly_name(): op for op in ordered}
    for ov_type, (tf_op, layout) in _TF_COUNTERPARTS.items():
        ops = [op for op in ordered if op.get_type_name() == ov_type]
        layers = [layer for layer in tf_layers if layer["op"] == tf_op]
        if not ops or len(ops) != len(layers):
            continue
        shapes = [op.input(1).get_partial_shape() for op in ops]
        if not all(
            layer["weights"]
            and len(layer["weights"]) == 4
            and shape.is_static
            and [d.get_length() for d in shape] == layout(layer["weights"])
            for layer, shape in zip(layers, shapes, strict=True)
        ):
            continue
        for op, layer in zip(ops, layers, strict=True):
            name = layer["name"]
            holder = taken.get(name)
            if holder is not None and holder is not op:
                # The frontend gave the TF name to the op after the convolution (the
                # transpose it sank to a graph output): that op takes a suffix.
                moved = f"{name}/{holder.get_type_name()}"
                if moved in taken:
                    continue
                holder.set_friendly_name(moved)
                taken[moved] = holder
            op.set_friendly_name(name)
            taken[name] = op
            renamed += 1
    return renamed


def weighted_inputs(op: Any) -> list[str]:
    """The weighted ops that feed `op` through MAC-free ops (its nearest weighted ancestors)."""
    found: list[str] = []
    pending = [i.get_source_output().get_node() for i in op.inputs()]
    seen: set[str] = set()
    while pending:
        node = pending.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        if node.get_type_name() in WEIGHTED_OPS:
            found.append(name)
        elif node.get_type_name() not in ("Constant", "Parameter"):
            pending.extend(i.get_source_output().get_node() for i in node.inputs())
    return found


def op_macs(op: Any) -> int:
    """MACs per example from the weights' and the output's static shapes (0 if unknown)."""
    weights = op.input(1).get_partial_shape()
    output = op.output(0).get_partial_shape()
    if not weights.is_static or output.rank.is_dynamic:
        return 0
    rest = [d.get_length() if d.is_static else 0 for d in list(output)[1:]]
    per_example = int(np.prod(rest)) if rest else 1
    shape = [d.get_length() for d in weights]
    kind = op.get_type_name()
    if kind == "Convolution":  # [out, in, kh, kw]
        return per_example * int(np.prod(shape[1:]))
    if kind == "GroupConvolution":  # [groups, out/g, in/g, kh, kw]
        return per_example * int(np.prod(shape[2:]))
    if kind == "MatMul" and len(shape) == 2:
        transposed = bool(op.get_attributes().get("transpose_b"))
        return per_example * int(shape[1] if transposed else shape[0])
    return 0


def _probe(core: Any, model: Any, names: Sequence[str]) -> tuple[Any, list[Any]]:
    """A compiled copy of `model` that also outputs each named op's first output."""
    probe = model.clone()
    by_name = {op.get_friendly_name(): op for op in probe.get_ordered_ops()}
    probe.add_outputs([by_name[name].output(0) for name in names])
    compiled = core.compile_model(probe, "CPU", {"INFERENCE_PRECISION_HINT": PRECISION_F32})
    return compiled, compiled.outputs[len(model.outputs) :]


def weighted_sensitivity(
    core: Any, float_model: Any, int8_model: Any, rows: dict[str, np.ndarray]
) -> list[LayerSensitivity]:
    """Each weighted op's added error (module doc, point 2) and MACs, in graph order.

    The rows go through in batches of SENSITIVITY_BATCH, so that only one batch of
    every weighted op's output is held at a time (a ResNet50 batch of 64 is ~1.6 GB).
    """
    from components.quantizer.tflite_accuracy_aware import ChannelErrors

    ops = [op for op in float_model.get_ordered_ops() if op.get_type_name() in WEIGHTED_OPS]
    names = [op.get_friendly_name() for op in ops]
    reference, reference_ports = _probe(core, float_model, names)
    quantized, quantized_ports = _probe(core, int8_model, names)
    errors = {name: ChannelErrors() for name in names}
    count = len(next(iter(rows.values())))
    for start in range(0, count, SENSITIVITY_BATCH):
        batch = {key: value[start : start + SENSITIVITY_BATCH] for key, value in rows.items()}
        floats, ints = reference(batch), quantized(batch)
        for name, ref_port, int_port in zip(names, reference_ports, quantized_ports, strict=True):
            ref, out = np.asarray(floats[ref_port]), np.asarray(ints[int_port])
            if ref.ndim >= 3:  # OpenVINO's layout: channels on axis 1.
                ref, out = np.moveaxis(ref, 1, -1), np.moveaxis(out, 1, -1)
            errors[name].add(ref, out, 1.0, 0)
    total = {name: errors[name].normalized_mse() for name in names}
    layers = []
    for op, name in zip(ops, names, strict=True):
        upstream = max((total.get(n, 0.0) for n in weighted_inputs(op)), default=0.0)
        layers.append(
            LayerSensitivity(
                name=name,
                op=op.get_type_name(),
                error=max(0.0, total[name] - upstream),
                macs=op_macs(op),
                error_metric=ERROR_METRIC,
            )
        )
    return layers


def search_openvino_int8(
    graph_dir: str,
    output_dir: str,
    signature: dict[str, Any],
    calibration_path: str,
    held_out_dir: str,
    settings: dict[str, Any],
    tf_layers: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Child process: the whole search; saves the chosen IR in `output_dir` and returns
    the facts openvino.json records, with the search record under "record"."""
    import nncf

    # NNCF logs every ignored node of every step at INFO: the record keeps what matters.
    nncf.set_log_level(logging.WARNING)
    ov = openvino_module()
    started = time.monotonic()
    sig = GraphSignature.from_json(signature)
    search_settings = Int8SearchSettings.from_json(settings)
    held_out = HeldOut.load(held_out_dir)
    core = ov.Core()
    float_model = convert_frozen_graph(graph_dir)
    renamed = name_weighted_ops(float_model, tf_layers)
    names = ov_input_names(float_model, sig)
    outputs = match_ports([p.get_names() for p in float_model.outputs], sig.outputs, "outputs")
    dtypes = [float_model.input(n).get_element_type().to_dtype() for n in names]
    inputs = [a.astype(t, copy=False) for a, t in zip(held_out.inputs, dtypes, strict=True)]

    def runner(model: Any) -> Any:
        compiled = core.compile_model(
            model,
            "CPU",
            {"INFERENCE_PRECISION_HINT": PRECISION_F32, "INFERENCE_NUM_THREADS": 1},
        )
        request = compiled.create_infer_request()

        def run(*batch: np.ndarray) -> list[np.ndarray]:
            results = request.infer(dict(zip(names, batch, strict=True)))
            return [np.asarray(results[compiled.outputs[i]]) for i in outputs]

        return run

    scored = dataclasses.replace(held_out, inputs=inputs)

    def measure(model: Any) -> tuple[float, float]:
        run = runner(model)
        return scored.metric(run, EVALUATION_BATCH), scored.latency_ms(run)

    def quantized(excluded: Sequence[str]) -> tuple[Any, dict[str, Any], int]:
        return _quantize(float_model, sig, calibration_path, ignored=excluded)

    float_metric, float_latency = measure(float_model)
    budget = search_settings.budget(held_out.plan.task_name, float_metric)
    full_int8, _, _ = quantized(())
    with np.load(calibration_path) as stored:
        rows = {
            name: stored[f"input_{i}"][:SENSITIVITY_SAMPLES].astype(dtypes[i], copy=False)
            for i, name in enumerate(names)
        }
    sensitivity = weighted_sensitivity(core, float_model, full_int8, rows)
    user_excluded = excluded_layers(search_settings.exclude, sensitivity, MODE)

    def evaluate(excluded: tuple[str, ...]) -> StepMeasurement:
        model = full_int8 if not excluded else quantized(excluded)[0]
        metric, latency = measure(model)
        return StepMeasurement(scored.drop(float_metric, metric), metric, latency)

    search = search_fallback(sensitivity, evaluate, budget, user_excluded=user_excluded)
    chosen, nncf_facts, samples = quantized(search.chosen.excluded)
    fake_quantize = _count_fake_quantize(chosen)
    if fake_quantize == 0:
        raise OpenVinoConversionError(
            "every quantizable op is in float: the variant would be openvino_fp32 under "
            "another name"
        )
    os.makedirs(output_dir, exist_ok=True)
    ov.save_model(chosen, os.path.join(output_dir, MODEL_XML), compress_to_fp16=False)
    seconds = time.monotonic() - started
    record = search_record(
        MODE,
        ERROR_METRIC,
        float_metric,
        float_latency,
        budget.max_drop,
        len(held_out.labels),
        int(next(iter(rows.values())).shape[0]),
        sensitivity,
        search,
        seconds,
        layers_named_from_tf=renamed,
    )
    nncf_facts["ignored_scope"] = list(search.chosen.excluded)
    return {
        "mode": "openvino_int8_aa",
        "precision_hint": PRECISION_F32,
        "openvino_version": ov.get_version(),
        "compress_to_fp16": False,
        "calibration_samples": samples,
        "fake_quantize_ops": fake_quantize,
        "nncf": nncf_facts,
        "conversion_s": round(seconds, 3),
        "record": record,
    }


@register_mode
class OpenVinoInt8AccuracyAware(OpenVinoInt8):
    """openvino_int8 with its most harmful ops in float until the metric fits the budget."""

    name = "openvino_int8_aa"
    needs_held_out = True
    description = (
        "OpenVINO IR quantized by NNCF, harmful layers in float (ignored_scope) until the "
        "metric fits the budget"
    )
    default = False  # The search quantizes and scores the IR once per step.

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
        from components.common.graph_io import load_graph_def

        if not calibration or held_out is None:
            raise UserInputError(f"{self.name} needs calibration and held-out examples.")
        os.makedirs(output_dir, exist_ok=True)
        with scratch_directory(f"{self.name}_") as workdir:
            held_out_dir = held_out.save(os.path.join(workdir, "held_out"))
            kwargs = {
                "graph_dir": graph_dir,
                "output_dir": output_dir,
                "signature": signature.to_json(),
                "calibration_path": _write_calibration(
                    workdir, signature, calibration, settings.num_calibration
                ),
                "held_out_dir": held_out_dir,
                "settings": settings.int8_search.to_json(),
                "tf_layers": tf_contractions(load_graph_def(graph_dir)),
            }
            outcome = run_isolated(_SEARCH_FUNCTION, kwargs, workdir, timeout_s=settings.timeout_s)
        outcome.raise_user_error()
        if not outcome.ok:
            raise OpenVinoConversionError(outcome.failure("the accuracy-aware OpenVINO search"))
        facts = dict(outcome.result)
        record = facts.pop("record")
        facts["compile_settings"] = self.compile_settings
        write_openvino_facts(output_dir, facts)
        signature.save(output_dir)
        write_search_record(record, output_dir)
        search = FallbackSearch.from_json(record["search"])
        return ConversionOutcome(
            model_format=self.model_format,
            size_bytes=_size_bytes(output_dir),
            calibration_samples=facts["calibration_samples"],
            properties={
                "openvino_version": facts["openvino_version"],
                "precision_hint": facts["precision_hint"],
                "fake_quantize_ops": facts["fake_quantize_ops"],
                "conversion_s": facts["conversion_s"],
                "compile_settings": self.compile_settings,
                "nncf_version": facts["nncf"]["version"],
                "nncf_preset": facts["nncf"]["preset"],
                **search_properties(search, record["seconds"]),
            },
        )
