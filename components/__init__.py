"""TFX components of tfx-inference-optimizer.

Artifact classes are exposed here (`components.FrozenGraph`, ...) because Kubeflow
imports an artifact's schema title `components.<Class>` as `module.Class`. They load
lazily so that importing a plain library module (e.g. `components.common`) does not
pull in TFX.
"""

from __future__ import annotations

from typing import Any


# Read from components/artifacts.py's ALL_ARTIFACT_TYPES without importing TFX, so the
# two cannot disagree (tests/test_artifact_names.py checks the parse).
def _artifact_names() -> set[str]:
    import ast
    import os

    path = os.path.join(os.path.dirname(__file__), "artifacts.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "ALL_ARTIFACT_TYPES" for t in node.targets
        ):
            return {element.id for element in node.value.elts}
    raise RuntimeError("components/artifacts.py defines no ALL_ARTIFACT_TYPES")


_ARTIFACT_NAMES = _artifact_names()

__all__ = sorted(_ARTIFACT_NAMES)


def __getattr__(name: str) -> Any:
    if name in _ARTIFACT_NAMES:
        from components import artifacts

        return getattr(artifacts, name)
    raise AttributeError(f"module 'components' has no attribute {name!r}")
