"""Keras model files in, frozen graph out: the model's outputs, names and dtypes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.graph_io import graph_def_callable
from components.freezer.keras_file import (
    freeze_keras_file,
    is_keras_file,
    keras_serving_function,
)

STATE_OPS = {"VarHandleOp", "ReadVariableOp", "VariableV2", "AssignVariableOp"}


@dataclasses.dataclass(frozen=True)
class KerasModelFiles:
    """One model saved in both formats, a batch for it, and what the model outputs."""

    paths: dict[str, str]
    features: np.ndarray
    token_ids: np.ndarray
    expected: dict[str, np.ndarray]


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory: pytest.TempPathFactory) -> KerasModelFiles:
    """A functional model: float and int32 inputs (the ints through an Embedding), two heads."""
    import keras

    features = keras.Input((3,), name="features")
    token_ids = keras.Input((2,), dtype="int32", name="token_ids")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(7, 2)(token_ids))
    hidden = keras.layers.Concatenate()(
        [keras.layers.Dense(4, activation="relu")(features), embedded]
    )
    probabilities = keras.layers.Dense(2, activation="softmax", name="probabilities")(hidden)
    score = keras.layers.Dense(1, name="score")(hidden)
    model = keras.Model([features, token_ids], [probabilities, score])
    directory = tmp_path_factory.mktemp("keras_model")
    paths = {suffix: str(directory / f"model{suffix}") for suffix in (".keras", ".h5")}
    for path in paths.values():
        model.save(path)
    rng = np.random.default_rng(3)
    batch_features = rng.normal(size=(5, 3)).astype(np.float32)
    batch_ids = rng.integers(0, 7, size=(5, 2)).astype(np.int32)
    probabilities_value, score_value = model([batch_features, batch_ids])
    return KerasModelFiles(
        paths=paths,
        features=batch_features,
        token_ids=batch_ids,
        expected={"probabilities": probabilities_value.numpy(), "score": score_value.numpy()},
    )


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_frozen_keras_file_gives_the_models_outputs(keras_model, suffix):
    frozen = freeze_keras_file(keras_model.paths[suffix])

    probabilities, score = graph_def_callable(frozen.graph_def, frozen.signature)(
        keras_model.features, keras_model.token_ids
    )

    np.testing.assert_allclose(probabilities, keras_model.expected["probabilities"], atol=1e-6)
    np.testing.assert_allclose(score, keras_model.expected["score"], atol=1e-6)
    assert not {node.op for node in frozen.graph_def.node} & STATE_OPS


def test_signature_takes_input_names_dtypes_and_output_names_from_the_model(keras_model):
    signature = freeze_keras_file(keras_model.paths[".keras"]).signature

    assert signature.signature_key == "serving_default"
    assert [(t.name, t.tensor_name, t.dtype, t.shape) for t in signature.inputs] == [
        ("features", "features:0", "float32", (None, 3)),
        ("token_ids", "token_ids:0", "int32", (None, 2)),
    ]
    assert [(t.name, t.dtype, t.shape) for t in signature.outputs] == [
        ("probabilities", "float32", (None, 2)),
        ("score", "float32", (None, 1)),
    ]


def test_serving_function_returns_outputs_keyed_by_output_layer_name(keras_model):
    import tensorflow as tf

    function = keras_serving_function(keras_model.paths[".h5"])

    outputs = function(tf.constant(keras_model.features), tf.constant(keras_model.token_ids))
    assert sorted(outputs) == ["probabilities", "score"]
    np.testing.assert_allclose(outputs["score"].numpy(), keras_model.expected["score"], atol=1e-6)


def test_inputs_are_ordered_by_name_whatever_order_the_model_takes_them(tmp_path):
    import keras

    zeta = keras.Input((1,), name="zeta")
    alpha = keras.Input((2,), dtype="int64", name="alpha")
    merged = keras.layers.Concatenate()([zeta, keras.ops.cast(alpha, "float32")])
    model = keras.Model({"z": zeta, "a": alpha}, {"total": keras.layers.Dense(1)(merged)})
    path = str(tmp_path / "dict_model.keras")
    model.save(path)
    batch = {"z": np.array([[1.0]], np.float32), "a": np.array([[2, 3]], np.int64)}

    frozen = freeze_keras_file(path)

    assert [(t.name, t.dtype) for t in frozen.signature.inputs] == [
        ("alpha", "int64"),
        ("zeta", "float32"),
    ]
    assert [t.name for t in frozen.signature.outputs] == ["total"]
    (total,) = graph_def_callable(frozen.graph_def, frozen.signature)(batch["a"], batch["z"])
    np.testing.assert_allclose(total, model(batch)["total"].numpy(), atol=1e-6)


def test_sequential_model_output_is_named_after_its_last_layer(tmp_path):
    import keras

    model = keras.Sequential(
        [keras.Input((4,), batch_size=8, name="pixels"), keras.layers.Dense(2, name="logits")]
    )
    path = str(tmp_path / "sequential.keras")
    model.save(path)

    signature = freeze_keras_file(path).signature

    assert [(t.name, t.shape) for t in signature.inputs] == [("pixels", (None, 4))]
    assert [(t.name, t.shape) for t in signature.outputs] == [("logits", (None, 2))]


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_corrupt_keras_file_is_refused_naming_the_path(tmp_path, keras_model, suffix):
    corrupt = tmp_path / f"corrupt{suffix}"
    with open(keras_model.paths[suffix], "rb") as f:
        corrupt.write_bytes(b"\x00garbage" + f.read()[:200])

    with pytest.raises(UserInputError, match="Could not load the Keras model") as error:
        freeze_keras_file(str(corrupt))

    assert str(corrupt) in str(error.value)
    assert "model.save('model.keras')" in str(error.value)


def test_corrupt_keras_archive_is_called_corrupt_not_missing(tmp_path):
    corrupt = tmp_path / "model.keras"
    corrupt.write_bytes(b"not a zip archive")

    with pytest.raises(UserInputError, match="not a .keras \\(zip\\) archive"):
        keras_serving_function(str(corrupt))


def test_missing_keras_file_is_reported_missing(tmp_path):
    missing = str(tmp_path / "model.keras")

    with pytest.raises(UserInputError, match="does not exist") as error:
        freeze_keras_file(missing)

    assert missing in str(error.value)


def test_keras_files_are_told_apart_by_their_suffix(tmp_path, keras_model):
    (tmp_path / "looks_like.keras").mkdir()

    assert is_keras_file(keras_model.paths[".keras"])
    assert is_keras_file(keras_model.paths[".h5"])
    assert is_keras_file(str(tmp_path / "weights.HDF5"))
    assert not is_keras_file(str(tmp_path / "looks_like.keras"))
    assert not is_keras_file(str(tmp_path / "saved_model"))
    assert not is_keras_file(str(tmp_path / "model.ckpt-100"))
