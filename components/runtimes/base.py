"""What every runtime module provides: a `Backend` that loads a variant, and the
`LoadedVariant` the Benchmarker times.

The interface is LoadGen's system-under-test, cut down: `load` a variant, `prepare` a
batch (conversion to the runtime's tensors happens here, outside the timed region),
`run` one prepared batch, and `describe` what ran (threads, streams, precisions), which
the report records beside the figures.

A runtime module registers its backend with `@register_backend(FORMAT_X)`; a format
registered twice is an error, so no if/elif chain grows and no two backends fight over
a format. Runtime modules import their runtime (TensorFlow, OpenVINO, ...) only inside
functions: the registry is read by the CLI and the pipeline builder too.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from components.common.signature import GraphSignature

DEFAULT_SIGNATURE_KEY = "serving_default"
DEVICE_AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class ThreadSettings:
    """The thread budget of one benchmark; each runtime maps it to its own knobs.

    `intra_op` is the threads one inference may use (TF's intra-op pool, TFLite's and
    ONNX Runtime's `num_threads`, OpenVINO's `INFERENCE_NUM_THREADS`); `inter_op` is
    how many independent ops may run at once (TF's inter-op pool, ORT's inter-op pool).
    """

    intra_op: int = 2
    inter_op: int = 1

    def __post_init__(self) -> None:
        if self.intra_op < 1 or self.inter_op < 1:
            raise ValueError(f"thread counts must be at least 1, got {self}")


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

    def release(self) -> None:  # noqa: B027 - optional hook, most runtimes free on GC.
        """Frees what the variant holds (called before the next variant loads)."""


class Backend(abc.ABC):
    """Loads variants of one format."""

    format: str = ""
    # Resident bytes per artifact byte once loaded and run once: an upper estimate, for
    # the Benchmarker's memory guard (components/benchmarker/memory.py). Each runtime
    # sets its own from the report's `rss_growth_bytes` on MobileNetV2 and ResNet50.
    memory_per_artifact_byte: float = 4.0

    def model_bytes(self, uri: str) -> int:
        """The variant's size: the bytes of the files this runtime loads from `uri` (every
        file, unless a format keeps others beside its model). The one size the report,
        MLMD and the memory guard use (components/common/sizes.py)."""
        from components.common.sizes import directory_size_bytes

        return directory_size_bytes(uri)

    @abc.abstractmethod
    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        """Loads the variant stored at `uri` (an artifact URI)."""

    def for_selection(self, selection: Any) -> Backend:
        """This backend, loading the selected function where a format holds several
        (a SavedModel's signatures, a TF1 graph's output nodes); `selection` is a
        components.freezer.model_forms.ModelSelection."""
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


def registered_backends() -> dict[str, Backend]:
    return _BACKENDS


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


class MissingRuntime(RuntimeError):
    """An optional runtime is not installed; names the extra that installs it."""

    def __init__(self, module: str, extra: str):
        super().__init__(
            f"the {module!r} package is not installed; install the project with the "
            f"{extra!r} extra (pip install 'tfx-inference-optimizer[{extra}]')"
        )
        self.module = module
        self.extra = extra


def require_module(module: str, extra: str) -> Any:
    """Imports an optional runtime, or raises MissingRuntime naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingRuntime(module, extra) from None


def missing_runtime(module: str, extra: str) -> str:
    """'' when `module` can be imported, else why not (without importing it)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return str(MissingRuntime(module, extra))
    return ""
