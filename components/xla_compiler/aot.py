"""XLA ahead-of-time compilation of a frozen graph into a shared library.

`compile_aot` turns a frozen GraphDef into machine code for one fixed batch size with
tfcompile, then links it with a small C entry point and the XLA runtime from the TF
wheel into `libmodel.so`. `AotModel` (components/runtimes/xla_aot.py) loads that
library with ctypes::

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

import dataclasses
import glob
import json
import os
import shutil
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

from components.common.errors import UserInputError
from components.common.signature import GraphSignature, TensorDescription
from components.runtimes.xla_aot import (
    AOT_METADATA_FILENAME,
    AotResult,
)
from components.xla_compiler import aot_build
from components.xla_compiler.graph_checks import (
    fixed_shape,
    unsupported_ops,
    unsupported_ops_error,
)
from components.xla_compiler.target import resolve_cpu_target

if TYPE_CHECKING:
    import tensorflow as tf

HLO_FILENAME = "hlo.txt"
CPP_CLASS = "XlaAotModel"
DEFAULT_TIMEOUT_S = 900.0
# What the isolated child runs (a module that imports no TensorFlow: it starts fast).
TFCOMPILE_FUNCTION = "components.xla_compiler.tfcompile_worker:compile_graph"


class AotCompileError(RuntimeError):
    """tfcompile failed or crashed on a graph (the message carries its own words)."""


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
    from components.common.isolation import run_isolated

    outcome = run_isolated(
        TFCOMPILE_FUNCTION,
        {"request": request},
        work_dir,
        timeout_s=timeout_s,
        env={"XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {xla_flags}".strip()},
        name="tfcompile",
    )
    if outcome.ok:
        return float(outcome.result["compile_time_s"])
    if outcome.timed_out:
        raise AotCompileError(f"tfcompile did not finish within {timeout_s:.0f} s.")
    message = (
        f"{outcome.error_type}: {outcome.error_message}"
        if outcome.error_type
        else outcome.stderr.strip()[-4000:] or "no output"
    )
    ops = unsupported_ops(message)
    if ops:
        raise unsupported_ops_error(ops, "ahead-of-time compilation")
    how = (
        f"was killed by signal {-outcome.returncode}"
        if outcome.returncode is not None and outcome.returncode < 0
        else f"failed (exit {outcome.returncode})"
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

    from components.common.isolation import scratch_directory

    # Removed on every exit path, even if this process is SIGKILLed (isolation.py).
    with scratch_directory("tfcompile_") as work_dir:
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
