"""OpenVINO: the Benchmarker's backend for an OpenVINO IR written by the RuntimeConverter.

    variant = backend_for("openvino_ir").load(uri, ThreadSettings(intra_op=2), "CPU:0")
    outputs = variant.run(variant.prepare([images]))     # numpy in, numpy out
    variant.describe()["runtime"]["by_primitive"]        # {'jit_avx2_I8': 3, ...}

The artifact (components/runtime_converter/openvino_ir.py writes it):

    {uri}/model.xml, {uri}/model.bin   the IR; its batch dimension is dynamic
    {uri}/signature.json               the frozen graph's GraphSignature
    {uri}/openvino.json                the mode, the precision hint to compile with, the
                                       OpenVINO/NNCF facts of the conversion

Why the precision hint is always set: on a CPU with AMX or AVX512-BF16 OpenVINO's
default `INFERENCE_PRECISION_HINT` is bf16, so a variant called fp32 that left it unset
would run bf16 there. And why it is read back: on a CPU without bf16 a bf16 hint
compiles without complaint and runs f32, so a bf16 variant whose compiled model
reports f32 is refused rather than timed under the wrong name.

Two compiled models, because OpenVINO tunes a compiled model for one scenario:
batch 1 (single-stream) runs on a `LATENCY` model with one stream; batches above 1
(the throughput scenario) run on a `THROUGHPUT` model, compiled on first use, through
an `AsyncInferQueue` of `OPTIMAL_NUMBER_OF_INFER_REQUESTS` requests, the batch split
into one chunk per request and the outputs concatenated in order.

OpenVINO is imported only inside functions: the backend registry is read where
OpenVINO is not installed.
"""

from __future__ import annotations

import collections
import json
import os
import re
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

FORMAT_OPENVINO = "openvino_ir"
MODEL_XML = "model.xml"
MODEL_BIN = "model.bin"
OPENVINO_JSON = "openvino.json"
OPENVINO_MODULE = "openvino"
OPENVINO_EXTRA = "openvino"
PRECISION_F32 = "f32"
PRECISION_BF16 = "bf16"
PRECISION_HINTS = (PRECISION_F32, PRECISION_BF16)
DEVICE_CPU = "CPU"
# How a variant is compiled (openvino.json's `compile_settings`): this project's settings
# per scenario, or OpenVINO's own defaults (the peer reference a user gets by hand).
COMPILE_TUNED = "tuned"
COMPILE_RUNTIME_DEFAULTS = "runtime_defaults"

# The compiled-model properties describe() reads back (what ran, not what was asked);
# the first four also stand at the top of describe(), for the latency model.
_HEADLINE = ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT")
_READ_BACK = (*_HEADLINE, "OPTIMAL_NUMBER_OF_INFER_REQUESTS")
# Execution-graph nodes that are no computation: left out of the precision counts.
_NOT_COMPUTE = frozenset({"Input", "Output", "Const"})
_TOP_PRIMITIVES = 15
# oneDNN/OpenVINO spell int8 kernels `jit_avx2_I8`, `brgconv_avx512_amx_int8`, `reorder_I8`.
_INT8_PRIMITIVE = re.compile(r"(?:^|_)(?:i8|u8|int8)(?:_|$)", re.IGNORECASE)


def openvino_module() -> Any:
    """`import openvino`, or MissingRuntime naming the `openvino` extra."""
    return require_module(OPENVINO_MODULE, OPENVINO_EXTRA)


def read_openvino_facts(uri: str) -> dict[str, Any]:
    """`openvino.json` of an artifact (the mode, `precision_hint`, conversion facts)."""
    import tensorflow as tf  # gfile, like signature.json.

    with tf.io.gfile.GFile(os.path.join(uri, OPENVINO_JSON)) as f:
        return json.loads(f.read())


def write_openvino_facts(directory: str, facts: dict[str, Any]) -> str:
    """Writes `openvino.json` into `directory` (a local directory) and returns its path."""
    path = os.path.join(directory, OPENVINO_JSON)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    return path


