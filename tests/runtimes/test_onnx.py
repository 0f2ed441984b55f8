"""The ONNX Runtime backend on a tiny classifier converted here, plus its pure helpers.

The classifier (tests/runtime_converter/tiny_classifier.py) lists its inputs and
outputs in the order opposite to the graph's, so names must be matched to the
signature rather than taken in order.

The artifact is written by the converter's own functions, called in this process
(`convert_graph_to_onnx`, `quantize_onnx_model`): the modes' isolated runs are tested in
tests/runtime_converter/test_onnx_model.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from components.common.signature import GraphSignature, TensorDescription
from tests.runtime_converter.tiny_classifier import (
    CLASSES,
    IMAGE_SIDE,
    TinyClassifier,
    build_classifier,
    requires_onnx,
)

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_artifact(classifier: TinyClassifier, directory: str) -> str:
    """An fp32 ONNX artifact as onnx_fp32 writes it, converted in this process."""
    from components.runtime_converter.onnx_model import convert_graph_to_onnx
    from components.runtimes.onnx import MODEL_FILENAME, write_onnx_facts

    os.makedirs(directory, exist_ok=True)
    facts = convert_graph_to_onnx(classifier.graph_dir, os.path.join(directory, MODEL_FILENAME))
    write_onnx_facts(directory, {"mode": "onnx_fp32", **facts})
    GraphSignature.load(classifier.graph_dir).save(directory)
    return directory


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> TinyClassifier:
    return build_classifier(str(tmp_path_factory.mktemp("classifier")))


@pytest.fixture(scope="module")
def fp32_artifact(classifier, tmp_path_factory) -> str:
    return write_artifact(classifier, str(tmp_path_factory.mktemp("onnx_fp32")))


@pytest.fixture(scope="module")
def int8_artifact(classifier, fp32_artifact, tmp_path_factory) -> tuple[str, dict]:
    from components.runtime_converter.onnx_model import int8_weight_range, quantize_onnx_model
    from components.runtimes.onnx import MODEL_FILENAME, write_onnx_facts

    directory = str(tmp_path_factory.mktemp("onnx_int8"))
    calibration = os.path.join(directory, "calibration.npz")
    np.savez(calibration, *classifier.calibration)
    facts = quantize_onnx_model(
        model_path=os.path.join(fp32_artifact, MODEL_FILENAME),
        output_path=os.path.join(directory, MODEL_FILENAME),
        calibration_path=calibration,
        signature=classifier.signature.to_json(),
        work_dir=directory,
        reduce_range=int8_weight_range()[0],
    )
    write_onnx_facts(directory, {"mode": "onnx_int8", "quantization": facts})
    classifier.signature.save(directory)
    return directory, facts


def _load(uri: str, intra_op: int = 2, inter_op: int = 1):
    from components.runtimes import ThreadSettings
    from components.runtimes.onnx import OnnxBackend

    return OnnxBackend().load(uri, ThreadSettings(intra_op, inter_op), "CPU:0")


def test_the_backend_is_registered_for_the_onnx_format():
    from components.runtimes import backend_for
    from components.runtimes.onnx import FORMAT_ONNX, OnnxBackend

    assert FORMAT_ONNX == "onnx"
    assert isinstance(backend_for(FORMAT_ONNX), OnnxBackend)


@requires_onnx
@pytest.mark.parametrize("batch", [1, 8])
def test_fp32_variant_reproduces_tf_in_signature_order(fp32_artifact, classifier, batch):
    variant = _load(fp32_artifact)
    inputs = [x[:batch] for x in classifier.test_inputs]
    expected = classifier.tf_outputs(inputs)

    # float64 in: prepare casts to the model's float32, outside the timed run().
    got = variant.run(variant.prepare([x.astype(np.float64) for x in inputs]))

    assert variant.fixed_batch_size is None and variant.supports_batch(batch)
    assert [g.shape for g in got] == [(batch, CLASSES), (batch, CLASSES)]
    assert all(isinstance(g, np.ndarray) and g.dtype == np.float32 for g in got)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
    # Signature order is [logits, probabilities]: the second sums to one, the first not.
    np.testing.assert_allclose(got[1].sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(got[0].sum(axis=1), 1.0)


@requires_onnx
def test_prepare_builds_the_feed_dict_by_the_models_names(fp32_artifact, classifier):
    variant = _load(fp32_artifact)

    feeds = variant.prepare([x[:2] for x in classifier.test_inputs])

    # tf2onnx keeps TF's tensor names; the signature lists offsets first.
    assert list(feeds) == ["offsets:0", "images:0"]
    assert feeds["images:0"].shape == (2, IMAGE_SIDE, IMAGE_SIDE, 1)
    with pytest.raises(ValueError, match="takes 2 inputs"):
        variant.prepare(classifier.test_inputs[:1])


@requires_onnx
def test_describe_reads_the_session_back(fp32_artifact):
    description = _load(fp32_artifact, intra_op=2, inter_op=1).describe()

    assert description["device"] == "CPU:0"
    assert description["providers"] == ["CPUExecutionProvider"]
    assert description["intra_op_threads"] == 2
    assert description["inter_op_threads"] == 1
    assert description["execution_mode"] == "ORT_SEQUENTIAL"
    assert description["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert description["allow_spinning"] == "1"
    assert description["opset"] == 17
    assert description["mode"] == "onnx_fp32"
    assert description["fixed_batch_size"] is None
    assert description["output_names"] == ["Identity_1:0", "Identity:0"]
    assert description["quantized"] is False
    assert description["quantize_linear_ops"] == 0
    assert description["quantized_ops"] == {}
    json.dumps(description)  # The report stores it as JSON.


@requires_onnx
def test_one_thread_is_honoured(fp32_artifact):
    assert _load(fp32_artifact, intra_op=1).describe()["intra_op_threads"] == 1


@requires_onnx
def test_int8_variant_is_quantized_and_agrees_with_tf(int8_artifact, classifier):
    directory, facts = int8_artifact
    variant = _load(directory)
    description = variant.describe()

    assert facts["quantize_linear_ops"] > 0
    assert description["quantized"] is True
    assert description["quantize_linear_ops"] == facts["quantize_linear_ops"]
    assert description["dequantize_linear_ops"] >= description["quantize_linear_ops"]
    assert description["quantized_ops"].get("Conv", 0) >= 1
    assert set(description["quantized_ops"]) & {"Gemm", "MatMul"}
    json.dumps(description)

    logits_tf = classifier.tf_outputs(classifier.test_inputs)[0]
    logits_int8 = variant.run(variant.prepare(classifier.test_inputs))[0]
    predicted = np.argmax(logits_tf, axis=1)
    assert np.bincount(predicted, minlength=CLASSES).max() <= 0.6 * len(predicted)
    assert np.mean(np.argmax(logits_int8, axis=1) == predicted) >= 0.9


@requires_onnx
def test_quantized_op_summary_counts_qdq_nodes_and_their_consumers(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from components.runtimes.onnx import quantized_op_summary

    def scalar(name, value, dtype):
        return numpy_helper.from_array(np.array(value, dtype=dtype), name)

    weight = numpy_helper.from_array(np.ones((4, 3), np.int8), "w_q")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "s", "z"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "s", "zw"], ["w_dq"]),
        helper.make_node("MatMul", ["x_dq", "w_dq"], ["y"]),
        helper.make_node("Relu", ["y"], ["r"]),  # Float input: not quantized.
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, ["b", 3])],
        [weight, scalar("s", 0.1, np.float32), scalar("z", 0, np.uint8), scalar("zw", 0, np.int8)],
    )
    path = str(tmp_path / "qdq.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)

    summary = quantized_op_summary(path)

    assert summary["quantize_linear"] == 1
    assert summary["dequantize_linear"] == 2
    assert summary["quantized_weights"] == 1
    assert summary["quantized_ops"] == {"MatMul": 1}
    assert summary["quantized"] is True
    assert summary["opset"] == {"ai.onnx": 17}
    assert summary["op_types"]["Relu"] == 1


def _tensor(name: str, tensor_name: str) -> TensorDescription:
    return TensorDescription(name, tensor_name, "float32", (None, 4))


def test_names_match_by_tensor_name_then_op_name_then_signature_name():
    from components.runtimes.onnx import match_names

    tensors = [_tensor("b", "offsets:0"), _tensor("a", "images:0")]
    assert match_names(tensors, ["images:0", "offsets:0"], "inputs") == ["offsets:0", "images:0"]
    assert match_names(tensors, ["images", "offsets"], "inputs") == ["offsets", "images"]
    assert match_names(tensors, ["a", "b"], "inputs") == ["b", "a"]


def test_names_fall_back_to_the_models_order_only_when_counts_agree():
    from components.runtimes.onnx import match_names

    tensors = [_tensor("p", "Identity:0"), _tensor("q", "Identity_1:0")]
    assert match_names(tensors, ["out_a", "out_b"], "outputs") == ["out_a", "out_b"]
    with pytest.raises(ValueError, match="do not match"):
        match_names(tensors, ["out_a"], "outputs")


def test_a_missing_onnxruntime_names_the_extra(monkeypatch, tmp_path):
    from components.runtimes import MissingRuntime, ThreadSettings
    from components.runtimes.onnx import OnnxBackend

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails.

    with pytest.raises(MissingRuntime, match=r"'onnxruntime'.*tfx-inference-optimizer\[onnx\]"):
        OnnxBackend().load(str(tmp_path), ThreadSettings(), "CPU:0")


def test_the_modules_import_without_the_onnx_packages():
    code = (
        "import sys\n"
        "for name in ('onnxruntime', 'onnx', 'tf2onnx'):\n"
        "    sys.modules[name] = None\n"
        "from components.runtimes.base import missing_runtime, registered_backends\n"
        "import components.runtime_converter.onnx_model as m\n"
        "assert registered_backends()['onnx'].format == 'onnx'\n"
        "assert 'tfx-inference-optimizer[onnx]' in missing_runtime('onnxruntime', 'onnx')\n"
        "print(m.OnnxFp32Mode.name, m.OnnxInt8Mode.name)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=_REPO, capture_output=True, text=True, check=False
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split() == ["onnx_fp32", "onnx_int8"]
