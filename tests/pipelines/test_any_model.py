"""Models that are not the demo's shape, through the whole pipeline on BeamDagRunner.

Two inputs of different dtypes through every variant kind; a model with two signatures
benchmarked on the chosen one; a Keras file and a TF1 checkpoint as the input model.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.lineage.pipeline_runs import latest_report, run_pipeline_once
from tests.report_checks import assert_blessed_unless_starved

pytestmark = pytest.mark.slow

CLASSES = 3


def mixed_input_data(rows: int, seed: int) -> dict[str, np.ndarray]:
    """Float features and int token ids; the label depends on both."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, 6)).astype(np.float32)
    token_ids = rng.integers(0, 10, size=(rows, 4))
    score = features[:, 0] + (token_ids[:, 0] >= 5) * 1.5
    label = np.digitize(score, [-0.3, 0.9])
    return {"features": features, "token_ids": token_ids, "label": label}


@pytest.fixture(scope="module")
def mixed_input_model(tmp_path_factory):
    """A trained Keras model taking float32 features and int32 ids, and its Examples."""
    import keras

    from components.common.examples_io import write_examples

    root = tmp_path_factory.mktemp("mixed")
    keras.utils.set_random_seed(5)
    features = keras.Input((6,), name="features")
    token_ids = keras.Input((4,), dtype="int32", name="token_ids")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(10, 4)(token_ids))
    hidden = keras.layers.Dense(16, activation="relu")(
        keras.layers.Concatenate()([features, embedded])
    )
    model = keras.Model(
        [features, token_ids], keras.layers.Dense(CLASSES, activation="softmax")(hidden)
    )
    train = mixed_input_data(600, seed=1)
    model.compile("adam", "sparse_categorical_crossentropy")
    # 8 epochs gave 0.65 top-1 on the eval split, and 0.594 on the Benchmarker's subset
    # on the Zen 5 EPYC: under the 0.6 the test asks. 30 epochs give 0.91.
    model.fit([train["features"], train["token_ids"]], train["label"], epochs=30, verbose=0)
    model.export(str(root / "model"), format="tf_saved_model", verbose=False)
    examples = str(root / "examples")
    write_examples(examples, train, "train")
    write_examples(examples, mixed_input_data(300, seed=2), "eval")
    return str(root / "model"), examples


def test_a_model_with_two_inputs_of_different_dtypes_goes_through_every_variant_kind(
    tmp_path, mixed_input_model
):
    from components.variant_kinds import all_kinds

    model, examples = mixed_input_model
    tf_kinds = tuple(
        k.name
        for k in all_kinds()
        if k.producer in ("InferenceOptimizer", "Quantizer", "XlaCompiler")
    )

    run_pipeline_once(str(tmp_path), model, examples, variants=tf_kinds)

    report = latest_report(str(tmp_path))
    rows = {row["name"]: row for row in report["variants"]}
    assert set(rows) >= {
        "baseline",
        "frozen_graph",
        "optimized_graph",
        "tflite_float16",
        "tflite_dynamic_range",
        "tflite_int8",
        "weights_int8_graph",
        "onednn_int8",
        "xla_jit",
        "xla_aot",
    }
    for name, row in rows.items():
        # Every kind either ran on both inputs or says why it could not: never a crash.
        assert row["status"] == "ok" or row["failure_reason"], name
    for name in ("baseline", "frozen_graph", "tflite_float16", "tflite_int8"):
        assert rows[name]["status"] == "ok", (name, rows[name]["failure_reason"])
    for name in ("baseline", "frozen_graph", "tflite_float16"):
        assert rows[name]["metrics"]["top1"] > 0.6, name  # Clearly better than 1/3.
    assert rows["tflite_float16"]["agreement"] > 0.97
    fed = {entry["input"]: entry for entry in report["data"]["inputs"]}
    assert fed["token_ids"]["dtype"] == "int32" and fed["token_ids"]["kind"] == "int"
    assert fed["features"]["kind"] == "float"
    assert report["data"]["calibration"] == "split 'train'"


