"""8-bit weights inside a TF graph: large float constants stored as int8 plus a `Dequantize`.

The size-oriented rewrite the Graph Transform Tool's `quantize_weights` made, for TF
1.x graphs: every float `Const` with at least `min_elements` values becomes

    <name>/quantized (Const qint8)  -+
    <name>/min       (Const float)  -+-> <name> (Dequantize, SCALED) -> original consumers
    <name>/max       (Const float)  -+

The `Dequantize` node takes the constant's name, so consumers, control edges and the
signature stay untouched and the graph still loads and runs in TensorFlow. Weights are
quantized symmetrically (narrow range, [-127, 127]) per output channel (last axis) by
default, or per tensor. Only storage shrinks: TF's constant folding turns the
`Dequantize` back into a float constant when the graph is loaded, so compute stays
float32 and speed is the frozen graph's.

    >>> graph_def, info = quantize_weights_int8_graph(frozen.graph_def, frozen.signature)
    >>> write_weights_int8_graph(graph_def, frozen.signature, info, "/out/weights_int8")

Output layout::

    {output_dir}/
      graph.pb            # the rewritten GraphDef
      signature.json      # unchanged from the input graph
      quantization.json   # mode, sizes before/after, weights quantized, float compute ops
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from components.common.graph_io import save_graph_def
from components.common.signature import GraphSignature

if TYPE_CHECKING:
    import tensorflow as tf

MODE = "weights_int8_graph"
# The Graph Transform Tool's default: smaller constants (biases, batch-norm vectors)
# save little and are the most sensitive to rounding.
DEFAULT_MIN_ELEMENTS = 1024
QUANTIZATION_FILENAME = "quantization.json"
SCHEMA_VERSION = 1
_QMAX = 127  # Narrow range: int8 values in [-127, 127], so zero is exact and symmetric.
_DT_FLOAT = 1  # types_pb2.DT_FLOAT, without importing TensorFlow at module import.


@dataclasses.dataclass(frozen=True)
class WeightsQuantizationInfo:
    """What `quantize_weights_int8_graph` changed, and the sizes before and after."""

    per_channel: bool
    min_elements: int
    quantized_weights: tuple[str, ...]  # Names of the constants now stored in int8.
    skipped_non_finite: tuple[str, ...]  # Large constants left alone: inf/nan values.
    weight_bytes_before: int  # float32 bytes of the constants that were quantized.
    weight_bytes_after: int  # their int8 bytes plus the float min/max vectors.
    graph_bytes_before: int
    graph_bytes_after: int
    float_weight_bytes: int  # all float32 constants of the input graph.
    float_compute_ops: tuple[tuple[str, str], ...]  # (op, name) consuming a dequantized weight.

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "status": "ok",
            "mode": MODE,
            "per_channel": self.per_channel,
            "min_elements": self.min_elements,
            "calibration_samples": 0,
            "compute_precision": "float32",
            "quantized_weights": len(self.quantized_weights),
            "quantized_weight_names": list(self.quantized_weights),
            "skipped_non_finite": list(self.skipped_non_finite),
            "sizes": {
                "model_bytes": self.graph_bytes_after,
                "frozen_graph_bytes": self.graph_bytes_before,
                "float_weight_bytes": self.float_weight_bytes,
                "quantized_weight_bytes_before": self.weight_bytes_before,
                "quantized_weight_bytes_after": self.weight_bytes_after,
                "ratio_to_frozen_graph": round(self.graph_bytes_after / self.graph_bytes_before, 4),
            },
            # Weights are stored in int8 but every op computes in float32 on
            # dequantized weights; these are the ops a reader might think ran in int8.
            "float_ops": [{"op": op, "name": name} for op, name in self.float_compute_ops],
        }


def quantize_weights_int8_graph(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    per_channel: bool = True,
) -> tuple[tf.compat.v1.GraphDef, WeightsQuantizationInfo]:
    """Stores float constants of `min_elements`+ values as int8 + `Dequantize`; returns a copy.

    Constants that are themselves signature outputs, or hold inf/nan, stay float.
    """
    import tensorflow as tf

    protected = set(signature.output_op_names)
    consumers = _consumers(graph_def)
    taken = {node.name for node in graph_def.node}
    rewritten = tf.compat.v1.GraphDef()
    rewritten.versions.CopyFrom(graph_def.versions)
    rewritten.library.CopyFrom(graph_def.library)
    quantized: list[str] = []
    non_finite: list[str] = []
    bytes_before = bytes_after = 0
    for node in graph_def.node:
        if not _is_candidate(node, min_elements) or node.name in protected:
            rewritten.node.add().CopyFrom(node)
            continue
        values = tf.make_ndarray(node.attr["value"].tensor)
        if not np.all(np.isfinite(values)):
            non_finite.append(node.name)
            rewritten.node.add().CopyFrom(node)
            continue
        new_nodes, stored_bytes = _quantized_nodes(node, values, per_channel, taken)
        rewritten.node.extend(new_nodes)
        quantized.append(node.name)
        bytes_before += values.size * 4
        bytes_after += stored_bytes
    float_compute = tuple(
        (consumer.op, consumer.name)
        for name in quantized
        for consumer in _compute_consumers(name, consumers)
    )
    info = WeightsQuantizationInfo(
        per_channel=per_channel,
        min_elements=min_elements,
        quantized_weights=tuple(quantized),
        skipped_non_finite=tuple(non_finite),
        weight_bytes_before=bytes_before,
        weight_bytes_after=bytes_after,
        graph_bytes_before=graph_def.ByteSize(),
        graph_bytes_after=rewritten.ByteSize(),
        float_weight_bytes=float_constant_bytes(graph_def),
        float_compute_ops=float_compute,
    )
    return rewritten, info


def write_weights_int8_graph(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    info: WeightsQuantizationInfo,
    output_dir: str,
) -> str:
    """Writes `graph.pb`, `signature.json` and `quantization.json`; returns the graph path."""
    import tensorflow as tf  # gfile, so gs:// and s3:// artifact URIs work.

    path = save_graph_def(graph_def, output_dir)
    signature.save(output_dir)
    with tf.io.gfile.GFile(os.path.join(output_dir, QUANTIZATION_FILENAME), "w") as f:
        f.write(json.dumps(info.to_json(), indent=2) + "\n")
    return path


def float_constant_bytes(graph_def: tf.compat.v1.GraphDef, min_elements: int = 0) -> int:
    """Bytes of float32 constants (the weights) in a frozen graph's top-level nodes."""
    total = 0
    for node in graph_def.node:
        if node.op == "Const" and node.attr["dtype"].type == _DT_FLOAT:
            elements = _num_elements(node)
            if elements >= min_elements:
                total += elements * 4
    return total


