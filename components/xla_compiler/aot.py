"""XLA ahead-of-time compilation of a frozen graph into a shared library, and running it.

`compile_aot` turns a frozen GraphDef into machine code for one fixed batch size with
tfcompile, then links it with a small C entry point and the XLA runtime from the TF
wheel into `libmodel.so`. `AotModel` loads that library with ctypes::

    >>> result = compile_aot(frozen.graph_def, frozen.signature, "/out/aot_b1", batch_size=1)
    >>> model = AotModel("/out/aot_b1")
    >>> [probabilities] = model.run(images[:1])

Output directory::

    {output_dir}/
      libmodel.so         # C API: model_create/run/destroy, model_{arg,result}_size
      model.o, model.h    # tfcompile's object file and C++ header (class XlaAotModel)
      model_metadata.o    # tfcompile's metadata object (linked into libmodel.so)
      hlo.txt             # HLO of the compiled computation, after XLA's optimizations
      signature.json      # the graph's signature with the batch dimension fixed
      aot.json            # batch size, target, timings and sizes (AotResult)
      build/              # config.pbtxt, the entry point's object, build_commands.sh

Threading: by default (`multithreaded=False`) XLA emits calls to its single-threaded
Eigen kernels, and a call runs entirely on the caller's thread: `num_threads` is 1.
With `multithreaded=True` the kernels split work over an Eigen thread pool of
`AotModel(num_threads=...)` threads (default: the CPUs this process may use).
"""

from __future__ import annotations

import ctypes
import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from components.common.errors import UserInputError
from components.common.signature import GraphSignature, TensorDescription
from components.xla_compiler import aot_build
from components.xla_compiler.graph_checks import (
    fixed_shape,
    unsupported_ops,
    unsupported_ops_error,
)
from components.xla_compiler.target import missing_cpu_flags, resolve_cpu_target

if TYPE_CHECKING:
    import tensorflow as tf

AOT_METADATA_FILENAME = "aot.json"
HLO_FILENAME = "hlo.txt"
AOT_FORMAT_VERSION = 1
CPP_CLASS = "XlaAotModel"
WORKER_SCRIPT = os.path.join(os.path.dirname(__file__), "tfcompile_worker.py")
DEFAULT_TIMEOUT_S = 900.0


class AotCompileError(RuntimeError):
    """tfcompile failed or crashed on a graph (the message carries its own words)."""


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


def _c_identifier(name: str, taken: set[str]) -> str:
    """A C++-safe, unique name for tfcompile's generated accessors (arg_<name>_data)."""
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "t"
    if safe[0].isdigit():
        safe = f"t_{safe}"
    unique, suffix = safe, 1
    while unique in taken:
        unique, suffix = f"{safe}_{suffix}", suffix + 1
    taken.add(unique)
    return unique


def _tensor_id(tensor_name: str) -> tuple[str, int]:
    node, _, index = tensor_name.partition(":")
    return node, int(index or 0)


def _tf2xla_config(signature: GraphSignature, input_shapes: list[tuple[int, ...]]) -> str:
    """tfcompile's feeds (fixed shapes) and fetches, as a text tf2xla.Config."""
    import tensorflow as tf
    from tensorflow.compiler.tf2xla import tf2xla_pb2
    from tensorflow.core.framework import tensor_shape_pb2

    config = tf2xla_pb2.Config()
    taken: set[str] = set()
    for tensor, shape in zip(signature.inputs, input_shapes, strict=True):
        node, index = _tensor_id(tensor.tensor_name)
        config.feed.append(
            tf2xla_pb2.Feed(
                id=tf2xla_pb2.TensorId(node_name=node, output_index=index),
                name=_c_identifier(tensor.name, taken),
                type=tf.as_dtype(tensor.dtype).as_datatype_enum,
                shape=tensor_shape_pb2.TensorShapeProto(
                    dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in shape]
                ),
            )
        )
    for tensor in signature.outputs:
        node, index = _tensor_id(tensor.tensor_name)
        config.fetch.append(
            tf2xla_pb2.Fetch(
                id=tf2xla_pb2.TensorId(node_name=node, output_index=index),
                name=_c_identifier(tensor.name, taken),
            )
        )
    return str(config)


