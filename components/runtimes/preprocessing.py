"""The preprocessing part of a split serialized-Example signature, timed on its own.

It lives in the FrozenGraph artifact's `preprocessing/` folder (parsing, the Transform
graph's lookups and scaling; see components/common/preprocessing.py).
"""

from __future__ import annotations

from components.common.signature import GraphSignature
from components.runtimes.base import (
    DEFAULT_SIGNATURE_KEY,
    Backend,
    LoadedVariant,
    ThreadSettings,
    register_backend,
)
from components.runtimes.tensorflow_function import TensorFlowFunctionVariant, tf_device

FORMAT_PREPROCESSING = "preprocessing"


@register_backend(FORMAT_PREPROCESSING)
class PreprocessingBackend(Backend):
    """Serialized tf.Examples in, the model core's inputs out; CPU only (string ops)."""

    def signature(self, uri: str, signature_key: str = DEFAULT_SIGNATURE_KEY) -> GraphSignature:
        from components.common.preprocessing import read_preprocessing_graph

        return read_preprocessing_graph(uri).signature

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        import tensorflow as tf

        from components.common.preprocessing import Preprocessing

        with tf.device(tf_device("CPU:0")):  # String ops have CPU kernels only.
            preprocessing = Preprocessing.load(uri)
        if preprocessing is None:
            raise ValueError(f"{uri!r} holds no preprocessing/ graph")
        # The Preprocessing object owns the lookup tables the function reads.
        return TensorFlowFunctionVariant(
            preprocessing.function, "CPU:0", keyword_names=None, owner=preprocessing
        )
