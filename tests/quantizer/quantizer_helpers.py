"""Helpers shared by the quantizer tests: toy frozen graphs and top-1 accuracy."""

from __future__ import annotations

import dataclasses

import numpy as np

from components.common.signature import GraphSignature, TensorDescription


@dataclasses.dataclass
class SmallGraph:
    """A frozen toy graph built in the test, with its signature."""

    graph_def: object
    signature: GraphSignature


def freeze_function(function, *specs) -> SmallGraph:
    """Freezes a tf.function into a GraphDef; signature names are in0.., out0..."""
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants

    concrete = tf.function(function).get_concrete_function(*specs)
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    inputs = tuple(
        TensorDescription(f"in{i}", t.name, t.dtype.name, tuple(t.shape.as_list()))
        for i, t in enumerate(frozen.inputs)
    )
    outputs = tuple(
        TensorDescription(f"out{i}", t.name, t.dtype.name, tuple(t.shape.as_list()))
        for i, t in enumerate(frozen.outputs)
    )
    return SmallGraph(
        frozen.graph.as_graph_def(), GraphSignature("serving_default", inputs, outputs)
    )


def top1(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(predictions, axis=-1) == labels))


def tflite_top1(model_path: str, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 of a batch-1 TFLite model, one image per call."""
    from components.runtimes.tflite import TFLiteModel

    model = TFLiteModel(model_path, num_threads=1)
    predictions = np.concatenate([model.run(images[i : i + 1])[0] for i in range(len(images))])
    return top1(predictions, labels)
