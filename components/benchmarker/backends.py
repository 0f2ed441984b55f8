"""Benchmark backends: one per model format, found by the artifact's `format` property.

The interface is LoadGen's system-under-test, cut down: `load` a variant, `prepare` a
batch (conversion to the runtime's tensors happens here, outside the timed region),
`run` one prepared batch, and `describe` what ran. Adding a format means one class
with `@register_backend("name")`; registering a name twice is an error, so no
if/elif chain grows and no two backends fight over a format.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from components.common.signature import GraphSignature, TensorDescription
from components.freezer.model_forms import ModelSelection

FORMAT_SAVED_MODEL = "saved_model"
FORMAT_GRAPHDEF = "graphdef"
FORMAT_TFLITE = "tflite"
FORMAT_XLA_JIT = "xla_jit_saved_model"
FORMAT_XLA_AOT = "xla_aot"
FORMAT_NULL = "null"
# The preprocessing part of a split serialized-Example signature (a FrozenGraph artifact).
FORMAT_PREPROCESSING = "preprocessing"
DEFAULT_SIGNATURE_KEY = "serving_default"
# Baselines of the other model forms (components/freezer/model_forms.py names them so).
FORMAT_KERAS = "keras"
FORMAT_TF1_CHECKPOINT = "tf1_checkpoint"


@dataclasses.dataclass(frozen=True)
class ThreadSettings:
    """Thread counts every backend honours; recorded with each result."""

    intra_op: int = 2
    inter_op: int = 1
    tflite: int = 2


class LoadedVariant(abc.ABC):
    """A model ready to run, for one variant."""

    #: The only batch size the variant accepts, or None when any batch works.
    fixed_batch_size: int | None = None
    #: Where it runs, e.g. "CPU:0" or "GPU:0".
    device: str = "CPU:0"

    @abc.abstractmethod
    def prepare(self, inputs: Sequence[np.ndarray]) -> Any:
        """Converts numpy inputs (signature order) to what `run` takes; not timed."""

    @abc.abstractmethod
    def run(self, prepared: Any) -> list[np.ndarray]:
        """Runs one batch and returns numpy outputs in signature order; timed."""

    def describe(self) -> dict[str, Any]:
        return {"device": self.device, "fixed_batch_size": self.fixed_batch_size}

    def supports_batch(self, batch_size: int) -> bool:
        return self.fixed_batch_size is None or self.fixed_batch_size == batch_size

    def batch_size_for(self, requested: int) -> int:
        """The batch size to use when `requested` rows should go through at once."""
        return self.fixed_batch_size or requested


class Backend(abc.ABC):
    """Loads variants of one format."""

    format: str = ""

    @abc.abstractmethod
    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        """Loads the variant stored at `uri` (an artifact URI)."""

    def for_selection(self, selection: ModelSelection) -> Backend:
        """This backend, loading the selected function where a format holds several
        (a SavedModel's signatures, a TF1 graph's output nodes)."""
        return self

    def signature(self, uri: str, signature_key: str = DEFAULT_SIGNATURE_KEY) -> GraphSignature:
        """The variant's inputs/outputs; most formats keep `signature.json` beside the model.

        `signature_key` matters only for formats that hold several signatures (a SavedModel).
        """
        return GraphSignature.load(uri)


_BACKENDS: dict[str, Backend] = {}


def register_backend(model_format: str) -> Callable[[type[Backend]], type[Backend]]:
    """Class decorator adding a backend for `model_format` to the registry."""

    def decorate(cls: type[Backend]) -> type[Backend]:
        if model_format in _BACKENDS:
            raise ValueError(
                f"backend for format {model_format!r} registered twice: "
                f"{type(_BACKENDS[model_format]).__name__} and {cls.__name__}"
            )
        cls.format = model_format
        _BACKENDS[model_format] = cls()
        return cls

    return decorate


def backend_for(model_format: str) -> Backend:
    """The backend registered for a format; raises naming the known formats."""
    try:
        return _BACKENDS[model_format]
    except KeyError:
        raise ValueError(
            f"no benchmark backend for format {model_format!r}; known: {sorted(_BACKENDS)}"
        ) from None


def known_formats() -> list[str]:
    return sorted(_BACKENDS)


DEVICE_AUTO = "auto"


def select_device(requested: str, visible_gpus: Sequence[str]) -> str:
    """The TF device to benchmark on: `auto` takes the first visible GPU, else the CPU.

    `requested` may also name a device (`CPU:0`, `GPU:1`); asking for a GPU that is not
    visible is an error rather than a silent fall-back to the CPU, because the figures
    would then describe different hardware than the user asked about.
    """
    if requested == DEVICE_AUTO:
        return "GPU:0" if visible_gpus else "CPU:0"
    kind, _, index = requested.partition(":")
    if kind.upper() not in ("CPU", "GPU") or not index.isdigit():
        raise ValueError(f"device must be 'auto', 'CPU:N' or 'GPU:N', got {requested!r}")
    if kind.upper() == "GPU" and int(index) >= len(visible_gpus):
        raise ValueError(
            f"device {requested!r} was requested but {len(visible_gpus)} GPU(s) are visible"
        )
    return f"{kind.upper()}:{index}"


def visible_gpus() -> list[str]:
    """Names of the GPUs TensorFlow can see (imports TF)."""
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def _tf_device(device: str) -> str:
    return f"/device:{device}"


class _TensorFlowFunctionVariant(LoadedVariant):
    """Any TF concrete function called in graph mode, positional inputs."""

    def __init__(self, function: Callable[..., Any], device: str, keyword_names: list[str] | None):
        self._function = function
        self._keyword_names = keyword_names
        self.device = device

    def prepare(self, inputs: Sequence[np.ndarray]) -> Any:
        import tensorflow as tf

        with tf.device(_tf_device(self.device)):
            return [tf.identity(tf.constant(x)) for x in inputs]

    def run(self, prepared: Any) -> list[np.ndarray]:
        import tensorflow as tf

        with tf.device(_tf_device(self.device)):
            if self._keyword_names is None:
                outputs = self._function(*prepared)
            else:
                outputs = self._function(**dict(zip(self._keyword_names, prepared, strict=True)))
        if isinstance(outputs, dict):
            outputs = [outputs[name] for name in sorted(outputs)]
        return [o.numpy() for o in outputs]


@register_backend(FORMAT_SAVED_MODEL)
class SavedModelBackend(Backend):
    """A SavedModel (or TFX `Model`) called through its serving concrete function, graph mode.

    Not eager and not `model.predict`: this is how TF Serving runs it.
    """

    #: Where the SavedModel sits inside the artifact ("" = the artifact root).
    subdirectory = ""

    def _saved_model_dir(self, uri: str) -> str:
        import os

        from components.freezer.freezing import resolve_saved_model_dir

        path = os.path.join(uri, self.subdirectory) if self.subdirectory else uri
        return resolve_saved_model_dir(path)

    def __init__(self, selection: ModelSelection | None = None) -> None:
        self.selection = selection or ModelSelection()
        self.signature_key = self.selection.signature_key

    def signature(self, uri: str, signature_key: str = DEFAULT_SIGNATURE_KEY) -> GraphSignature:
        from components.freezer.freezing import load_serving_function, signature_of_function

        function = load_serving_function(self._saved_model_dir(uri), signature_key)
        return signature_of_function(function, signature_key)

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        from components.freezer.freezing import load_serving_function, signature_of_function

        function = load_serving_function(self._saved_model_dir(uri), self.signature_key)
        names = [t.name for t in signature_of_function(function).inputs]
        return _TensorFlowFunctionVariant(function, device, keyword_names=names)

    def for_selection(self, selection: ModelSelection) -> Backend:
        return type(self)(selection)


@register_backend(FORMAT_XLA_JIT)
class XlaJitSavedModelBackend(SavedModelBackend):
    """The XlaCompiler's JIT variant: a SavedModel whose function has `jit_compile=True`.

    XLA compiles on the first call, which the harness times separately (`first_call_s`).
    """

    subdirectory = "saved_model"

    def signature(self, uri: str, signature_key: str = DEFAULT_SIGNATURE_KEY) -> GraphSignature:
        return GraphSignature.load(uri)

    def for_selection(self, selection: ModelSelection) -> Backend:
        # The XlaCompiler's SavedModel has one signature, serving_default, whatever
        # signature the Freezer froze.
        return self


@register_backend(FORMAT_GRAPHDEF)
class GraphDefBackend(Backend):
    """A frozen or optimized GraphDef (`graph.pb`), imported and pruned to feeds/fetches."""

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        import tensorflow as tf

        from components.common.graph_io import graph_def_function, load_graph_def

        with tf.device(_tf_device(device)):
            function = graph_def_function(load_graph_def(uri), GraphSignature.load(uri))
        return _TensorFlowFunctionVariant(function, device, keyword_names=None)


class _NullVariant(LoadedVariant):
    """Returns zeros of the output shape without work: the harness's own overhead."""

    def __init__(self, outputs: tuple[TensorDescription, ...]):
        self._outputs = outputs

    def prepare(self, inputs: Sequence[np.ndarray]) -> Any:
        batch = inputs[0].shape[0]
        return [
            np.zeros((batch, *[d or 1 for d in t.shape[1:]]), dtype=t.dtype) for t in self._outputs
        ]

    def run(self, prepared: Any) -> list[np.ndarray]:
        return prepared


