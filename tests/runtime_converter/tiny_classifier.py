"""The tiny frozen classifier (and a string-detour graph) the runtime-converter and
runtime tests convert, with the skip markers for the optional runtimes.

The classifier has two inputs (an image and a per-class offset added to the logits) and
two outputs (probabilities and logits); its signature lists both in the order opposite
to the graph's (the converters keep the graph's), so names must be matched to the
signature rather than taken in order. Its dense head is fitted by ridge regression on
class templates plus noise, so top-1 means something and predictions vary from row to
row.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

from components.common.signature import GraphSignature

requires_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None or importlib.util.find_spec("nncf") is None,
    reason="needs the openvino extra (openvino and nncf)",
)
requires_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnxruntime", "onnx", "tf2onnx")),
    reason="needs the onnx extra (onnxruntime, onnx, tf2onnx)",
)

IMAGE_SIDE = 12
CLASSES = 4
TEST_ROWS = 96


@dataclasses.dataclass
class TinyClassifier:
    """A frozen classifier in `graph_dir`, calibration rows and held-out labelled rows."""

    graph_dir: str
    signature: GraphSignature
    calibration: list[np.ndarray]  # Signature order: [offsets, images].
    test_inputs: list[np.ndarray]  # Signature order.
    test_labels: np.ndarray

    def tf_outputs(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """TF's outputs of the frozen graph, signature order ([logits, probabilities])."""
        from components.common.graph_io import graph_def_callable, load_graph_def

        return graph_def_callable(load_graph_def(self.graph_dir), self.signature)(*inputs)


def _images(rng: np.random.Generator, templates: np.ndarray, count: int):
    labels = rng.integers(0, CLASSES, size=count)
    scale = rng.uniform(0.6, 1.4, size=(count, 1, 1, 1))
    noise = rng.normal(scale=0.4, size=(count, IMAGE_SIDE, IMAGE_SIDE, 1))
    return (templates[labels] * scale + noise).astype(np.float32), labels


def build_classifier(directory: str, calibration_rows: int = 64) -> TinyClassifier:
    """conv 3x3 -> relu -> max-pool -> dense (+ offset) -> softmax, frozen into `directory`."""
    import tensorflow as tf

    from components.common.graph_io import save_graph_def
    from tests.quantizer.quantizer_helpers import freeze_function

    rng = np.random.default_rng(11)
    templates = rng.normal(size=(CLASSES, IMAGE_SIDE, IMAGE_SIDE, 1)).astype(np.float32)
    kernel = tf.constant(rng.normal(scale=0.5, size=(3, 3, 1, 8)).astype(np.float32))
    width = (IMAGE_SIDE // 2) ** 2 * 8

    def features(images):
        hidden = tf.nn.relu(tf.nn.conv2d(images, kernel, 1, "SAME"))
        return tf.reshape(tf.nn.max_pool2d(hidden, 2, 2, "VALID"), [-1, width])

    train_images, train_labels = _images(rng, templates, 256)
    design = np.concatenate([features(train_images).numpy(), np.ones((256, 1))], 1)
    # Ridge regression: weights of a sane size, as training with weight decay gives.
    gram = design.T @ design + 10.0 * np.eye(design.shape[1])
    head = np.linalg.solve(gram, design.T @ (np.eye(CLASSES)[train_labels] * 8.0))
    weights = tf.constant(head[:-1].astype(np.float32))
    bias = tf.constant(head[-1].astype(np.float32))

    def classifier(images, offsets):
        logits = tf.matmul(features(images), weights) + bias + offsets
        return tf.nn.softmax(logits), logits

    graph = freeze_function(
        classifier,
        tf.TensorSpec([None, IMAGE_SIDE, IMAGE_SIDE, 1], tf.float32, "images"),
        tf.TensorSpec([None, CLASSES], tf.float32, "offsets"),
    )
    # Both lists reversed against the graph's order (tf2onnx and the IR keep the graph's).
    signature = dataclasses.replace(
        graph.signature,
        inputs=tuple(reversed(graph.signature.inputs)),
        outputs=tuple(reversed(graph.signature.outputs)),
    )
    save_graph_def(graph.graph_def, directory)
    signature.save(directory)

    def offsets(count: int) -> np.ndarray:
        return rng.normal(scale=0.2, size=(count, CLASSES)).astype(np.float32)

    calibration_images, _ = _images(rng, templates, calibration_rows)
    test_images, test_labels = _images(rng, templates, TEST_ROWS)
    return TinyClassifier(
        graph_dir=directory,
        signature=signature,
        calibration=[offsets(calibration_rows), calibration_images],
        test_inputs=[offsets(TEST_ROWS), test_images],
        test_labels=test_labels,
    )


def export_string_graph(directory: str, op: str = "round_trip") -> GraphSignature:
    """A linear model whose graph takes a detour through strings, numerically zero.

    `round_trip`: AsString -> StringToNumber (OpenVINO has no conversion rule for them).
    `substring`: AsString -> Substr -> StringToNumber (tf2onnx has no conversion for Substr).
    """
    import tensorflow as tf

    from components.common.graph_io import save_graph_def
    from tests.quantizer.quantizer_helpers import freeze_function

    weights = tf.constant(np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32))

    def detour(x):
        text = tf.strings.as_string(tf.reduce_sum(x, 1) * 0.0)
        if op == "substring":
            text = tf.strings.substr(text, 0, 1)
        return tf.matmul(x, weights) + tf.strings.to_number(text)[:, None]

    graph = freeze_function(detour, tf.TensorSpec([None, 16], tf.float32, "x"))
    save_graph_def(graph.graph_def, directory)
    graph.signature.save(directory)
    return graph.signature
