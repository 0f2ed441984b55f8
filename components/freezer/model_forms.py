"""The forms a model can come in, found by looking at the path: one small class each.

* `saved_model`: a SavedModel directory, or a TFX `Model` artifact (`Format-Serving/`);
  the baseline runs the chosen signature.
* `keras`: a `.keras` or `.h5` file; the baseline runs a serving function made from the
  model's inputs.
* `tf1_checkpoint`: a TF1 checkpoint directory or prefix with its `.meta` or
  `graph.pbtxt`, plus output nodes; the baseline runs the graph with its variables
  restored from the checkpoint.

    >>> source = resolve_model("/models/churn/7")           # ModelSource(form, path, ...)
    >>> frozen = freeze_model(source, ModelSelection("serving_default"))
    >>> function, signature = original_function(source, ModelSelection("serving_default"))

Which form and which file were used is never silent: `ModelSource.describe()` goes into
the Freezer's artifact and execution. Adding a form is one class with `@register_form`.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from components.common.errors import UserInputError
from components.common.signature import GraphSignature

if TYPE_CHECKING:
    from components.freezer.freezing import FrozenModel

DEFAULT_SIGNATURE_KEY = "serving_default"


@dataclasses.dataclass(frozen=True)
class ModelSelection:
    """Which function of a model to freeze: a signature, or a TF1 graph's nodes."""

    signature_key: str = DEFAULT_SIGNATURE_KEY
    output_nodes: tuple[str, ...] = ()  # TF1 checkpoints: the tensors to fetch.
    input_nodes: tuple[str, ...] = ()  # TF1 checkpoints: the tensors to feed ((): placeholders).

    def to_json(self) -> dict[str, Any]:
        return {
            "signature_key": self.signature_key,
            "output_nodes": list(self.output_nodes),
            "input_nodes": list(self.input_nodes),
        }


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """A model as found on disk: its form, the resolved path, and what `--model` said."""

    form: str
    path: str  # The SavedModel directory, the Keras file, or the checkpoint prefix.
    uri: str  # What the user passed.
    details: str = ""

    def describe(self) -> dict[str, str]:
        return {"form": self.form, "path": self.path, "uri": self.uri, "details": self.details}


class ModelForm(abc.ABC):
    """One form: how to recognise it, freeze it, and run the original for the baseline."""

    name: str = ""

    @abc.abstractmethod
    def find(self, path: str) -> ModelSource | None:
        """The source at `path` when it has this form; None when it does not.

        Raises UserInputError when it clearly is this form but broken or ambiguous.
        """

    @abc.abstractmethod
    def freeze(self, source: ModelSource, selection: ModelSelection) -> FrozenModel:
        """The frozen graph of the selected function."""

    @abc.abstractmethod
    def original_function(
        self, source: ModelSource, selection: ModelSelection
    ) -> tuple[Callable[..., Any], GraphSignature, list[str] | None]:
        """(callable, signature, keyword names or None for positional) of the un-frozen model."""


_FORMS: dict[str, ModelForm] = {}


def register_form(cls: type[ModelForm]) -> type[ModelForm]:
    """Class decorator adding a form; the order of registration is the order of detection."""
    if cls.name in _FORMS:
        raise ValueError(f"model form {cls.name!r} registered twice")
    _FORMS[cls.name] = cls()
    return cls


def form_names() -> list[str]:
    return list(_FORMS)


def get_form(name: str) -> ModelForm:
    try:
        return _FORMS[name]
    except KeyError:
        raise ValueError(f"unknown model form {name!r}; known: {', '.join(_FORMS)}") from None


def resolve_model(path: str) -> ModelSource:
    """Finds which form the model at `path` has; raises UserInputError naming what is there."""
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        raise UserInputError(
            f"Model path {path!r} does not exist. Pass --model a SavedModel directory "
            f"(holding saved_model.pb), a TFX Model artifact (holding "
            f"Format-Serving/saved_model.pb), a .keras/.h5 file, or a TF1 checkpoint "
            f"directory or prefix with its .meta graph."
        )
    for form in _FORMS.values():
        source = form.find(path)
        if source is not None:
            return source
    found = []
    if tf.io.gfile.isdir(path):
        found = sorted(tf.io.gfile.listdir(path))[:12]
    raise UserInputError(
        f"Model path {path!r} is not a model this tool reads: it holds no saved_model.pb "
        f"(neither directly nor under Format-Serving/), is no .keras/.h5 file, and holds no "
        f"TF1 checkpoint (found: {', '.join(n.rstrip('/') for n in found) or 'a file'}). "
        f"Pass a directory written by tf.saved_model.save or keras Model.export, a TFX "
        f"Trainer's model output, a Keras file, or a TF1 checkpoint with its graph."
    )


