"""Folding inference batch norms into the weights and bias of neighbouring linear ops.

Two forms reach a frozen graph:

* **Fused ops** (`FusedBatchNorm`, `FusedBatchNormV3`, `BatchNormWithGlobalNormalization`)
  after a Conv2D/DepthwiseConv2dNative: TensorFlow's own
  `optimize_for_inference_lib.fold_batch_norms` handles these.
* **The decomposed form** that Keras 3 exports freeze into:
  `y * (gamma * rsqrt(var + eps)) + (beta - mean * gamma * rsqrt(var + eps))`, i.e.
  `Mul`, `AddV2`, `Rsqrt` and `Sub`. After constant folding this is `Mul(y, c)` then
  `AddV2(., d)` with constant per-channel vectors `c` and `d` (Grappler's constant
  folding already pushes some `c` into Conv2D filters by itself). This module's own
  code then:

  1. folds `c` into the filter of the preceding Conv2D / DepthwiseConv2dNative /
     MatMul (and into its bias, when one sits in between);
  2. turns the remaining `+ d` (or `- d`) after a linear op into a `BiasAdd`, merging
     it with an existing bias, so Grappler's remapper can fuse it;
  3. folds an affine `x * c + d` that sits *before* a MatMul (a batch norm after an
     activation, as in `Dense -> ReLU -> BatchNorm -> Dense`) into that MatMul:
     `(x * c + d) @ W = x @ (c[:, None] * W) + d @ W`. Convolutions are not folded
     forward, because zero padding would see `d` at the borders.

Rewrites only touch nodes whose output feeds nothing else, and never rename or
remove the signature's nodes.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import numpy as np

from components.inference_optimizer.graph_rewriting import (
    const_value,
    copy_graph_def,
    make_const_node,
    parse_input,
    replace_nodes,
    unique_name,
)

if TYPE_CHECKING:
    import tensorflow as tf
    from tensorflow.core.framework import node_def_pb2

FUSED_BATCH_NORM_OPS = frozenset(
    {"FusedBatchNorm", "FusedBatchNormV3", "BatchNormWithGlobalNormalization"}
)
LINEAR_OPS = frozenset({"Conv2D", "DepthwiseConv2dNative", "MatMul"})
_ADD_OPS = frozenset({"Add", "AddV2", "BiasAdd"})
_FLOAT_TYPES = (np.float16, np.float32, np.float64)


def fold_batch_norms(
    graph_def: tf.compat.v1.GraphDef,
    protected: Collection[str],
    fold_into_following_matmul: bool = True,
) -> tuple[tf.compat.v1.GraphDef, dict[str, Any]]:
    """Returns the graph with batch norms folded away and counts of each kind of fold."""
    graph_def, fused_folded = _fold_fused_batch_norms(graph_def)
    folder = _AffineFolder(graph_def, protected)
    scales = folder.fold_scales_backward()
    offsets = folder.fold_offsets_backward()
    forward = folder.fold_affines_into_following_matmul() if fold_into_following_matmul else 0
    details = {
        "fused_batch_norms_folded": fused_folded,
        "scales_folded_into_weights": scales,
        "offsets_turned_into_bias": offsets,
        "affines_folded_into_following_matmul": forward,
    }
    return folder.result(), details


def _fold_fused_batch_norms(
    graph_def: tf.compat.v1.GraphDef,
) -> tuple[tf.compat.v1.GraphDef, int]:
    """Delegates the fused op form to optimize_for_inference_lib (inference-mode ops only)."""
    from tensorflow.python.tools import optimize_for_inference_lib

    fused = [node for node in graph_def.node if node.op in FUSED_BATCH_NORM_OPS]
    # The library folds every match without looking at is_training; a training-mode
    # batch norm normalizes with batch statistics and must not be folded.
    if not fused or any(_flag(node, "is_training") for node in fused):
        return graph_def, 0
    folded = optimize_for_inference_lib.fold_batch_norms(graph_def)
    folded.library.CopyFrom(graph_def.library)  # The library drops the function library.
    remaining = sum(node.op in FUSED_BATCH_NORM_OPS for node in folded.node)
    return folded, len(fused) - remaining


class _AffineFolder:
    """Rewrites per-channel scales and offsets into neighbouring linear ops' constants."""

    def __init__(self, graph_def: tf.compat.v1.GraphDef, protected: Collection[str]) -> None:
        self._original = copy_graph_def(graph_def)
        self._nodes: dict[str, node_def_pb2.NodeDef] = {n.name: n for n in self._original.node}
        self._protected = set(protected)
        self._orphan_candidates: set[str] = set()

    # ---- the three folds -------------------------------------------------------

    def fold_scales_backward(self) -> int:
        """`Mul(L(x, W) [+ b], c)` -> `L(x, W * c) [+ b * c]`; returns the number of folds."""
        folded = 0
        for mul in [n for n in self._nodes.values() if n.op == "Mul"]:
            if mul.name in self._protected or mul.name not in self._nodes:
                continue
            for y_ref, c_ref in _operand_orders(mul):
                if self._fold_scale(mul, y_ref, c_ref):
                    folded += 1
                    break
        return folded

    def fold_offsets_backward(self) -> int:
        """`L(x, W) [+ b] + d` -> `BiasAdd(L(x, W), b + d)`; returns the number of folds."""
        folded = 0
        for add in [n for n in self._nodes.values() if n.op in _ADD_OPS | {"Sub"}]:
            if add.name not in self._nodes:
                continue
            if add.op in ("Add", "AddV2"):
                orders = [(y, d, 1.0) for y, d in _operand_orders(add)]
            elif add.op == "Sub":
                orders = [(add.input[0], add.input[1], -1.0)]
            elif _data_format(add) == b"NHWC":  # BiasAdd
                orders = [(add.input[0], add.input[1], 1.0)]
            else:
                continue
            for y_ref, d_ref, sign in orders:
                if self._fold_offset(add, y_ref, d_ref, sign):
                    folded += 1
                    break
        return folded

    def fold_affines_into_following_matmul(self) -> int:
        """`MatMul(x * c + d, W)` -> `MatMul(x, c[:, None] * W) + d @ W`; returns the count."""
        folded = 0
        for matmul in [n for n in self._nodes.values() if n.op == "MatMul"]:
            if matmul.name in self._nodes and self._fold_forward(matmul):
                folded += 1
        return folded

    def result(self) -> tf.compat.v1.GraphDef:
        """The rewritten graph, without the nodes the folds left unused."""
        self._remove_orphans()
        return replace_nodes(self._original, self._nodes.values())

    # ---- single rewrites -------------------------------------------------------

    def _fold_scale(self, mul: node_def_pb2.NodeDef, y_ref: str, c_ref: str) -> bool:
        c = const_value(self._nodes, c_ref)
        y_name, y_index, _ = parse_input(y_ref)
        y = self._nodes.get(y_name)
        if c is None or y is None or y_index != 0 or not self._only_feeds(y, mul):
            return False
        linear, bias = y, None
        if y.op in _ADD_OPS:
            split = self._linear_plus_bias(y)
            if split is None:
                return False
            linear, bias_ref, bias = split
        weights = self._linear_weights(linear)
        if weights is None:
            return False
        if bias is None and not self._only_feeds(linear, mul):
            return False
        if bias is not None and not self._only_feeds(linear, y):
            return False
        channels = _output_channels(linear, weights)
        scale = _channel_vector(c, channels, _output_rank(linear), weights.dtype)
        if scale is None:
            return False
        self._set_const_input(linear, 1, _scale_weights(linear, weights, scale), "bn_weights")
        if bias is not None:
            self._set_const_input(y, y.input[:2].index(bias_ref), bias * scale, "bn_bias")
        self._bypass(mul, y_ref)
        self._orphan_candidates.add(parse_input(c_ref)[0])
        return True

    def _fold_offset(self, add: node_def_pb2.NodeDef, y_ref: str, d_ref: str, sign: float) -> bool:
        d = const_value(self._nodes, d_ref)
        y_name, y_index, _ = parse_input(y_ref)
        y = self._nodes.get(y_name)
        if d is None or y is None or y_index != 0:
            return False
        if y.op in LINEAR_OPS:
            if add.op == "BiasAdd":
                return False  # Already the form the remapper fuses.
            linear, base_bias = y, None
        elif y.op in _ADD_OPS and self._only_feeds(y, add) and y.name not in self._protected:
            split = self._linear_plus_bias(y)
            if split is None:
                return False
            linear, _, base_bias = split
        else:
            return False
        weights = self._linear_weights(linear)
        if weights is None or not self._only_feeds(linear, y if base_bias is not None else add):
            return False
        if linear.op != "MatMul" and _data_format(linear) != b"NHWC":
            return False
        offset = _channel_vector(d, _output_channels(linear, weights), _output_rank(linear))
        if offset is None:
            return False
        offset = (sign * offset).astype(weights.dtype)
        if base_bias is not None:
            offset = offset + base_bias.astype(weights.dtype)
        bias_name = self._add_const(f"{linear.name}/bn_bias", offset)
        self._orphan_candidates.update({parse_input(d_ref)[0], y.name})
        dtype = add.attr["T"].type
        add.op = "BiasAdd"
        add.attr.clear()
        add.attr["T"].type = dtype
        add.attr["data_format"].s = b"NHWC"
        controls = [i for i in add.input if i.startswith("^")]
        del add.input[:]
        add.input.extend([linear.name, bias_name, *controls])
        return True

    def _fold_forward(self, matmul: node_def_pb2.NodeDef) -> bool:
        if _flag(matmul, "transpose_a"):
            return False
        weights = const_value(self._nodes, matmul.input[1])
        if weights is None or weights.dtype not in _FLOAT_TYPES or weights.ndim != 2:
            return False
        transpose_b = _flag(matmul, "transpose_b")
        depth = weights.shape[1] if transpose_b else weights.shape[0]
        scale = np.ones(depth, weights.dtype)
        offset = np.zeros(depth, weights.dtype)
        source_ref, consumer, absorbed = matmul.input[0], matmul, []
        # Walk up at most one `+ d` and then at most one `* c`: the decomposed batch norm.
        for ops in (("Add", "AddV2", "BiasAdd", "Sub"), ("Mul",)):
            node = self._nodes.get(parse_input(source_ref)[0])
            if node is None or node.op not in ops or node.name in self._protected:
                continue
            if parse_input(source_ref)[1] != 0 or not self._only_feeds(node, consumer):
                continue
            orders = [(node.input[0], node.input[1])]
            if node.op in ("Add", "AddV2", "Mul"):
                orders = _operand_orders(node)
            for x_ref, v_ref in orders:
                value = const_value(self._nodes, v_ref)
                vector = None if value is None else _channel_vector(value, depth, 2, weights.dtype)
                if vector is None:
                    continue
                if node.op == "Mul":
                    scale = vector
                else:
                    offset = -vector if node.op == "Sub" else vector
                absorbed.append((node, v_ref))
                source_ref, consumer = x_ref, node
                break
        if not absorbed:
            return False
        if np.any(offset) and matmul.name in self._protected:
            return False  # The bias would need a new node under the output's name.
        if transpose_b:
            new_weights, bias = weights * scale[np.newaxis, :], offset @ weights.T
        else:
            new_weights, bias = weights * scale[:, np.newaxis], offset @ weights
        self._set_const_input(matmul, 1, new_weights, "bn_weights")
        matmul.input[0] = source_ref
        for node, v_ref in absorbed:
            self._orphan_candidates.update({node.name, parse_input(v_ref)[0]})
        if np.any(offset):
            self._add_bias_after(matmul, bias.astype(weights.dtype))
        return True

    # ---- helpers ---------------------------------------------------------------

    def _linear_plus_bias(
        self, node: node_def_pb2.NodeDef
    ) -> tuple[node_def_pb2.NodeDef, str, np.ndarray] | None:
        """For `L(x, W) + b` with constant channel vector b: (L, reference to b, b)."""
        if node.op == "BiasAdd" and _data_format(node) not in (b"", b"NHWC"):
            return None
        for l_ref, b_ref in _operand_orders(node):
            linear = self._nodes.get(parse_input(l_ref)[0])
            bias = const_value(self._nodes, b_ref)
            if linear is None or linear.op not in LINEAR_OPS or bias is None:
                continue
            weights = self._linear_weights(linear)
            if weights is None or parse_input(l_ref)[1] != 0:
                continue
            vector = _channel_vector(
                bias, _output_channels(linear, weights), _output_rank(linear), weights.dtype
            )
            if vector is not None and bias.shape == vector.shape:
                return linear, b_ref, vector
        return None

    def _linear_weights(self, linear: node_def_pb2.NodeDef) -> np.ndarray | None:
        if linear.op not in LINEAR_OPS or linear.name in self._protected:
            return None
        if linear.op != "MatMul" and _data_format(linear) != b"NHWC":
            return None
        weights = const_value(self._nodes, linear.input[1])
        if weights is None or weights.dtype not in _FLOAT_TYPES:
            return None
        return weights

    def _only_feeds(self, producer: node_def_pb2.NodeDef, consumer: node_def_pb2.NodeDef) -> bool:
        """Whether every reader of `producer` (data or control) is `consumer`, once."""
        if producer.name in self._protected:
            return False
        readers = [
            node.name
            for node in self._nodes.values()
            for reference in node.input
            if parse_input(reference)[0] == producer.name
        ]
        return readers == [consumer.name]

    def _set_const_input(
        self, node: node_def_pb2.NodeDef, index: int, value: np.ndarray, suffix: str
    ) -> None:
        self._orphan_candidates.add(parse_input(node.input[index])[0])
        node.input[index] = self._add_const(f"{node.name}/{suffix}", value)

    def _add_const(self, base_name: str, value: np.ndarray) -> str:
        name = unique_name(base_name, set(self._nodes))
        self._nodes[name] = make_const_node(name, np.ascontiguousarray(value))
        return name

    def _bypass(self, node: node_def_pb2.NodeDef, replacement_ref: str) -> None:
        """Rewires readers of `node`'s output 0 to `replacement_ref` and deletes `node`."""
        replacement_node = parse_input(replacement_ref)[0]
        for other in self._nodes.values():
            for i, reference in enumerate(other.input):
                name, index, is_control = parse_input(reference)
                if name != node.name:
                    continue
                other.input[i] = f"^{replacement_node}" if is_control else replacement_ref
                assert is_control or index == 0, "Mul has a single output"
        del self._nodes[node.name]

    def _add_bias_after(self, matmul: node_def_pb2.NodeDef, bias: np.ndarray) -> None:
        """Adds `bias` to a MatMul's output, into a following BiasAdd when there is one."""
        readers = [
            node
            for node in self._nodes.values()
            if any(parse_input(i)[0] == matmul.name for i in node.input)
        ]
        if len(readers) == 1 and readers[0].op == "BiasAdd":
            existing = const_value(self._nodes, readers[0].input[1])
            if existing is not None and existing.shape == bias.shape:
                self._set_const_input(readers[0], 1, existing + bias, "bn_bias")
                return
        # Keep the MatMul's name on the node its readers see: the bias-added value.
        new_name = unique_name(f"{matmul.name}/unbiased", set(self._nodes))
        del self._nodes[matmul.name]
        old_name, matmul.name = matmul.name, new_name
        self._nodes[new_name] = matmul
        bias_name = self._add_const(f"{old_name}/bn_bias", bias)
        bias_add = type(matmul)(name=old_name, op="BiasAdd", input=[new_name, bias_name])
        bias_add.attr["T"].CopyFrom(matmul.attr["T"])
        bias_add.attr["data_format"].s = b"NHWC"
        self._nodes[old_name] = bias_add

    def _remove_orphans(self) -> None:
        """Deletes nodes the folds orphaned, and what only they fed, transitively."""
        pending = set(self._orphan_candidates)
        while pending:
            read = {parse_input(i)[0] for n in self._nodes.values() for i in n.input}
            orphans = {
                name
                for name in pending
                if name in self._nodes and name not in read and name not in self._protected
            }
            pending = {parse_input(i)[0] for name in orphans for i in self._nodes[name].input}
            for name in orphans:
                del self._nodes[name]