def _static_output_shapes(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    input_shapes: list[tuple[int, ...]],
) -> list[tuple[int, ...]]:
    """The outputs' shapes when the inputs have fixed shapes (TF's shape inference).

    Raises UserInputError for an output whose shape depends on the data (e.g. tf.where).
    """
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        feeds = {
            tensor.tensor_name: tf.compat.v1.placeholder(tf.as_dtype(tensor.dtype), shape)
            for tensor, shape in zip(signature.inputs, input_shapes, strict=True)
        }
        outputs = tf.graph_util.import_graph_def(
            graph_def, input_map=feeds, return_elements=signature.output_tensor_names, name=""
        )
    shapes = []
    for tensor, output in zip(signature.outputs, outputs, strict=True):
        if not output.shape.is_fully_defined():
            raise UserInputError(
                f"Output {tensor.name!r} ({tensor.tensor_name}) has shape {output.shape} even "
                f"with every input shape fixed: its size depends on the data, and XLA AOT "
                f"needs static output shapes. Keep the AOT variant for models whose "
                f"outputs have a size known from the input shapes."
            )
        shapes.append(tuple(output.shape.as_list()))
    return shapes


def _run_tfcompile(
    request: dict[str, Any], xla_flags: str, work_dir: str, timeout_s: float
) -> float:
    """Runs tfcompile in a child process; returns its compile time in seconds.

    Raises UserInputError for ops XLA cannot compile, AotCompileError for other failures,
    including the child dying from a signal (XLA aborts on internal errors).
    """
    request_path = os.path.join(work_dir, "request.json")
    result_path = os.path.join(work_dir, "result.json")
    with open(request_path, "w") as f:
        json.dump({**request, "result_path": result_path}, f)
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {xla_flags}".strip()
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        process = subprocess.run(
            [sys.executable, WORKER_SCRIPT, request_path],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise AotCompileError(f"tfcompile did not finish within {timeout_s:.0f} s.") from error
    result: dict[str, Any] = {}
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
    if process.returncode == 0 and "compile_time_s" in result:
        return float(result["compile_time_s"])
    message = result.get("error") or process.stderr.strip()[-4000:] or "no output"
    ops = unsupported_ops(message)
    if ops:
        raise unsupported_ops_error(ops, "ahead-of-time compilation")
    how = (
        f"was killed by signal {-process.returncode}"
        if process.returncode < 0
        else f"failed (exit {process.returncode})"
    )
    raise AotCompileError(f"tfcompile {how}: {message}")


def _copy_hlo(dump_dir: str, destination: str) -> bool:
    """Copies the optimized HLO that XLA dumped for the compiled module, if any."""
    candidates = sorted(
        path
        for path in glob.glob(os.path.join(dump_dir, "*cpu_after_optimizations.txt"))
        if "buffer-assignment" not in path
    )
    if not candidates:
        return False
    shutil.copyfile(max(candidates, key=os.path.getsize), destination)
    return True


def _fixed_signature(
    signature: GraphSignature,
    input_shapes: list[tuple[int, ...]],
    output_shapes: list[tuple[int, ...]],
) -> GraphSignature:
    def fix(tensor: TensorDescription, shape: tuple[int, ...]) -> TensorDescription:
        return dataclasses.replace(tensor, shape=tuple(shape))

    return dataclasses.replace(
        signature,
        inputs=tuple(fix(t, s) for t, s in zip(signature.inputs, input_shapes, strict=True)),
        outputs=tuple(fix(t, s) for t, s in zip(signature.outputs, output_shapes, strict=True)),
    )


def compile_aot(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    output_dir: str,
    batch_size: int = 1,
    *,
    target_cpu: str = "host",
    multithreaded: bool = False,
    runtime_cache_dir: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> AotResult:
    """Compiles a frozen graph ahead of time for `batch_size` into `output_dir/libmodel.so`.

    `target_cpu` is one of target.TARGET_CHOICES ('host' by default: the code may need
    this machine's AVX-512; 'generic' runs on any x86-64). `runtime_cache_dir` holds the
    compiled XLA runtime objects shared by all builds (see aot_build).

    Raises UserInputError for a dynamic non-batch dimension, a data-dependent output
    shape or ops XLA cannot compile; AotCompileError / aot_build.AotBuildError when
    tfcompile or the C++ toolchain fail.
    """
    if batch_size < 1:
        raise UserInputError(f"batch_size must be at least 1, got {batch_size}.")
    target = resolve_cpu_target(target_cpu)
    input_shapes = [fixed_shape(tensor, batch_size) for tensor in signature.inputs]
    output_shapes = _static_output_shapes(graph_def, signature, input_shapes)

    local_dir = output_dir if "://" not in output_dir else tempfile.mkdtemp(prefix="xla_aot_")
    build_dir = os.path.join(local_dir, "build")
    os.makedirs(build_dir, exist_ok=True)
    config_path = os.path.join(build_dir, "config.pbtxt")
    with open(config_path, "w") as f:
        f.write(_tf2xla_config(signature, input_shapes))

    with tempfile.TemporaryDirectory(prefix="tfcompile_") as work_dir:
        graph_path = os.path.join(work_dir, "graph.pb")
        with open(graph_path, "wb") as f:
            f.write(graph_def.SerializeToString())
        dump_dir = os.path.join(work_dir, "xla_dump")
        request = {
            "tensorflow_dir": aot_build.tensorflow_dir(),
            "graph": graph_path,
            "config": config_path,
            "target_triple": target.triple,
            "target_cpu": target.llvm_cpu,
            "target_features": target.llvm_features,
            # A unique symbol, so that several models can be linked into one program.
            "entry_point": f"xla_aot_entry_{uuid.uuid4().hex[:12]}",
            "cpp_class": CPP_CLASS,
            "out_function_object": os.path.join(local_dir, "model.o"),
            "out_metadata_object": os.path.join(local_dir, "model_metadata.o"),
            "out_header": os.path.join(local_dir, "model.h"),
            "out_session_module": "",
            "mlir_components": "",
            "gen_name_to_index": True,
            # A program shape would need libprotobuf in libmodel.so; aot.json has the shapes.
            "gen_program_shape": False,
        }
        xla_flags = (
            f"--xla_cpu_multi_thread_eigen={'true' if multithreaded else 'false'} "
            f"--xla_dump_to={dump_dir} --xla_dump_hlo_as_text"
        )
        start = time.perf_counter()
        compile_time_s = _run_tfcompile(request, xla_flags, work_dir, timeout_s)
        compile_wall_time_s = time.perf_counter() - start
        has_hlo = _copy_hlo(dump_dir, os.path.join(local_dir, HLO_FILENAME))

    library = aot_build.build_shared_library(
        model_dir=local_dir,
        build_dir=build_dir,
        cpp_class=CPP_CLASS,
        num_results=len(signature.outputs),
        multithreaded=multithreaded,
        target=target,
        runtime_cache_dir=runtime_cache_dir,
    )
    _fixed_signature(signature, input_shapes, output_shapes).save(local_dir)
    result = AotResult(
        output_dir=output_dir,
        batch_size=batch_size,
        compile_time_s=compile_time_s,
        compile_wall_time_s=compile_wall_time_s,
        target_name=target.name,
        target_triple=target.triple,
        target_cpu=target.llvm_cpu,
        target_features=target.llvm_features,
        required_cpu_flags=target.required_cpu_flags,
        multithreaded=multithreaded,
        object_size_bytes=os.path.getsize(os.path.join(local_dir, "model.o")),
        shared_library_size_bytes=os.path.getsize(library.path),
        shared_library_build_time_s=library.build_time_s,
        runtime_objects_built=library.runtime_objects_built,
        compiler=library.compiler,
        hlo_file=HLO_FILENAME if has_hlo else None,
    )
    with open(os.path.join(local_dir, AOT_METADATA_FILENAME), "w") as f:
        f.write(json.dumps(result.to_json(), indent=2) + "\n")
    if local_dir != output_dir:
        _copy_tree_to(local_dir, output_dir)
        shutil.rmtree(local_dir, ignore_errors=True)
    return result


def _copy_tree_to(local_dir: str, uri: str) -> None:
    """Copies a local folder to a (gs://, s3://) URI through tf.io.gfile."""
    import tensorflow as tf

    for root, _, files in os.walk(local_dir):
        target_root = os.path.join(uri, os.path.relpath(root, local_dir))
        tf.io.gfile.makedirs(target_root)
        for filename in files:
            tf.io.gfile.copy(
                os.path.join(root, filename), os.path.join(target_root, filename), overwrite=True
            )


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
        missing = missing_cpu_flags(self.metadata.required_cpu_flags)
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

        self._library = ctypes.CDLL(os.path.join(directory, aot_build.SHARED_LIBRARY_FILENAME))
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
