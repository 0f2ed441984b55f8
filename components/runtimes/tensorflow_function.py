"""Running any TF concrete function in graph mode: shared by the TensorFlow formats.

Not eager and not `model.predict`: a concrete function is how TF Serving runs a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from components.runtimes.base import LoadedVariant


def tf_device(device: str) -> str:
    return f"/device:{device}"


class TensorFlowFunctionVariant(LoadedVariant):
    """A TF concrete function, inputs positional or by keyword (signature order)."""

    def __init__(
        self,
        function: Callable[..., Any],
        device: str,
        keyword_names: list[str] | None,
        owner: Any = None,
    ):
        self._function = function
        self._keyword_names = keyword_names
        # Whatever must outlive the function (e.g. the lookup tables it reads).
        self._owner = owner
        self.device = device

    def prepare(self, inputs: Sequence[np.ndarray]) -> Any:
        import tensorflow as tf

        with tf.device(tf_device(self.device)):
            return [tf.identity(tf.constant(x)) for x in inputs]

    def run(self, prepared: Any) -> list[np.ndarray]:
        import tensorflow as tf

        with tf.device(tf_device(self.device)):
            if self._keyword_names is None:
                outputs = self._function(*prepared)
            else:
                outputs = self._function(**dict(zip(self._keyword_names, prepared, strict=True)))
        if isinstance(outputs, dict):
            outputs = [outputs[name] for name in sorted(outputs)]
        return [o.numpy() for o in outputs]

    def release(self) -> None:
        self._function = None
        self._owner = None
