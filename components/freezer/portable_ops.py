"""Exact rewrites of ops that TFLite and XLA lack, applied to every frozen graph.

The frozen graph is what every other component transforms, so an op no runtime but TF
can run fails every variant. The rewrites here give the same values for every input
TF itself accepts:

* **Constant bincount sizes.** `tf.math.bincount(x, minlength=n, maxlength=n)` (what
  Keras' `CategoryEncoding` and TFT-fed one-hot layers call) computes its size as
  `minimum(n, maximum(n, max(x) + 1))`, which is `n` for every `x`, but no constant
  folding sees it. XLA refuses the op for the data-dependent size.
* **Binary bincount as one-hot.** `DenseBincount(x, size, [], binary_output=True)` on
  a `[batch, k]` input is `reduce_max(one_hot(x, size), axis=1)`; with counts it is the
  `reduce_sum`. TFLite has no DenseBincount at all. The one-hot form gives zeros for ids
  outside `[0, size)`, as bincount ignores them (negative ids make TF's op fail).

    >>> graph_def, counts = make_portable(graph_def, signature.output_op_names)
    >>> counts
    {'constant_bincount_size': 1, 'bincount_as_one_hot': 1}
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tensorflow as tf


def make_portable(
    graph_def: tf.compat.v1.GraphDef, output_ops: Sequence[str]
) -> tuple[tf.compat.v1.GraphDef, dict[str, int]]:
    """The graph with the rewrites above applied, unused nodes dropped, and their counts."""
    import tensorflow as tf

    result = tf.compat.v1.GraphDef()
    result.CopyFrom(graph_def)
    counts: collections.Counter[str] = collections.Counter()
    counts["constant_bincount_size"] = _fold_clamped_constants(result)
    counts["bincount_as_one_hot"] = _bincount_as_one_hot(result)
    if sum(counts.values()):
        result = tf.compat.v1.graph_util.extract_sub_graph(result, list(output_ops))
    return result, {k: v for k, v in counts.items() if v}


def _scalar_constant(node: Any) -> Any:
    from tensorflow.python.framework import tensor_util

    if node is None or node.op != "Const":
        return None
    value = tensor_util.MakeNdarray(node.attr["value"].tensor)
    return value.item() if value.size == 1 else None


def _producer(nodes: dict[str, Any], tensor: str) -> Any:
    return nodes.get(tensor.split(":")[0].lstrip("^"))


def _tensor_name(tensor: str) -> str:
    return tensor if ":" in tensor else f"{tensor}:0"


def _fold_clamped_constants(graph_def: tf.compat.v1.GraphDef) -> int:
    """`Minimum(c, Maximum(c, y))` and `Maximum(c, Minimum(c, y))` read `c` instead."""
    nodes = {n.name: n for n in graph_def.node}
    replaced: dict[str, str] = {}
    for node in graph_def.node:
        if node.op not in ("Minimum", "Maximum"):
            continue
        inner_op = "Maximum" if node.op == "Minimum" else "Minimum"
        for outer, inner in ((0, 1), (1, 0)):
            constant = _producer(nodes, node.input[outer])
            clamp = _producer(nodes, node.input[inner])
            value = _scalar_constant(constant)
            if value is None or clamp is None or clamp.op != inner_op:
                continue
            if any(_scalar_constant(_producer(nodes, i)) == value for i in clamp.input[:2]):
                replaced[node.name] = node.input[outer]
                break
    for node in graph_def.node:
        for index, tensor in enumerate(node.input):
            if tensor.split(":")[0] in replaced and not tensor.startswith("^"):
                node.input[index] = replaced[tensor.split(":")[0]]
    return len(replaced)


def _bincount_as_one_hot(graph_def: tf.compat.v1.GraphDef) -> int:
    import tensorflow as tf
    from tensorflow.python.framework import tensor_util

    nodes = {n.name: n for n in graph_def.node}
    if not any(n.op == "DenseBincount" for n in graph_def.node):
        return 0
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    rewritten = 0
    for node in list(graph_def.node):
        if node.op != "DenseBincount":
            continue
        # Per-row counts need a [batch, k] input; a vector is counted as a whole.
        if graph.get_tensor_by_name(_tensor_name(node.input[0])).shape.rank != 2:
            continue
        size = _scalar_constant(_producer(nodes, node.input[1]))
        weights = _producer(nodes, node.input[2])
        empty_weights = (
            weights is not None
            and weights.op == "Const"
            and tensor_util.MakeNdarray(weights.attr["value"].tensor).size == 0
        )
        if size is None or not empty_weights:
            continue
        dtype = node.attr["T"].type
        prefix = node.name + "/portable"
        constants = {
            "depth": tf.constant(int(size), tf.int32),
            "on": tf.constant(1, tf.as_dtype(dtype)),
            "off": tf.constant(0, tf.as_dtype(dtype)),
            "axis": tf.constant(1, tf.int32),
        }
        for name, value in constants.items():
            constant = graph_def.node.add(name=f"{prefix}/{name}", op="Const")
            constant.attr["dtype"].type = value.dtype.as_datatype_enum
            constant.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value.numpy()))
        one_hot = graph_def.node.add(name=f"{prefix}/one_hot", op="OneHot")
        one_hot.input.extend([node.input[0], f"{prefix}/depth", f"{prefix}/on", f"{prefix}/off"])
        one_hot.attr["T"].type = dtype
        one_hot.attr["TI"].type = node.attr["Tidx"].type
        one_hot.attr["axis"].i = -1
        reduce_op = "Max" if node.attr["binary_output"].b else "Sum"
        # The bincount's own name now names the reduction, so its readers need no change.
        name = node.name
        node.Clear()
        node.name = name
        node.op = reduce_op
        node.input.extend([f"{prefix}/one_hot", f"{prefix}/axis"])
        node.attr["T"].type = dtype
        node.attr["Tidx"].type = tf.int32.as_datatype_enum
        node.attr["keep_dims"].b = False
        rewritten += 1
    return rewritten
