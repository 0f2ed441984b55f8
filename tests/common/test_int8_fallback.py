"""The shared float-fallback policy: ranking, every stop reason, the time bound, exclusions.

The evaluator here is a table (which layers are in float -> drop and latency), so each
case states exactly what a mode would have measured. The policy on a real model is in
tests/quantizer/test_tflite_accuracy_aware.py.
"""

from __future__ import annotations

import pytest

from components.common.errors import UserInputError
from components.common.int8_fallback import (
    FallbackBudget,
    Int8SearchSettings,
    LayerSensitivity,
    StepMeasurement,
    display_names,
    excluded_layers,
    harm_score,
    rank_layers,
    search_fallback,
)

LAYERS = [
    LayerSensitivity("conv1", "CONV_2D", error=0.30, macs=1_000_000),
    LayerSensitivity("conv2", "CONV_2D", error=0.90, macs=4_000_000),
    LayerSensitivity("add", "ADD", error=0.002, macs=0),
    LayerSensitivity("dense", "FULLY_CONNECTED", error=0.20, macs=50_000),
]


def _evaluator(drops: dict[frozenset[str], float], latency=lambda excluded: None):
    calls: list[tuple[str, ...]] = []

    def evaluate(excluded: tuple[str, ...]) -> StepMeasurement:
        calls.append(excluded)
        return StepMeasurement(drops[frozenset(excluded)], latency_ms=latency(excluded))

    return evaluate, calls


def test_the_most_harmful_layer_per_compute_share_goes_first():
    ranked = [layer.name for layer in rank_layers(LAYERS)]
    # dense: 0.20 / max(0.05/5.05, 0.01) = 20; conv1: 0.30 / 0.198 = 1.5;
    # conv2: 0.90 / 0.79 = 1.1; add: 0.002 / 0.01 (its floor) = 0.2.
    assert ranked == ["dense", "conv1", "conv2", "add"]
    total = sum(layer.macs for layer in LAYERS)
    assert harm_score(LAYERS[2], total) == pytest.approx(0.2)  # No MACs: the floor share.


def test_layers_go_back_one_at_a_time_until_the_drop_fits():
    evaluate, calls = _evaluator(
        {
            frozenset(): 0.20,
            frozenset({"dense"}): 0.08,
            frozenset({"dense", "conv1"}): 0.004,
            frozenset({"conv1"}): 0.03,  # Pruning: dense is needed.
        }
    )
    search = search_fallback(LAYERS, evaluate, FallbackBudget(max_drop=0.01))
    assert calls == [(), ("dense",), ("dense", "conv1"), ("conv1",)]
    assert search.stop_reason == "within_budget" and search.reachable
    assert search.fallback_layers == ("dense", "conv1")
    assert search.chosen.metric_drop == 0.004
    assert "2 layers in float (dense, conv1)" in search.summary()


def test_naive_int8_within_budget_is_the_answer_with_nothing_in_float():
    evaluate, calls = _evaluator({frozenset(): 0.001})
    search = search_fallback(LAYERS, evaluate, FallbackBudget(max_drop=0.01))
    assert calls == [()] and search.fallback_layers == () and search.reachable


def test_a_budget_no_layer_set_meets_is_not_reachable_and_keeps_the_smallest_drop():
    drops = {
        frozenset(): 0.30,
        frozenset({"dense"}): 0.10,
        frozenset({"dense", "conv1"}): 0.05,
        frozenset({"dense", "conv1", "conv2"}): 0.06,
        frozenset({"dense", "conv1", "conv2", "add"}): 0.07,
    }
    evaluate, calls = _evaluator(drops)
    budget = FallbackBudget(max_drop=0.01, min_int8_compute_share=0.0)
    search = search_fallback(LAYERS, evaluate, budget)
    assert search.stop_reason == "exhausted" and not search.reachable
    assert len(calls) == 5
    assert search.chosen.excluded == ("dense", "conv1")
    assert search.summary().startswith("budget not reachable: the smallest drop found was +5.00 pt")


def test_the_search_stops_at_max_fallback_layers():
    evaluate, calls = _evaluator(
        {frozenset(): 0.3, frozenset({"dense"}): 0.2, frozenset({"dense", "conv1"}): 0.1}
    )
    search = search_fallback(LAYERS, evaluate, FallbackBudget(max_drop=0.01, max_fallback_layers=2))
    assert search.stop_reason == "max_fallback_layers" and len(calls) == 3


def test_the_search_stops_before_too_little_compute_is_left_in_int8():
    drops = {frozenset(): 0.3, frozenset({"dense"}): 0.2, frozenset({"dense", "conv1"}): 0.1}
    evaluate, calls = _evaluator(drops)
    # conv2 holds 79% of the MACs: with it in float too, 1% would be left in int8.
    budget = FallbackBudget(max_drop=0.01, min_int8_compute_share=0.1)
    search = search_fallback(LAYERS, evaluate, budget)
    assert search.stop_reason == "not_faster" and len(calls) == 3
    assert search.chosen.excluded == ("dense", "conv1") and not search.reachable


def test_the_time_bound_stops_before_a_step_that_would_not_finish_in_time():
    now = [0.0]

    def clock() -> float:
        return now[0]

    def evaluate(excluded: tuple[str, ...]) -> StepMeasurement:
        now[0] += 40.0  # Every step takes 40 s.
        return StepMeasurement(0.5 - 0.1 * len(excluded))

    search = search_fallback(
        LAYERS, evaluate, FallbackBudget(max_drop=0.01, time_budget_s=100.0), clock=clock
    )
    # 0 s: step 0; 40 s: step 1; 80 s: a third step would end at 120 s > 100 s.
    assert search.stop_reason == "time_bound" and len(search.steps) == 2
    assert search.chosen.excluded == ("dense",) and not search.reachable


