"""Freezing a Keras model file (`.keras`, or the legacy `.h5`) into a constant-only GraphDef.

A Keras file holds a model, not a serving signature, so one is made from the model's
inputs: a `tf.function` taking each input (named after its `keras.Input`, any batch
size, dtype kept) and returning a dict keyed by the model's output names.

>>> frozen = freeze_keras_file("/models/digits.keras")
>>> frozen.signature.input_tensor_names
"""

from __future__ import annotations

import os
import zipfile
from typing import TYPE_CHECKING, Any

from components.common.errors import UserInputError

if TYPE_CHECKING:
    import tensorflow as tf

    from components.freezer.freezing import FrozenModel

DEFAULT_SIGNATURE_KEY = "serving_default"
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def is_keras_file(path: str) -> bool:
    """Whether `path` names a Keras model file: a `.keras`, `.h5` or `.hdf5` file.

    Decided by the name, so that a missing `model.keras` is still taken for a Keras file
    and loading it reports it missing; a directory is never one.
    """
    import tensorflow as tf

    return path.lower().endswith(KERAS_SUFFIXES) and not tf.io.gfile.isdir(path)


def keras_serving_function(path: str) -> tf.types.experimental.ConcreteFunction:
    """Loads a Keras model file and returns a serving concrete function for it.

    The function takes the model's inputs as positional arguments sorted by input name
    (the order `GraphSignature` keeps), each a TensorSpec named after its `keras.Input`
    with the batch dimension None, and returns a dict keyed by the model's output names:
    the keys of a dict-output model, else the output layers' names.
    """
    import tensorflow as tf

    model = _load_model(path)
    inputs = _model_inputs(model, path)
    specs = [
        tf.TensorSpec(shape=(None, *t.shape[1:]), dtype=tf.as_dtype(t.dtype), name=t.name)
        for t in inputs
    ]
    order = sorted(range(len(specs)), key=lambda i: specs[i].name)
    structure = _input_structure(model, inputs)

    @tf.function(input_signature=[specs[i] for i in order])
    def serve(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        import keras

        flat: list[Any] = [None] * len(args)
        for position, index in enumerate(order):
            flat[index] = args[position]
        outputs = model(keras.tree.pack_sequence_as(structure, flat), training=False)
        if isinstance(outputs, dict):
            return {str(name): tensor for name, tensor in outputs.items()}
        flat_outputs = keras.tree.flatten(outputs)
        return dict(zip(_output_names(model, len(flat_outputs)), flat_outputs, strict=True))

    function = serve.get_concrete_function()
    # Keep the model alive as long as the function: it owns the variables.
    function._inference_optimizer_owner = model  # noqa: SLF001 - lifetime anchor only.
    return function


def freeze_keras_file(path: str, signature_key: str = DEFAULT_SIGNATURE_KEY) -> FrozenModel:
    """Freezes the model in a Keras file; the signature is `keras_serving_function`'s."""
    # Imported here: freezing.py imports this module to dispatch on the model's form.
    from components.freezer.freezing import freeze_function

    return freeze_function(keras_serving_function(path), signature_key)


def _load_model(path: str) -> Any:
    import keras
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        raise UserInputError(
            f"Keras model file {path!r} does not exist. Pass a file written by "
            f"model.save('model.keras') (or a legacy .h5 file)."
        )
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras and h5py raise many types; all mean "unreadable".
        raise UserInputError(
            f"Could not load the Keras model in {path!r}: {_problem(path, error)}. "
            f"Save it again from the model with model.save('model.keras') in Keras 3; "
            f"a model with custom layers needs them registered with "
            f"@keras.saving.register_keras_serializable, or export it with "
            f"model.export('saved_model_dir') and pass that SavedModel instead."
        ) from error


def _problem(path: str, error: BaseException) -> str:
    """What went wrong; Keras calls a `.keras` file that is not a zip archive 'not found'."""
    if path.lower().endswith(".keras") and os.path.isfile(path) and not zipfile.is_zipfile(path):
        return "the file is not a .keras (zip) archive; it looks corrupt or truncated"
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else 'no details'}"


def _model_inputs(model: Any, path: str) -> list[Any]:
    """The model's input KerasTensors; a model without defined inputs has no signature."""
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        raise UserInputError(
            f"The Keras model in {path!r} ({type(model).__name__}) has no defined inputs "
            f"(a subclassed model, or a Sequential model without a keras.Input), so there "
            f"is no signature to freeze. Build it with keras.Input layers and save it again, "
            f"or export it with model.export('saved_model_dir') and pass that SavedModel."
        )
    unsupported = [
        t.name for t in inputs if getattr(t, "sparse", False) or getattr(t, "ragged", False)
    ]
    if unsupported:
        raise UserInputError(
            f"The Keras model in {path!r} takes sparse or ragged inputs "
            f"({', '.join(unsupported)}), which a frozen graph cannot be fed. Give the "
            f"model dense inputs, or export it with model.export and pass that SavedModel."
        )
    return inputs


def _input_structure(model: Any, inputs: list[Any]) -> Any:
    """How the model takes its inputs: a tensor, a list, or a dict (as it was built)."""
    try:
        return model.input  # Functional models keep the structure they were built with.
    except (AttributeError, ValueError):
        return inputs[0] if len(inputs) == 1 else inputs


def _output_names(model: Any, count: int) -> list[str]:
    """Names for a model's outputs: its output layers' names, made unique."""
    names = [str(name) for name in (getattr(model, "output_names", None) or [])]
    if len(names) != count and count == 1 and getattr(model, "layers", None):
        names = [model.layers[-1].name]  # Sequential: the last layer is the output.
    if len(names) != count:
        names = [f"output_{i}" for i in range(count)]
    unique: list[str] = []
    for name in names:
        candidate, suffix = name, 1
        while candidate in unique:
            candidate, suffix = f"{name}_{suffix}", suffix + 1
        unique.append(candidate)
    return unique
