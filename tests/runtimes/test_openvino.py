"""The OpenVINO backend on IRs the converter wrote: outputs, batches, describe, absence.

The classifier (tests/runtime_converter/tiny_classifier.py) has two inputs and two
outputs listed in the signature in the reverse of the graph's order, so outputs coming
back in signature order shows the IR's names were matched, not taken in order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from components.common.signature import TensorDescription
from components.runtime_converter.modes import ConvertSettings, get_mode
from components.runtimes import MissingRuntime, ThreadSettings, backend_for, missing_runtime
from components.runtimes import openvino as openvino_runtime
from components.runtimes.openvino import (
    FORMAT_OPENVINO,
    match_ports,
    runtime_precisions,
)
from tests.runtime_converter.tiny_classifier import build_classifier, requires_openvino


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The classifier and its fp32 IR."""
    classifier = build_classifier(str(tmp_path_factory.mktemp("classifier")))
    output = str(tmp_path_factory.mktemp("openvino_fp32"))
    get_mode("openvino_fp32").run(
        classifier.graph_dir, classifier.signature, None, output, ConvertSettings()
    )
    return classifier, output


@pytest.fixture(scope="module")
def variant(converted):
    loaded = backend_for(FORMAT_OPENVINO).load(converted[1], ThreadSettings(intra_op=2), "GPU:0")
    yield loaded
    loaded.release()


@requires_openvino
def test_batch_1_and_batch_8_match_tensorflow(converted, variant):
    classifier, _ = converted
    inputs = [x[:8] for x in classifier.test_inputs]
    expected = classifier.tf_outputs(inputs)

    single = [variant.run(variant.prepare([x[i : i + 1] for x in inputs])) for i in range(8)]
    batch = variant.run(variant.prepare(inputs))  # The throughput path: 2 requests here.

    for k, e in enumerate(expected):
        np.testing.assert_allclose(np.concatenate([s[k] for s in single]), e, atol=1e-4)
        np.testing.assert_allclose(batch[k], e, atol=1e-4)
        assert batch[k].dtype == np.float32
    # Signature order: logits first, then the probabilities (rows sum to 1).
    np.testing.assert_allclose(batch[1].sum(axis=1), 1.0, rtol=1e-5)
    assert variant.fixed_batch_size is None and variant.supports_batch(5)


@requires_openvino
def test_odd_batches_and_other_dtypes_are_prepared(converted, variant):
    classifier, _ = converted
    inputs = [x[:3].astype(np.float64) for x in classifier.test_inputs]  # 3 rows, 2 requests.

    got = variant.run(variant.prepare(inputs))

    expected = classifier.tf_outputs([x.astype(np.float32) for x in inputs])
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-4)
    with pytest.raises(ValueError, match="takes 2 inputs"):
        variant.prepare(inputs[:1])


@requires_openvino
def test_describe_reads_back_what_was_compiled(converted, variant):
    classifier, _ = converted
    variant.run(variant.prepare([x[:4] for x in classifier.test_inputs]))  # Throughput model.

    described = variant.describe()

    json.dumps(described)  # JSON-able.
    assert described["device"] == "CPU:0"  # OpenVINO runs on the CPU whatever was asked.
    assert described["threads"] == described["INFERENCE_NUM_THREADS"] == 2
    assert described["PERFORMANCE_HINT"] == "LATENCY"
    assert described["NUM_STREAMS"] == 1
    assert described["INFERENCE_PRECISION_HINT"] == "f32"
    assert described["mode"] == "openvino_fp32"
    throughput = described["throughput"]
    assert throughput["PERFORMANCE_HINT"] == "THROUGHPUT"
    assert throughput["INFERENCE_PRECISION_HINT"] == "f32"
    assert throughput["OPTIMAL_NUMBER_OF_INFER_REQUESTS"] >= 1
    runtime = described["runtime"]
    assert runtime["by_precision"] == {"f32": runtime["nodes"]}
    assert runtime["int8_kernels"] == runtime["bf16_kernels"] == 0
    assert described["throughput_runtime"]["by_precision"] == {"f32": runtime["nodes"]}


