"""The written artifact: files, a SavedModel that serves the same outputs, and its signature."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from components.common.graph_io import graph_def_callable, load_graph_def
from components.common.signature import GraphSignature
from components.inference_optimizer.optimizer import write_optimized_graph
from components.inference_optimizer.saved_model_export import export_graph_as_saved_model


@pytest.fixture(scope="module")
def written(optimized_digits, frozen_digits, tmp_path_factory):
    """The optimized digits graph written once for this module's tests."""
    output_dir = str(tmp_path_factory.mktemp("optimized_digits"))
    return write_optimized_graph(optimized_digits, frozen_digits.signature, output_dir)


def test_write_optimized_graph_writes_graph_signature_log_and_saved_model(
    written, optimized_digits, frozen_digits
):
    assert load_graph_def(written.graph_path) == optimized_digits.graph_def
    assert GraphSignature.load(os.path.dirname(written.signature_path)) == frozen_digits.signature
    with open(written.transform_log_path, encoding="utf-8") as f:
        assert json.load(f) == optimized_digits.transform_log
    assert os.path.exists(os.path.join(written.saved_model_dir, "saved_model.pb"))


def test_saved_model_gives_the_frozen_graph_outputs(written, digits_eval, frozen_digits_outputs):
    import tensorflow as tf

    serving = tf.saved_model.load(written.saved_model_dir).signatures["serving_default"]

    outputs = serving(image=tf.constant(digits_eval.images))

    assert list(outputs) == ["output_0"]
    np.testing.assert_allclose(outputs["output_0"].numpy(), frozen_digits_outputs, atol=1e-4)


def test_saved_model_signature_has_the_original_names_dtypes_and_shapes(written):
    # What `saved_model_cli show --all` prints, read the same way.
    from tensorflow.python.tools import saved_model_utils

    meta_graph = saved_model_utils.get_meta_graph_def(written.saved_model_dir, "serve")
    signature = meta_graph.signature_def["serving_default"]

    assert signature.method_name == "tensorflow/serving/predict"
    assert list(signature.inputs) == ["image"]
    assert list(signature.outputs) == ["output_0"]
    image, probabilities = signature.inputs["image"], signature.outputs["output_0"]
    assert (image.dtype, probabilities.dtype) == (1, 1)  # DT_FLOAT
    assert [d.size for d in image.tensor_shape.dim] == [-1, 32, 32, 1]
    assert [d.size for d in probabilities.tensor_shape.dim] == [-1, 10]
    # Nothing to restore: the weights live in the function as constants.
    ops = {node.op for f in meta_graph.graph_def.library.function for node in f.node_def}
    assert "_FusedConv2D" in ops
    assert not ops & {"VarHandleOp", "ReadVariableOp"}


def test_saved_model_serves_from_a_session_the_way_tf_serving_loads_it(
    written, digits_eval, frozen_digits_outputs
):
    import tensorflow as tf

    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(
            session, ["serve"], written.saved_model_dir
        )
        signature = meta_graph.signature_def["serving_default"]
        (actual,) = session.run(
            [signature.outputs["output_0"].name],
            {signature.inputs["image"].name: digits_eval.images[:32]},
        )

    np.testing.assert_allclose(actual, frozen_digits_outputs[:32], atol=1e-4)


def test_frozen_graph_exports_as_saved_model_too(frozen_digits, digits_eval, tmp_path):
    import tensorflow as tf

    export_dir = export_graph_as_saved_model(
        frozen_digits.graph_def, frozen_digits.signature, str(tmp_path / "frozen")
    )

    serving = tf.saved_model.load(export_dir).signatures["serving_default"]
    (expected,) = graph_def_callable(frozen_digits.graph_def, frozen_digits.signature)(
        digits_eval.images[:8]
    )
    actual = serving(image=tf.constant(digits_eval.images[:8]))["output_0"].numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-6)
