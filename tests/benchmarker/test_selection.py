"""Choosing the variant to bless: gates, ties, and the states when none is blessed."""

from __future__ import annotations

import numpy as np
import pytest

from components.benchmarker.selection import (
    EXCLUDED_ACCURACY,
    EXCLUDED_DISAGREES,
    EXCLUDED_FAILED,
    EXCLUDED_NOT_ESTABLISHED,
    EXCLUDED_P99,
    EXCLUDED_UNSTABLE,
    STATE_ACCURACY_BUDGET_EXCEEDED,
    STATE_ALL_FAILED,
    STATE_BASELINE_FAILED,
    STATE_BLESSED,
    STATE_NO_ELIGIBLE_VARIANT,
    Gate,
    Selection,
    VariantResult,
    choose_best_variant,
)
from components.benchmarker.stats import LatencySummary, MeasurementResult
from components.common.tasks import parse_metric_budget


def measurement(
    p50_ms: float, p99_ms: float | None = None, stable: bool = True
) -> MeasurementResult:
    p99 = p99_ms if p99_ms is not None else p50_ms * 1.5
    summary = LatencySummary(p50_ms, p50_ms * 1.2, p99, p50_ms, 0.1, p50_ms * 0.9, p99, 90)
    return MeasurementResult(
        summary=summary,
        samples_ms=(),
        window_medians_ms=(p50_ms, p50_ms, p50_ms) if stable else (p50_ms, 2 * p50_ms, p50_ms),
        stable=stable,
        cv=0.0 if stable else 0.35,
        warmup_calls=10,
        windows=3 if stable else 30,
        window_size=30,
        elapsed_s=1.0,
        stop_reason="settled" if stable else "max_windows",
    )


def variant(
    name: str,
    p50_ms: float,
    top1: float | None = 0.95,
    agreement: float = 1.0,
    size_bytes: int = 1_000_000,
    **changes,
) -> VariantResult:
    fields = {
        "name": name,
        "format": "tflite",
        "latency": measurement(p50_ms),
        "metrics": {"top1": top1},
        "agreement": agreement,
        "size_bytes": size_bytes,
        "throughput_images_per_s": {1: 1000.0 / p50_ms, 32: 32_000.0 / (p50_ms * 10)},
    }
    fields.update(changes)
    return VariantResult(**fields)


def failed(name: str, reason: str = "conversion aborted") -> VariantResult:
    return VariantResult(name=name, format="tflite", status="failed", failure_reason=reason)


BASELINE = "frozen_graph"


def test_choose_best_variant_picks_the_fastest_within_budget():
    results = [
        variant(BASELINE, 1.0, top1=0.95),
        variant("tflite_fp32", 0.05, top1=0.95),
        variant("tflite_dynamic", 0.04, top1=0.945),
    ]

    selection = choose_best_variant(results, BASELINE)

    assert selection.state == STATE_BLESSED and selection.blessed
    assert selection.winner == "tflite_dynamic"
    assert not selection.winner_is_baseline
    assert all(v.eligible for v in selection.verdicts.values())
    assert "'tflite_dynamic'" in selection.reason and "25.00x" in selection.reason


def test_choose_best_variant_excludes_a_drop_over_one_point_but_allows_exactly_one():
    results = [
        variant(BASELINE, 1.0, top1=0.98),
        variant("int8_full", 0.02, top1=0.965),  # Lost 1.5 points.
        variant("int8_dynamic", 0.03, top1=0.97),  # Lost exactly 1 point.
    ]

    selection = choose_best_variant(results, BASELINE, gate=Gate(max_drop=0.01))

    assert selection.winner == "int8_dynamic"
    verdict = selection.verdicts["int8_full"]
    assert verdict.exclusions == (EXCLUDED_ACCURACY,)
    assert verdict.accuracy_drop == pytest.approx(0.015)
    assert "top1 drop 1.50 points > budget 1.00" in verdict.reason


