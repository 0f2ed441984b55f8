"""A trained digits CNN on which naive per-tensor int8 fails: one outlier channel.

    model, examples = write_outlier_digits(directory)  # a TFX Model and Examples

The classic failure of per-tensor activation ranges, built on purpose:

1. A small CNN (conv-ReLU, conv-ReLU, pooling, dense softmax; no batch norm, which
   would undo step 2) is trained on scikit-learn's bundled digits, as the embedded
   default is.
2. The most active output channel of the first convolution is scaled up by
   `OUTLIER_SCALE` (its kernel and bias), and the second convolution's weights reading
   that channel are scaled down by the same factor. ReLU is positively homogeneous, so
   the float model computes exactly the same function (up to float rounding).
3. In int8, the first convolution's output tensor gets one scale for all its channels,
   set by the outlier channel: the other channels fall into a handful of levels. And
   the second convolution's weights for the outlier channel are tiny beside its
   others, so its per-channel weight scale rounds them to zero.

Naive int8 then loses tens of points of top-1; putting the two convolutions back in
float restores it. tests/quantizer/test_tflite_accuracy_aware.py and
benchmarks/outlier_int8.py use it.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from pipelines.embedded_default import NUM_CLASSES, SEED, load_digit_images, split_train_eval

# Large enough that per-tensor int8 leaves the ordinary channels a few levels: their
# activations are O(1), the outlier's O(OUTLIER_SCALE).
OUTLIER_SCALE = 300.0
FIRST_CONV = "conv_outlier"
SECOND_CONV = "conv_reader"


@dataclasses.dataclass(frozen=True)
class OutlierDigits:
    model_uri: str  # A TFX Model artifact folder (Format-Serving/ inside).
    examples_uri: str  # Split-train (calibration) and Split-eval (held out).
    eval_accuracy: float  # The float model's top-1 on Split-eval, after the rescaling.


def build_outlier_digits_cnn():  # -> keras.Model
    import keras

    inputs = keras.Input((32, 32, 1), name="image")
    # Wide enough (about 10 M MACs per digit) that int8 kernels repay their quantize and
    # reorder steps: at 16-32-32 filters (2 M MACs), TF's per-call overhead hid the int8
    # speed-up (oneDNN int8 1.15 ms against fp32 1.12 ms a call; 1.11 against 1.39 here).
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name=FIRST_CONV)(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(128, 3, padding="same", activation="relu", name=SECOND_CONV)(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(128, 3, padding="same", activation="relu", name="conv_3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs)


def most_active_channel(model, images: np.ndarray) -> int:
    """The first conv's channel with the largest mean activation: a live one (a channel
    ReLU keeps at zero would carry its scale to nothing)."""
    import keras

    probe = keras.Model(model.inputs, model.get_layer(FIRST_CONV).output)
    activations = probe.predict(images, verbose=0)
    return int(np.argmax(activations.reshape(-1, activations.shape[-1]).mean(axis=0)))


def add_outlier_channel(model, channel: int, scale: float = OUTLIER_SCALE):
    """Scales `channel` of the first conv up by `scale` and its reader down (same function)."""
    first, second = model.get_layer(FIRST_CONV), model.get_layer(SECOND_CONV)
    kernel, bias = first.get_weights()
    kernel[..., channel] *= scale
    bias[channel] *= scale
    first.set_weights([kernel, bias])
    kernel, bias = second.get_weights()
    kernel[:, :, channel, :] /= scale
    second.set_weights([kernel, bias])


def train_outlier_digits(epochs: int = 12):  # -> (keras.Model, eval_x, eval_y, train_x, ...)
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(SEED)
    images, labels = load_digit_images()
    train_x, train_y, eval_x, eval_y = split_train_eval(images, labels)
    model = build_outlier_digits_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(train_x, train_y, epochs=epochs, batch_size=32, shuffle=True, verbose=0)
    add_outlier_channel(model, most_active_channel(model, train_x[:256]))
    return model, (train_x, train_y), (eval_x, eval_y)


def write_outlier_digits(directory: str, epochs: int = 12) -> OutlierDigits:
    """Trains, adds the outlier channel, and writes the Model and Examples artifacts."""
    from components.common.examples_io import write_labelled_images

    model, (train_x, train_y), (eval_x, eval_y) = train_outlier_digits(epochs)
    predicted = np.argmax(model.predict(eval_x, verbose=0), axis=1)
    model_uri = os.path.join(directory, "model")
    examples_uri = os.path.join(directory, "examples")
    model.export(os.path.join(model_uri, "Format-Serving"), format="tf_saved_model", verbose=False)
    write_labelled_images(examples_uri, train_x, train_y, split="train")
    write_labelled_images(examples_uri, eval_x, eval_y)
    return OutlierDigits(model_uri, examples_uri, float(np.mean(predicted == eval_y)))
