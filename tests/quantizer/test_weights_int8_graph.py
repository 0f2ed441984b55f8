"""quantize_weights_int8_graph: int8 weight storage that TensorFlow still runs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from components.common.graph_io import graph_def_callable, load_graph_def, op_histogram
from components.common.signature import GraphSignature
from components.quantizer.weights_int8_graph import (
    QUANTIZATION_FILENAME,
    quantize_weights_int8_graph,
    write_weights_int8_graph,
)
from tests.quantizer.quantizer_helpers import freeze_function, top1


@pytest.mark.parametrize("per_channel", [True, False])
def test_weights_int8_graph_keeps_top1_within_2_points(
    frozen_digits, digits_eval, frozen_top1, per_channel
):
    graph_def, info = quantize_weights_int8_graph(
        frozen_digits.graph_def, frozen_digits.signature, per_channel=per_channel
    )

    run = graph_def_callable(graph_def, frozen_digits.signature)
    accuracy = top1(run(digits_eval.images)[0], digits_eval.labels)

    assert abs(accuracy - frozen_top1) <= 0.02, (accuracy, frozen_top1)
    assert op_histogram(graph_def)["Dequantize"] == len(info.quantized_weights) == 3


def test_weights_int8_graph_stores_large_weights_in_a_quarter_of_their_bytes(frozen_digits):
    _, info = quantize_weights_int8_graph(frozen_digits.graph_def, frozen_digits.signature)

    assert info.weight_bytes_after / info.weight_bytes_before <= 0.27
    # The digits graph is ~25% node structure (names, attrs, Identity chains), which no
    # weight rewrite shrinks, so the whole file lands just under half.
    assert info.graph_bytes_after / info.graph_bytes_before < 0.5


def test_weights_int8_graph_shrinks_a_weight_dominated_graph_to_about_a_third():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w1 = tf.constant(rng.normal(size=(256, 512)).astype(np.float32))
    w2 = tf.constant(rng.normal(size=(512, 10)).astype(np.float32))
    mlp = freeze_function(
        lambda x: tf.matmul(tf.nn.relu(tf.matmul(x, w1)), w2),
        tf.TensorSpec([None, 256], tf.float32),
    )

    graph_def, info = quantize_weights_int8_graph(mlp.graph_def, mlp.signature)

    assert 0.25 <= info.graph_bytes_after / info.graph_bytes_before <= 0.3
    x = rng.normal(size=(4, 256)).astype(np.float32)
    reference = graph_def_callable(mlp.graph_def, mlp.signature)(x)[0]
    quantized = graph_def_callable(graph_def, mlp.signature)(x)[0]
    assert np.max(np.abs(quantized - reference)) < 0.02 * np.max(np.abs(reference))


def test_weights_int8_graph_leaves_small_and_non_finite_constants_in_float():
    import tensorflow as tf

    mask = np.zeros((64, 32), np.float32)
    mask[0, 0] = -np.inf
    small = np.ones((8, 32), np.float32)
    graph = freeze_function(
        lambda x: tf.matmul(x, tf.constant(mask)) + tf.reduce_sum(tf.constant(small)),
        tf.TensorSpec([None, 64], tf.float32),
    )

    graph_def, info = quantize_weights_int8_graph(graph.graph_def, graph.signature)

    assert info.quantized_weights == ()
    assert len(info.skipped_non_finite) == 1
    assert "Dequantize" not in op_histogram(graph_def)


def test_weights_int8_graph_writes_a_graph_that_reloads_and_runs(
    frozen_digits, digits_eval, tmp_path
):
    graph_def, info = quantize_weights_int8_graph(frozen_digits.graph_def, frozen_digits.signature)

    path = write_weights_int8_graph(graph_def, frozen_digits.signature, info, str(tmp_path))

    reloaded = load_graph_def(path)
    signature = GraphSignature.load(str(tmp_path))
    outputs = graph_def_callable(reloaded, signature)(digits_eval.images[:2])[0]
    assert outputs.shape == (2, 10)
    with open(os.path.join(tmp_path, QUANTIZATION_FILENAME), encoding="utf-8") as f:
        report = json.load(f)
    assert report["mode"] == "weights_int8_graph"
    assert report["quantized_weights"] == 3
    assert report["sizes"]["model_bytes"] == os.path.getsize(path)
    assert report["sizes"]["frozen_graph_bytes"] == frozen_digits.graph_def.ByteSize()
    assert {op["op"] for op in report["float_ops"]} == {"Conv2D", "MatMul"}