def test_choose_best_variant_excludes_variants_above_the_p99_ceiling():
    results = [
        variant(BASELINE, 1.0),
        variant("xla_jit", 0.5, latency=measurement(0.5, p99_ms=25.0)),
        variant("tflite_fp32", 0.8, latency=measurement(0.8, p99_ms=1.2)),
    ]

    selection = choose_best_variant(results, BASELINE, max_p99_ms=5.0)

    assert selection.winner == "tflite_fp32"
    assert selection.verdicts["xla_jit"].exclusions == (EXCLUDED_P99,)
    assert "p99 25.000 ms above ceiling 5.000 ms" in selection.verdicts["xla_jit"].reason


def test_choose_best_variant_breaks_ties_by_accuracy_then_size_then_name():
    base = variant(BASELINE, 1.0, top1=0.95)
    # All within 2% of the fastest (0.100 ms): a tie on latency.
    more_accurate = variant("b_accurate", 0.101, top1=0.951, size_bytes=900)
    smaller = variant("c_small", 0.100, top1=0.950, size_bytes=500)
    same_size = variant("a_same", 0.1015, top1=0.950, size_bytes=500)
    outside = variant("d_outside", 0.103, top1=0.96, size_bytes=10)  # 3% slower: no tie.

    assert choose_best_variant([base, smaller, more_accurate, outside], BASELINE).winner == (
        "b_accurate"
    )
    assert choose_best_variant([base, smaller, same_size], BASELINE).winner == "a_same"
    tie = choose_best_variant([base, same_size, smaller], BASELINE)
    assert tie.winner == "a_same" and tie.tied_with == ("c_small",)
    assert "Tied within 2%" in tie.reason


def test_choose_best_variant_blesses_the_baseline_when_nothing_beats_it():
    results = [
        variant(BASELINE, 1.0, top1=0.95),
        variant("tflite_int8", 0.5, top1=0.90),
        variant("xla_jit", 3.0, top1=0.95),
    ]

    selection = choose_best_variant(results, BASELINE)

    assert selection.blessed and selection.winner == BASELINE and selection.winner_is_baseline
    assert "Blessed the baseline" in selection.reason


def test_choose_best_variant_reports_all_failed_distinctly():
    selection = choose_best_variant([failed(BASELINE, "no graph.pb"), failed("x")], BASELINE)

    assert selection.state == STATE_ALL_FAILED
    assert not selection.blessed and selection.winner is None
    assert "every variant failed" in selection.reason and "no graph.pb" in selection.reason
    assert selection.verdicts["x"].exclusions == (EXCLUDED_FAILED,)


def test_choose_best_variant_none_blessed_when_every_candidate_lost_accuracy():
    results = [
        variant(BASELINE, 1.0, top1=0.98),
        variant("int8_full", 0.2, top1=0.90),
        variant("fp16", 0.5, top1=0.96),
        failed("xla_aot"),
    ]

    selection = choose_best_variant(results, BASELINE, baseline_is_candidate=False)

    assert selection.state == STATE_ACCURACY_BUDGET_EXCEEDED
    assert selection.state != STATE_ALL_FAILED
    assert not selection.blessed and selection.winner is None
    assert "failed the accuracy gate (top1 drop at most 1.00 points)" in selection.reason


def test_choose_best_variant_excludes_a_broken_variant_that_disagrees_with_the_baseline():
    # A variant with its classes shuffled: on a 10-class set its accuracy can look
    # plausible by chance, but it agrees with the baseline only by accident.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=400)
    baseline_scores = np.eye(10)[labels] + rng.normal(0, 0.2, size=(400, 10))
    broken_scores = np.roll(baseline_scores, 1, axis=1)
    agreement = float(np.mean(broken_scores.argmax(1) == baseline_scores.argmax(1)))
    results = [
        variant(BASELINE, 1.0, top1=0.95),
        variant("broken", 0.01, top1=0.95, agreement=agreement),  # Same top-1, fastest.
        variant("tflite_fp32", 0.05, top1=0.95, agreement=0.9975),
    ]

    selection = choose_best_variant(results, BASELINE)

    assert agreement < 0.2
    assert selection.winner == "tflite_fp32"
    assert selection.verdicts["broken"].exclusions == (EXCLUDED_DISAGREES,)
    assert "disagrees with baseline" in selection.verdicts["broken"].reason


