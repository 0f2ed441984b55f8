"""A SavedModel that runs a frozen graph through XLA's just-in-time compiler.

    >>> info = compile_jit_saved_model(frozen.graph_def, frozen.signature, "/out/xla_jit")
    >>> serve = tf.saved_model.load("/out/xla_jit").signatures["serving_default"]

The `serving_default` signature keeps the frozen graph's input names, dtypes and shapes
(including an unknown batch dimension) and its output names. Its body is a
`tf.function(jit_compile=True)` (saved as the function attribute `_XlaMustCompile`), so
XLA compiles it on the first call for each new input shape and fails loudly rather than
falling back to TF kernels. Output directory::

    {output_dir}/
      saved_model.pb, variables/   # the SavedModel; the graph's constants live in the .pb
      signature.json               # the frozen graph's GraphSignature
      hlo.txt                      # XLA's optimized HLO at batch 1 (when shapes allow)
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from components.common.graph_io import graph_def_function
from components.common.signature import GraphSignature
from components.xla_compiler.graph_checks import unsupported_ops, unsupported_ops_error

if TYPE_CHECKING:
    import tensorflow as tf

SERVING_SIGNATURE_KEY = "serving_default"
JIT_HLO_FILENAME = "hlo.txt"


def _warmup_inputs(signature: GraphSignature) -> list[np.ndarray] | None:
    """Zeros at batch 1, or None when a non-batch dimension is unknown."""
    import tensorflow as tf

    arrays = []
    for tensor in signature.inputs:
        shape = list(tensor.shape)
        if shape and shape[0] is None:
            shape[0] = 1
        if any(size is None or size < 0 for size in shape):
            return None
        arrays.append(np.zeros(shape, dtype=tf.as_dtype(tensor.dtype).as_numpy_dtype))
    return arrays


def build_jit_module(graph_def: tf.compat.v1.GraphDef, signature: GraphSignature) -> tf.Module:
    """A tf.Module whose `serve` is the frozen graph inside tf.function(jit_compile=True)."""
    import tensorflow as tf

    graph_function = graph_def_function(graph_def, signature)
    specs = [
        tf.TensorSpec(tensor.shape, tf.as_dtype(tensor.dtype), name=tensor.name)
        for tensor in signature.inputs
    ]

    @tf.function(input_signature=specs, jit_compile=True)
    def serve(*inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = graph_function(*inputs)
        return {
            tensor.name: tf.identity(output, name=tensor.name)
            for tensor, output in zip(signature.outputs, outputs, strict=True)
        }

    module = tf.Module()
    module.serve = serve
    return module


def compile_jit_saved_model(
    graph_def: tf.compat.v1.GraphDef, signature: GraphSignature, output_dir: str
) -> dict[str, Any]:
    """Writes a SavedModel whose serving_default runs the frozen graph under XLA JIT.

    Compiles once at batch 1 (when the input shapes allow) to time XLA's compilation,
    write `hlo.txt` and fail here rather than at serving time. Returns
    `{"export_time_s", "xla_compile_time_s", "warmup_batch_size", "hlo_file"}`, the last
    three None when a non-batch dimension is unknown.

    Raises UserInputError when XLA has no kernel for some op of the graph.
    """
    import tensorflow as tf

    start = time.perf_counter()
    module = build_jit_module(graph_def, signature)
    concrete = module.serve.get_concrete_function()
    info: dict[str, Any] = {
        "xla_compile_time_s": None,
        "warmup_batch_size": None,
        "hlo_file": None,
    }
    warmup = _warmup_inputs(signature)
    if warmup is not None:
        tensors = [tf.constant(x) for x in warmup]
        compile_start = time.perf_counter()
        try:
            module.serve(*tensors)
        except tf.errors.InvalidArgumentError as error:
            ops = unsupported_ops(str(error))
            if ops:
                raise unsupported_ops_error(ops, "just-in-time compilation") from error
            raise
        info["xla_compile_time_s"] = time.perf_counter() - compile_start
        info["warmup_batch_size"] = 1
        hlo = module.serve.experimental_get_compiler_ir(*tensors)(stage="optimized_hlo")
        tf.io.gfile.makedirs(output_dir)
        with tf.io.gfile.GFile(os.path.join(output_dir, JIT_HLO_FILENAME), "w") as f:
            f.write(hlo)
        info["hlo_file"] = JIT_HLO_FILENAME
    tf.saved_model.save(module, output_dir, signatures={SERVING_SIGNATURE_KEY: concrete})
    signature.save(output_dir)
    info["export_time_s"] = time.perf_counter() - start
    return info
