"""Freezing a SavedModel's serving signature into a constant-only GraphDef.

>>> frozen = freeze_saved_model("/models/digits/Format-Serving")
>>> frozen.graph_def, frozen.signature.input_tensor_names
>>> frozen.save("/artifacts/frozen_graph/3")

A signature that takes serialized tf.Examples (a TFX Trainer's `serving_default`) is
split into its preprocessing part and a model core (`serialized_split.py`): `graph_def`
and `signature` are then the core, `preprocessing` the rest, and `source_signature`
what the original signature takes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from components.common.errors import UserInputError
from components.common.signature import GraphSignature, TensorDescription

if TYPE_CHECKING:
    import tensorflow as tf

    from components.common.preprocessing import PreprocessingGraph

DEFAULT_SIGNATURE_KEY = "serving_default"
# The layout of TFX's `Model` artifact: the servable export sits in this folder.
TFX_SERVING_MODEL_DIR = "Format-Serving"


# Beside graph.pb: the original signature, as the baseline model takes it.
SOURCE_SIGNATURE_FILENAME = "source_signature.json"
_ACTIVATIONS = {"Softmax": "softmax", "Sigmoid": "sigmoid"}


@dataclasses.dataclass
class FrozenModel:
    """A frozen graph and the description of its inputs and outputs."""

    graph_def: tf.compat.v1.GraphDef
    signature: GraphSignature
    # The signature as the original model takes it; differs from `signature` after a split.
    source_signature: GraphSignature | None = None
    preprocessing: PreprocessingGraph | None = None
    # Exact rewrites that made the graph runnable beyond TF (portable_ops.py): name -> count.
    portable_rewrites: dict[str, int] = dataclasses.field(default_factory=dict)

    def with_portable_ops(self) -> FrozenModel:
        """This model with portable_ops' exact rewrites applied to its graph."""
        from components.freezer.portable_ops import make_portable

        graph_def, counts = make_portable(self.graph_def, self.signature.output_op_names)
        merged = dict(self.portable_rewrites)
        for name, count in counts.items():
            merged[name] = merged.get(name, 0) + count
        return dataclasses.replace(self, graph_def=graph_def, portable_rewrites=merged)

    @property
    def original_signature(self) -> GraphSignature:
        return self.source_signature or self.signature

    def save(self, directory: str) -> None:
        """Writes graph.pb, signature.json, source_signature.json and preprocessing/."""
        import json

        import tensorflow as tf

        from components.common.graph_io import save_graph_def

        save_graph_def(self.graph_def, directory)
        self.signature.save(directory)
        with tf.io.gfile.GFile(os.path.join(directory, SOURCE_SIGNATURE_FILENAME), "w") as f:
            f.write(json.dumps(self.original_signature.to_json(), indent=2) + "\n")
        if self.preprocessing is not None:
            self.preprocessing.save(directory)


def load_source_signature(directory: str) -> GraphSignature | None:
    """The original signature a Freezer artifact recorded (None for older artifacts)."""
    import json

    import tensorflow as tf

    path = os.path.join(directory, SOURCE_SIGNATURE_FILENAME)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return GraphSignature.from_json(json.loads(f.read()))


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
    candidates = [
        candidate
        for candidate in (os.path.join(path, TFX_SERVING_MODEL_DIR), path)
        if tf.io.gfile.exists(os.path.join(candidate, "saved_model.pb"))
    ]
    if len(candidates) > 1:
        raise UserInputError(
            f"Model path {path!r} holds two SavedModels: {path}/saved_model.pb and "
            f"{candidates[0]}/saved_model.pb. Which one to use is never guessed: pass "
            f"--model {candidates[0]} (the TFX Model artifact's servable export) or move the "
            f"other one away."
        )
    if candidates:
        return candidates[0]
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
    """Maps a signature's named inputs/outputs to tensor names in the frozen graph.

    The frozen function's inputs are the signature's arguments first, then any resource
    it still captures (lookup tables, which freezing cannot fold).
    """
    import tensorflow as tf

    input_specs = tf.nest.flatten(function.structured_input_signature)
    structured_outputs = function.structured_outputs
    if not isinstance(structured_outputs, dict):
        # A plain tf.function returns a tensor or a list; name outputs by position.
        flat = tf.nest.flatten(structured_outputs)
        structured_outputs = {f"output_{i}": spec for i, spec in enumerate(flat)}
    output_names = sorted(structured_outputs)  # nest.flatten order for dicts.
    output_specs = [structured_outputs[name] for name in output_names]
    graph_def = frozen_function.graph.as_graph_def()
    inputs = tuple(
        TensorDescription(
            name=spec.name,
            tensor_name=tensor.name,
            dtype=spec.dtype.name,
            shape=tuple(spec.shape.as_list()),
        )
        for spec, tensor in zip(
            input_specs, frozen_function.inputs[: len(input_specs)], strict=True
        )
    )
    outputs = tuple(
        TensorDescription(
            name=name,
            tensor_name=tensor.name,
            dtype=spec.dtype.name,
            shape=tuple(spec.shape.as_list()),
            activation=output_activation(graph_def, tensor.name),
        )
        for name, spec, tensor in zip(
            output_names, output_specs, frozen_function.outputs, strict=True
        )
    )
    return GraphSignature(signature_key=signature_key, inputs=inputs, outputs=outputs)