def match_ports(
    port_names: Sequence[Iterable[str]], tensors: Sequence[TensorDescription], what: str
) -> list[int]:
    """For each signature tensor, the index of the OpenVINO port that carries it.

    OpenVINO's TensorFlow frontend names a port with every TF tensor name that feeds it:
    a frozen graph's output `Identity:0` comes back as {'Identity:0', 'Softmax:0'}, an
    input as {'x:0'}. A tensor matches the port holding its graph tensor name
    (`Identity:0`), else its op name (`Identity`, for IRs whose frontend dropped the
    `:0`), else its signature name (`output_0`, for IRs converted from a SavedModel).
    When that does not give every tensor its own port, the ports are taken in order,
    which is the order the converter kept from the graph's feeds and fetches, provided
    the counts agree; otherwise this raises naming both sides.
    """
    names = [set(n) for n in port_names]
    matched: list[int] = []
    for tensor in tensors:
        index = next(
            (
                i
                for key in (tensor.tensor_name, tensor.op_name, tensor.name)
                for i, port in enumerate(names)
                if key in port
            ),
            None,
        )
        if index is None:
            break
        matched.append(index)
    if len(matched) == len(tensors) and len(set(matched)) == len(matched):
        return matched
    if len(names) == len(tensors):
        return list(range(len(tensors)))
    raise ValueError(
        f"the IR's {what} {[sorted(n) for n in names]} do not match the signature's "
        f"{[t.tensor_name for t in tensors]}"
    )


def ov_input_names(model: Any, signature: GraphSignature) -> list[str]:
    """The IR's input names in signature order (what an input dict is keyed by)."""
    ports = model.inputs
    indices = match_ports([p.get_names() for p in ports], signature.inputs, "inputs")
    return [ports[i].get_any_name() for i in indices]