@requires_openvino
def test_runtime_precisions_of_a_real_int8_model(converted, tmp_path):
    classifier, _ = converted
    output = str(tmp_path / "int8")
    get_mode("openvino_int8").run(
        classifier.graph_dir,
        classifier.signature,
        classifier.calibration,
        output,
        ConvertSettings(num_calibration=16),
    )
    import openvino as ov

    compiled = ov.Core().compile_model(
        f"{output}/model.xml", "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )

    summary = runtime_precisions(compiled)

    assert summary["nodes"] == sum(summary["by_precision"].values())
    assert summary["by_precision"].get("u8", 0) + summary["by_precision"].get("i8", 0) > 0
    assert summary["int8_kernels"] > 0
    assert len(summary["by_primitive"]) <= 15
    # runtime_precisions also takes the runtime model itself.
    assert runtime_precisions(compiled.get_runtime_model()) == summary


@requires_openvino
def test_a_bf16_variant_is_refused_where_it_would_run_f32(converted, tmp_path):
    """On a CPU without bf16 OpenVINO compiles a bf16 hint as f32 without a word."""
    from components.common.cpu_facts import BF16_FLAGS, host_cpu

    if host_cpu().has_any(BF16_FLAGS):
        pytest.skip("this CPU runs bf16")
    classifier, _ = converted
    output = str(tmp_path / "bf16")
    get_mode("openvino_bf16").run(
        classifier.graph_dir, classifier.signature, None, output, ConvertSettings()
    )

    with pytest.raises(RuntimeError, match="HINT=f32: this CPU cannot run bf16"):
        backend_for(FORMAT_OPENVINO).load(output, ThreadSettings(), "CPU:0")


class _Any:
    """Stands in for openvino.OVAny (`astype(str)`)."""

    def __init__(self, value: str):
        self.value = value

    def astype(self, kind: type) -> str:
        return kind(self.value)


class _Node:
    def __init__(self, layer: str, primitive: str, precision: str):
        self._rt = {
            "layerType": _Any(layer),
            "primitiveType": _Any(primitive),
            "runtimePrecision": _Any(precision),
        }

    def get_rt_info(self) -> dict[str, _Any]:
        return self._rt


class _RuntimeModel:
    def __init__(self, nodes: list[_Node]):
        self._nodes = nodes

    def get_ordered_ops(self) -> list[_Node]:
        return self._nodes


def test_runtime_precisions_counts_kernels_by_kind():
    model = _RuntimeModel(
        [
            _Node("Input", "unknown_f32", "f32"),
            _Node("Const", "unknown_i8", "i8"),
            _Node("Convolution", "brgconv_avx512_amx_int8", "u8"),
            _Node("Convolution", "brgconv_avx512_amx_int8", "u8"),
            _Node("FullyConnected", "jit_avx512_core_vnni_I8", "u8"),
            _Node("Reorder", "reorder_I8", "u8"),
            _Node("MatMul", "brgemm_avx512_amx_bf16", "bf16"),
            _Node("Softmax", "jit_avx2_f32", "f32"),
            _Node("Output", "unknown_f32", "f32"),
        ]
    )

    summary = runtime_precisions(model)

    assert summary["nodes"] == 6  # Inputs, outputs and constants are no computation.
    assert summary["by_precision"] == {"u8": 4, "bf16": 1, "f32": 1}
    assert summary["by_primitive"]["brgconv_avx512_amx_int8"] == 2
    assert summary["int8_kernels"] == 4
    assert summary["amx_kernels"] == 3
    assert summary["vnni_kernels"] == 1
    assert summary["bf16_kernels"] == 1


def _tensor(name: str, tensor_name: str) -> TensorDescription:
    return TensorDescription(name, tensor_name, "float32", (None, 4))


def test_match_ports_by_tensor_name_op_name_signature_name_then_order():
    probabilities = _tensor("probabilities", "Identity:0")
    logits = _tensor("logits", "Identity_1:0")
    ports = [{"Softmax:0", "Identity:0"}, {"MatMul:0", "Identity_1:0"}]

    assert match_ports(ports, [logits, probabilities], "outputs") == [1, 0]
    assert match_ports([{"Identity_1"}, {"Identity"}], [logits, probabilities], "outputs") == [
        0,
        1,
    ]
    assert match_ports([{"logits"}, {"probabilities"}], [probabilities, logits], "x") == [1, 0]
    # No names in common: the converter keeps the graph's order, so order it is.
    assert match_ports([{"a"}, {"b"}], [logits, probabilities], "outputs") == [0, 1]
    with pytest.raises(ValueError, match="do not match the signature"):
        match_ports([{"a"}], [logits, probabilities], "outputs")


def test_missing_openvino_names_the_extra(monkeypatch, tmp_path):
    # None in sys.modules: `import openvino` raises ImportError and find_spec says None.
    monkeypatch.setitem(sys.modules, "openvino", None)

    with pytest.raises(MissingRuntime) as raised:
        backend_for(FORMAT_OPENVINO).load(str(tmp_path), ThreadSettings(), "CPU:0")

    assert raised.value.extra == "openvino"
    assert "tfx-inference-optimizer[openvino]" in str(raised.value)
    assert "[openvino]" in missing_runtime("openvino", openvino_runtime.OPENVINO_EXTRA)


def test_the_modules_import_without_openvino():
    """The backend and mode registries are read where OpenVINO is not installed."""
    code = (
        "import sys; sys.modules['openvino'] = sys.modules['nncf'] = None\n"
        "import components.runtimes.openvino, components.runtime_converter.openvino_ir\n"
        "from components.runtime_converter.modes import get_mode\n"
        "print(get_mode('openvino_int8').model_format)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == FORMAT_OPENVINO


@requires_openvino
def test_the_peer_reference_compiles_with_openvinos_own_defaults(converted, tmp_path):
    """openvino_int8_defaults: the same NNCF IR, compile_model with no properties at all."""
    classifier, _ = converted
    calibration = [x[:32] for x in classifier.test_inputs]
    output = str(tmp_path / "defaults")
    get_mode("openvino_int8_defaults").run(
        classifier.graph_dir, classifier.signature, calibration, output, ConvertSettings()
    )
    loaded = backend_for(FORMAT_OPENVINO).load(output, ThreadSettings(intra_op=1), "CPU:0")
    try:
        batch = [x[:8] for x in classifier.test_inputs]
        prepared = loaded.prepare(batch)
        queue, feeds = prepared
        assert queue is None and len(feeds) == 1  # One synchronous call, as by hand.
        outputs = loaded.run(prepared)
        described = loaded.describe()
    finally:
        loaded.release()

    assert [o.shape[0] for o in outputs] == [8] * len(outputs)
    assert described["compile_settings"] == "runtime_defaults"
    assert described["precision_hint_requested"] == "runtime default"
    # Our thread budget (1) is not applied: OpenVINO chose its own.
    assert described["INFERENCE_NUM_THREADS"] != 1 or os.cpu_count() == 1
    assert described["throughput"] is None
