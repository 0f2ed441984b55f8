"""The XLA JIT SavedModel: same outputs as the frozen graph, really compiled by XLA."""

from __future__ import annotations

import os

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.graph_io import graph_def_callable
from components.common.signature import GraphSignature
from components.xla_compiler.jit import compile_jit_saved_model


@pytest.fixture(scope="module")
def jit_digits(frozen_digits, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("xla_jit"))
    info = compile_jit_saved_model(frozen_digits.graph_def, frozen_digits.signature, output_dir)
    return output_dir, info


def test_jit_saved_model_matches_frozen_graph_on_digits(jit_digits, frozen_digits, digits_eval):
    import tensorflow as tf

    output_dir, _ = jit_digits
    serve = tf.saved_model.load(output_dir).signatures["serving_default"]
    expected = graph_def_callable(frozen_digits.graph_def, frozen_digits.signature)(
        digits_eval.images
    )[0]

    actual = serve(image=tf.constant(digits_eval.images))["output_0"].numpy()

    np.testing.assert_allclose(actual, expected, atol=1e-4)
    assert (actual.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_jit_saved_model_keeps_the_frozen_signature(jit_digits, frozen_digits):
    import tensorflow as tf

    output_dir, _ = jit_digits
    serve = tf.saved_model.load(output_dir).signatures["serving_default"]

    (input_spec,) = serve.structured_input_signature[1].values()
    assert serve.structured_input_signature[1].keys() == {"image"}
    assert input_spec.shape.as_list() == [None, 32, 32, 1]
    assert input_spec.dtype == tf.float32
    assert set(serve.structured_outputs) == {"output_0"}
    assert GraphSignature.load(output_dir) == frozen_digits.signature


def test_jit_saved_model_function_is_compiled_by_xla(jit_digits, digits_eval):
    import tensorflow as tf

    output_dir, info = jit_digits
    loaded = tf.saved_model.load(output_dir)
    library = loaded.signatures["serving_default"].graph.as_graph_def().library

    must_compile = [f.signature.name for f in library.function if f.attr["_XlaMustCompile"].b]
    hlo = loaded.serve.experimental_get_compiler_ir(tf.constant(digits_eval.images[:2]))(
        stage="hlo"
    )

    assert must_compile, "no function in the serving signature carries _XlaMustCompile"
    assert hlo.startswith("HloModule") and "convolution" in hlo
    assert info["xla_compile_time_s"] > 0 and info["export_time_s"] > 0
    with open(os.path.join(output_dir, info["hlo_file"])) as f:
        assert f.read().startswith("HloModule")


def test_jit_rejects_ops_xla_cannot_compile(string_op_graph, tmp_path):
    graph_def, signature = string_op_graph

    with pytest.raises(UserInputError, match="AsString"):
        compile_jit_saved_model(graph_def, signature, str(tmp_path / "jit"))