def test_choose_best_variant_never_ranks_an_unsettled_latency():
    results = [
        variant(BASELINE, 1.0),
        variant("noisy_fast", 0.1, latency=measurement(0.1, stable=False)),
        variant("steady", 0.3),
    ]

    selection = choose_best_variant(results, BASELINE)

    assert selection.winner == "steady"
    assert selection.verdicts["noisy_fast"].exclusions == (EXCLUDED_UNSTABLE,)
    assert choose_best_variant(results, BASELINE, require_stable=False).winner == "noisy_fast"


def test_choose_best_variant_no_eligible_variant_when_all_are_unstable():
    results = [
        variant(name, 1.0, latency=measurement(1.0, stable=False)) for name in (BASELINE, "x")
    ]

    selection = choose_best_variant(results, BASELINE)

    assert selection.state == STATE_NO_ELIGIBLE_VARIANT and not selection.blessed


def test_choose_best_variant_cannot_judge_without_the_baseline():
    selection = choose_best_variant([failed(BASELINE), variant("x", 0.1)], BASELINE)

    assert selection.state == STATE_BASELINE_FAILED and not selection.blessed


def test_choose_best_variant_by_throughput_uses_the_largest_common_batch():
    results = [
        variant(BASELINE, 1.0, throughput_images_per_s={1: 1000.0, 32: 3000.0}),
        variant("batch_lover", 2.0, throughput_images_per_s={1: 500.0, 32: 9000.0}),
        variant("latency_lover", 0.1, throughput_images_per_s={1: 10_000.0, 32: 4000.0}),
    ]

    selection = choose_best_variant(results, BASELINE, objective="throughput")

    assert selection.objective_batch_size == 32
    assert selection.winner == "batch_lover"
    assert choose_best_variant(results, BASELINE).winner == "latency_lover"


def test_choose_best_variant_refuses_an_unknown_baseline():
    with pytest.raises(ValueError, match="Baseline 'missing' is not among"):
        choose_best_variant([variant("x", 1.0)], "missing")


def test_selection_and_variant_results_round_trip_through_json():
    results = [variant(BASELINE, 1.0), variant("x", 0.5, top1=0.5), failed("y")]
    selection = choose_best_variant(results, BASELINE)

    assert Selection.from_json(selection.to_json()) == selection
    assert [VariantResult.from_json(r.to_json()) for r in results] == results


def test_variant_result_reads_the_harness_output_shape():
    harness_entry = {
        "name": "tflite_int8",
        "format": "tflite",
        "uri": "/runs/quantizer/7",
        "artifact_id": 7,
        "status": "ok",
        "failure_reason": "",
        "properties": {"size_bytes": 110_000},
        "load_s": 0.01,
        "first_call_s": 0.002,
        "rss_growth_bytes": 4096,
        "runtime": {"xnnpack": True},
        "metrics": {"top1": 0.95, "top5": 1.0},
        "eval_examples": 449,
        "faithfulness": {
            "probabilities": {"agreement": 0.99, "relative_error": 0.01, "max_abs_diff": 0.02},
            "logits": {"agreement": 0.98, "relative_error": 0.02, "max_abs_diff": 0.3},
        },
        "latency": {
            "p50_ms": 0.03,
            "p90_ms": 0.04,
            "p99_ms": 0.05,
            "mean_ms": 0.031,
            "stdev_ms": 0.004,
            "min_ms": 0.02,
            "max_ms": 0.09,
            "count": 90,
            "stable": False,
            "cv": float("inf"),
            "windows": 1,
            "warmup_calls": 20,
            "window_medians_ms": [0.03],
            "samples_ms": [0.03] * 30,
        },  # fmt: skip
        "throughput": {
            "1": {"images_per_s": 33_000.0, "p50_ms": 0.03, "stable": True},
            "32": None,
        },
    }

    result = VariantResult.from_harness_json(harness_entry, primary_output="probabilities")

    assert (result.agreement, result.relative_error, result.max_abs_diff) == (0.99, 0.01, 0.3)
    assert result.top1 == 0.95
    assert result.summary.p50_ms == 0.03 and result.latency.window_size == 30
    assert not result.latency_stable
    assert result.throughput_images_per_s == {1: 33_000.0}
    assert result.throughput_stable == {1: True}
    assert (result.size_bytes, result.rss_growth_bytes, result.failure_reason) == (
        110_000,
        4096,
        None,
    )
    assert result.details == {
        "runtime": {"xnnpack": True},
        "artifact_id": 7,
        "eval_examples": 449,
        "properties": {"size_bytes": 110000},
    }


