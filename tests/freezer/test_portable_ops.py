"""Exact rewrites that let TFLite and XLA run a frozen graph, and inlining left-over calls."""

from __future__ import annotations

import numpy as np

from components.common.graph_io import graph_def_callable


def test_a_one_hot_bincount_becomes_a_one_hot_that_tflite_and_xla_can_run():
    import tensorflow as tf

    from components.freezer.freezing import freeze_function

    weights = tf.Variable(np.arange(10, dtype=np.float32).reshape(5, 2))

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.int64, name="ids")])
    def serve(ids):
        # What tf_keras' CategoryEncoding(num_tokens=5, output_mode="one_hot") runs, the
        # layer TFX tabular models put after a Transform vocabulary.
        encoded = tf.math.bincount(
            ids, minlength=5, maxlength=5, binary_output=True, axis=-1, dtype=tf.float32
        )
        return {"out": tf.matmul(encoded, weights)}

    frozen = freeze_function(serve.get_concrete_function(), "serving_default")
    batch = np.array([[0], [3], [4], [1], [7]], np.int64)  # 7: out of range, counted nowhere.

    portable = frozen.with_portable_ops()

    ops = {n.op for n in portable.graph_def.node}
    assert "DenseBincount" in {n.op for n in frozen.graph_def.node}
    assert "DenseBincount" not in ops and "OneHot" in ops
    assert portable.portable_rewrites == {"constant_bincount_size": 1, "bincount_as_one_hot": 1}
    (expected,) = graph_def_callable(frozen.graph_def, frozen.signature)(batch)
    (actual,) = graph_def_callable(portable.graph_def, portable.signature)(batch)
    np.testing.assert_array_equal(actual, expected)
    np.testing.assert_array_equal(actual[-1], [0, 0])


def test_a_graph_without_such_ops_is_left_as_it_is(frozen_digits):
    portable = frozen_digits.with_portable_ops()

    assert portable.portable_rewrites == {}
    assert portable.graph_def == frozen_digits.graph_def


def test_function_calls_are_inlined_with_the_same_outputs():
    import tensorflow as tf

    from components.common.signature import GraphSignature, TensorDescription
    from components.freezer.function_inlining import CALL_OPS, inline_function_calls

    @tf.function
    def inner(x, y):
        return {"sum": x + y, "product": x * y}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def outer(x):
        parts = inner(x, tf.constant(2.0))
        return tf.identity(parts["sum"] - parts["product"], name="out")

    graph_def = outer.get_concrete_function().graph.as_graph_def()
    signature = GraphSignature(
        "serving_default",
        (TensorDescription("x", "x:0", "float32", (None, 3)),),
        (TensorDescription("out", "out:0", "float32", (None, 3)),),
    )
    batch = np.arange(6, dtype=np.float32).reshape(2, 3)

    inlined = inline_function_calls(graph_def)

    assert any(n.op in CALL_OPS for n in graph_def.node)
    assert not any(n.op in CALL_OPS for n in inlined.node)
    assert not inlined.library.function
    (value,) = graph_def_callable(inlined, signature)(batch)
    np.testing.assert_allclose(value, (batch + 2) - batch * 2)
