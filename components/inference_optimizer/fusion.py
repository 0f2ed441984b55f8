"""Fusing Conv/MatMul + BiasAdd + activation with Grappler's remapper, portably.

Grappler's remapper (run offline through `run_grappler(..., ["remap"])`) rewrites
`Conv2D -> BiasAdd -> Relu` into one `_FusedConv2D` node, and likewise for MatMul.
In a TensorFlow build with oneDNN switched on (the x86 default) it also writes
fusions that *only* oneDNN can execute, e.g. `_FusedConv2D[BiasAdd,Add]` (residual
add) and `_FusedDepthwiseConv2dNative`. Such a graph fails with "Fusion is not
implemented" wherever oneDNN is off: `TF_ENABLE_ONEDNN_OPTS=0`, non-x86 builds, GPUs,
TF Serving builds without oneDNN.

So by default those fusions are undone: each is replaced by the original nodes it
was made from, taken from the graph before the remapper ran (the remapper names a
fused node after the last node it replaced, so the originals are found by name).
What stays runs on the plain (Eigen) CPU kernels too. A oneDNN runtime loses nothing
by this: its own remapper redoes those fusions when it loads the graph.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from components.common.signature import GraphSignature
from components.inference_optimizer.graph_rewriting import node_map, parse_input, replace_nodes
from components.inference_optimizer.grappler import run_grappler

if TYPE_CHECKING:
    import tensorflow as tf
    from tensorflow.core.framework import node_def_pb2

_ACTIVATIONS = ("Relu", "Relu6", "Elu", "LeakyRelu")
# Fusions TensorFlow's plain CPU kernels implement. Checked on TF 2.16.2: with oneDNN
# off (TF_ENABLE_ONEDNN_OPTS=0) the remapper writes each of these, and each runs.
PORTABLE_FUSIONS: dict[str, frozenset[tuple[str, ...]]] = {
    "_FusedConv2D": frozenset(
        {("BiasAdd",), ("FusedBatchNorm",)}
        | {
            (first, activation)
            for first in ("BiasAdd", "FusedBatchNorm")
            for activation in _ACTIVATIONS
        }
    ),
    "_FusedMatMul": frozenset({("BiasAdd",)} | {("BiasAdd", a) for a in _ACTIVATIONS}),
}


def fuse_ops(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    allow_onednn_only_fusions: bool = False,
) -> tuple[tf.compat.v1.GraphDef, dict[str, Any]]:
    """Returns the fused graph and counts of the fusions kept and undone."""
    # The remapper only fuses nodes it knows run on CPU (or GPU); unplaced nodes are
    # left alone, so everything is placed on CPU for the pass and cleared after.
    fused = run_grappler(graph_def, signature, ["remap"], place_on_cpu=True)
    reverted: dict[str, int] = {}
    if not allow_onednn_only_fusions:
        fused, reverted = revert_unportable_fusions(graph_def, fused)
    return fused, {"fusions": fusion_counts(fused), "reverted_onednn_only_fusions": reverted}


def fusion_label(node: node_def_pb2.NodeDef) -> str:
    """`_FusedConv2D[BiasAdd,Relu]` for a fused node, the bare op for other internal ops."""
    fused_ops = node.attr["fused_ops"].list.s if "fused_ops" in node.attr else []
    pattern = ",".join(op.decode() for op in fused_ops)
    return f"{node.op}[{pattern}]" if pattern else node.op


def fusion_counts(graph_def: tf.compat.v1.GraphDef) -> dict[str, int]:
    """Counts TensorFlow-internal (`_`-prefixed) nodes by `fusion_label`."""
    counts = collections.Counter(fusion_label(n) for n in graph_def.node if n.op.startswith("_"))
    return dict(counts.most_common())


def is_portable(node: node_def_pb2.NodeDef) -> bool:
    """Whether TensorFlow's plain CPU kernels run this node (public ops always do)."""
    if not node.op.startswith("_"):
        return True
    fused_ops = tuple(s.decode() for s in node.attr["fused_ops"].list.s)
    return fused_ops in PORTABLE_FUSIONS.get(node.op, frozenset())


def revert_unportable_fusions(
    before: tf.compat.v1.GraphDef, after: tf.compat.v1.GraphDef
) -> tuple[tf.compat.v1.GraphDef, dict[str, int]]:
    """Puts back, from `before`, the original nodes of every unportable node in `after`."""
    original = node_map(before)
    result = {node.name: node for node in after.node}
    unportable = [node for node in after.node if not is_portable(node)]
    reverted = collections.Counter(fusion_label(node) for node in unportable)

    def restore(name: str) -> None:
        if name not in original:
            raise RuntimeError(
                f"Cannot undo the fusion at {name!r}: the graph before fusion has no such "
                f"node. Set allow_onednn_only_fusions=True to keep it."
            )
        result[name] = original[name]
        for reference in original[name].input:
            source = parse_input(reference)[0]
            if source not in result:
                restore(source)

    for node in unportable:
        restore(node.name)
    # Nodes only the undone fusions read (e.g. constants the remapper added) stay
    # behind unread; the caller's remove_unreachable step, or the next one, drops them.
    return replace_nodes(after, result.values()), dict(reverted)
