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

    def model_bytes(self, uri: str) -> int:
        """Every file but the servable SavedModel the InferenceOptimizer writes beside
        `graph.pb` and a split signature's preprocessing: neither is loaded here."""
        import os

        import tensorflow as tf

        from components.common.graph_io import SERVABLE_SAVED_MODEL_DIRNAME
        from components.common.preprocessing import PREPROCESSING_DIRNAME
        from components.common.sizes import directory_size_bytes

        if not tf.io.gfile.isdir(uri):
            return directory_size_bytes(uri)
        return sum(
            directory_size_bytes(os.path.join(uri, name))
            for name in tf.io.gfile.listdir(uri)
            if name.rstrip("/") not in (SERVABLE_SAVED_MODEL_DIRNAME, PREPROCESSING_DIRNAME)
        )

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        import tensorflow as tf

        from components.common.graph_io import graph_def_function, load_graph_def

        with tf.device(tf_device(device)):
            function = graph_def_function(load_graph_def(uri), GraphSignature.load(uri))
        return TensorFlowFunctionVariant(function, device, keyword_names=None)