def mark_tf_example_inputs(function: Any, signature: GraphSignature) -> GraphSignature:
    """The signature with its string inputs marked `tf_example` when the function parses
    Examples (a ParseExample op anywhere in its graph or the functions it calls).

    The Freezer knows exactly which input feeds the parser (serialized_split); this is
    the cheaper reading the CLI's pre-flight check needs before anything is frozen.
    """
    import dataclasses

    from components.common.signature import ENCODING_TF_EXAMPLE
    from components.freezer.serialized_split import PARSE_OPS

    graph_def = function.graph.as_graph_def()
    ops = {n.op for n in graph_def.node}
    for library_function in graph_def.library.function:
        ops.update(n.op for n in library_function.node_def)
    if not ops & PARSE_OPS:
        return signature
    return dataclasses.replace(
        signature,
        inputs=tuple(
            dataclasses.replace(t, encoding=ENCODING_TF_EXAMPLE)
            if t.dtype == "string" and len(t.shape) == 1
            else t
            for t in signature.inputs
        ),
    )


def freeze_model(source: ModelSource, selection: ModelSelection) -> FrozenModel:
    """The frozen graph of the selected function, with portable_ops' exact rewrites."""
    return get_form(source.form).freeze(source, selection).with_portable_ops()


def original_function(
    source: ModelSource, selection: ModelSelection
) -> tuple[Callable[..., Any], GraphSignature, list[str] | None]:
    return get_form(source.form).original_function(source, selection)


@register_form
class KerasFile(ModelForm):
    """A `.keras` or legacy `.h5` file, loaded with Keras 3."""

    name = "keras"

    def find(self, path: str) -> ModelSource | None:
        from components.freezer.keras_file import is_keras_file

        return ModelSource(self.name, path, path) if is_keras_file(path) else None

    def freeze(self, source: ModelSource, selection: ModelSelection) -> FrozenModel:
        from components.freezer.keras_file import freeze_keras_file

        return freeze_keras_file(source.path, selection.signature_key)

    def original_function(
        self, source: ModelSource, selection: ModelSelection
    ) -> tuple[Callable[..., Any], GraphSignature, list[str] | None]:
        from components.freezer.freezing import signature_of_function
        from components.freezer.keras_file import keras_serving_function

        function = keras_serving_function(source.path)
        return function, signature_of_function(function, selection.signature_key), None


@register_form
class SavedModel(ModelForm):
    """A SavedModel directory or a TFX `Model` artifact holding one under Format-Serving/."""

    name = "saved_model"

    def find(self, path: str) -> ModelSource | None:
        import os

        import tensorflow as tf

        from components.freezer.freezing import TFX_SERVING_MODEL_DIR, resolve_saved_model_dir

        if not tf.io.gfile.isdir(path):
            return None
        layouts = (os.path.join(path, TFX_SERVING_MODEL_DIR), path)
        if not any(tf.io.gfile.exists(os.path.join(p, "saved_model.pb")) for p in layouts):
            return None
        resolved = resolve_saved_model_dir(path)  # Refuses two SavedModels in one place.
        details = "TFX Model artifact" if resolved != path else "SavedModel directory"
        return ModelSource(self.name, resolved, path, details)

    def freeze(self, source: ModelSource, selection: ModelSelection) -> FrozenModel:
        from components.freezer.freezing import freeze_function, load_serving_function

        function = load_serving_function(source.path, selection.signature_key)
        return freeze_function(function, selection.signature_key)

    def original_function(
        self, source: ModelSource, selection: ModelSelection
    ) -> tuple[Callable[..., Any], GraphSignature, list[str] | None]:
        from components.freezer.freezing import load_serving_function, signature_of_function

        function = load_serving_function(source.path, selection.signature_key)
        signature = signature_of_function(function, selection.signature_key)
        return function, signature, [t.name for t in signature.inputs]


@register_form
class Tf1Checkpoint(ModelForm):
    """A TF1 `Saver` checkpoint plus its graph (`.meta` or `graph.pbtxt`) and output nodes."""

    name = "tf1_checkpoint"

    def find(self, path: str) -> ModelSource | None:
        from components.freezer.tf1_checkpoint import find_tf1_checkpoint

        checkpoint = find_tf1_checkpoint(path)
        if checkpoint is None:
            return None
        return ModelSource(self.name, checkpoint.checkpoint_prefix, path, checkpoint.describe())

    def _checkpoint(self, source: ModelSource) -> Any:
        from components.freezer.tf1_checkpoint import find_tf1_checkpoint

        checkpoint = find_tf1_checkpoint(source.uri)
        assert checkpoint is not None  # resolve_model found it there.
        return checkpoint

    def freeze(self, source: ModelSource, selection: ModelSelection) -> FrozenModel:
        from components.freezer.tf1_checkpoint import freeze_tf1_checkpoint

        return freeze_tf1_checkpoint(
            self._checkpoint(source),
            list(selection.output_nodes),
            selection.input_nodes or None,
            selection.signature_key,
        )

    def original_function(
        self, source: ModelSource, selection: ModelSelection
    ) -> tuple[Callable[..., Any], GraphSignature, list[str] | None]:
        from components.freezer.tf1_checkpoint import tf1_checkpoint_function

        restored = tf1_checkpoint_function(
            self._checkpoint(source),
            list(selection.output_nodes),
            selection.input_nodes or None,
            selection.signature_key,
        )
        return restored, restored.signature, None
