"""ONNX Runtime: the Benchmarker's backend for an ONNX model written by the RuntimeConverter.

    variant = backend_for("onnx").load(uri, ThreadSettings(intra_op=2), "CPU:0")
    outputs = variant.run(variant.prepare([images]))     # numpy in, numpy out
    variant.describe()["quantized_ops"]                  # {'Conv': 1, 'Gemm': 1}

The artifact (components/runtime_converter/onnx_model.py writes it):

    {uri}/model.onnx       the model; its batch dimension is dynamic
    {uri}/signature.json   the frozen graph's GraphSignature
    {uri}/onnx.json        the mode, opset, tf2onnx/ORT versions, quantization facts

One `InferenceSession` on the `CPUExecutionProvider` (the ORT wheel has only the CPU
and Azure providers) serves every batch size. Its options:

  * `intra_op_num_threads` is the thread budget's `intra_op` (ORT counts the calling
    thread, so 2 means the caller plus one pool thread);
  * `execution_mode` is `ORT_SEQUENTIAL`: the models here are chains of ops, where the
    parallel executor only adds scheduling cost, and in sequential mode ORT makes no
    inter-op pool, so `inter_op_num_threads` (set to the budget's `inter_op`, and
    recorded) changes nothing;
  * `graph_optimization_level` is `ORT_ENABLE_ALL`, which is also what fuses a QDQ
    model's QuantizeLinear/DequantizeLinear pairs into int8 kernels (QLinearConv,
    QGemm); without it a QDQ model runs float kernels between (de)quantizations;
  * intra-op threads spin while waiting (`session.intra_op.allow_spinning=1`, ORT's
    default, set explicitly so that it is recorded): back-to-back benchmark runs get the
    lowest latency, as a server under load would.

describe() reads these back from the session, not from what was asked.

Inputs are positional in signature order. tf2onnx keeps the TF tensor names (`x:0`,
`Identity:0`) as the ONNX graph's input and output names, so each signature tensor is
matched to the session's name equal to its `tensor_name`, else its op name (`x`), else
its signature name; when that does not pair every tensor with its own name, the
session's declared order is used if the counts agree (see `match_names`).

onnxruntime and onnx are imported only inside functions: the backend registry is read
where they are not installed.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from components.common.signature import GraphSignature, TensorDescription
from components.runtimes.base import (
    Backend,
    LoadedVariant,
    ThreadSettings,
    register_backend,
    require_module,
)

FORMAT_ONNX = "onnx"
MODEL_FILENAME = "model.onnx"
ONNX_JSON = "onnx.json"
ONNXRUNTIME_MODULE = "onnxruntime"
ONNX_MODULE = "onnx"
ONNX_EXTRA = "onnx"
CPU_PROVIDER = "CPUExecutionProvider"
ALLOW_SPINNING_KEY = "session.intra_op.allow_spinning"

_QUANTIZE = "QuantizeLinear"
_DEQUANTIZE = "DequantizeLinear"
# Ops that are int8 by themselves (QOperator format and ORT's contrib int8 kernels).
_INTEGER_OPS = frozenset(
    {
        "ConvInteger",
        "MatMulInteger",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
        "QGemm",
        "QAttention",
    }
)
# ORT's input/output types, as numpy dtypes (`prepare` casts to these).
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32,
    "tensor(uint32)": np.uint32,
    "tensor(int64)": np.int64,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def onnxruntime_module() -> Any:
    """`import onnxruntime`, or MissingRuntime naming the `onnx` extra."""
    return require_module(ONNXRUNTIME_MODULE, ONNX_EXTRA)


def onnx_module() -> Any:
    """`import onnx`, or MissingRuntime naming the `onnx` extra."""
    return require_module(ONNX_MODULE, ONNX_EXTRA)


def onnx_model_path(uri: str) -> str:
    return os.path.join(uri, MODEL_FILENAME)


def _is_local(path: str) -> bool:
    return "://" not in path


def _read_bytes(path: str) -> bytes:
    """A file's bytes; gs:// and s3:// artifact URIs go through TF's gfile."""
    if _is_local(path):
        with open(path, "rb") as f:
            return f.read()
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def read_onnx_facts(uri: str) -> dict[str, Any]:
    """`onnx.json` of an artifact (the mode, opset, versions, quantization), {} if absent."""
    path = os.path.join(uri, ONNX_JSON)
    if _is_local(path):
        if not os.path.exists(path):
            return {}
    else:
        import tensorflow as tf

        if not tf.io.gfile.exists(path):
            return {}
    return json.loads(_read_bytes(path).decode("utf-8"))


def write_onnx_facts(directory: str, facts: dict[str, Any]) -> str:
    """Writes `onnx.json` into `directory` (a local directory) and returns its path."""
    path = os.path.join(directory, ONNX_JSON)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    return path


def match_names(
    tensors: Sequence[TensorDescription], available: Sequence[str], what: str
) -> list[str]:
    """For each signature tensor, the ONNX graph input/output name that carries it.

    A tensor matches the name equal to its graph tensor name (`x:0`: what tf2onnx keeps),
    else its op name (`x`, for converters that drop the `:0`), else its signature name
    (`in0`, for models converted from a SavedModel signature). When that does not give
    every tensor a name of its own, the names are taken in the model's declared order,
    which tf2onnx keeps from the `input_names`/`output_names` it was given, provided the
    counts agree; otherwise this raises naming both sides.
    """
    names = list(available)
    matched: list[str] = []
    for tensor in tensors:
        found = next(
            (
                key
                for key in (tensor.tensor_name, tensor.op_name, tensor.name)
                if key in names and key not in matched
            ),
            None,
        )
        if found is None:
            break
        matched.append(found)
    if len(matched) == len(tensors):
        return matched
    if len(names) == len(tensors):
        return names
    raise ValueError(
        f"the ONNX model's {what} {names} do not match the signature's "
        f"{[t.tensor_name for t in tensors]}"
    )


def numpy_dtype(ort_type: str) -> Any:
    """The numpy dtype of an ORT type string (`tensor(float)` -> float32)."""
    try:
        return _ORT_DTYPES[ort_type]
    except KeyError:
        raise ValueError(f"no numpy dtype for the ONNX type {ort_type!r}") from None


def _graphs(graph: Any) -> Iterable[Any]:
    """A graph and the subgraphs of its control-flow nodes (If, Loop, Scan), depth first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _graphs(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graphs(subgraph)


def op_summary(model: Any) -> dict[str, Any]:
    """What an ONNX ModelProto holds: op counts, Q/DQ nodes, which ops run quantized.

    An op is counted as quantized when one of its inputs comes from a DequantizeLinear
    node (the QDQ format: ORT fuses the pattern into an int8 kernel), or when it is an
    integer op itself (QLinearConv, MatMulInteger: the QOperator format).
    """
    nodes = [node for graph in _graphs(model.graph) for node in graph.node]
    op_types = collections.Counter(node.op_type for node in nodes)
    dequantized = {out for node in nodes if node.op_type == _DEQUANTIZE for out in node.output}
    initializers = {init.name for graph in _graphs(model.graph) for init in graph.initializer}
    quantized: collections.Counter[str] = collections.Counter()
    for node in nodes:
        if node.op_type in (_QUANTIZE, _DEQUANTIZE):
            continue
        if (
            node.op_type.startswith("QLinear")
            or node.op_type in _INTEGER_OPS
            or any(name in dequantized for name in node.input)
        ):
            quantized[node.op_type] += 1
    weights = sum(
        1
        for node in nodes
        if node.op_type == _DEQUANTIZE and node.input and node.input[0] in initializers
    )
    return {
        "nodes": len(nodes),
        "op_types": dict(op_types.most_common()),
        "quantize_linear": op_types.get(_QUANTIZE, 0),
        "dequantize_linear": op_types.get(_DEQUANTIZE, 0),
        "quantized_weights": weights,
        "quantized_ops": dict(quantized.most_common()),
        "quantized": bool(quantized) or op_types.get(_QUANTIZE, 0) > 0,
        "opset": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
    }


def quantized_op_summary(onnx_path: str) -> dict[str, Any]:
    """`op_summary` of the model file at `onnx_path` (a local path or a gs:// URI)."""
    onnx = onnx_module()
    if _is_local(onnx_path):
        model = onnx.load(onnx_path)
    else:
        model = onnx.load_model_from_string(_read_bytes(onnx_path))
    return op_summary(model)


def session_options(settings: ThreadSettings) -> Any:
    """The SessionOptions every ONNX variant runs with (see the module docstring)."""
    ort = onnxruntime_module()
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op
    options.inter_op_num_threads = settings.inter_op
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry(ALLOW_SPINNING_KEY, "1")
    options.log_severity_level = 3  # Errors only: ORT's warnings would flood the report.
    return options


def create_session(model: str | bytes, settings: ThreadSettings) -> Any:
    """An InferenceSession on the CPU provider, from a model path or serialized bytes."""
    ort = onnxruntime_module()
    return ort.InferenceSession(
        model, sess_options=session_options(settings), providers=[CPU_PROVIDER]
    )


def _enum_name(value: Any) -> str:
    return value.name if hasattr(value, "name") else str(value)


class OnnxVariant(LoadedVariant):
    """An ONNX model in one InferenceSession, any batch size.

    `prepare` casts the inputs to the session's input types and keys them by input name;
    `run` only calls `session.run` for the outputs in signature order.
    """

    fixed_batch_size = None

    def __init__(self, uri: str, settings: ThreadSettings) -> None:
        ort = onnxruntime_module()
        self._uri = uri
        self._settings = settings
        self.device = "CPU:0"
        self._version = ort.__version__
        self._facts = read_onnx_facts(uri)
        path = onnx_model_path(uri)
        model = path if _is_local(path) else _read_bytes(path)
        self._session = create_session(model, settings)
        self._summary = quantized_op_summary(path)
        signature = GraphSignature.load(uri)
        inputs = self._session.get_inputs()
        self._input_names = match_names(signature.inputs, [i.name for i in inputs], "inputs")
        by_name = {i.name: i for i in inputs}
        self._input_dtypes = [numpy_dtype(by_name[name].type) for name in self._input_names]
        self._output_names = match_names(
            signature.outputs, [o.name for o in self._session.get_outputs()], "outputs"
        )
        batch_dims = [i.shape[0] if i.shape else None for i in inputs]
        if batch_dims and all(isinstance(d, int) and d > 0 for d in batch_dims):
            self.fixed_batch_size = int(batch_dims[0])

    def prepare(self, inputs: Sequence[np.ndarray]) -> Any:
        if len(inputs) != len(self._input_names):
            raise ValueError(f"the model takes {len(self._input_names)} inputs, got {len(inputs)}")
        return {
            name: np.ascontiguousarray(array, dtype=dtype)
            for name, array, dtype in zip(
                self._input_names, inputs, self._input_dtypes, strict=True
            )
        }

    def run(self, prepared: Any) -> list[np.ndarray]:
        return self._session.run(self._output_names, prepared)

    def describe(self) -> dict[str, Any]:
        options = self._session.get_session_options()
        summary = self._summary
        try:
            spinning = options.get_session_config_entry(ALLOW_SPINNING_KEY)
        except Exception:  # noqa: BLE001 - older ORT raises for unset keys; not fatal.
            spinning = None
        return {
            "device": self.device,
            "fixed_batch_size": self.fixed_batch_size,
            "onnxruntime_version": self._version,
            "mode": self._facts.get("mode"),
            "providers": list(self._session.get_providers()),
            "intra_op_threads": int(options.intra_op_num_threads),
            "inter_op_threads": int(options.inter_op_num_threads),
            "execution_mode": _enum_name(options.execution_mode),
            "graph_optimization_level": _enum_name(options.graph_optimization_level),
            "allow_spinning": spinning,
            "opset": summary["opset"].get("ai.onnx"),
            "input_names": list(self._input_names),
            "output_names": list(self._output_names),
            "quantized": summary["quantized"],
            "quantize_linear_ops": summary["quantize_linear"],
            "dequantize_linear_ops": summary["dequantize_linear"],
            "quantized_ops": summary["quantized_ops"],
        }

    def release(self) -> None:
        self._session = None


@register_backend(FORMAT_ONNX)
class OnnxBackend(Backend):
    """An ONNX model from the RuntimeConverter, run by ONNX Runtime on the CPU.

    The thread budget's `intra_op` is `intra_op_num_threads`, `inter_op` is
    `inter_op_num_threads`; ORT runs on the CPU here whatever device was asked.
    """

    # ORT session: 0.05-1.4x measured at batch 1; ResNet50's int8 model 3.0x with a call
    # at batch 32 (2026-12-03).
    memory_per_artifact_byte = 3.0

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        return OnnxVariant(uri, settings)
