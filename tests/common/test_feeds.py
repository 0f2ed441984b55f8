"""Feeding model inputs from tf.Example features: kinds, mapping, images, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.feeds import (
    KIND_IMAGE,
    KIND_INT,
    KIND_TF_EXAMPLE,
    ExampleRecords,
    FeedSettings,
    ImageDecoding,
    ModelFeeder,
    check_feature_map,
    decode_inputs,
    parse_feature_map,
    plan_inputs,
)
from components.common.signature import (
    ENCODING_TF_EXAMPLE,
    GraphSignature,
    TensorDescription,
)


def example(**features) -> bytes:
    """A serialized tf.Example; floats, ints and bytes become the matching list kinds."""
    import tensorflow as tf

    built = {}
    for name, values in features.items():
        values = list(np.asarray(values).reshape(-1)) if not isinstance(values, bytes) else [values]
        if isinstance(values[0], (bytes, np.bytes_)):
            built[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        elif isinstance(values[0], (float, np.floating)):
            built[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        else:
            built[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Example(features=tf.train.Features(feature=built)).SerializeToString()


def tensor(name: str, dtype: str, shape: tuple, encoding: str | None = None) -> TensorDescription:
    return TensorDescription(name, f"{name}:0", dtype, shape, encoding=encoding)


def png(pixels: np.ndarray) -> bytes:
    import tensorflow as tf

    return tf.io.encode_png(pixels.astype(np.uint8)).numpy()


def test_inputs_of_different_dtypes_are_fed_from_features_of_their_names():
    records = ExampleRecords(
        [example(age=[31.5], visits=[3]), example(age=[40.0], visits=[7])], "memory"
    )
    inputs = (tensor("age", "float32", (None, 1)), tensor("visits", "int64", (None,)))

    plans = plan_inputs(inputs, FeedSettings(), records)
    age, visits = decode_inputs(records, plans)

    assert age.dtype == np.float32 and age.tolist() == [[31.5], [40.0]]
    assert visits.dtype == np.int64 and visits.tolist() == [3, 7]
    assert plans[1].kind == KIND_INT


def test_feature_map_feeds_an_input_from_a_feature_of_another_name():
    records = ExampleRecords([example(pixels=np.arange(4.0))], "memory")
    settings = FeedSettings(feature_map=parse_feature_map("x=pixels"))

    (x,) = decode_inputs(
        records, plan_inputs([tensor("x", "float32", (None, 2, 2))], settings, records)
    )

    assert x.shape == (1, 2, 2) and x[0, 1, 1] == 3.0


def test_int64_features_feed_float_inputs_but_floats_never_feed_int_inputs():
    records = ExampleRecords([example(count=[4], ratio=[0.5])], "memory")

    (count,) = decode_inputs(
        records, plan_inputs([tensor("count", "float32", (None,))], FeedSettings(), records)
    )
    assert count.dtype == np.float32 and count[0] == 4.0
    with pytest.raises(UserInputError, match="float values cannot feed it") as raised:
        plan_inputs([tensor("ratio", "int64", (None,))], FeedSettings(), records)
    assert "--feature-map ratio=FEATURE" in str(raised.value)


def test_a_missing_feature_names_the_input_the_features_and_the_flag():
    records = ExampleRecords([example(age=[1.0], label=[1])], "/data/examples")

    with pytest.raises(UserInputError) as raised:
        plan_inputs([tensor("income", "float32", (None, 1))], FeedSettings(), records)

    message = str(raised.value)
    assert "'income'" in message and "/data/examples" in message
    assert "age (float_list), label (int64_list)" in message
    assert "--feature-map income=FEATURE" in message


def test_a_variable_length_feature_is_refused_naming_the_lengths():
    records = ExampleRecords([example(tokens=[1, 2, 3]), example(tokens=[4, 5])], "memory")
    plans = plan_inputs([tensor("tokens", "int64", (None, 3))], FeedSettings(), records)

    with pytest.raises(UserInputError, match="variable-length: its records hold 2, 3 values"):
        decode_inputs(records, plans)


def test_a_feature_of_the_wrong_size_is_refused():
    records = ExampleRecords([example(image=np.zeros(64, np.float32))], "memory")
    plans = plan_inputs([tensor("image", "float32", (None, 32, 32, 1))], FeedSettings(), records)

    with pytest.raises(UserInputError, match="64 float values per example, but it needs 1024"):
        decode_inputs(records, plans)


def test_png_bytes_decode_into_a_uint8_image_input_untouched():
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 1))
    records = ExampleRecords([example(image=png(pixels))], "memory")

    plans = plan_inputs([tensor("image", "uint8", (None, 8, 8, 1))], FeedSettings(), records)
    (image,) = decode_inputs(records, plans)

    assert plans[0].kind == KIND_IMAGE
    assert image.dtype == np.uint8 and np.array_equal(image[0], pixels)
    assert plans[0].describe()["image"] == {
        "resize_method": "bilinear",
        "size": [8, 8],
        "scaling": "none",
    }


def test_images_are_resized_to_the_input_and_scaled_to_unit_for_float_inputs():
    pixels = np.full((8, 8, 3), 255)
    records = ExampleRecords([example(photo=png(pixels))], "memory")
    settings = FeedSettings(feature_map={"image": "photo"}, image=ImageDecoding("nearest"))

    (image,) = decode_inputs(
        records, plan_inputs([tensor("image", "float32", (None, 16, 16, 3))], settings, records)
    )

    assert image.shape == (1, 16, 16, 3)
    np.testing.assert_allclose(image, 1.0)


def test_symmetric_scaling_maps_pixels_to_minus_one_one():
    records = ExampleRecords([example(image=png(np.zeros((4, 4, 1))))], "memory")
    settings = FeedSettings(image=ImageDecoding(scaling="symmetric"))

    (image,) = decode_inputs(
        records, plan_inputs([tensor("image", "float32", (None, 4, 4, 1))], settings, records)
    )

    np.testing.assert_allclose(image, -1.0)


def test_undecodable_image_bytes_are_refused_naming_the_record_and_feature():
    records = ExampleRecords([example(image=png(np.zeros((4, 4, 1)))), example(image=b"nope")], "m")
    plans = plan_inputs([tensor("image", "uint8", (None, 4, 4, 1))], FeedSettings(), records)

    with pytest.raises(UserInputError, match="Record #1 .* 4 bytes that do not decode"):
        decode_inputs(records, plans)


def test_a_tf_example_input_is_fed_the_serialized_records_themselves():
    records = ExampleRecords([example(age=[1.0]), example(age=[2.0])], "memory")
    signature_input = tensor("examples", "string", (None,), encoding=ENCODING_TF_EXAMPLE)

    plans = plan_inputs([signature_input], FeedSettings(), records)
    (serialized,) = decode_inputs(records, plans)

    assert plans[0].kind == KIND_TF_EXAMPLE
    assert list(serialized) == records.raw


def test_a_string_input_that_parses_no_example_needs_a_bytes_feature():
    records = ExampleRecords([example(age=[1.0])], "memory")

    with pytest.raises(UserInputError, match="feeds no ParseExample op"):
        plan_inputs([tensor("text", "string", (None,))], FeedSettings(), records)


def test_records_that_are_not_serialized_examples_are_refused():
    with pytest.raises(UserInputError, match="Record #0 .* is not a serialized tf.Example"):
        ExampleRecords([b"\x0a\xff\xff"], "/data/raw")


def test_feature_map_entries_for_inputs_the_model_lacks_are_refused():
    with pytest.raises(UserInputError, match="names inputs the model does not have: imgae"):
        check_feature_map(FeedSettings(feature_map={"imgae": "x"}), [tensor("image", "f", ())])


def test_feed_settings_round_trip_and_refuse_unknown_keys():
    settings = FeedSettings({"x": "y"}, ImageDecoding("area", (10, 12), "unit"))

    assert FeedSettings.from_json(settings.to_json()) == settings
    with pytest.raises(UserInputError, match="Unknown image decoding keys"):
        FeedSettings.from_json({"image": {"resize": "area"}})
    with pytest.raises(UserInputError, match="--image-resize"):
        ImageDecoding("cubic")


def test_model_feeder_feeds_a_model_core_from_the_preprocessing_outputs():
    class DoublingPreprocessing:
        """Stands in for the preprocessing graph: one core input, twice the feature."""

        signature = GraphSignature(
            "serving_default",
            (tensor("examples", "string", (None,), ENCODING_TF_EXAMPLE),),
            (tensor("x_xf", "float32", (None, 1)),),
        )
        output_names = ["x_xf"]

        def run(self, records):
            return [
                np.array(
                    [[2 * e.features.feature["x"].float_list.value[0]] for e in records.examples],
                    np.float32,
                )
            ]

    records = ExampleRecords([example(x=[1.5]), example(x=[4.0])], "memory")
    core = GraphSignature("serving_default", (tensor("x_xf", "float32", (None, 1)),), ())
    baseline = DoublingPreprocessing.signature
    feeder = ModelFeeder(FeedSettings(), DoublingPreprocessing())

    (core_input,) = feeder.inputs(core, records)
    (baseline_input,) = feeder.inputs(baseline, records)

    assert core_input.tolist() == [[3.0], [8.0]]
    assert list(baseline_input) == records.raw
    kinds = {d["input"]: d["kind"] for d in feeder.describe()}
    assert kinds == {"x_xf": "preprocessed", "examples": KIND_TF_EXAMPLE}
