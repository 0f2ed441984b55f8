"""Freezing a SavedModel's serving signature into a constant-only GraphDef.

>>> frozen = freeze_saved_model("/models/digits/Format-Serving")
>>> frozen.graph_def, frozen.signature.input_tensor_names
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

from components.common.errors import UserInputError
from components.common.signature import GraphSignature, TensorDescription

if TYPE_CHECKING:
    import tensorflow as tf

DEFAULT_SIGNATURE_KEY = "serving_default"
# The layout of TFX's `Model` artifact: the servable export sits in this folder.
TFX_SERVING_MODEL_DIR = "Format-Serving"


@dataclasses.dataclass
class FrozenModel:
    """A frozen graph and the description of its inputs and outputs."""

    graph_def: tf.compat.v1.GraphDef
    signature: GraphSignature


def resolve_saved_model_dir(path: str) -> str:
    """Finds the SavedModel inside a TFX `Model` artifact, or accepts a plain SavedModel.

    Raises UserInputError naming the path when neither layout is there.
    """
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        raise UserInputError(
            f"Model path {path!r} does not exist. Pass --model a SavedModel directory "
            f"(holding saved_model.pb) or a TFX Model artifact (holding "
            f"{TFX_SERVING_MODEL_DIR}/saved_model.pb)."
        )
    for candidate in (os.path.join(path, TFX_SERVING_MODEL_DIR), path):
        if tf.io.gfile.exists(os.path.join(candidate, "saved_model.pb")):
            return candidate
    raise UserInputError(
        f"Model path {path!r} holds no saved_model.pb, neither directly nor under "
        f"{TFX_SERVING_MODEL_DIR}/. Pass a directory written by tf.saved_model.save, "
        f"keras Model.export, or a TFX Trainer's model output."
    )


def load_serving_function(
    saved_model_dir: str, signature_key: str = DEFAULT_SIGNATURE_KEY
) -> tf.types.experimental.ConcreteFunction:
    """Loads a SavedModel and returns the concrete function of one signature.

    Raises UserInputError when the SavedModel cannot be read or lacks the signature.
    """
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(saved_model_dir)
    except Exception as error:  # TF raises many types for corrupt files; all mean "unreadable".
        raise UserInputError(
            f"Could not load the SavedModel at {saved_model_dir!r}: "
            f"{type(error).__name__}: {_first_line(error)}. The directory looks corrupt "
            f"or incomplete; re-export the model (for example with keras Model.export)."
        ) from error
    signatures = dict(loaded.signatures)
    if signature_key not in signatures:
        available = ", ".join(sorted(signatures)) or "none"
        raise UserInputError(
            f"The SavedModel at {saved_model_dir!r} has no signature {signature_key!r} "
            f"(available: {available}). Pass --signature with one of those, or export "
            f"the model with a serving signature."
        )
    function = signatures[signature_key]
    # Keep the loaded object alive as long as the function: it owns the variables.
    function._inference_optimizer_owner = loaded  # noqa: SLF001 - lifetime anchor only.
    return function


def describe_signature(
    function: tf.types.experimental.ConcreteFunction,
    frozen_function: tf.types.experimental.ConcreteFunction,
    signature_key: str,
) -> GraphSignature:
    """Maps a signature's named inputs/outputs to tensor names in the frozen graph."""
    import tensorflow as tf

    input_specs = tf.nest.flatten(function.structured_input_signature)
    output_names = sorted(function.structured_outputs)  # nest.flatten order for dicts.
    output_specs = [function.structured_outputs[name] for name in output_names]
    inputs = tuple(
        TensorDescription(
            name=spec.name,
            tensor_name=tensor.name,
            dtype=spec.dtype.name,
            shape=tuple(spec.shape.as_list()),
        )
        for spec, tensor in zip(input_specs, frozen_function.inputs, strict=True)
    )
    outputs = tuple(
        TensorDescription(
            name=name,
            tensor_name=tensor.name,
            dtype=spec.dtype.name,
            shape=tuple(spec.shape.as_list()),
        )
        for name, spec, tensor in zip(
            output_names, output_specs, frozen_function.outputs, strict=True
        )
    )
    return GraphSignature(signature_key=signature_key, inputs=inputs, outputs=outputs)


def freeze_function(
    function: tf.types.experimental.ConcreteFunction, signature_key: str
) -> FrozenModel:
    """Folds a concrete function's variables into constants."""
    from tensorflow.python.framework import convert_to_constants

    frozen_function = convert_to_constants.convert_variables_to_constants_v2(function)
    graph_def = frozen_function.graph.as_graph_def()
    signature = describe_signature(function, frozen_function, signature_key)
    return FrozenModel(graph_def=graph_def, signature=signature)


def freeze_saved_model(path: str, signature_key: str = DEFAULT_SIGNATURE_KEY) -> FrozenModel:
    """Freezes one signature of a SavedModel (or TFX `Model` artifact) at `path`."""
    saved_model_dir = resolve_saved_model_dir(path)
    function = load_serving_function(saved_model_dir, signature_key)
    return freeze_function(function, signature_key)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no details"
