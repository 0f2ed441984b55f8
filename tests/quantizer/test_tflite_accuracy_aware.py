"""Accuracy-aware TFLite int8 on a model where naive int8 fails (an outlier channel).

The model (pipelines/examples/outlier_digits.py) is a digits CNN trained for real, then
given one outlier channel that leaves its float function unchanged. Naive per-tensor
int8 must lose more than 2 points of top-1 on the held-out digits; the search must come
back within 1 point by putting layers in float, chosen from the QuantizationDebugger's
per-layer error, and stay faster than the float TFLite model.
"""

from __future__ import annotations

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.int8_fallback import Int8SearchSettings
from components.quantizer.tflite_accuracy_aware import (
    channel_normalized_mse,
    layer_macs,
    search_tflite_int8,
)

pytestmark = pytest.mark.slow


def test_naive_int8_fails_and_the_search_restores_it_within_one_point(outlier):
    from components.quantizer.tflite_accuracy_aware import _runner
    from components.quantizer.tflite_quantization import convert_graph

    graph_def, signature = outlier.frozen.graph_def, outlier.frozen.signature
    naive, _ = convert_graph(graph_def, signature, "int8", 1, outlier.calibration)
    naive_top1 = outlier.held_out.metric(_runner(naive, 1))
    assert outlier.float_top1 > 0.9
    assert outlier.float_top1 - naive_top1 > 0.02, (outlier.float_top1, naive_top1)

    result = search_tflite_int8(
        graph_def,
        signature,
        outlier.calibration,
        outlier.held_out,
        Int8SearchSettings(max_accuracy_drop=0.01),
    )
    search = result.search
    assert search.steps[0].excluded == ()
    assert search.steps[0].metric_drop == pytest.approx(result.float_metric - naive_top1, abs=0.01)
    assert search.reachable and search.stop_reason == "within_budget", search.to_json()
    assert search.chosen.metric_drop <= 0.01
    # The outlier's two convolutions, with the pooling each feeds (the groups): 4 layers.
    names = " ".join(search.fallback_layers)
    assert len(search.fallback_layers) <= 4, search.fallback_layers
    assert "conv_outlier" in names and "conv_reader" in names, search.fallback_layers
    # The outlier channel's convolution is the first the ranking puts back in float.
    first = next(layer for layer in result.sensitivity if layer.name == search.ranking[0])
    assert "conv_outlier" in first.name or "conv_reader" in first.name, search.ranking
    # Each step was timed (speed itself is benchmarks/outlier_int8.py's to judge).
    assert all(step.latency_ms > 0 for step in search.steps) and result.float_latency_ms > 0
    assert result.model_content[4:8] == b"TFL3"
    assert len(result.sensitivity) >= 5 and all(layer.macs >= 0 for layer in result.sensitivity)
    assert sum(layer.macs for layer in result.sensitivity) > 1_000_000


def test_an_exclusion_that_matches_no_layer_names_the_layers(outlier):
    with pytest.raises(UserInputError, match="matches none of tflite_int8's quantized layers"):
        search_tflite_int8(
            outlier.frozen.graph_def,
            outlier.frozen.signature,
            outlier.calibration,
            outlier.held_out,
            Int8SearchSettings(max_accuracy_drop=0.01, exclude=("re:no_such_layer.*",)),
        )


def test_channel_normalized_mse_sees_the_channels_a_large_one_hides():
    rng = np.random.default_rng(0)
    values = rng.random((64, 4)).astype(np.float32)
    values[:, 0] *= 300.0  # One outlier channel sets the per-tensor scale.
    scale = float(values.max()) / 127
    quantized = np.clip(np.round(values / scale), -128, 127).astype(np.int8)
    per_channel = channel_normalized_mse(values, quantized, scale, 0)
    whole = float(np.sum((quantized * scale - values) ** 2) / np.sum(values**2))
    assert whole < 1e-3 < per_channel  # Whole-tensor power hides the ordinary channels.
    exact = np.arange(-8, 8, dtype=np.float32).reshape(4, 4)
    assert channel_normalized_mse(exact * 0.5, exact.astype(np.int8), 0.5, 0) == 0.0


def test_macs_per_layer_from_weight_and_output_shapes():
    assert layer_macs("CONV_2D", [[16, 3, 3, 1], [16]], [1, 32, 32, 16]) == 32 * 32 * 16 * 9
    assert layer_macs("DEPTHWISE_CONV_2D", [[1, 3, 3, 8], [8]], [1, 16, 16, 8]) == 16 * 16 * 8 * 9
    assert layer_macs("FULLY_CONNECTED", [[10, 64], [10]], [1, 10]) == 640
    assert layer_macs("ADD", [[1, 4]], [1, 4]) == 0
