"""Local folders for tools that read and write only local paths (OpenVINO, tf2onnx, gcc).

On Kubeflow an artifact URI is gs:// or s3://; these stage it through tf.io.gfile:

    with local_input_dir(frozen.uri) as graph_dir, local_output_dir(output.uri) as out:
        convert(graph_dir, out)   # `out` is copied to output.uri when the block succeeds
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator


def is_local(uri: str) -> bool:
    return "://" not in uri


def copy_tree(source: str, destination: str) -> None:
    """Copies a folder between any two tf.io.gfile locations."""
    import tensorflow as tf

    for root, _, files in tf.io.gfile.walk(source):
        target_root = os.path.join(destination, os.path.relpath(root, source))
        tf.io.gfile.makedirs(target_root)
        for filename in files:
            tf.io.gfile.copy(
                os.path.join(root, filename), os.path.join(target_root, filename), overwrite=True
            )


@contextlib.contextmanager
def local_input_dir(uri: str) -> Iterator[str]:
    """`uri` itself when local, else a temporary local copy of it."""
    if is_local(uri):
        yield uri
        return
    directory = tempfile.mkdtemp(prefix="staged-input-")
    try:
        copy_tree(uri, directory)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def local_output_dir(uri: str) -> Iterator[str]:
    """`uri` itself when local, else a temporary folder copied to `uri` on success."""
    if is_local(uri):
        os.makedirs(uri, exist_ok=True)
        yield uri
        return
    directory = tempfile.mkdtemp(prefix="staged-output-")
    try:
        yield directory
        copy_tree(directory, uri)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
