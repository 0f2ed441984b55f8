"""Which form a model path has, and freezing and running each form."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.freezer.model_forms import (
    ModelSelection,
    freeze_model,
    original_function,
    resolve_model,
)


def test_a_tfx_model_artifact_resolves_to_its_serving_export(embedded_default):
    source = resolve_model(embedded_default.model_uri)

    assert source.form == "saved_model"
    assert source.path == os.path.join(embedded_default.model_uri, "Format-Serving")
    assert source.details == "TFX Model artifact"
    assert source.describe()["uri"] == embedded_default.model_uri


def test_a_directory_with_two_saved_models_is_never_chosen_silently(embedded_default, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(embedded_default.model_uri, model)
    shutil.copy(model / "Format-Serving" / "saved_model.pb", model / "saved_model.pb")

    with pytest.raises(UserInputError, match="holds two SavedModels") as raised:
        resolve_model(str(model))
    assert f"--model {model}/Format-Serving" in str(raised.value)


def test_a_path_that_is_no_model_is_refused_listing_what_is_there(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0")

    with pytest.raises(UserInputError, match=r"is not a model this tool reads.*weights\.bin"):
        resolve_model(str(tmp_path))
    with pytest.raises(UserInputError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))


def test_a_keras_file_freezes_and_its_baseline_runs_the_same_function(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="probs")(inputs))
    path = str(tmp_path / "model.keras")
    model.save(path)
    batch = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)

    source = resolve_model(path)
    frozen = freeze_model(source, ModelSelection())
    function, signature, keywords = original_function(source, ModelSelection())

    from components.common.graph_io import graph_def_callable

    assert source.form == "keras" and keywords is None
    assert [t.name for t in signature.inputs] == ["features"]
    (expected,) = [o.numpy() for o in function(batch).values()]
    (actual,) = graph_def_callable(frozen.graph_def, frozen.signature)(batch)
    np.testing.assert_allclose(actual, expected, atol=1e-6)
    np.testing.assert_allclose(actual, model(batch).numpy(), atol=1e-6)
    assert frozen.signature.outputs[0].activation == "softmax"


def test_a_tf1_checkpoint_is_found_and_frozen_with_its_output_nodes(tmp_path):
    from tests.freezer.test_tf1_checkpoint import OUTPUTS, write_tf1_model

    written = write_tf1_model(str(tmp_path / "ckpt"))
    selection = ModelSelection(output_nodes=tuple(OUTPUTS))

    source = resolve_model(written.directory)
    frozen = freeze_model(source, selection)
    restored, signature, _ = original_function(source, selection)

    assert source.form == "tf1_checkpoint" and source.path == written.prefix
    assert signature == frozen.signature
    outputs = [o.numpy() for o in restored(written.features, written.token_ids)]
    for name, value in zip([t.name for t in signature.outputs], outputs, strict=True):
        np.testing.assert_allclose(value, written.expected[name], atol=1e-5)
    with pytest.raises(UserInputError, match="output"):
        freeze_model(source, ModelSelection())  # A TF1 graph needs its output nodes named.
