"""Frozen and optimized GraphDefs (`graph.pb`), imported and pruned to feeds and fetches."""

from __future__ import annotations

from components.common.signature import GraphSignature
from components.runtimes.base import Backend, LoadedVariant, ThreadSettings, register_backend
from components.runtimes.tensorflow_function import TensorFlowFunctionVariant, tf_device

FORMAT_GRAPHDEF = "graphdef"


@register_backend(FORMAT_GRAPHDEF)
class GraphDefBackend(Backend):
    """`graph.pb` + `signature.json`; TF's process-wide thread pools apply."""

    # Importing the GraphDef and its constants: 15-16x measured.
    memory_per_artifact_byte = 18.0

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        import tensorflow as tf

        from components.common.graph_io import graph_def_function, load_graph_def

        with tf.device(tf_device(device)):
            function = graph_def_function(load_graph_def(uri), GraphSignature.load(uri))
        return TensorFlowFunctionVariant(function, device, keyword_names=None)