@register_backend(FORMAT_NULL)
class NullBackend(Backend):
    """Does no work. Its latency is the harness overhead, reported beside real variants."""

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        return _NullVariant(GraphSignature.load(uri).outputs)


class _OriginalModelBackend(Backend):
    """A model form other than a SavedModel, run un-frozen as the baseline (model_forms.py)."""

    def __init__(self, selection: ModelSelection | None = None) -> None:
        self.selection = selection or ModelSelection()

    def for_selection(self, selection: ModelSelection) -> Backend:
        return type(self)(selection)

    def _original(self, uri: str) -> tuple[Any, GraphSignature, list[str] | None]:
        from components.freezer.model_forms import get_form, original_function

        source = get_form(self.format).find(uri)
        if source is None:
            raise ValueError(f"{uri!r} holds no {self.format} model")
        return original_function(source, self.selection)

    def signature(self, uri: str, signature_key: str = DEFAULT_SIGNATURE_KEY) -> GraphSignature:
        return self._original(uri)[1]

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        import tensorflow as tf

        with tf.device(_tf_device(device)):
            function, _, keyword_names = self._original(uri)
        variant = _TensorFlowFunctionVariant(function, device, keyword_names=keyword_names)
        return variant


@register_backend(FORMAT_KERAS)
class KerasBackend(_OriginalModelBackend):
    """A `.keras`/`.h5` file, called through a serving function made from its inputs."""


