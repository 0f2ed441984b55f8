"""TFX module file of the `diabetes` case: Transform's `preprocessing_fn`, Trainer's `run_fn`.

A regression model of sklearn's diabetes progression target (25..346) on the 10 unscaled
numeric features, z-scored by Transform, plus the string feature `bmi_category` turned
into a vocabulary index (`compute_and_apply_vocabulary`, one OOV bucket) and one-hot
encoded in the model. The exported SavedModel follows TFX's penguin template:
`serving_default` takes serialized `tf.Example`s (`examples`: string [None]), parses them
with the raw feature spec minus the label, applies the Transform graph (`model.tft_layer`)
and returns `{"outputs": [None, 1]}`, the predicted target in its own units (one linear
output). A second signature, `transform_features`, returns the transformed features.

The network predicts the target's z-score and a fixed `Rescaling` layer maps it back
with the training split's label mean and standard deviation. Without it the output bias
alone would need thousands of Adam steps to reach the target's mean of ~150.

TFX imports this file by its import path (`run_fn=`/`preprocessing_fn=`) or, with
`module_file=`, as a top-level module from a wheel of this directory; it imports nothing
from this project so that both work. See breast_cancer_module.py for why it uses
`tf_keras` and turns AutoGraph off for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from tfx_bsl.public import tfxio

LABEL_KEY = "target"
CATEGORICAL_KEY = "bmi_category"
NUM_OOV_BUCKETS = 1
SEED = 1234
TRAIN_BATCH_SIZE = 32
EVAL_BATCH_SIZE = 64
HIDDEN_UNITS = 16
LEARNING_RATE = 1e-2


def _skip_autograph_for_tf_keras() -> None:
    """Tells AutoGraph not to convert `tf_keras` internals, as TF already does for `keras`.

    Process-wide and idempotent; tf_keras is written to run unconverted (it is the code
    that used to ship as `keras`). Uses TF's private AutoGraph config, hence the guard:
    without it training is only slower.
    """
    try:
        from tensorflow.python.autograph.core import config as autograph_config
    except ImportError:
        return
    rules = tuple(autograph_config.CONVERSION_RULES)
    if not any(getattr(r, "_prefix", None) == "tf_keras" for r in rules):
        autograph_config.CONVERSION_RULES = (autograph_config.DoNotConvert("tf_keras"), *rules)


def transformed_name(key: str) -> str:
    return f"{key}_xf"


def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Z-scores every numeric feature, indexes `bmi_category`, passes the label through.

    As in breast_cancer_module.py, the numeric columns are z-scored as one stacked tensor
    (`elementwise=True`) and split back into one `{name}_xf` feature each.
    """
    numeric_keys = sorted(set(inputs) - {LABEL_KEY, CATEGORICAL_KEY})
    # SchemaGen infers shape [1] for single-valued columns: inputs are [batch, 1].
    stacked = tf.concat([tf.reshape(inputs[key], [-1, 1]) for key in numeric_keys], axis=1)
    z_scores = tft.scale_to_z_score(stacked, elementwise=True)
    outputs = {transformed_name(key): z_scores[:, i : i + 1] for i, key in enumerate(numeric_keys)}
    outputs[transformed_name(CATEGORICAL_KEY)] = tft.compute_and_apply_vocabulary(
        inputs[CATEGORICAL_KEY], num_oov_buckets=NUM_OOV_BUCKETS, vocab_filename=CATEGORICAL_KEY
    )
    outputs[LABEL_KEY] = inputs[LABEL_KEY]
    return outputs


def _dataset(
    file_pattern: list[str],
    data_accessor: Any,
    tft_output: tft.TFTransformOutput,
    batch_size: int,
    num_epochs: int | None = None,
) -> tf.data.Dataset:
    """Transformed examples as (features, float label), each [batch, 1], shuffled (fixed seed).

    `num_epochs=None` repeats forever, as Keras' `steps_per_epoch` expects.
    """
    dataset = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size, label_key=LABEL_KEY, shuffle_seed=SEED, num_epochs=num_epochs
        ),
        tft_output.transformed_metadata.schema,
    )
    return dataset.map(lambda features, label: (features, tf.cast(label, tf.float32)))


def _label_mean_and_std(dataset: tf.data.Dataset) -> tuple[float, float]:
    """The mean and standard deviation of the labels of one pass over `dataset`."""
    labels = np.concatenate([label.numpy().reshape(-1) for _, label in dataset])
    return float(labels.mean()), float(labels.std())


