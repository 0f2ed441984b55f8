"""The embedded default: a small CNN trained in seconds on scikit-learn's bundled digits.

Nothing is downloaded. `ensure_embedded_default(cache_dir)` returns the URIs of a TFX
`Model` artifact and an `Examples` artifact, training and writing them only when the
cache does not already hold this version::

    {cache_dir}/embedded_default-v2/
      model/Format-Serving/        # Keras ExportArchive SavedModel, signature serving_default
      examples/Split-train/        # the training digits: int8 calibration reads these
      examples/Split-eval/         # held-out digits, GZIP TFRecords of tf.Example
      READY                        # written last: a half-written cache is never reused

The model has BatchNormalization and Dropout on purpose, so the InferenceOptimizer has
training-only structure to strip and batch norms to fold.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np

# Bump when the model, data or export format changes so old caches are not reused.
EMBEDDED_DEFAULT_VERSION = "v2"
IMAGE_SIZE = 32  # 8x8 digits upsampled 4x.
NUM_CLASSES = 10
SEED = 1234
EVAL_FRACTION = 0.25


@dataclasses.dataclass(frozen=True)
class EmbeddedDefault:
    model_uri: str
    examples_uri: str
    eval_accuracy: float


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """Returns digits upsampled to 32x32x1 in [0, 1] and their labels, in bundled order."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # Pixel values are 0..16.
    scale = IMAGE_SIZE // images.shape[1]
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    return images[..., np.newaxis], digits.target.astype(np.int64)


def split_train_eval(
    images: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A deterministic shuffled split: (train_x, train_y, eval_x, eval_y)."""
    order = np.random.default_rng(SEED).permutation(len(labels))
    n_eval = int(len(labels) * EVAL_FRACTION)
    eval_idx, train_idx = order[:n_eval], order[n_eval:]
    return images[train_idx], labels[train_idx], images[eval_idx], labels[eval_idx]


def build_digits_cnn():  # -> keras.Model; keras imported lazily to keep the CLI fast.
    """Conv-BN-ReLU blocks, pooling, dropout and a softmax head."""
    import keras

    keras.utils.set_random_seed(SEED)
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    x = inputs
    for filters in (16, 32):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def train_embedded_default(directory: str, epochs: int = 15) -> EmbeddedDefault:
    """Trains the digits CNN and writes the `Model` and `Examples` artifacts under `directory`."""
    import keras
    import tensorflow as tf

    from components.common.examples_io import write_labelled_images

    tf.config.experimental.enable_op_determinism()
    images, labels = load_digit_images()
    train_x, train_y, eval_x, eval_y = split_train_eval(images, labels)
    model = build_digits_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(train_x, train_y, epochs=epochs, batch_size=32, shuffle=True, verbose=0)
    _, eval_accuracy = model.evaluate(eval_x, eval_y, verbose=0)

    model_uri = os.path.join(directory, "model")
    examples_uri = os.path.join(directory, "examples")
    model.export(os.path.join(model_uri, "Format-Serving"), format="tf_saved_model", verbose=False)
    write_labelled_images(examples_uri, train_x, train_y, split="train")
    write_labelled_images(examples_uri, eval_x, eval_y)
    return EmbeddedDefault(model_uri, examples_uri, float(eval_accuracy))


def ensure_embedded_default(cache_dir: str) -> EmbeddedDefault:
    """Returns the cached embedded default, training it first if the cache lacks it."""
    directory = os.path.join(cache_dir, f"embedded_default-{EMBEDDED_DEFAULT_VERSION}")
    ready_marker = os.path.join(directory, "READY")
    if os.path.exists(ready_marker):
        with open(ready_marker, encoding="utf-8") as f:
            accuracy = float(f.read().strip() or "nan")
        return EmbeddedDefault(
            os.path.join(directory, "model"), os.path.join(directory, "examples"), accuracy
        )
    # Train into a scratch folder and rename it into place, so an interrupted run
    # never leaves a cache that looks complete.
    scratch = directory + ".partial"
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    trained = train_embedded_default(scratch)
    with open(os.path.join(scratch, "READY"), "w", encoding="utf-8") as f:
        f.write(f"{trained.eval_accuracy:.6f}\n")
    shutil.rmtree(directory, ignore_errors=True)
    os.rename(scratch, directory)
    return ensure_embedded_default(cache_dir)