def regression_variant(name: str, p50_ms: float, mae: float, relative_error: float):
    return VariantResult(
        name=name,
        format="graphdef",
        latency=measurement(p50_ms),
        metrics={"mae": mae, "rmse": mae * 1.3},
        relative_error=relative_error,
    )


REGRESSION_GATE = Gate(
    metric="mae",
    higher_is_better=False,
    max_drop=0.01,
    relative=True,
    faithfulness="relative_error",
)


def test_regression_budget_is_relative_and_lower_mae_is_better():
    results = [
        regression_variant(BASELINE, 1.0, mae=40.0, relative_error=0.0),
        regression_variant("int8", 0.2, mae=40.5, relative_error=0.02),  # +1.25%: over budget.
        regression_variant("fp16", 0.4, mae=40.3, relative_error=0.001),  # +0.75%: within.
    ]

    selection = choose_best_variant(results, BASELINE, gate=REGRESSION_GATE)

    assert selection.winner == "fp16"
    assert "mae rise 0.5 > budget 0.4 (1% of the baseline)" in selection.verdicts["int8"].reason
    assert "Gated by mae within 1% of the baseline" in selection.reason


def test_regression_faithfulness_gate_is_the_relative_error():
    results = [
        regression_variant(BASELINE, 1.0, mae=40.0, relative_error=0.0),
        regression_variant("noisy", 0.1, mae=40.0, relative_error=0.2),
    ]

    selection = choose_best_variant(results, BASELINE, gate=REGRESSION_GATE)

    assert selection.winner == BASELINE
    assert "relative error 0.2000 > 0.0500" in selection.verdicts["noisy"].reason


def test_without_labels_only_faithfulness_gates_the_blessing():
    results = [
        variant(BASELINE, 1.0, top1=None),
        variant("fast", 0.1, top1=None, agreement=0.99),
        variant("broken", 0.05, top1=None, agreement=0.5),
    ]
    for result in results:
        result.metrics.clear()

    selection = choose_best_variant(results, BASELINE, gate=Gate(metric=None))

    assert selection.winner == "fast"
    assert "the Examples have no labels" in selection.reason
    assert not selection.verdicts["broken"].eligible


def test_a_degenerate_baseline_blesses_no_variant_over_itself():
    results = [variant(BASELINE, 1.0), variant("fast", 0.1, agreement=1.0)]
    gate = Gate(faithfulness_established=False, not_established_reason="outputs are constant")

    selection = choose_best_variant(results, BASELINE, gate=gate)

    assert selection.winner == BASELINE
    assert EXCLUDED_NOT_ESTABLISHED in selection.verdicts["fast"].exclusions
    assert "faithfulness not established: outputs are constant" in selection.verdicts["fast"].reason


def test_model_core_variants_are_ranked_on_their_end_to_end_estimate():
    # The baseline (0.6 ms end to end) against a core taking 0.3 ms after 0.5 ms of
    # preprocessing: 0.8 ms end to end, slower, whatever its core-only figure says.
    results = [variant(BASELINE, 0.6), variant("tflite_core", 0.3)]

    selection = choose_best_variant(results, BASELINE, objective_offsets_ms={"tflite_core": 0.5})

    assert selection.winner == BASELINE
    assert selection.verdicts["tflite_core"].objective_value == pytest.approx(0.8)


def test_metric_budgets_parse_absolute_and_relative_spellings():
    assert parse_metric_budget("0.5") == (0.5, False)
    assert parse_metric_budget("2%") == (0.02, True)
    with pytest.raises(ValueError, match="percentage"):
        parse_metric_budget("two points")
