"""Tiny hand-built graphs holding exactly the structure a transform must handle."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from components.common.signature import GraphSignature, TensorDescription

# Fixed inputs for the tiny graphs: (batch, 4) vectors and (batch, 6, 6, 3) images.
VECTORS = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
IMAGES = np.random.default_rng(1).normal(size=(2, 6, 6, 3)).astype(np.float32)


def make_signature(
    inputs: list[tuple[str, tuple[int | None, ...]]],
    outputs: list[tuple[str, tuple[int | None, ...]]],
) -> GraphSignature:
    """A float32 signature from (node name, shape) pairs; tensor `name:0`."""
    return GraphSignature(
        signature_key="serving_default",
        inputs=tuple(TensorDescription(n, f"{n}:0", "float32", s) for n, s in inputs),
        outputs=tuple(TensorDescription(n, f"{n}:0", "float32", s) for n, s in outputs),
    )


def _build(fn: Callable[[], None]):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        fn()
    return graph.as_graph_def()


def debug_and_training_graph():
    """CheckNumerics, Asserts gating an Identity chain, a keep_prob default, `x * 1`."""
    import tensorflow as tf

    def body() -> None:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        checked = tf.debugging.check_numerics(x, "x has NaN or Inf")
        is_finite = tf.reduce_all(tf.math.is_finite(x))
        # Inside a tf.function this builds an `If` "AssertGuard"; the raw op is a plain Assert.
        guarded = tf.debugging.Assert(is_finite, [x], name="assert_finite")
        plain = tf.raw_ops.Assert(condition=is_finite, data=[x], name="plain_assert")
        with tf.control_dependencies([guarded, plain]):
            gated = tf.identity(tf.identity(checked))
        keep_prob = tf.compat.v1.placeholder_with_default(1.0, [], name="keep_prob")
        dropped = tf.math.divide(gated, keep_prob) * tf.constant(1.0)
        weights = tf.constant(np.arange(12, dtype=np.float32).reshape(4, 3) / 10)
        tf.identity(tf.nn.relu(tf.matmul(tf.stop_gradient(dropped), weights)), name="y")

    signature = make_signature([("x", (None, 4))], [("y", (None, 3))])
    return _build(body), signature


def stateful_control_graph():
    """An Identity that waits (control edge) for a stateful random op."""
    import tensorflow as tf

    def body() -> None:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        noise = tf.random.uniform([4], seed=1, name="noise")  # Stateful: advances an RNG.
        with tf.control_dependencies([noise]):
            waited = tf.identity(x, name="waited")
        tf.identity(waited * 2.0, name="y")

    signature = make_signature([("x", (None, 4))], [("y", (None, 4))])
    return _build(body), signature


def dead_branch_graph():
    """An output plus a branch no output reads, and an input no output reads."""
    import tensorflow as tf

    def body() -> None:
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        tf.compat.v1.placeholder(tf.float32, [None, 4], name="unused_input")
        tf.reduce_sum(tf.exp(x), name="dead_branch")
        tf.identity(x + 1.0, name="y")

    signature = make_signature([("x", (None, 4)), ("unused_input", (None, 4))], [("y", (None, 4))])
    return _build(body), signature


def fused_batch_norm_graph():
    """Conv2D -> FusedBatchNormV3 (inference mode) -> Relu, all weights constant."""
    import tensorflow as tf

    rng = np.random.default_rng(2)

    def body() -> None:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 3], name="x")
        filters = tf.constant(rng.normal(size=(3, 3, 3, 8)).astype(np.float32))
        conv = tf.nn.conv2d(x, filters, strides=1, padding="SAME")
        y, *_ = tf.raw_ops.FusedBatchNormV3(
            x=conv,
            scale=rng.uniform(0.5, 1.5, 8).astype(np.float32),
            offset=rng.normal(size=8).astype(np.float32),
            mean=rng.normal(size=8).astype(np.float32),
            variance=rng.uniform(0.5, 1.5, 8).astype(np.float32),
            epsilon=1e-3,
            is_training=False,
        )
        tf.identity(tf.nn.relu(y), name="y")

    signature = make_signature([("x", (None, 6, 6, 3))], [("y", (None, 6, 6, 8))])
    return _build(body), signature


def residual_conv_graph():
    """conv -> relu -> conv + bias + (residual add) -> relu.

    oneDNN's remapper fuses the second conv with its bias, the residual add and the
    relu into `_FusedConv2D[BiasAdd,Add,Relu]`, which plain CPU kernels cannot run.
    """
    import tensorflow as tf

    rng = np.random.default_rng(3)

    def body() -> None:
        x = tf.compat.v1.placeholder(tf.float32, [None, 6, 6, 3], name="x")
        filters = tf.constant(rng.normal(size=(1, 1, 3, 3)).astype(np.float32))
        bias = tf.constant(rng.normal(size=3).astype(np.float32))
        first = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, filters, 1, "SAME"), bias))
        second = tf.nn.bias_add(tf.nn.conv2d(first, filters, 1, "SAME"), bias)
        tf.identity(tf.nn.relu(second + first), name="y")

    signature = make_signature([("x", (None, 6, 6, 3))], [("y", (None, 6, 6, 3))])
    return _build(body), signature


def keras_batch_norm_graph():
    """A frozen Keras 3 model with batch norms after a depthwise conv, a Dense, and a ReLU.

    DepthwiseConv2D -> BN -> ReLU -> pool -> Dense -> BN -> ReLU -> BN -> Dense: the
    first two fold backward into the weights, the last one forward into the final Dense.
    Batch norm statistics are randomized so that no fold is a no-op.
    """
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants

    keras.utils.set_random_seed(4)
    inputs = keras.Input((6, 6, 3), name="x")
    h = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False)(inputs)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(8, use_bias=False)(h)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
    h = keras.layers.BatchNormalization()(h)
    model = keras.Model(inputs, keras.layers.Dense(4)(h))
    rng = np.random.default_rng(4)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shapes = [w.shape for w in layer.get_weights()]
            gamma, beta, mean, variance = (
                rng.uniform(0.5, 1.5, shapes[0]),
                rng.normal(size=shapes[1]),
                rng.normal(size=shapes[2]),
                rng.uniform(0.5, 1.5, shapes[3]),
            )
            layer.set_weights([v.astype(np.float32) for v in (gamma, beta, mean, variance)])

    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec([None, 6, 6, 3], tf.float32)
    )
    frozen = convert_to_constants.convert_variables_to_constants_v2(function)
    graph_def = frozen.graph.as_graph_def()
    signature = GraphSignature(
        signature_key="serving_default",
        inputs=(TensorDescription("x", frozen.inputs[0].name, "float32", (None, 6, 6, 3)),),
        outputs=(TensorDescription("y", frozen.outputs[0].name, "float32", (None, 4)),),
    )
    return graph_def, signature