@register_backend(FORMAT_TF1_CHECKPOINT)
class Tf1CheckpointBackend(_OriginalModelBackend):
    """A TF1 checkpoint: its graph with the variables restored, not frozen."""


@register_backend(FORMAT_PREPROCESSING)
class PreprocessingBackend(Backend):
    """The preprocessing graph of a split signature, timed on its own (parsing, Transform)."""

    def signature(self, uri: str, signature_key: str = DEFAULT_SIGNATURE_KEY) -> GraphSignature:
        from components.common.preprocessing import read_preprocessing_graph

        return read_preprocessing_graph(uri).signature

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        import tensorflow as tf

        from components.common.preprocessing import Preprocessing

        with tf.device(_tf_device("CPU:0")):  # String ops have CPU kernels only.
            preprocessing = Preprocessing.load(uri)
        if preprocessing is None:
            raise ValueError(f"{uri!r} holds no preprocessing/ graph")
        variant = _TensorFlowFunctionVariant(preprocessing.function, "CPU:0", keyword_names=None)
        variant._owner = preprocessing  # noqa: SLF001 - keeps the lookup tables alive.
        return variant


class _TFLiteVariant(LoadedVariant):
    """One interpreter per static batch size the Quantizer wrote (XNNPACK needs static shapes).

    Interpreters are created on first use of a batch size, so unused sizes cost nothing.
    TFLite runs on the CPU only; the device is recorded as such whatever was asked.
    """

    def __init__(self, directory: str, num_threads: int):
        from components.quantizer.tflite_runtime import available_batch_sizes

        self._directory = directory
        self._num_threads = num_threads
        self._batch_sizes = available_batch_sizes(directory)
        if not self._batch_sizes:
            raise ValueError(f"no .tflite model with a static batch size in {directory!r}")
        self._models: dict[int, Any] = {}
        self.fixed_batch_size = self._batch_sizes[0]
        self.device = "CPU:0"
        self._model(self.fixed_batch_size)  # Fail at load time, not in the timed region.

    def _model(self, batch_size: int) -> Any:
        if batch_size not in self._models:
            from components.quantizer.tflite_runtime import TFLiteModel, tflite_model_path

            path = tflite_model_path(self._directory, batch_size)
            self._models[batch_size] = TFLiteModel(path, num_threads=self._num_threads)
        return self._models[batch_size]

    def supports_batch(self, batch_size: int) -> bool:
        return batch_size in self._batch_sizes

    def batch_size_for(self, requested: int) -> int:
        fitting = [b for b in self._batch_sizes if b <= requested]
        return max(fitting) if fitting else min(self._batch_sizes)

    def prepare(self, inputs: Sequence[np.ndarray]) -> Any:
        model = self._model(int(inputs[0].shape[0]))
        # Quantizing the inputs of an int8-io model is the caller's job, done untimed.
        return model, [np.ascontiguousarray(x) for x in model.to_model_inputs(*inputs)]

    def run(self, prepared: Any) -> list[np.ndarray]:
        model, arrays = prepared
        return model.run(*arrays)

    def describe(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "batch_sizes": self._batch_sizes,
            "num_threads": self._num_threads,
        }


