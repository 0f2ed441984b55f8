"""KFP's built-in visualization artifact types, importable by the names TFX uses on Kubeflow.

The Kubeflow Pipelines UI renders an output artifact inline when its type is
`system.HTML` or `system.Markdown`, reading the file at the artifact's URI. TFX's
Kubeflow V2 container imports an artifact's type by its schema title as
`module.Class`, so these two types must be importable as `system.HTML` and
`system.Markdown`: hence this tiny top-level package. The Benchmarker writes its
report into them, so a run's report shows in the Kubeflow UI.

Both are value artifacts: the payload is the file at `uri` itself (not a folder).
"""

from __future__ import annotations

from tfx.types.value_artifact import ValueArtifact


class _Utf8Text(ValueArtifact):
    """UTF-8 text stored as the file at the artifact's URI."""

    def encode(self, value: str) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"expected text, got {type(value).__name__}")
        return value.encode("utf-8")

    def decode(self, serialized_value: bytes) -> str:
        return serialized_value.decode("utf-8")


class HTML(_Utf8Text):
    """A self-contained HTML page; KFP shows it in the run's Visualization tab."""

    TYPE_NAME = "system.HTML"


class Markdown(_Utf8Text):
    """Markdown text; KFP renders it in the run's Visualization tab."""

    TYPE_NAME = "system.Markdown"
