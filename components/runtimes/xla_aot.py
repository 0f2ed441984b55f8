"""XLA ahead-of-time machine code: `libmodel.so` run through ctypes, and its backend.

The XlaCompiler (components/xla_compiler/aot.py) writes the artifact; this module
reads it: `aot.json` (AotResult), `signature.json` with the batch dimension fixed,
and the shared library with its C entry point (model_create/run/destroy).

Threading: by default XLA emits calls to its single-threaded Eigen kernels and a call
runs on the caller's thread (`num_threads` 1); a `multithreaded=True` build splits work
over an Eigen pool of `AotModel(num_threads=...)` threads.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from components.common.cpu_facts import host_cpu
from components.common.errors import UserInputError
from components.common.signature import GraphSignature
from components.runtimes.base import Backend, LoadedVariant, ThreadSettings, register_backend

FORMAT_XLA_AOT = "xla_aot"
AOT_METADATA_FILENAME = "aot.json"
AOT_FORMAT_VERSION = 1
SHARED_LIBRARY_FILENAME = "libmodel.so"


@dataclasses.dataclass(frozen=True)
class AotResult:
    """What `compile_aot` produced and what it took; saved as `aot.json`."""

    output_dir: str
    batch_size: int
    compile_time_s: float
    compile_wall_time_s: float
    target_name: str
    target_triple: str
    target_cpu: str
    target_features: str
    required_cpu_flags: tuple[str, ...]
    multithreaded: bool
    object_size_bytes: int
    shared_library_size_bytes: int
    shared_library_build_time_s: float
    runtime_objects_built: int
    compiler: str
    hlo_file: str | None

    def to_json(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["required_cpu_flags"] = list(self.required_cpu_flags)
        value.pop("output_dir")  # The folder moves with the artifact; paths inside are relative.
        return {"format_version": AOT_FORMAT_VERSION, **value}

    @classmethod
    def load(cls, directory: str) -> AotResult:
        """Reads `aot.json` from a compile_aot output directory."""
        with open(os.path.join(directory, AOT_METADATA_FILENAME)) as f:
            value = json.load(f)
        version = value.pop("format_version", None)
        if version != AOT_FORMAT_VERSION:
            raise UserInputError(
                f"{directory!r} holds aot.json format {version}, this code reads "
                f"{AOT_FORMAT_VERSION}. Recompile the AOT variant with this version."
            )
        value["required_cpu_flags"] = tuple(value["required_cpu_flags"])
        return cls(output_dir=directory, **value)


def _numpy_dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes  # bfloat16 and friends; ships with TensorFlow.

        return np.dtype(getattr(ml_dtypes, name))


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # Not on Linux.
        return os.cpu_count() or 1


class AotModel:
    """Runs a compile_aot output (`libmodel.so`) on numpy arrays at its fixed batch size.

    `run` takes exactly the compiled shapes; `run_any_batch` splits and pads any number
    of rows into compiled-size batches. One call runs at a time per AotModel (a lock
    guards the library's buffers); ctypes releases the GIL while the model runs.
    """

    def __init__(self, directory: str, num_threads: int | None = None) -> None:
        self.directory = directory
        self.metadata = AotResult.load(directory)
        self.signature = GraphSignature.load(directory)
        missing = host_cpu().missing(self.metadata.required_cpu_flags)
        if missing:
            raise UserInputError(
                f"The AOT model in {directory!r} was compiled for {self.metadata.target_name} "
                f"and needs CPU features this machine lacks: {', '.join(missing)}. Running it "
                f"would crash (illegal instruction). Recompile it on this machine, or with "
                f"target_cpu='generic' to run anywhere."
            )
        if num_threads is None:
            num_threads = _usable_cpus() if self.metadata.multithreaded else 1
        if num_threads < 1:
            raise UserInputError(f"num_threads must be at least 1, got {num_threads}.")
        if num_threads > 1 and not self.metadata.multithreaded:
            raise UserInputError(
                f"The AOT model in {directory!r} was compiled single-threaded, so it runs on "
                f"one thread only (asked for {num_threads}). Recompile with "
                f"multithreaded=True to use a thread pool."
            )
        self.num_threads = num_threads
        self.batch_size = self.metadata.batch_size
        self.input_shapes = [tuple(t.shape) for t in self.signature.inputs]
        self.output_shapes = [tuple(t.shape) for t in self.signature.outputs]
        self.input_dtypes = [_numpy_dtype(t.dtype) for t in self.signature.inputs]
        self.output_dtypes = [_numpy_dtype(t.dtype) for t in self.signature.outputs]

        self._library = ctypes.CDLL(os.path.join(directory, SHARED_LIBRARY_FILENAME))
        self._declare_c_api()
        self._check_sizes()
        self._handle = self._library.model_create(num_threads)
        if not self._handle:
            raise MemoryError(f"Could not allocate the AOT model's buffers in {directory!r}.")
        self._args = (ctypes.c_void_p * len(self.input_shapes))()
        self._results = (ctypes.c_void_p * len(self.output_shapes))()
        self._lock = threading.Lock()

    def _declare_c_api(self) -> None:
        library = self._library
        pointer_array = ctypes.POINTER(ctypes.c_void_p)
        library.model_num_args.restype = ctypes.c_int
        library.model_num_results.restype = ctypes.c_int
        library.model_arg_size.argtypes = [ctypes.c_int]
        library.model_arg_size.restype = ctypes.c_int64
        library.model_result_size.argtypes = [ctypes.c_int]
        library.model_result_size.restype = ctypes.c_int64
        library.model_create.argtypes = [ctypes.c_int]
        library.model_create.restype = ctypes.c_void_p
        library.model_destroy.argtypes = [ctypes.c_void_p]
        library.model_destroy.restype = None
        library.model_run.argtypes = [ctypes.c_void_p, pointer_array, pointer_array]
        library.model_run.restype = ctypes.c_int

    def _check_sizes(self) -> None:
        """Refuses a library whose buffers disagree with signature.json (a mixed-up folder)."""
        library = self._library
        expected = [
            (
                "argument",
                library.model_num_args(),
                library.model_arg_size,
                self.input_shapes,
                self.input_dtypes,
            ),
            (
                "result",
                library.model_num_results(),
                library.model_result_size,
                self.output_shapes,
                self.output_dtypes,
            ),
        ]
        for kind, count, size_of, shapes, dtypes in expected:
            if count != len(shapes):
                raise UserInputError(
                    f"{self.directory!r}: libmodel.so has {count} {kind}s but signature.json "
                    f"lists {len(shapes)}. The folder is inconsistent; recompile it."
                )
            for i, (shape, dtype) in enumerate(zip(shapes, dtypes, strict=True)):
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if size_of(i) != nbytes:
                    raise UserInputError(
                        f"{self.directory!r}: libmodel.so's {kind} {i} holds {size_of(i)} "
                        f"bytes but signature.json describes {shape} {dtype} ({nbytes} bytes). "
                        f"The folder is inconsistent; recompile it."
                    )

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Runs the model once; each input must have exactly its compiled shape and dtype."""
        if len(inputs) != len(self.input_shapes):
            raise ValueError(f"Expected {len(self.input_shapes)} inputs, got {len(inputs)}.")
        arrays = []
        for tensor, value, shape, dtype in zip(
            self.signature.inputs, inputs, self.input_shapes, self.input_dtypes, strict=True
        ):
            array = np.ascontiguousarray(value)
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(
                    f"Input {tensor.name!r} must be {dtype} of shape {shape} (AOT code runs "
                    f"one batch size; see run_any_batch), got {array.dtype} {array.shape}."
                )
            arrays.append(array)
        outputs = [
            np.empty(s, d) for s, d in zip(self.output_shapes, self.output_dtypes, strict=True)
        ]
        with self._lock:
            if not self._handle:
                raise RuntimeError("This AotModel is closed.")
            for i, array in enumerate(arrays):
                self._args[i] = array.ctypes.data
            for i, output in enumerate(outputs):
                self._results[i] = output.ctypes.data
            status = self._library.model_run(self._handle, self._args, self._results)
        if status != 0:
            raise RuntimeError(f"The AOT model in {self.directory!r} reported a failure.")
        return outputs

    def run_any_batch(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Runs any number of rows (first dimension) by splitting and zero-padding batches."""
        rows = len(inputs[0])
        if rows == 0:
            return [
                np.empty((0, *s[1:]), d)
                for s, d in zip(self.output_shapes, self.output_dtypes, strict=True)
            ]
        chunks: list[list[np.ndarray]] = []
        for start in range(0, rows, self.batch_size):
            batch = []
            for value in inputs:
                part = np.asarray(value[start : start + self.batch_size])
                if len(part) < self.batch_size:
                    padding = np.zeros((self.batch_size - len(part), *part.shape[1:]), part.dtype)
                    part = np.concatenate([part, padding])
                batch.append(part)
            chunks.append(self.run(*batch))
        return [
            np.concatenate([chunk[i] for chunk in chunks])[:rows]
            for i in range(len(self.output_shapes))
        ]

    def close(self) -> None:
        """Frees the library's buffers and thread pool (the library itself stays loaded)."""
        with self._lock:
            if self._handle:
                self._library.model_destroy(self._handle)
                self._handle = None

    def __enter__(self) -> AotModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) and getattr(self, "_lock", None):
            self.close()


class _XlaAotVariant(LoadedVariant):
    """The ahead-of-time library at its one compiled batch size."""

    def __init__(self, model: AotModel):
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

    def release(self) -> None:
        self._model.close()


@register_backend(FORMAT_XLA_AOT)
class XlaAotBackend(Backend):
    """`libmodel.so` for one fixed batch size; CPU only.

    A multithreaded build uses at most the thread budget's `intra_op` threads.
    """

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        model = AotModel(uri)
        if model.num_threads > settings.intra_op:
            model.close()
            model = AotModel(uri, num_threads=settings.intra_op)
        return _XlaAotVariant(model)
