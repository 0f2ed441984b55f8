"""Fixtures for the XLA tests: a shared runtime cache and graphs XLA cannot compile."""

from __future__ import annotations

import pytest

from components.common.signature import GraphSignature, TensorDescription
from components.xla_compiler.aot_build import default_runtime_cache_dir


@pytest.fixture(scope="session")
def aot_runtime_cache() -> str:
    """The real runtime-object cache ($INFERENCE_OPTIMIZER_XLA_RUNTIME_CACHE or ~/.cache/...).

    Its entries are keyed by everything that shapes them and written atomically, so
    sharing it is safe, and it spares each test run the ~30-100 s cold runtime build.
    """
    return default_runtime_cache_dir()


@pytest.fixture(scope="session")
def string_op_graph():
    """A tiny frozen graph with AsString, an op XLA has no CPU kernel for."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        y = tf.strings.to_number(tf.strings.as_string(x))
        tf.identity(y * 2.0, name="y")
    signature = GraphSignature(
        signature_key="serving_default",
        inputs=(TensorDescription("x", "x:0", "float32", (None, 4)),),
        outputs=(TensorDescription("y", "y:0", "float32", (None, 4)),),
    )
    return graph.as_graph_def(), signature
