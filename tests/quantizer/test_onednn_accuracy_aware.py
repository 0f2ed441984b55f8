"""Accuracy-aware oneDNN int8 on the outlier digits CNN (see test_tflite_accuracy_aware).

Naive oneDNN int8 must lose more than 2 points of top-1 on the held-out digits, and the
search must come back within 1 point by leaving chains in float, ranked by the
quantized-against-float graph's error with each chain alone in int8.
"""

from __future__ import annotations

import pytest

from components.common.int8_fallback import Int8SearchSettings
from components.quantizer.onednn_accuracy_aware import chain_macs, search_onednn_int8
from tests.conftest import requires_avx512

pytestmark = [pytest.mark.slow, requires_avx512]


def test_naive_onednn_int8_fails_and_the_search_restores_it_within_one_point(outlier):
    frozen = outlier.frozen
    result = search_onednn_int8(
        frozen.graph_def,
        frozen.signature,
        outlier.calibration,
        outlier.held_out,
        Int8SearchSettings(max_accuracy_drop=0.01),
        num_calibration=200,
    )
    search = result.search
    assert search.steps[0].excluded == () and search.steps[0].metric_drop > 0.02, search.steps[0]
    assert search.reachable and search.stop_reason == "within_budget", search.to_json()
    assert search.chosen.metric_drop <= 0.01
    assert any("conv_outlier" in name or "conv_reader" in name for name in search.fallback_layers)
    assert len(search.fallback_layers) <= 3
    # Still an int8 graph, on int8 kernels: the other chains stayed quantized.
    assert result.int8.quantized_op_counts and result.int8.kernels is not None
    assert not result.int8.kernels.error
    heads = {layer.name for layer in result.sensitivity}
    assert set(search.fallback_layers) <= heads and len(heads) >= 4


def test_chain_macs_from_tf_weight_layouts():
    assert chain_macs("Conv2D", (3, 3, 1, 16), (1, 32, 32, 16)) == 32 * 32 * 16 * 9
    assert chain_macs("DepthwiseConv2dNative", (3, 3, 8, 1), (1, 16, 16, 8)) == 16 * 16 * 8 * 9
    assert chain_macs("MatMul", (64, 10), (1, 10)) == 640
