"""What a .tflite model really runs: per-op precision and how much of it XNNPACK took.

A converter asked for int8 can still leave ops in float, and XNNPACK can step aside
for part of a graph (dynamic shapes, hybrid kernels it lacks) with nothing but a log
line in a debug build. This module reads both facts from the interpreter itself so
`quantization.json` and the benchmark table can show them::

    >>> analysis = analyze_tflite_model(open("model.tflite", "rb").read())
    >>> analysis.op_coverage()["CONV_2D"]
    {'count': 3, 'int8': 3}
    >>> analysis.xnnpack_partitions, analysis.fully_delegated
    (1, True)

How delegation is read: after `allocate_tensors()` the interpreter lists the original
nodes followed by one `DELEGATE` node per partition (the release wheel strips the
"Replacing N out of M node(s) ... yielding K partitions" log line). Each delegate
node's outputs are walked back to its inputs; the nodes on the way are the ones it
replaced.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

# Op precisions, from the dtypes flowing through an op:
#   int8 / int16: integer activations (full integer quantization);
#   hybrid: float activations with int8 constant weights (dynamic-range kernels);
#   float: float activations and float (or fp16-dequantized) weights;
#   conversion: QUANTIZE / DEQUANTIZE at float<->int boundaries or fp16 weights;
#   other: integer bookkeeping only (shapes, indices).
QUANTIZED_PRECISIONS = ("int8", "int16", "hybrid")
COMPUTE_PRECISIONS = ("int8", "int16", "hybrid", "float")
_CONVERSION_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
_DELEGATE_OP = "DELEGATE"
_FLOAT_DTYPES = frozenset({"float32", "float16", "float64", "bfloat16"})
_INT8_DTYPES = frozenset({"int8", "uint8"})


@dataclasses.dataclass(frozen=True)
class OpRecord:
    """One node of the original graph: its op type, precision and whether a delegate took it."""

    index: int
    op: str
    precision: str
    delegated: bool
    output: str  # Name of its first output tensor, to find it in a model viewer.

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TensorRecord:
    """A model input or output as the flatbuffer stores it (dtype, shape, quantization)."""

    name: str
    index: int
    dtype: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    scale: float
    zero_point: int

    def to_json(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["shape"] = list(self.shape)
        value["shape_signature"] = list(self.shape_signature)
        return value


@dataclasses.dataclass(frozen=True)
class TFLiteAnalysis:
    """Per-op precision and XNNPACK delegation of one .tflite model (main subgraph)."""

    ops: tuple[OpRecord, ...]
    xnnpack_partitions: int
    inputs: tuple[TensorRecord, ...]
    outputs: tuple[TensorRecord, ...]
    dynamic_shape_tensors: int  # Tensors with -1 in their shape signature.

    def op_coverage(self) -> dict[str, dict[str, int]]:
        """Per op type: `count` and how many ran at each precision (zero counts left out)."""
        coverage: dict[str, collections.Counter[str]] = {}
        for op in self.ops:
            counter = coverage.setdefault(op.op, collections.Counter())
            counter["count"] += 1
            counter[op.precision] += 1
        return {name: dict(counter) for name, counter in sorted(coverage.items())}

    @property
    def compute_ops(self) -> list[OpRecord]:
        return [op for op in self.ops if op.precision in COMPUTE_PRECISIONS]

    @property
    def float_ops(self) -> list[OpRecord]:
        """Ops computing in float: everything in a float model, the leftovers in a quantized one."""
        return [op for op in self.ops if op.precision == "float"]

    @property
    def quantized_op_fraction(self) -> float:
        """Share of compute ops (conversions and bookkeeping excluded) that ran quantized."""
        compute = self.compute_ops
        if not compute:
            return 0.0
        return sum(op.precision in QUANTIZED_PRECISIONS for op in compute) / len(compute)

    @property
    def delegated_ops(self) -> int:
        return sum(op.delegated for op in self.ops)

    @property
    def fully_delegated(self) -> bool:
        """True when one XNNPACK partition replaced every node."""
        return self.xnnpack_partitions == 1 and self.delegated_ops == len(self.ops)

    def to_json(self) -> dict[str, Any]:
        not_delegated = [op for op in self.ops if not op.delegated]
        return {
            "op_coverage": self.op_coverage(),
            "quantized_op_fraction": round(self.quantized_op_fraction, 4),
            "float_ops": [
                {"index": o.index, "op": o.op, "output": o.output} for o in self.float_ops
            ],
            "xnnpack": {
                "partitions": self.xnnpack_partitions,
                "delegated_ops": self.delegated_ops,
                "total_ops": len(self.ops),
                "fully_delegated": self.fully_delegated,
                "not_delegated_ops": [{"index": o.index, "op": o.op} for o in not_delegated],
            },
            "dynamic_shape_tensors": self.dynamic_shape_tensors,
            "ops": [op.to_json() for op in self.ops],
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }


def analyze_tflite_model(model_content: bytes, num_threads: int = 1) -> TFLiteAnalysis:
    """Loads a model with the default delegates (XNNPACK) and reads its ops and partitions.

    It also invokes the model once on zeros, so a model that cannot run fails here.
    Run it in a subprocess when the model is untrusted: a broken flatbuffer can abort.
    """
    import numpy as np
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=model_content, num_threads=num_threads)
    interpreter.allocate_tensors()  # Applies the default (XNNPACK) delegate.
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()

    nodes = interpreter._get_ops_details()  # noqa: SLF001 - the only per-node view in Python.
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    originals = [n for n in nodes if n["op_name"] != _DELEGATE_OP]
    delegates = [n for n in nodes if n["op_name"] == _DELEGATE_OP]
    delegated = _delegated_node_indices(originals, delegates)

    producers = {t: n["index"] for n in originals for t in n["outputs"]}
    graph_inputs = {d["index"] for d in interpreter.get_input_details()}

    def dtype_name(index: int) -> str:
        return np.dtype(tensors[index]["dtype"]).name

    ops = []
    for node in originals:
        inputs = [i for i in node["inputs"] if i >= 0]
        constants = [i for i in inputs if i not in producers and i not in graph_inputs]
        activations = [i for i in inputs if i not in constants] + list(node["outputs"])
        precision = _precision(
            node["op_name"],
            [dtype_name(i) for i in activations],
            [dtype_name(i) for i in constants],
        )
        first_output = node["outputs"][0] if len(node["outputs"]) else -1
        ops.append(
            OpRecord(
                index=int(node["index"]),
                op=str(node["op_name"]),
                precision=precision,
                delegated=node["index"] in delegated,
                output=str(tensors[first_output]["name"]) if first_output in tensors else "",
            )
        )
    dynamic = sum(int(np.any(t.get("shape_signature", t["shape"]) < 0)) for t in tensors.values())
    return TFLiteAnalysis(
        ops=tuple(ops),
        xnnpack_partitions=len(delegates),
        inputs=tuple(_tensor_record(d) for d in interpreter.get_input_details()),
        outputs=tuple(_tensor_record(d) for d in interpreter.get_output_details()),
        dynamic_shape_tensors=dynamic,
    )


def _precision(op: str, activation_dtypes: list[str], constant_dtypes: list[str]) -> str:
    if op in _CONVERSION_OPS:
        return "conversion"
    if any(d in _FLOAT_DTYPES for d in activation_dtypes):
        return "hybrid" if any(d in _INT8_DTYPES for d in constant_dtypes) else "float"
    if any(d in _INT8_DTYPES for d in activation_dtypes):
        return "int8"
    if "int16" in activation_dtypes:
        return "int16"
    return "other"


def _delegated_node_indices(
    originals: list[dict[str, Any]], delegates: list[dict[str, Any]]
) -> set[int]:
    """Nodes replaced by delegates: walk each delegate's outputs back to its inputs."""
    producers = {t: n for n in originals for t in n["outputs"]}
    replaced: set[int] = set()
    for delegate in delegates:
        boundary = set(delegate["inputs"])
        pending = [t for t in delegate["outputs"] if t not in boundary]
        seen: set[int] = set()
        while pending:
            tensor = pending.pop()
            if tensor in seen or tensor in boundary or tensor not in producers:
                continue
            seen.add(tensor)
            node = producers[tensor]
            replaced.add(int(node["index"]))
            pending.extend(t for t in node["inputs"] if t >= 0)
    return replaced


def _tensor_record(detail: dict[str, Any]) -> TensorRecord:
    import numpy as np

    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorRecord(
        name=str(detail["name"]),
        index=int(detail["index"]),
        dtype=np.dtype(detail["dtype"]).name,
        shape=tuple(int(d) for d in detail["shape"]),
        shape_signature=tuple(int(d) for d in detail.get("shape_signature", detail["shape"])),
        scale=float(scale),
        zero_point=int(zero_point),
    )
