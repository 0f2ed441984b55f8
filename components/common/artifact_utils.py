"""Small helpers executors use to write artifacts and their custom properties."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tfx.types.artifact import Artifact

STATUS_OK = "ok"
STATUS_FAILED = "failed"
# A variant kind that does not apply here (its hardware or optional runtime is missing).
STATUS_SKIPPED = "skipped"


def single_artifact(artifacts: list[Artifact], key: str) -> Artifact:
    """The one artifact of an input/output key; TFX passes lists even for singletons."""
    if len(artifacts) != 1:
        raise ValueError(f"expected exactly one artifact for {key!r}, got {len(artifacts)}")
    return artifacts[0]


def set_variant_properties(
    artifact: Artifact,
    *,
    variant_name: str,
    model_format: str,
    size_bytes: int,
    status: str = STATUS_OK,
    failure_reason: str = "",
    extra: dict[str, Any] | None = None,
) -> None:
    """Records the properties every variant carries (see components/artifacts.py)."""
    artifact.set_string_custom_property("variant_name", variant_name)
    artifact.set_string_custom_property("format", model_format)
    artifact.set_string_custom_property("status", status)
    artifact.set_int_custom_property("size_bytes", int(size_bytes))
    if failure_reason:
        artifact.set_string_custom_property("failure_reason", failure_reason)
    for key, value in (extra or {}).items():
        set_custom_property(artifact, key, value)


def set_custom_property(artifact: Artifact, key: str, value: Any) -> None:
    """Sets a custom property with the MLMD type that fits the Python value (None: skipped)."""
    if value is None:
        return
    if isinstance(value, bool):
        # As 0/1 (like ModelBlessing's `blessed`): TFX 1.16's Kubeflow entrypoint cannot
        # pass bool-typed custom properties on, and fails the task after its work is done.
        artifact.set_int_custom_property(key, int(value))
    elif isinstance(value, int):
        artifact.set_int_custom_property(key, value)
    elif isinstance(value, float):
        artifact.set_float_custom_property(key, value)
    elif isinstance(value, str):
        artifact.set_string_custom_property(key, value)
    else:
        # Lists and dicts: JSON strings read everywhere (MLMD UI, lineage CLI, KFP UI),
        # unlike proto-typed json_value properties which older UIs show as blobs.
        artifact.set_string_custom_property(key, json.dumps(value, sort_keys=True))


FAILURE_FILENAME = "FAILED.txt"


def record_failed_variant(
    artifact: Artifact, *, variant_name: str, mode: str, error: BaseException
) -> None:
    """Publishes a variant that could not be produced: `status=failed` and the reason.

    Whatever the transform half-wrote is removed first, so the artifact holds only
    `FAILED.txt`; the Benchmarker shows the row as failed with this reason.
    """
    # An error carrying its own `reason` (variant_production.ProducerFailed: what a
    # producer's child raised) is shown as it is.
    reason = (getattr(error, "reason", None) or f"{type(error).__name__}: {error}").strip()[:3000]
    _publish_without_model(artifact, variant_name, mode, STATUS_FAILED, reason, FAILURE_FILENAME)


SKIPPED_FILENAME = "SKIPPED.txt"


def record_skipped_variant(
    artifact: Artifact, *, variant_name: str, mode: str, reason: str
) -> None:
    """Publishes a variant kind that does not apply here: `status=skipped` and why.

    Like a failed variant it holds one text file; the Benchmarker's table lists it with
    the reason (e.g. the CPU lacks bf16, or the optional runtime is not installed).
    """
    _publish_without_model(artifact, variant_name, mode, STATUS_SKIPPED, reason, SKIPPED_FILENAME)


def _publish_without_model(
    artifact: Artifact, variant_name: str, mode: str, status: str, reason: str, filename: str
) -> None:
    """An artifact holding only `filename` with the reason, and the variant properties."""
    import tensorflow as tf

    if tf.io.gfile.exists(artifact.uri):
        tf.io.gfile.rmtree(artifact.uri)
    tf.io.gfile.makedirs(artifact.uri)
    with tf.io.gfile.GFile(os.path.join(artifact.uri, filename), "w") as f:
        f.write(reason + "\n")
    set_variant_properties(
        artifact,
        variant_name=variant_name,
        model_format="none",
        size_bytes=0,
        status=status,
        failure_reason=reason,
        extra={"mode": mode},
    )
