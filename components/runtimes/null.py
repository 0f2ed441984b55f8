"""The null runtime: no work at all. Its latency is the harness's own overhead."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from components.common.signature import GraphSignature, TensorDescription
from components.runtimes.base import Backend, LoadedVariant, ThreadSettings, register_backend

FORMAT_NULL = "null"


class _NullVariant(LoadedVariant):
    """Returns zeros of the output shape, prepared before the timed region."""

    def __init__(self, outputs: tuple[TensorDescription, ...]):
        self._outputs = outputs

    def prepare(self, inputs: Sequence[np.ndarray]) -> Any:
        batch = inputs[0].shape[0]
        return [
            np.zeros((batch, *[d or 1 for d in t.shape[1:]]), dtype=t.dtype) for t in self._outputs
        ]

    def run(self, prepared: Any) -> list[np.ndarray]:
        return prepared


@register_backend(FORMAT_NULL)
class NullBackend(Backend):
    """Needs only an output shape, which any variant's `signature.json` has."""

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        return _NullVariant(GraphSignature.load(uri).outputs)
