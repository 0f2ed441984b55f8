"""Baselines of the model forms other than a SavedModel, run un-frozen.

components/freezer/model_forms.py names the forms; each is benchmarked here as the user
would run it, so that speedups are against the model the user brought.
"""

from __future__ import annotations

from typing import Any

from components.common.signature import GraphSignature
from components.runtimes.base import (
    DEFAULT_SIGNATURE_KEY,
    Backend,
    LoadedVariant,
    ThreadSettings,
    register_backend,
)
from components.runtimes.tensorflow_function import TensorFlowFunctionVariant, tf_device

FORMAT_KERAS = "keras"
FORMAT_TF1_CHECKPOINT = "tf1_checkpoint"


class _OriginalModelBackend(Backend):
    """A model form run un-frozen as the baseline (model_forms.original_function)."""

    def __init__(self, selection=None) -> None:  # selection: model_forms.ModelSelection
        from components.freezer.model_forms import ModelSelection

        self.selection = selection or ModelSelection()

    def for_selection(self, selection) -> Backend:
        return type(self)(selection)

    def _original(self, uri: str) -> tuple[Any, GraphSignature, list[str] | None]:
        from components.freezer.model_forms import get_form, original_function

        source = get_form(self.format).find(uri)
        if source is None:
            raise ValueError(f"{uri!r} holds no {self.format} model")
        return original_function(source, self.selection)

    def signature(self, uri: str, signature_key: str = DEFAULT_SIGNATURE_KEY) -> GraphSignature:
        return self._original(uri)[1]

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        import tensorflow as tf

        with tf.device(tf_device(device)):
            function, _, keyword_names = self._original(uri)
        return TensorFlowFunctionVariant(function, device, keyword_names=keyword_names)


@register_backend(FORMAT_KERAS)
class KerasBackend(_OriginalModelBackend):
    """A `.keras`/`.h5` file, called through a serving function made from its inputs."""


@register_backend(FORMAT_TF1_CHECKPOINT)
class Tf1CheckpointBackend(_OriginalModelBackend):
    """A TF1 checkpoint: its graph with the variables restored, not frozen."""
