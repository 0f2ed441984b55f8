"""Accuracy-aware ONNX int8 (onnx_int8_aa): segments, MACs, ORT's QDQ errors per channel,
and the whole search on the outlier digits CNN (naive int8 loses far more than 2 points;
the search must come back within 1)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.runtime_converter.tiny_classifier import requires_onnx

pytestmark = requires_onnx


def _chain_model():
    """x -> Conv(w1) -> Relu -> MaxPool -> Conv(w2) -> Flatten -> Gemm(w3) -> Softmax."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
        "w2": rng.normal(size=(6, 4, 3, 3)).astype(np.float32),
        "w3": rng.normal(size=(6 * 4 * 4, 3)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node(
            "MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["c2"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3"], ["g"], name="dense"),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax"),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_segment_reaches_from_a_weighted_node_through_mac_free_ops_to_the_next():
    from components.runtime_converter.onnx_accuracy_aware import onnx_segments

    segments = {s.name: s for s in onnx_segments(_chain_model())}
    assert list(segments) == ["conv1", "conv2", "dense"]
    # conv1's output tensor is read by conv2 through Relu and MaxPool: ORT keeps a QDQ
    # pair on it while either conv is quantized, so the segment holds both.
    assert segments["conv1"].nodes == ("conv1", "relu1", "pool1", "conv2")
    assert segments["conv1"].tensors == ("x", "c1", "r1", "p1")  # The input joins conv1's.
    assert segments["conv2"].nodes == ("conv2", "flatten", "dense")
    assert segments["dense"].nodes == ("dense", "softmax") and segments["dense"].weight == "w3"


def test_macs_of_onnx_contractions():
    from components.runtime_converter.onnx_accuracy_aware import node_macs

    assert node_macs("Conv", [4, 1, 3, 3], (1, 4, 8, 8)) == 4 * 8 * 8 * 9
    assert node_macs("Conv", [6, 2, 3, 3], (1, 6, 4, 4)) == 6 * 4 * 4 * 18  # groups=2
    assert node_macs("Gemm", [96, 3], (1, 3)) == 96 * 3
    assert node_macs("Relu", None, (1, 4, 8, 8)) == 0


def test_channel_errors_are_per_channel_on_the_flattened_tensors_ort_saves():
    from components.runtime_converter.onnx_accuracy_aware import channel_errors

    rng = np.random.default_rng(1)
    reference = rng.uniform(0.5, 1.0, size=(2, 3, 4, 4)).astype(np.float32)
    reference[:, 0] *= 300.0  # An outlier channel sets the tensor's power.
    quantized = reference.copy()
    quantized[:, 2] = 0.0  # A small channel crushed to nothing: its whole power lost.
    flat = channel_errors([reference.ravel()], [quantized.ravel()], (3, 4, 4))
    assert flat == pytest.approx(1.0 / 3.0, rel=1e-6)  # One channel of three lost whole.
    # Over the whole tensor the outlier's power hides the loss.
    whole = channel_errors([reference.ravel()], [quantized.ravel()])
    assert whole < 1e-4


@pytest.mark.slow
def test_naive_onnx_int8_fails_and_the_search_restores_it_within_one_point(outlier, tmp_path):
    from components.runtimes.onnx import quantized_op_summary

    outcome, record = outlier.search("onnx_int8_aa", str(tmp_path))
    search = record["search"]
    assert search["steps"][0]["excluded"] == [] and search["steps"][0]["metric_drop"] > 0.02
    assert search["reachable"] and search["stop_reason"] == "within_budget", search
    assert search["steps"][search["chosen_step"]]["metric_drop"] <= 0.01
    assert any(
        "conv_outlier" in name or "conv_reader" in name for name in search["fallback_layers"]
    )
    # Every method ORT offers was tried on full int8, and the best one kept.
    trials = {t["method"]: t["metric_drop"] for t in record["calibration_trials"]}
    assert set(trials) == {"minmax", "percentile", "entropy"}
    assert trials[record["calibration_method"]] == min(trials.values())
    assert outcome.properties["fallback_layer_count"] >= 1
    assert outcome.properties["naive_int8_drop"] > 0.02
    # Still an int8 model: the other layers stayed quantized.
    assert quantized_op_summary(str(tmp_path / "out" / "model.onnx"))["quantize_linear"] > 0
