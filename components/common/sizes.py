"""How big an artifact is, and how a size is written: one of each for the whole tool.

The report, `lineage`, the memory guard and the memory cap's messages all write sizes
with `format_bytes`, so the same artifact never reads 78.6 KiB in one place and 24.0 KiB
in another. What a variant's size *is* comes from its runtime (runtimes.Backend.model_bytes):
the files that runtime loads, which for a GraphDef is `graph.pb`, not the servable
SavedModel the InferenceOptimizer writes beside it.
"""

from __future__ import annotations

import os


def directory_size_bytes(uri: str) -> int:
    """Total size of the files under `uri` (recursively), through gfile; a file's own size."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(uri):
        return tf.io.gfile.stat(uri).length if tf.io.gfile.exists(uri) else 0
    total = 0
    for root, _, files in tf.io.gfile.walk(uri):
        for name in files:
            total += tf.io.gfile.stat(os.path.join(root, name)).length
    return total


def format_bytes(value: int | float | None) -> str:
    """`512 B`, `78.6 KiB`, `97.8 MiB`, `8.11 GiB` (binary units); "" for None."""
    if value is None:
        return ""
    size = float(value)
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.2f} GiB"
