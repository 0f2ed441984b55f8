"""Freezing keeps the model's outputs and reports bad models clearly."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.graph_io import graph_def_callable, load_graph_def, save_graph_def
from components.common.signature import GraphSignature
from components.freezer.freezing import (
    freeze_saved_model,
    load_serving_function,
    resolve_saved_model_dir,
)


def test_frozen_graph_gives_the_same_outputs_as_the_saved_model(
    embedded_default, frozen_digits, digits_eval
):
    images = digits_eval.images[:64]
    function = load_serving_function(resolve_saved_model_dir(embedded_default.model_uri))
    expected = function(image=images)["output_0"].numpy()

    (actual,) = graph_def_callable(frozen_digits.graph_def, frozen_digits.signature)(images)

    np.testing.assert_allclose(actual, expected, atol=1e-5)
    assert (actual.argmax(1) == expected.argmax(1)).all()


def test_frozen_graph_has_no_variables_left(frozen_digits):
    variable_ops = {"VarHandleOp", "ReadVariableOp", "VariableV2", "Variable"}
    ops = {node.op for node in frozen_digits.graph_def.node}
    assert not ops & variable_ops
    assert "Conv2D" in ops


def test_signature_describes_inputs_and_outputs(frozen_digits):
    signature = frozen_digits.signature
    assert signature.signature_key == "serving_default"
    assert [(t.name, t.dtype, t.shape) for t in signature.inputs] == [
        ("image", "float32", (None, 32, 32, 1))
    ]
    assert [(t.name, t.shape) for t in signature.outputs] == [("output_0", (None, 10))]


def test_graph_and_signature_round_trip_through_files(tmp_path, frozen_digits):
    save_graph_def(frozen_digits.graph_def, str(tmp_path))
    frozen_digits.signature.save(str(tmp_path))

    assert load_graph_def(str(tmp_path)) == frozen_digits.graph_def
    assert GraphSignature.load(str(tmp_path)) == frozen_digits.signature


def test_plain_saved_model_directory_is_accepted(embedded_default):
    serving_dir = os.path.join(embedded_default.model_uri, "Format-Serving")
    assert resolve_saved_model_dir(serving_dir) == serving_dir
    assert resolve_saved_model_dir(embedded_default.model_uri) == serving_dir


def test_missing_model_directory_names_the_path(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(UserInputError, match="does not exist") as error:
        freeze_saved_model(missing)
    assert missing in str(error.value)


def test_directory_without_saved_model_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(UserInputError, match="holds no saved_model.pb"):
        freeze_saved_model(str(tmp_path))


def test_corrupt_saved_model_is_reported_as_corrupt(tmp_path, embedded_default):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(os.path.join(embedded_default.model_uri, "Format-Serving"), corrupt)
    (corrupt / "saved_model.pb").write_bytes(b"\x00garbage, not a protobuf")
    with pytest.raises(UserInputError, match="corrupt"):
        freeze_saved_model(str(corrupt))


def test_unknown_signature_lists_the_available_ones(embedded_default):
    with pytest.raises(UserInputError, match="no signature 'predict'.*serving_default"):
        freeze_saved_model(embedded_default.model_uri, signature_key="predict")