def output_activation(graph_def: tf.compat.v1.GraphDef, tensor_name: str) -> str | None:
    """ "softmax" or "sigmoid" when the tensor comes from one (through Identity ops)."""
    nodes = {node.name: node for node in graph_def.node}
    name = tensor_name.split(":")[0]
    for _ in range(len(nodes)):
        node = nodes.get(name)
        if node is None:
            return None
        if node.op in _ACTIVATIONS:
            return _ACTIVATIONS[node.op]
        data_inputs = [i for i in node.input if not i.startswith("^")]
        if node.op != "Identity" or not data_inputs:
            return None
        name = data_inputs[0].split(":")[0]
    return None


def freeze_function(
    function: tf.types.experimental.ConcreteFunction, signature_key: str
) -> FrozenModel:
    """Folds a concrete function's variables into constants; splits off preprocessing.

    A function that takes strings (serialized Examples, above all) or reads lookup tables
    is split into preprocessing and a model core (see serialized_split.py).
    """
    from tensorflow.python.framework import convert_to_constants

    from components.freezer import serialized_split
    from components.freezer.function_inlining import inline_function_calls

    frozen_function = convert_to_constants.convert_variables_to_constants_v2(function)
    graph_def = frozen_function.graph.as_graph_def()
    signature = describe_signature(function, frozen_function, signature_key)
    if not serialized_split.needs_split(graph_def, signature):
        return FrozenModel(graph_def=graph_def, signature=signature)
    # A TFX Transform layer stays behind a function call that freezing did not inline;
    # its lookups must be in the graph itself to be cut off with the parsing.
    graph_def = inline_function_calls(graph_def)
    tables = serialized_split.export_lookup_tables(function, frozen_function, graph_def)
    split = serialized_split.split_preprocessing(graph_def, signature, tables)
    return FrozenModel(
        graph_def=split.core_graph_def,
        signature=split.core_signature,
        source_signature=_with_encodings(signature, split.preprocessing.signature),
        preprocessing=split.preprocessing,
    )


def _with_encodings(signature: GraphSignature, preprocessing: GraphSignature) -> GraphSignature:
    """The original signature, its serialized-Example inputs marked as such."""
    encodings = {t.name: t.encoding for t in preprocessing.inputs}
    return dataclasses.replace(
        signature,
        inputs=tuple(
            dataclasses.replace(t, encoding=encodings.get(t.name, t.encoding))
            for t in signature.inputs
        ),
    )


def freeze_saved_model(path: str, signature_key: str = DEFAULT_SIGNATURE_KEY) -> FrozenModel:
    """Freezes one signature of a SavedModel (or TFX `Model` artifact) at `path`.

    The same graph the Freezer writes: split when the signature takes strings, with the
    portable rewrites applied.
    """
    saved_model_dir = resolve_saved_model_dir(path)
    function = load_serving_function(saved_model_dir, signature_key)
    return freeze_function(function, signature_key).with_portable_ops()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no details"


def signature_of_function(
    function: Any, signature_key: str = DEFAULT_SIGNATURE_KEY
) -> GraphSignature:
    """A GraphSignature for a signature concrete function (tensor names are its own)."""
    import tensorflow as tf

    input_specs = tf.nest.flatten(function.structured_input_signature)
    output_names = sorted(function.structured_outputs)
    return GraphSignature(
        signature_key=signature_key,
        inputs=tuple(
            TensorDescription(s.name, f"{s.name}:0", s.dtype.name, tuple(s.shape.as_list()))
            for s in input_specs
        ),
        outputs=tuple(
            TensorDescription(
                name,
                f"{name}:0",
                function.structured_outputs[name].dtype.name,
                tuple(function.structured_outputs[name].shape.as_list()),
            )
            for name in output_names
        ),
    )
