"""Running chosen Grappler optimizers offline on a frozen GraphDef.

Grappler is TensorFlow's graph optimizer; the runtime applies it to every function
it runs. Here it runs once, ahead of time, through
`tensorflow.python.grappler.tf_optimizer.OptimizeGraph` with a `RewriterConfig`
that lists only the optimizers asked for (naming any optimizer switches all the
unnamed ones off).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from components.common.signature import GraphSignature

if TYPE_CHECKING:
    import tensorflow as tf

# Device string given to every node when an optimizer only rewrites nodes it knows
# are on CPU (remapper, oneDNN bfloat16); cleared afterwards so the graph stays portable.
CPU_DEVICE = "/device:CPU:0"


def run_grappler(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    optimizers: Sequence[str],
    place_on_cpu: bool = False,
) -> tf.compat.v1.GraphDef:
    """Returns `graph_def` rewritten by the named Grappler optimizers (e.g. "constfold").

    The signature's inputs are declared as feeds and its outputs as fetches, so
    Grappler keeps those nodes and their names.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
    from tensorflow.python.grappler import tf_optimizer

    meta_graph = meta_graph_pb2.MetaGraphDef()
    meta_graph.graph_def.CopyFrom(graph_def)
    if place_on_cpu:
        for node in meta_graph.graph_def.node:
            node.device = CPU_DEVICE
    # "train_op" is the collection Grappler reads fetch nodes from.
    fetches = meta_graph.collection_def["train_op"].node_list.value
    fetches.extend(signature.output_tensor_names)
    serving = meta_graph.signature_def[signature.signature_key]
    for tensors, descriptions in (
        (serving.inputs, signature.inputs),
        (serving.outputs, signature.outputs),
    ):
        for description in descriptions:
            info = tensors[description.name]
            info.name = description.tensor_name
            # Without dtypes Grappler builds feed tensors of DT_INVALID and aborts the process.
            info.dtype = tf.as_dtype(description.dtype).as_datatype_enum
            info.tensor_shape.CopyFrom(tf.TensorShape(description.shape).as_proto())

    config = config_pb2.ConfigProto()
    rewrite_options = config.graph_options.rewrite_options
    rewrite_options.optimizers.extend(optimizers)
    rewrite_options.min_graph_nodes = -1  # Optimize small graphs too.
    # A failing optimizer must fail the transform, not silently return the input graph.
    rewrite_options.fail_on_optimizer_errors = True
    optimized = tf_optimizer.OptimizeGraph(config, meta_graph, verbose=False)
    if place_on_cpu:
        for node in optimized.node:
            node.device = ""
    return optimized
