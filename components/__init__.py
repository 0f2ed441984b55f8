"""TFX components of tfx-inference-optimizer.

Artifact classes are exposed here (`components.FrozenGraph`, ...) because Kubeflow
imports an artifact's schema title `components.<Class>` as `module.Class`. They load
lazily so that importing a plain library module (e.g. `components.common`) does not
pull in TFX.
"""

from __future__ import annotations

from typing import Any

_ARTIFACT_NAMES = {
    "FrozenGraph",
    "OptimizedGraph",
    "QuantizedModel",
    "XlaCompiledModel",
    "BenchmarkReport",
    "VariantBlessing",
}

__all__ = sorted(_ARTIFACT_NAMES)


def __getattr__(name: str) -> Any:
    if name in _ARTIFACT_NAMES:
        from components import artifacts

        return getattr(artifacts, name)
    raise AttributeError(f"module 'components' has no attribute {name!r}")
