"""Bringing a frozen graph into the shape the int8 rewrite matches: contraction -> BiasAdd.

Keras batch norms freeze into `x * scale + offset` chains of Mul/AddV2/Sub on
constants. Grappler's constant folding evaluates the constant sub-expressions (and
pushes some Muls into Conv2D filters); `fold_output_affine` then folds what is left
into the preceding Conv2D / DepthwiseConv2dNative / MatMul, leaving one BiasAdd, and
`fold_input_affine_into_matmul` folds a batch norm that sits *before* a Dense layer
(the digits CNN's Dense -> ReLU -> BatchNorm -> Dense) into that layer's weights.

Grappler's arithmetic optimizer is deliberately not run: it swaps ReLU and MaxPool,
which breaks the Conv -> BiasAdd -> ReLU chains that oneDNN fuses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from components.quantizer.onednn.graph_edit import (
    GraphIndex,
    NameAllocator,
    get_attr,
    make_const,
    make_node,
    node_name,
    tensor_key,
)

if TYPE_CHECKING:
    import tensorflow as tf

CONTRACTION_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")
_AFFINE_OPS = ("Mul", "Add", "AddV2", "Sub", "BiasAdd", "RealDiv")


@dataclasses.dataclass
class CanonicalGraph:
    """The folded fp32 graph and how many affine chains were folded into weights."""

    graph_def: tf.compat.v1.GraphDef
    folded_affine_chains: int


def canonicalize(
    graph_def: tf.compat.v1.GraphDef, protected: Iterable[str], fetches: Iterable[str]
) -> CanonicalGraph:
    """Constant-folds, strips Identity chains and folds batch norms into weights.

    `protected` names nodes that must survive with their names (inputs and outputs);
    `fetches` names the output nodes Grappler must keep alive.
    """
    protected = set(protected)
    graph_def = grappler_cleanup(graph_def, fetches)
    graph_def, forward = fold_input_affine_into_matmul(graph_def, protected)
    graph_def, backward = fold_output_affine(graph_def, protected)
    graph_def = drop_unused_constants(graph_def, protected)
    return CanonicalGraph(graph_def=graph_def, folded_affine_chains=forward + backward)


def grappler_cleanup(
    graph_def: tf.compat.v1.GraphDef, fetches: Iterable[str]
) -> tf.compat.v1.GraphDef:
    """Runs Grappler's pruning, constant folding and dependency passes only."""
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, rewriter_config_pb2
    from tensorflow.python.grappler import tf_optimizer

    meta_graph = meta_graph_pb2.MetaGraphDef()
    meta_graph.graph_def.CopyFrom(graph_def)
    # Grappler keeps exactly what the "train_op" collection reaches.
    meta_graph.collection_def["train_op"].node_list.value.extend(node_name(f) for f in fetches)
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.optimizers.extend(["pruning", "constfold", "dependency"])
    rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.TWO
    return tf_optimizer.OptimizeGraph(config, meta_graph)


def fold_output_affine(
    graph_def: tf.compat.v1.GraphDef, protected: set[str]
) -> tuple[tf.compat.v1.GraphDef, int]:
    """Folds `contraction -> (Mul|Add|Sub|BiasAdd by constant)*` into weights plus a BiasAdd.

    The BiasAdd takes the name of the chain's last node, so every consumer and every
    signature output keeps reading the same tensor name.
    """
    index = GraphIndex(graph_def)
    names = NameAllocator(index.nodes)
    removed: set[str] = set()
    replacements: dict[str, tf.compat.v1.NodeDef] = {}
    folded = 0
    for node in index.topological_order():
        if node.op not in CONTRACTION_OPS or node.name in removed:
            continue
        weights = _contraction_weights(index, node)
        if weights is None:
            continue
        channels = _output_channels(node, weights)
        scale = np.ones(channels, np.float64)
        shift = np.zeros(channels, np.float64)
        chain: list[tf.compat.v1.NodeDef] = []
        current = node
        while current.name not in protected:
            consumer = index.sole_consumer(current.name)
            if consumer is None or consumer.op not in _AFFINE_OPS:
                break
            step = _affine_step(index, consumer, current.name, channels, rank=_rank(node))
            if step is None:
                break
            step_scale, step_shift = step
            scale, shift = scale * step_scale, shift * step_scale + step_shift
            chain.append(consumer)
            current = consumer
        if not chain or (len(chain) == 1 and chain[0].op == "BiasAdd"):
            continue  # Nothing to fold, or already canonical.
        folded += 1
        new_weights = _scale_output_channels(node, weights, scale)
        filter_const = make_const(names.fresh(f"{node.name}/folded_filter"), new_weights)
        bias_const = make_const(
            names.fresh(f"{chain[-1].name}/folded_bias"), shift.astype(np.float32)
        )
        contraction = _copy(node)
        contraction.input[1] = filter_const.name
        bias_add = make_node(chain[-1].name, "BiasAdd", [node.name, bias_const.name], T=_float32())
        # Keep control dependencies that the removed chain carried.
        for member in chain:
            bias_add.input.extend(t for t in member.input if t.startswith("^"))
        replacements[node.name] = contraction
        replacements[chain[-1].name] = bias_add
        replacements[filter_const.name] = filter_const
        replacements[bias_const.name] = bias_const
        removed.update(member.name for member in chain[:-1])
    return _rebuild(graph_def, replacements, removed), folded