def _build_model(
    tft_output: tft.TFTransformOutput, label_mean: float, label_std: float
) -> tf_keras.Model:
    """One small hidden layer, a linear unit, and a fixed rescale into the target's units."""
    categorical = transformed_name(CATEGORICAL_KEY)
    num_tokens = tft_output.vocabulary_size_by_name(CATEGORICAL_KEY) + NUM_OOV_BUCKETS
    # Every transformed feature is [batch, 1], as the transformed schema says.
    inputs = {
        name: tf_keras.Input(
            shape=(1,), name=name, dtype=tf.int64 if name == categorical else tf.float32
        )
        for name in sorted(tft_output.transformed_feature_spec())
        if name != LABEL_KEY
    }
    one_hot = tf_keras.layers.CategoryEncoding(num_tokens=num_tokens, output_mode="one_hot")
    x = tf_keras.layers.Concatenate()(
        [one_hot(t) if name == categorical else t for name, t in inputs.items()]
    )
    x = tf_keras.layers.Dense(HIDDEN_UNITS, activation="relu")(x)
    z = tf_keras.layers.Dense(1, name="target_z_score")(x)
    outputs = tf_keras.layers.Rescaling(scale=label_std, offset=label_mean, name="target")(z)
    model = tf_keras.Model(inputs=inputs, outputs=outputs, name="diabetes")
    model.compile(
        # No XLA for the update step: it only adds compile time for a model this small,
        # and leaves an untraced `_update_step_xla` function in the SavedModel.
        optimizer=tf_keras.optimizers.Adam(LEARNING_RATE, jit_compile=False),
        loss=tf_keras.losses.MeanSquaredError(),
        metrics=[tf_keras.metrics.MeanAbsoluteError(name="mae")],
    )
    return model


def _signatures(model: tf_keras.Model, tft_output: tft.TFTransformOutput) -> dict[str, Any]:
    """`serving_default` and `transform_features`, both on serialized tf.Examples.

    As in TFX's penguin template, with the feature specs computed outside the functions
    and `autograph=False` (see breast_cancer_module.py): both only save tracing time.
    """
    # Tracked as an attribute so the Transform graph's assets are saved with the model.
    model.tft_layer = tft_output.transform_features_layer()
    raw_feature_spec = tft_output.raw_feature_spec()
    serving_feature_spec = dict(raw_feature_spec)
    # The label is not present at serving time.
    serving_feature_spec.pop(LABEL_KEY)

    @tf.function(
        input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")],
        autograph=False,
    )
    def serve_tf_examples_fn(serialized_tf_examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(serialized_tf_examples, serving_feature_spec)
        transformed = model.tft_layer(parsed)
        return {"outputs": model(transformed)}

    @tf.function(
        input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")],
        autograph=False,
    )
    def transform_features_fn(serialized_tf_examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(serialized_tf_examples, raw_feature_spec)
        return model.tft_layer(parsed)

    return {"serving_default": serve_tf_examples_fn, "transform_features": transform_features_fn}


def run_fn(fn_args: Any) -> None:
    """Trains for `train_steps` batches, logs eval MSE/MAE, exports to `serving_model_dir`.

    `fn_args` is TFX's `FnArgs`; it is not imported for the annotation because this
    module is loaded standalone.
    """
    from absl import logging

    _skip_autograph_for_tf_keras()
    tf_keras.utils.set_random_seed(SEED)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    label_mean, label_std = _label_mean_and_std(
        _dataset(fn_args.train_files, fn_args.data_accessor, tft_output, 512, num_epochs=1)
    )
    train = _dataset(fn_args.train_files, fn_args.data_accessor, tft_output, TRAIN_BATCH_SIZE)
    evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tft_output, EVAL_BATCH_SIZE)
    model = _build_model(tft_output, label_mean, label_std)
    model.fit(train, steps_per_epoch=fn_args.train_steps, epochs=1, verbose=0)
    metrics = model.evaluate(evaluation, steps=fn_args.eval_steps, verbose=0, return_dict=True)
    logging.info(
        "diabetes eval metrics: %s (train label mean %.1f, std %.1f)",
        metrics,
        label_mean,
        label_std,
    )
    model.save(
        fn_args.serving_model_dir, save_format="tf", signatures=_signatures(model, tft_output)
    )