def property_value(value: Any) -> Any:
    """A property value as JSON: OpenVINO types as 'f32', enums and others as strings."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "get_type_name"):  # openvino.Type, e.g. INFERENCE_PRECISION_HINT.
        return value.get_type_name()
    if hasattr(value, "name") and isinstance(value.name, str):  # Enums (hints, modes).
        return value.name
    return str(value)


def compiled_properties(compiled: Any) -> dict[str, Any]:
    """What a compiled model actually uses, read back from it (unknown names skipped)."""
    properties = {}
    for name in _READ_BACK:
        try:
            properties[name] = property_value(compiled.get_property(name))
        except RuntimeError:  # A property this plugin version does not report.
            continue
    return properties


def _rt_value(rt_info: Any, key: str) -> str:
    """One execution-graph rt_info entry as a string ('' when absent)."""
    if key not in rt_info:
        return ""
    value = rt_info[key]
    return value.astype(str) if hasattr(value, "astype") else str(value)


def runtime_precisions(compiled_model: Any) -> dict[str, Any]:
    """What the CPU plugin runs: the execution graph's nodes by precision and by kernel.

    `compiled_model` is a CompiledModel (or its `get_runtime_model()`). Every node of
    the execution graph carries `runtimePrecision` (`f32`, `u8`, `bf16`) and
    `primitiveType`, the oneDNN/OpenVINO kernel chosen (`jit_avx2_I8`,
    `brgconv_avx512_amx_int8`); inputs, outputs and constants are left out. The kernel
    names are what tells an int8 model that runs VNNI or AMX from one that runs int8 on
    plain AVX2 (or not int8 at all), which the precision alone cannot.
    """
    runtime = (
        compiled_model.get_runtime_model()
        if hasattr(compiled_model, "get_runtime_model")
        else compiled_model
    )
    by_precision: collections.Counter[str] = collections.Counter()
    by_primitive: collections.Counter[str] = collections.Counter()
    for op in runtime.get_ordered_ops():
        rt_info = op.get_rt_info()
        if _rt_value(rt_info, "layerType") in _NOT_COMPUTE:
            continue
        by_precision[_rt_value(rt_info, "runtimePrecision") or "unknown"] += 1
        by_primitive[_rt_value(rt_info, "primitiveType") or "unknown"] += 1

    def kernels(matches: Any) -> int:
        return sum(count for name, count in by_primitive.items() if matches(name))

    return {
        "nodes": sum(by_precision.values()),
        "by_precision": dict(by_precision.most_common()),
        "by_primitive": dict(by_primitive.most_common(_TOP_PRIMITIVES)),
        "int8_kernels": kernels(lambda name: _INT8_PRIMITIVE.search(name) is not None),
        "bf16_kernels": kernels(lambda name: "bf16" in name.lower()),
        "amx_kernels": kernels(lambda name: "amx" in name.lower()),
        "vnni_kernels": kernels(lambda name: "vnni" in name.lower()),
    }


class _OpenVinoVariant(LoadedVariant):
    """An IR compiled for the CPU: a latency model for batch 1, a throughput model above.

    Inputs are positional in signature order; `prepare` casts them to the IR's input
    types and keys them by input name (and, for the throughput model, splits the batch
    into one chunk per infer request), so `run` only infers.
    """

    fixed_batch_size = None

    def __init__(self, uri: str, settings: ThreadSettings) -> None:
        ov = openvino_module()
        self._uri = uri
        self._settings = settings
        self._facts = read_openvino_facts(uri)
        self._precision = self._facts.get("precision_hint", PRECISION_F32)
        self._runtime_defaults = (
            self._facts.get("compile_settings", COMPILE_TUNED) == COMPILE_RUNTIME_DEFAULTS
        )
        if self._precision not in PRECISION_HINTS:
            raise ValueError(
                f"{OPENVINO_JSON} in {uri!r} asks for precision {self._precision!r}; "
                f"known: {', '.join(PRECISION_HINTS)}"
            )
        self.device = "CPU:0"
        self._version = ov.get_version()
        self._core = ov.Core()
        self._model = self._core.read_model(os.path.join(uri, MODEL_XML))
        signature = GraphSignature.load(uri)
        self._input_names = ov_input_names(self._model, signature)
        self._input_dtypes = [
            self._model.input(name).get_element_type().to_dtype() for name in self._input_names
        ]
        self._output_indices = match_ports(
            [p.get_names() for p in self._model.outputs], signature.outputs, "outputs"
        )
        if self._runtime_defaults:
            # No properties at all: OpenVINO picks threads, streams, hint and precision
            # (bf16 on AMX), and every batch is one synchronous call, as by hand.
            self._latency = self._core.compile_model(self._model, DEVICE_CPU)
        else:
            self._latency = self._compile("LATENCY", {"NUM_STREAMS": 1})
            self._check_precision(self._latency)
        self._request = self._latency.create_infer_request()
        self._throughput: Any = None
        self._queue: Any = None

    def _compile(self, hint: str, extra: dict[str, Any]) -> Any:
        config = {
            "INFERENCE_NUM_THREADS": self._settings.intra_op,
            "INFERENCE_PRECISION_HINT": self._precision,
            "PERFORMANCE_HINT": hint,
            **extra,
        }
        return self._core.compile_model(self._model, DEVICE_CPU, config)

    def _check_precision(self, compiled: Any) -> None:
        used = property_value(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if used != self._precision:
            capabilities = self._core.get_property(DEVICE_CPU, "OPTIMIZATION_CAPABILITIES")
            raise RuntimeError(
                f"OpenVINO compiled the {self._precision} variant in {self._uri!r} with "
                f"INFERENCE_PRECISION_HINT={used}: this CPU cannot run {self._precision} "
                f"(OpenVINO CPU capabilities: {', '.join(capabilities)}), and timing it "
                f"would report {used} figures as {self._precision}"
            )

    def _throughput_queue(self) -> Any:
        """The throughput model and its request queue, compiled on first use."""
        if self._queue is None:
            ov = openvino_module()
            self._throughput = self._compile("THROUGHPUT", {})
            self._check_precision(self._throughput)
            requests = int(self._throughput.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            self._queue = ov.AsyncInferQueue(self._throughput, max(1, requests))
            self._queue.set_callback(self._collect)
        return self._queue

    def _collect(self, request: Any, userdata: tuple[list[Any], int]) -> None:
        """AsyncInferQueue callback: stores a chunk's outputs at the chunk's index."""
        results, index = userdata
        results[index] = self._outputs(request)

    def _input_dict(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {
            name: np.ascontiguousarray(array, dtype=dtype)
            for name, array, dtype in zip(
                self._input_names, arrays, self._input_dtypes, strict=True
            )
        }

    def prepare(self, inputs: Sequence[np.ndarray]) -> Any:
        if len(inputs) != len(self._input_names):
            raise ValueError(f"the model takes {len(self._input_names)} inputs, got {len(inputs)}")
        batch = int(inputs[0].shape[0])
        if batch <= 1 or self._runtime_defaults:
            return None, [self._input_dict(inputs)]
        queue = self._throughput_queue()
        chunks = min(batch, len(queue))
        split = [np.array_split(x, chunks) for x in inputs]
        return queue, [self._input_dict([parts[i] for parts in split]) for i in range(chunks)]

    def _outputs(self, request: Any) -> list[np.ndarray]:
        # Copies: the request's output buffers are overwritten by its next inference.
        return [request.get_output_tensor(i).data.copy() for i in self._output_indices]

    def run(self, prepared: Any) -> list[np.ndarray]:
        queue, feeds = prepared
        if queue is None:
            self._request.infer(feeds[0], share_inputs=True)
            return self._outputs(self._request)
        results: list[Any] = [None] * len(feeds)
        for index, feed in enumerate(feeds):
            queue.start_async(feed, userdata=(results, index), share_inputs=True)
        queue.wait_all()
        if any(r is None for r in results):  # A callback that raised leaves its slot empty.
            raise RuntimeError("an OpenVINO infer request returned no outputs")
        return [np.concatenate(parts) for parts in zip(*results, strict=True)]

    def describe(self) -> dict[str, Any]:
        latency = compiled_properties(self._latency)
        description: dict[str, Any] = {
            "device": self.device,
            "fixed_batch_size": self.fixed_batch_size,
            "threads": self._settings.intra_op,
            "openvino_version": self._version,
            "mode": self._facts.get("mode"),
            "precision_hint_requested": (
                "runtime default" if self._runtime_defaults else self._precision
            ),
            "compile_settings": COMPILE_RUNTIME_DEFAULTS
            if self._runtime_defaults
            else COMPILE_TUNED,
            **{name: latency.get(name) for name in _HEADLINE},
            "latency": latency,
            "throughput": compiled_properties(self._throughput) if self._throughput else None,
            "runtime": runtime_precisions(self._latency),
        }
        if self._throughput is not None:
            description["throughput_runtime"] = runtime_precisions(self._throughput)
        return description

    def release(self) -> None:
        self._queue = self._throughput = self._request = self._latency = None


@register_backend(FORMAT_OPENVINO)
class OpenVinoBackend(Backend):
    """An OpenVINO IR from the RuntimeConverter, compiled for the CPU.

    The thread budget's `intra_op` is `INFERENCE_NUM_THREADS`; OpenVINO runs on the CPU
    here whatever device was asked (its GPU plugin needs an Intel GPU).
    """

    # Compiled model plus the IR while compiling: 1.2-5x measured at batch 1; ResNet50's
    # IRs 6.2x (f32) and 6.7x (int8) with a call at batch 32 (2026-12-03).
    memory_per_artifact_byte = 7.0

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        return _OpenVinoVariant(uri, settings)