@register_backend(FORMAT_TFLITE)
class TFLiteBackend(Backend):
    """A Quantizer TFLite artifact: `model.tflite` (+ `batch_<n>/model.tflite`), XNNPACK on."""

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        return _TFLiteVariant(uri, settings.tflite)


class _XlaAotVariant(LoadedVariant):
    """The XlaCompiler's ahead-of-time shared library, called through ctypes."""

    def __init__(self, model: Any):
        self._model = model
        self.fixed_batch_size = int(model.batch_size)
        self.device = "CPU:0"

    def prepare(self, inputs: Sequence[np.ndarray]) -> Any:
        return [
            np.ascontiguousarray(x, dtype=dtype)
            for x, dtype in zip(inputs, self._model.input_dtypes, strict=True)
        ]

    def run(self, prepared: Any) -> list[np.ndarray]:
        return self._model.run(*prepared)

    def describe(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "fixed_batch_size": self.fixed_batch_size,
            "num_threads": self._model.num_threads,
        }


@register_backend(FORMAT_XLA_AOT)
class XlaAotBackend(Backend):
    """`libmodel.so` built by the XlaCompiler for one fixed batch size; CPU only."""

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        from components.xla_compiler.aot import AotModel

        model = AotModel(uri)
        if model.num_threads > settings.intra_op:
            model = AotModel(uri, num_threads=settings.intra_op)
        return _XlaAotVariant(model)