def fold_input_affine_into_matmul(
    graph_def: tf.compat.v1.GraphDef, protected: set[str]
) -> tuple[tf.compat.v1.GraphDef, int]:
    """Folds `(Mul|Add|Sub by constant)* -> MatMul` into the MatMul's weights and a BiasAdd.

    The MatMul is renamed and a BiasAdd takes over its name, so consumers are untouched.
    """
    index = GraphIndex(graph_def)
    names = NameAllocator(index.nodes)
    removed: set[str] = set()
    replacements: dict[str, tf.compat.v1.NodeDef] = {}
    folded = 0
    for node in index.topological_order():
        if node.op != "MatMul" or get_attr(node, "transpose_a").b:
            continue
        weights = _contraction_weights(index, node)
        if weights is None:
            continue
        depth = weights.shape[1] if get_attr(node, "transpose_b").b else weights.shape[0]
        chain: list[tuple[tf.compat.v1.NodeDef, str]] = []  # (affine node, its data input)
        source = node.input[0]
        while True:
            producer = index.nodes[node_name(source)]
            if producer.op not in _AFFINE_OPS or producer.name in protected:
                break
            if (
                index.sole_consumer(producer.name) is None
                or tensor_key(source) != f"{producer.name}:0"
            ):
                break
            data_inputs = [t for t in producer.input if not t.startswith("^")]
            variable = [t for t in data_inputs if index.const_value(t) is None]
            if len(variable) != 1:
                break
            if _affine_step(index, producer, variable[0], depth, rank=2) is None:
                break
            chain.append((producer, variable[0]))
            source = variable[0]
        if not chain:
            continue
        scale = np.ones(depth, np.float64)
        shift = np.zeros(depth, np.float64)
        for producer, data_input in reversed(chain):  # Apply in data-flow order.
            step = _affine_step(index, producer, data_input, depth, rank=2)
            assert step is not None  # Checked while walking the chain.
            scale, shift = scale * step[0], shift * step[0] + step[1]
        folded += 1
        if get_attr(node, "transpose_b").b:  # weights [units, depth]
            new_weights = weights * scale[np.newaxis, :]
            extra_bias = weights.astype(np.float64) @ shift
        else:  # weights [depth, units]
            new_weights = weights * scale[:, np.newaxis]
            extra_bias = shift @ weights.astype(np.float64)
        matmul = _copy(node)
        matmul.name = names.fresh(f"{node.name}/matmul")
        matmul.input[0] = source
        filter_const = make_const(
            names.fresh(f"{node.name}/folded_filter"), new_weights.astype(np.float32)
        )
        matmul.input[1] = filter_const.name
        bias_const = make_const(
            names.fresh(f"{node.name}/folded_input_bias"), extra_bias.astype(np.float32)
        )
        bias_add = make_node(node.name, "BiasAdd", [matmul.name, bias_const.name], T=_float32())
        for producer, _ in chain:
            bias_add.input.extend(t for t in producer.input if t.startswith("^"))
        for new_node in (matmul, filter_const, bias_const, bias_add):
            replacements[new_node.name] = new_node
        removed.update(producer.name for producer, _ in chain)
    return _rebuild(graph_def, replacements, removed), folded