@pytest.fixture(scope="module")
def two_signature_model(tmp_path_factory, mixed_input_model):
    """`serving_default` returns probabilities; `logits` returns the logits before softmax."""
    import tensorflow as tf

    class TwoSignatures(tf.Module):
        def __init__(self) -> None:
            rng = np.random.default_rng(3)
            self.weights = tf.Variable(rng.normal(size=(6, CLASSES)).astype(np.float32))

        def _logits(self, features: tf.Tensor, token_ids: tf.Tensor) -> tf.Tensor:
            ids = tf.cast(tf.reduce_sum(token_ids, axis=1, keepdims=True), tf.float32)
            return tf.matmul(features, self.weights) + 0.01 * ids

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 6], tf.float32, "features"),
                tf.TensorSpec([None, 4], tf.int32, "token_ids"),
            ]
        )
        def probabilities(self, features, token_ids):
            return {"scores": tf.nn.softmax(self._logits(features, token_ids))}

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 6], tf.float32, "features"),
                tf.TensorSpec([None, 4], tf.int32, "token_ids"),
            ]
        )
        def logits(self, features, token_ids):
            return {"scores": self._logits(features, token_ids)}

    module = TwoSignatures()
    directory = str(tmp_path_factory.mktemp("two_signatures") / "model")
    tf.saved_model.save(
        module,
        directory,
        signatures={"serving_default": module.probabilities, "logits": module.logits},
    )
    return directory, mixed_input_model[1]


def test_the_chosen_signature_is_what_the_baseline_and_every_variant_run(
    tmp_path, two_signature_model
):
    model, examples = two_signature_model

    run_pipeline_once(
        str(tmp_path), model, examples, signature_key="logits", variants=("optimized_graph",)
    )

    report = latest_report(str(tmp_path))
    rows = {row["name"]: row for row in report["variants"]}
    assert report["settings"]["signature_key"] == "logits"
    # Logits are not probabilities: had the baseline run serving_default, the frozen
    # `logits` graph would differ from it by far more than float rounding.
    assert rows["frozen_graph"]["max_abs_diff"] < 1e-5
    assert rows["frozen_graph"]["agreement"] == 1.0
    assert rows["optimized_graph"]["max_abs_diff"] < 1e-4


def test_a_keras_file_goes_through_the_whole_pipeline(tmp_path, mixed_input_model):
    import keras

    saved_model, examples = mixed_input_model
    keras.utils.set_random_seed(2)
    features = keras.Input((6,), name="features")
    token_ids = keras.Input((4,), dtype="int32", name="token_ids")
    flat = keras.layers.Concatenate()(
        [features, keras.layers.Flatten()(keras.layers.Embedding(10, 2)(token_ids))]
    )
    model = keras.Model(
        [features, token_ids], keras.layers.Dense(CLASSES, activation="softmax")(flat)
    )
    path = str(tmp_path / "model.keras")
    model.save(path)

    run_pipeline_once(str(tmp_path / "run"), path, examples)

    report = latest_report(str(tmp_path / "run"))
    rows = {row["name"]: row for row in report["variants"]}
    assert rows["baseline"]["format"] == "keras"
    assert rows["baseline"]["uri"] == path
    for name in ("frozen_graph", "weights_int8_graph", "xla_jit"):
        assert rows[name]["status"] == "ok", (name, rows[name]["failure_reason"])
        assert rows[name]["agreement"] > 0.97, name
    assert_blessed_unless_starved(report)


def test_a_tf1_checkpoint_goes_through_the_whole_pipeline(tmp_path):
    from components.common.examples_io import write_examples
    from tests.freezer.test_tf1_checkpoint import OUTPUTS, write_tf1_model

    written = write_tf1_model(str(tmp_path / "checkpoint"))
    rng = np.random.default_rng(4)
    columns = {
        "features": rng.normal(size=(120, 4)).astype(np.float32),
        "token_ids": rng.integers(0, 6, size=120),
    }
    examples = str(tmp_path / "examples")
    write_examples(examples, columns, "train")
    write_examples(examples, columns, "eval")

    run_pipeline_once(
        str(tmp_path / "run"),
        written.directory,
        examples,
        output_nodes=tuple(OUTPUTS),
        primary_output="probabilities",
    )

    report = latest_report(str(tmp_path / "run"))
    rows = {row["name"]: row for row in report["variants"]}
    assert rows["baseline"]["format"] == "tf1_checkpoint"
    assert report["evaluation"]["labels"] is None  # Faithfulness only.
    assert rows["frozen_graph"]["status"] == "ok"
    assert rows["frozen_graph"]["agreement"] == 1.0
    assert rows["frozen_graph"]["max_abs_diff"] < 1e-5