def test_user_exclusions_stay_in_float_from_step_zero_and_are_not_counted_as_fallback():
    evaluate, calls = _evaluator({frozenset({"conv2"}): 0.05, frozenset({"conv2", "dense"}): 0.0})
    search = search_fallback(
        LAYERS, evaluate, FallbackBudget(max_drop=0.01), user_excluded=("conv2",)
    )
    assert calls == [("conv2",), ("conv2", "dense")]
    assert search.fallback_layers == ("dense",)


def test_exclusion_patterns_by_name_regex_and_op_type():
    assert excluded_layers(["conv1"], LAYERS, "tflite_int8") == ("conv1",)
    assert excluded_layers(["re:conv.*"], LAYERS, "tflite_int8") == ("conv1", "conv2")
    assert excluded_layers(["op:fully_connected", "add"], LAYERS, "tflite_int8") == (
        "dense",
        "add",
    )


def test_an_exclusion_that_matches_nothing_names_the_layers_there_are():
    with pytest.raises(UserInputError) as raised:
        excluded_layers(["re:block_9.*"], LAYERS, "tflite_int8")
    message = str(raised.value)
    assert "'re:block_9.*' matches none of tflite_int8's quantized layers" in message
    assert "conv1 (CONV_2D)" in message and "dense (FULLY_CONNECTED)" in message
    with pytest.raises(UserInputError, match="not a valid regular expression"):
        excluded_layers(["re:("], LAYERS, "tflite_int8")


def test_budgets_out_of_range_are_refused():
    with pytest.raises(UserInputError, match="search budget must be positive"):
        FallbackBudget(max_drop=0.01, time_budget_s=0)
    with pytest.raises(UserInputError, match="accuracy budget"):
        FallbackBudget(max_drop=-0.1)


def test_a_layer_goes_back_to_float_with_its_group_and_groups_count_as_layers():
    layers = [
        LayerSensitivity("conv1", "CONV_2D", error=0.9, macs=1000, group=("pool1",)),
        LayerSensitivity("pool1", "MAX_POOL_2D", error=0.0, macs=0),
        LayerSensitivity("conv2", "CONV_2D", error=0.1, macs=1000),
    ]
    drops = {frozenset(): 0.5, frozenset({"conv1", "pool1"}): 0.0}
    evaluate, calls = _evaluator(drops)
    search = search_fallback(layers, evaluate, FallbackBudget(max_drop=0.01))
    assert calls == [(), ("conv1", "pool1")]
    assert search.fallback_layers == ("conv1", "pool1")
    # A group is not split by the layer count: one more group is taken whole or not at all.
    evaluate, calls = _evaluator({frozenset(): 0.5, frozenset({"conv1", "pool1"}): 0.2})
    search = search_fallback(layers, evaluate, FallbackBudget(max_drop=0.01, max_fallback_layers=1))
    assert search.stop_reason == "max_fallback_layers" and calls[-1] == ("conv1", "pool1")


def test_pruning_puts_back_in_int8_a_layer_the_budget_does_not_need():
    drops = {
        frozenset(): 0.3,
        frozenset({"dense"}): 0.3,  # dense did not help ...
        frozenset({"dense", "conv1"}): 0.005,
        frozenset({"conv1"}): 0.006,  # ... and is not needed once conv1 is in float.
    }
    evaluate, calls = _evaluator(drops)
    search = search_fallback(LAYERS, evaluate, FallbackBudget(max_drop=0.01))
    assert calls[-1] == ("conv1",)
    assert search.chosen.excluded == ("conv1",) and search.reachable
    assert search.fallback_layers == ("conv1",)


def test_display_names_drop_fused_op_tails_and_the_scopes_every_layer_shares():
    names = [
        "StatefulPartitionedCall/functional_1/conv_1/Relu;StatefulPartitionedCall/x/BiasAdd",
        "StatefulPartitionedCall/functional_1/max_pooling2d/MaxPool2d",
        "Identity",
    ]
    assert display_names(names) == ["conv_1/Relu", "max_pooling2d/MaxPool2d", "Identity"]
    assert display_names(["a/b/c"], context=["a/b/d", "a/e/f"]) == ["b/c"]


def test_the_calibration_method_is_auto_or_one_the_mode_offers_refused_when_built():
    from tfx.types import channel, standard_artifacts

    from components.artifacts import FrozenGraph
    from components.quantizer.component import Quantizer

    auto = Int8SearchSettings()
    assert auto.calibration_methods("onnx_int8_aa", ("minmax", "percentile")) == (
        "minmax",
        "percentile",
    )
    assert Int8SearchSettings(calibration_method="percentile").calibration_methods(
        "onnx_int8_aa", ("minmax", "percentile")
    ) == ("percentile",)
    with pytest.raises(UserInputError, match="unknown int8 calibration method 'mse'"):
        Int8SearchSettings(calibration_method="mse")
    # TF's TFLite converter calibrates by min-max only: asking it for entropy fails when
    # the pipeline is built, naming what it offers.
    with pytest.raises(UserInputError, match="tflite_int8_aa's quantizer calibrates by minmax"):
        Quantizer(
            frozen_graph=channel.Channel(type=FrozenGraph),
            examples=channel.Channel(type=standard_artifacts.Examples),
            mode="int8_aa",
            int8_search=Int8SearchSettings(calibration_method="entropy"),
        )