def drop_unused_constants(
    graph_def: tf.compat.v1.GraphDef, protected: set[str]
) -> tf.compat.v1.GraphDef:
    """Removes Const nodes nothing reads (old filters left behind by folding)."""
    index = GraphIndex(graph_def)
    unused = {
        n.name
        for n in graph_def.node
        if n.op == "Const"
        and n.name not in protected
        and not any(index.consumers.get(f"{n.name}:0", []))
        and not index.control_consumers.get(n.name)
    }
    return _rebuild(graph_def, {}, unused)


def _contraction_weights(index: GraphIndex, node: tf.compat.v1.NodeDef) -> np.ndarray | None:
    """The constant float32 filter of a supported NHWC contraction, else None."""
    if node.op != "MatMul" and get_attr(node, "data_format").s not in (b"", b"NHWC"):
        return None
    weights = index.const_value(node.input[1])
    if weights is None or weights.dtype != np.float32:
        return None
    return weights


def _output_channels(node: tf.compat.v1.NodeDef, weights: np.ndarray) -> int:
    if node.op == "Conv2D":
        return weights.shape[3]
    if node.op == "DepthwiseConv2dNative":
        return weights.shape[2] * weights.shape[3]
    return weights.shape[0] if get_attr(node, "transpose_b").b else weights.shape[1]


def _rank(node: tf.compat.v1.NodeDef) -> int:
    return 2 if node.op == "MatMul" else 4


def _scale_output_channels(
    node: tf.compat.v1.NodeDef, weights: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    if node.op == "Conv2D":
        scaled = weights * scale
    elif node.op == "DepthwiseConv2dNative":
        scaled = weights * scale.reshape(weights.shape[2], weights.shape[3])
    elif get_attr(node, "transpose_b").b:
        scaled = weights * scale[:, np.newaxis]
    else:
        scaled = weights * scale
    return scaled.astype(np.float32)


def _affine_step(
    index: GraphIndex, node: tf.compat.v1.NodeDef, variable: str, channels: int, rank: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) such that node(x) == x * scale + shift per channel, else None.

    `variable` is the tensor x; the node's other input must be a constant.
    """
    data_inputs = [tensor_key(t) for t in node.input if not t.startswith("^")]
    if len(data_inputs) != 2 or get_attr(node, "T").type != _float32().as_datatype_enum:
        return None
    variable = tensor_key(variable)
    if data_inputs.count(variable) != 1:
        return None
    variable_first = data_inputs[0] == variable
    other = data_inputs[1] if variable_first else data_inputs[0]
    value = index.const_value(other)
    if value is None or value.dtype != np.float32:
        return None
    vector = _channel_vector(value, channels, rank)
    if vector is None:
        return None
    ones, zeros = np.ones(channels), np.zeros(channels)
    if node.op == "Mul":
        return vector, zeros
    if node.op in ("Add", "AddV2") or (node.op == "BiasAdd" and variable_first):
        return ones, vector
    if node.op == "Sub" and variable_first:
        return ones, -vector
    if node.op == "RealDiv" and variable_first and np.all(vector != 0):
        return 1.0 / vector, zeros
    return None


def _channel_vector(value: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """`value` as a per-channel vector when it broadcasts along the last axis only."""
    if value.ndim > rank or any(d != 1 for d in value.shape[:-1]):
        return None
    flat = value.reshape(-1).astype(np.float64)
    if flat.size == 1:
        return np.full(channels, flat[0])
    if flat.size == channels:
        return flat
    return None


def _copy(node: tf.compat.v1.NodeDef) -> tf.compat.v1.NodeDef:
    duplicate = type(node)()
    duplicate.CopyFrom(node)
    return duplicate


def _float32() -> tf.dtypes.DType:
    import tensorflow as tf

    return tf.float32


def _rebuild(
    graph_def: tf.compat.v1.GraphDef,
    replacements: dict[str, tf.compat.v1.NodeDef],
    removed: set[str],
) -> tf.compat.v1.GraphDef:
    """A copy of `graph_def` with nodes replaced by name, new ones added and some removed."""
    import tensorflow as tf

    result = tf.compat.v1.GraphDef()
    result.versions.CopyFrom(graph_def.versions)
    result.library.CopyFrom(graph_def.library)
    placed: set[str] = set()
    for node in graph_def.node:
        if node.name in removed:
            continue
        result.node.append(replacements.get(node.name, node))
        placed.add(node.name)
    result.node.extend(n for name, n in replacements.items() if name not in placed)
    return result
