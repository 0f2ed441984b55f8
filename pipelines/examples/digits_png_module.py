"""TFX module file of the `digits_png` case: Trainer's `run_fn` (there is no Transform).

A small CNN over sklearn's digits, imported by ImportExampleGen as tf.Examples holding
`image` (bytes_list: one PNG, H x W x 1 uint8) and `label` (int64_list). `run_fn` reads
the GZIP TFRecords with tf.data and decodes the PNGs itself. The exported SavedModel's
`serving_default` takes the decoded pixels, `image`: uint8 [None, H, W, 1], casts and
scales them to [0, 1] inside the model (a `Rescaling` layer) and returns
`{"outputs": [None, 10]}` softmax probabilities. H and W are read from the first training
image (32 x 32 for the data in datasets.py), so nothing here fixes the image size.

TFX imports this file by its import path (`run_fn=`) or, with `module_file=`, as a
top-level module from a wheel of this directory; it imports nothing from this project so
that both work. It uses `tf_keras` like the tabular modules, so that all three cases
export the same kind of Keras 2 SavedModel whatever Keras the calling process imported,
and turns AutoGraph off for it (see breast_cancer_module.py).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras

IMAGE_KEY = "image"
LABEL_KEY = "label"
NUM_CLASSES = 10
SEED = 1234
TRAIN_BATCH_SIZE = 32
EVAL_BATCH_SIZE = 64
LEARNING_RATE = 3e-3
FEATURE_SPEC = {
    IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}


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


def _files(file_patterns: list[str]) -> list[str]:
    """The files behind TFX's split patterns (`.../Split-train/*`), sorted for determinism."""
    files = sorted(path for pattern in file_patterns for path in tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"No files match {file_patterns}")
    return files


def _decode(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    features = tf.io.parse_single_example(serialized, FEATURE_SPEC)
    return tf.io.decode_png(features[IMAGE_KEY], channels=1), features[LABEL_KEY]


def _image_shape(files: list[str]) -> tuple[int, int, int]:
    """(H, W, 1) of the first image, so that the model fits whatever size was written."""
    dataset = tf.data.TFRecordDataset(files[:1], compression_type="GZIP").map(_decode)
    image, _ = next(iter(dataset))
    return tuple(int(d) for d in image.shape)


def _dataset(
    files: list[str], image_shape: tuple[int, int, int], batch_size: int, train: bool
) -> tf.data.Dataset:
    """(uint8 images, int64 labels) batches; training data shuffled (fixed seed) and repeated."""
    dataset = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .map(_decode)
        .map(lambda image, label: (tf.ensure_shape(image, image_shape), label))
        .cache()
    )
    if train:
        dataset = dataset.shuffle(4096, seed=SEED).repeat()
    return dataset.batch(batch_size)


def _build_model(image_shape: tuple[int, int, int]) -> tf_keras.Model:
    """Two conv/pool blocks and a softmax head: small, but real convolutions."""
    inputs = tf_keras.Input(shape=image_shape, dtype=tf.uint8, name=IMAGE_KEY)
    # Rescaling casts to float32 before scaling, so serving takes raw uint8 pixels.
    x = tf_keras.layers.Rescaling(1.0 / 255.0)(inputs)
    for filters in (8, 16):
        x = tf_keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = tf_keras.layers.MaxPooling2D()(x)
    x = tf_keras.layers.Flatten()(x)
    outputs = tf_keras.layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    model = tf_keras.Model(inputs=inputs, outputs=outputs, name="digits_png")
    model.compile(
        # No XLA for the update step: it only adds compile time for a model this small,
        # and leaves an untraced `_update_step_xla` function in the SavedModel.
        optimizer=tf_keras.optimizers.Adam(LEARNING_RATE, jit_compile=False),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def _serving_signature(model: tf_keras.Model, image_shape: tuple[int, int, int]) -> Any:
    """`serving_default`: uint8 images in, `{"outputs": probabilities}` out."""

    @tf.function(
        input_signature=[tf.TensorSpec(shape=[None, *image_shape], dtype=tf.uint8, name="image")],
        autograph=False,
    )
    def serve_images_fn(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": model(image)}

    return serve_images_fn


def run_fn(fn_args: Any) -> None:
    """Trains for `train_steps` batches, logs eval accuracy, exports to `serving_model_dir`.

    `fn_args` is TFX's `FnArgs`; it is not imported for the annotation because this
    module is loaded standalone.
    """
    from absl import logging

    _skip_autograph_for_tf_keras()
    tf_keras.utils.set_random_seed(SEED)
    train_files = _files(fn_args.train_files)
    image_shape = _image_shape(train_files)
    train = _dataset(train_files, image_shape, TRAIN_BATCH_SIZE, train=True)
    evaluation = _dataset(_files(fn_args.eval_files), image_shape, EVAL_BATCH_SIZE, train=False)
    model = _build_model(image_shape)
    model.fit(train, steps_per_epoch=fn_args.train_steps, epochs=1, verbose=0)
    metrics = model.evaluate(evaluation, steps=fn_args.eval_steps, verbose=0, return_dict=True)
    logging.info("digits_png eval metrics: %s", metrics)
    model.save(
        fn_args.serving_model_dir,
        save_format="tf",
        signatures={"serving_default": _serving_signature(model, image_shape)},
    )