def _operand_orders(node: node_def_pb2.NodeDef) -> list[tuple[str, str]]:
    """Both (x, other) orders of a commutative binary op's data inputs."""
    data = [i for i in node.input if not i.startswith("^")]
    if len(data) != 2:
        return []
    return [(data[0], data[1]), (data[1], data[0])]


def _flag(node: node_def_pb2.NodeDef, name: str) -> bool:
    """A boolean attr, False when absent (indexing `attr` would insert an empty entry)."""
    return name in node.attr and node.attr[name].b


def _data_format(node: node_def_pb2.NodeDef) -> bytes:
    return node.attr["data_format"].s if "data_format" in node.attr else b"NHWC"


def _output_rank(linear: node_def_pb2.NodeDef) -> int:
    return 2 if linear.op == "MatMul" else 4


def _output_channels(linear: node_def_pb2.NodeDef, weights: np.ndarray) -> int:
    if linear.op == "Conv2D":
        return int(weights.shape[3])
    if linear.op == "DepthwiseConv2dNative":
        return int(weights.shape[2] * weights.shape[3])
    return int(weights.shape[0] if _flag(linear, "transpose_b") else weights.shape[1])


def _channel_vector(
    value: np.ndarray, channels: int, rank: int, dtype: np.dtype | None = None
) -> np.ndarray | None:
    """`value` as a [channels] vector when it broadcasts only along the last axis."""
    if value.ndim > rank or value.dtype not in _FLOAT_TYPES:
        return None
    if value.size == 1:
        vector = np.full(channels, value.reshape(()), value.dtype)
    elif value.shape[-1] == channels and value.size == channels:
        vector = value.reshape(channels)
    else:
        return None
    return vector.astype(dtype) if dtype is not None else vector


def _scale_weights(
    linear: node_def_pb2.NodeDef, weights: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """Multiplies each output channel's weights by its scale."""
    if linear.op == "Conv2D":
        return weights * scale  # [kh, kw, in, out]: out is the last axis.
    if linear.op == "DepthwiseConv2dNative":
        # [kh, kw, in, multiplier]: output channel i * multiplier + m.
        return weights * scale.reshape(weights.shape[2], weights.shape[3])
    if _flag(linear, "transpose_b"):
        return weights * scale[:, np.newaxis]  # [out, in]
    return weights * scale  # [in, out]
