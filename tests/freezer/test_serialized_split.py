"""Splitting a serialized-Example signature into preprocessing and a model core."""

from __future__ import annotations

import numpy as np
import pytest

from components.common.errors import UserInputError
from tests.common.test_feeds import example

SIZES = [b"small", b"medium", b"large"]
COLORS = [b"red", b"green"]


def records(count: int = 12, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [
        example(
            age=[float(rng.normal(40, 10))],
            income=[float(rng.normal(5, 2))],
            size=SIZES[int(rng.integers(0, 3))] if i % 5 else b"gigantic",  # Unseen values.
            color=COLORS[int(rng.integers(0, 2))] if i % 4 else b"blue",
        )
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def transform_like_saved_model(tmp_path_factory) -> str:
    """What a TFX Trainer exports, made with plain TF: parse, Transform-style ops, Keras.

    Scaling with constants (tft.scale_to_z_score), a vocabulary lookup in a hash table
    (tft.compute_and_apply_vocabulary), one with out-of-vocabulary buckets, then a Keras
    model with an embedding.
    """
    import keras
    import tensorflow as tf

    class Exported(tf.Module):
        def __init__(self) -> None:
            self.sizes = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(SIZES, tf.constant([0, 1, 2], tf.int64)), -1
            )
            self.colors = tf.lookup.StaticVocabularyTable(
                tf.lookup.KeyValueTensorInitializer(COLORS, tf.constant([0, 1], tf.int64)), 1
            )
            keras.utils.set_random_seed(3)
            numeric = keras.Input((2,), name="numeric")
            size = keras.Input((1,), dtype="int64", name="size")
            color = keras.Input((1,), dtype="int64", name="color")
            embedded = keras.layers.Flatten()(keras.layers.Embedding(4, 3)(size + 1))
            colors = keras.layers.Flatten()(keras.layers.Embedding(3, 2)(color))
            hidden = keras.layers.Dense(8, activation="relu")(
                keras.layers.Concatenate()([numeric, embedded, colors])
            )
            output = keras.layers.Dense(1, activation="sigmoid")(hidden)
            self.model = keras.Model([numeric, size, color], output)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, serialized):
            spec = {
                "age": tf.io.FixedLenFeature([1], tf.float32),
                "income": tf.io.FixedLenFeature([1], tf.float32),
                "size": tf.io.FixedLenFeature([1], tf.string),
                "color": tf.io.FixedLenFeature([1], tf.string),
            }
            parsed = tf.io.parse_example(serialized, spec)
            numeric = tf.concat(
                [(parsed["age"] - 40.0) / 10.0, (parsed["income"] - 5.0) * 0.5], axis=1
            )
            size = self.sizes.lookup(parsed["size"])
            color = self.colors.lookup(parsed["color"])
            return {"probability": self.model([numeric, size, color])}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def transform_only(self, serialized):
            parsed = tf.io.parse_example(
                serialized, {"age": tf.io.FixedLenFeature([1], tf.float32)}
            )
            return {"age_xf": (parsed["age"] - 40.0) / 10.0}

    exported = Exported()
    directory = str(tmp_path_factory.mktemp("transform_like") / "model")
    tf.saved_model.save(
        exported,
        directory,
        signatures={"serving_default": exported.serve, "transform": exported.transform_only},
    )
    return directory


@pytest.fixture(scope="module")
def frozen(transform_like_saved_model):
    from components.freezer.freezing import freeze_saved_model

    return freeze_saved_model(transform_like_saved_model)


def original_outputs(saved_model_dir: str, batch: list[bytes]) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    return serve(examples=tf.constant(batch))["probability"].numpy()


def test_the_core_takes_dense_tensors_and_holds_no_parsing_strings_or_tables(frozen):
    import tensorflow as tf

    core_ops = {n.op for n in frozen.graph_def.node}
    string_types = {tf.string.as_datatype_enum, tf.resource.as_datatype_enum}

    assert not {o for o in core_ops if o.startswith(("Parse", "LookupTable", "StringTo"))}
    assert not any(v.type in string_types for n in frozen.graph_def.node for v in n.attr.values())
    inputs = {t.name: (t.dtype, t.shape) for t in frozen.signature.inputs}
    assert inputs["color_xf"] == ("int64", (None, 1))  # Named after the feature it comes from.
    assert sorted(d for d, _ in inputs.values()) == ["float32", "int64", "int64"]
    assert all(shape[0] is None for _, shape in inputs.values())


def test_the_original_signature_is_kept_with_its_example_input_marked(frozen):
    source = frozen.original_signature

    assert [(t.name, t.dtype, t.encoding) for t in source.inputs] == [
        ("examples", "string", "tf_example")
    ]
    assert source.outputs == frozen.signature.outputs
    assert source.outputs[0].activation == "sigmoid"


def test_preprocessing_then_core_equals_the_original_signature(
    frozen, transform_like_saved_model, tmp_path
):
    from components.common.feeds import ExampleRecords
    from components.common.graph_io import graph_def_callable
    from components.common.preprocessing import Preprocessing

    frozen.save(str(tmp_path))
    preprocessing = Preprocessing.load(str(tmp_path))  # Tables rebuilt from tables.npz.
    batch = records()

    core_inputs = preprocessing.run(ExampleRecords(batch, "memory"))
    (outputs,) = graph_def_callable(frozen.graph_def, frozen.signature)(*core_inputs)

    np.testing.assert_allclose(
        outputs, original_outputs(transform_like_saved_model, batch), atol=1e-6
    )
    assert preprocessing.output_names == [t.name for t in frozen.signature.inputs]
    sizes = sorted(t["size"] for t in preprocessing.tables)
    assert sizes == [2, 3]  # The two vocabularies, out-of-vocabulary values included above.


def test_preprocessing_stores_the_vocabularies_it_reads(frozen):
    tables = {
        tuple(sorted(t.keys.tolist())): dict(zip(t.keys.tolist(), t.values.tolist(), strict=True))
        for t in frozen.preprocessing.tables
    }

    assert tables[tuple(sorted(SIZES))] == {b"small": 0, b"medium": 1, b"large": 2}
    assert tables[tuple(sorted(COLORS))] == {b"red": 0, b"green": 1}


def test_a_signature_whose_output_is_preprocessing_alone_is_refused(transform_like_saved_model):
    from components.freezer.freezing import freeze_saved_model

    with pytest.raises(UserInputError, match="computed by the preprocessing part alone"):
        freeze_saved_model(transform_like_saved_model, "transform")


def test_a_raw_tensor_model_is_not_split(frozen_digits):
    assert frozen_digits.preprocessing is None
    assert frozen_digits.original_signature == frozen_digits.signature