def _is_candidate(node: Any, min_elements: int) -> bool:
    return (
        node.op == "Const"
        and node.attr["dtype"].type == _DT_FLOAT
        and _num_elements(node) >= max(min_elements, 1)
    )


def _num_elements(node: Any) -> int:
    shape = node.attr["value"].tensor.tensor_shape
    if shape.unknown_rank:
        return 0
    return int(np.prod([d.size for d in shape.dim], dtype=np.int64))


def _quantized_nodes(
    node: Any, values: np.ndarray, per_channel: bool, taken: set[str]
) -> tuple[list[Any], int]:
    """The int8 constant, its min/max constants and the `Dequantize` that replaces `node`."""
    import tensorflow as tf

    axis = values.ndim - 1 if per_channel and values.ndim >= 2 else -1
    if axis >= 0:
        max_abs = np.max(np.abs(values.reshape(-1, values.shape[axis])), axis=0)
    else:
        max_abs = np.asarray(np.max(np.abs(values)))
    # An all-zero channel would give a zero scale; any positive range represents it exactly.
    max_abs = np.maximum(max_abs, np.finfo(np.float32).tiny).astype(np.float32)
    scale = max_abs / _QMAX
    quantized = np.clip(np.round(values / scale), -_QMAX, _QMAX).astype(np.int8)

    def const(suffix: str, value: np.ndarray, dtype: tf.dtypes.DType) -> Any:
        name = f"{node.name}/{suffix}"
        while name in taken:  # Never clash with a node the graph already has.
            name += "_"
        taken.add(name)
        new = tf.compat.v1.NodeDef(name=name, op="Const", device=node.device)
        new.attr["dtype"].type = dtype.as_datatype_enum
        new.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
        return new

    data = const("quantized", quantized, tf.qint8)
    minimum = const("min", -max_abs, tf.float32)
    maximum = const("max", max_abs, tf.float32)
    dequantize = tf.compat.v1.NodeDef(
        name=node.name, op="Dequantize", input=[data.name, minimum.name, maximum.name]
    )
    dequantize.device = node.device
    dequantize.attr["T"].type = tf.qint8.as_datatype_enum
    dequantize.attr["mode"].s = b"SCALED"
    dequantize.attr["narrow_range"].b = True
    dequantize.attr["axis"].i = axis
    dequantize.attr["dtype"].type = tf.float32.as_datatype_enum
    stored_bytes = quantized.size + 2 * max_abs.size * 4
    return [data, minimum, maximum, dequantize], stored_bytes


def _consumers(graph_def: tf.compat.v1.GraphDef) -> dict[str, list[Any]]:
    """Node name -> nodes that read its output (data edges only)."""
    consumers: dict[str, list[Any]] = {}
    for node in graph_def.node:
        for name in node.input:
            if not name.startswith("^"):
                consumers.setdefault(name.split(":")[0], []).append(node)
    return consumers


def _compute_consumers(name: str, consumers: dict[str, list[Any]]) -> list[Any]:
    """The ops that use a node's value, looking through chains of `Identity` nodes."""
    found, pending, seen = [], [name], set()
    while pending:
        current = pending.pop()
        for consumer in consumers.get(current, []):
            if consumer.name in seen:
                continue
            seen.add(consumer.name)
            if consumer.op == "Identity":
                pending.append(consumer.name)
            else:
                found.append(consumer)
    return found
