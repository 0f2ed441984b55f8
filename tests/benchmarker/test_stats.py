"""Latency statistics, the stability rule and the interleaved scheduler.

The scheduler tests drive a fake clock: each variant's callable advances it by a
scripted duration, so "noisy" and "steady" machines are exact and the tests take no
real time. One test runs the real clock to show the default path works end to end.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable

import pytest

from components.benchmarker.stats import (
    LatencySummary,
    MeasurementResult,
    StabilityCriterion,
    VariantCallError,
    is_stable,
    measure_interleaved,
    rotated_order,
    summarize_latencies,
    throughput_images_per_s,
    window_medians_cv,
)


class FakeClock:
    """Seconds that pass only when a fake variant 'runs'."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def variant(self, durations_ms: Iterable[float]) -> Callable[[], None]:
        """A callable that takes the next duration from `durations_ms` (cycled) per call."""
        durations = itertools.cycle(durations_ms)

        def run() -> None:
            self.now += next(durations) / 1000.0

        return run


def windows_of(*window_durations_ms: float, window_size: int) -> list[float]:
    """Per-call durations where every call of window i takes window_durations_ms[i]."""
    return [d for d in window_durations_ms for _ in range(window_size)]


def test_summarize_latencies_matches_known_percentiles():
    summary = summarize_latencies([float(v) for v in range(1, 101)])

    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p90_ms == pytest.approx(90.1)
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.mean_ms == pytest.approx(50.5)
    assert summary.stdev_ms == pytest.approx(29.011491975882016)
    assert (summary.min_ms, summary.max_ms, summary.count) == (1.0, 100.0, 100)


def test_summarize_latencies_interpolates_linearly_between_ranks():
    summary = summarize_latencies([40.0, 10.0, 30.0, 20.0, 50.0])

    assert (summary.p50_ms, summary.p90_ms, summary.p99_ms) == pytest.approx((30.0, 46.0, 49.6))


def test_summarize_latencies_of_one_sample_has_zero_spread():
    summary = summarize_latencies([2.5])

    assert summary == LatencySummary(2.5, 2.5, 2.5, 2.5, 0.0, 2.5, 2.5, 1)


def test_summarize_latencies_rejects_empty_and_nan():
    with pytest.raises(ValueError, match="at least one sample"):
        summarize_latencies([])
    with pytest.raises(ValueError, match="NaN"):
        summarize_latencies([1.0, math.nan])


def test_window_medians_cv_looks_only_at_the_last_windows():
    assert window_medians_cv([100.0, 10.0, 10.0, 10.0], last=3) == 0.0
    assert window_medians_cv([1.0, 2.0, 3.0]) == pytest.approx(math.sqrt(2 / 3) / 2)
    assert window_medians_cv([5.0]) == math.inf


def test_is_stable_needs_min_windows_below_threshold():
    criterion = StabilityCriterion(cv_threshold=0.05, min_windows=3)

    assert not is_stable([1.0, 1.0], criterion)
    assert is_stable([1.0, 1.01, 0.99], criterion)
    assert not is_stable([1.0, 1.2, 0.8], criterion)


def test_stability_criterion_refuses_nonsense():
    with pytest.raises(ValueError, match="min_windows"):
        StabilityCriterion(min_windows=1)
    with pytest.raises(ValueError, match="max_windows"):
        StabilityCriterion(min_windows=5, max_windows=3)


def test_rotated_order_shifts_left_each_round():
    assert rotated_order(["a", "b", "c"], 0) == ["a", "b", "c"]
    assert rotated_order(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert rotated_order(["a", "b", "c"], 5) == ["c", "a", "b"]


def test_measure_interleaved_settles_steady_variants_after_min_windows():
    clock = FakeClock()
    criterion = StabilityCriterion(cv_threshold=0.05, min_windows=3, max_windows=20)

    results = measure_interleaved(
        {"fast": clock.variant([1.0, 1.01, 0.99]), "slow": clock.variant([4.0, 4.04, 3.96])},
        warmup_calls=5,
        window_size=10,
        criterion=criterion,
        clock=clock,
    )

    for name, expected_p50 in (("fast", 1.0), ("slow", 4.0)):
        result = results[name]
        assert result.stable and result.stop_reason == "settled"
        assert result.windows == 3
        assert result.cv < 0.05
        assert result.summary.p50_ms == pytest.approx(expected_p50, rel=1e-6)
        assert result.summary.count == 30
        assert len(result.samples_ms) == 30


def test_measure_interleaved_marks_noisy_variant_unstable_and_keeps_its_cv():
    clock = FakeClock()
    criterion = StabilityCriterion(cv_threshold=0.05, min_windows=3, max_windows=8)
    window = 5
    # Every other window runs 3x slower: a neighbour's job switching on and off.
    noisy = windows_of(1.0, 3.0, window_size=window)

    results = measure_interleaved(
        {"noisy": clock.variant(noisy), "steady": clock.variant([2.0])},
        warmup_calls=0,
        window_size=window,
        criterion=criterion,
        clock=clock,
    )

    assert not results["noisy"].stable
    assert results["noisy"].stop_reason == "max_windows"
    assert results["noisy"].windows == 8
    assert results["noisy"].cv == pytest.approx(window_medians_cv([3.0, 1.0, 3.0]))
    assert results["noisy"].cv > 0.05
    assert results["steady"].stable
    assert results["steady"].windows == 3


def test_measure_interleaved_stops_everyone_at_the_time_budget():
    clock = FakeClock()
    criterion = StabilityCriterion(
        cv_threshold=0.05, min_windows=3, max_windows=1000, time_budget_s=1
    )

    results = measure_interleaved(
        {"noisy": clock.variant(windows_of(10.0, 30.0, window_size=10))},
        warmup_calls=0,
        window_size=10,
        criterion=criterion,
        clock=clock,
    )

    result = results["noisy"]
    assert result.stop_reason == "time_budget"
    assert not result.stable
    assert 1.0 <= result.elapsed_s < 1.0 + 0.3  # The budget ends after the round in progress.


def test_measure_interleaved_rotates_the_order_every_round():
    clock = FakeClock()
    order: list[str] = []
    criterion = StabilityCriterion(cv_threshold=0.05, min_windows=3, max_windows=4)
    noisy = windows_of(1.0, 2.0, window_size=2)  # Never settles: four full rounds.

    measure_interleaved(
        {name: clock.variant(noisy) for name in ("a", "b", "c")},
        warmup_calls=0,
        window_size=2,
        criterion=criterion,
        clock=clock,
        on_window=lambda name, index, median: order.append(name),
    )

    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]


def test_measure_interleaved_skips_settled_variants_in_later_rounds():
    clock = FakeClock()
    windows_run: list[str] = []
    criterion = StabilityCriterion(cv_threshold=0.05, min_windows=3, max_windows=6)

    measure_interleaved(
        {"steady": clock.variant([1.0]), "noisy": clock.variant(windows_of(1, 2, window_size=3))},
        warmup_calls=0,
        window_size=3,
        criterion=criterion,
        clock=clock,
        on_window=lambda name, index, median: windows_run.append(name),
    )

    assert windows_run.count("steady") == 3
    assert windows_run.count("noisy") == 6


def test_measure_interleaved_keeps_warmup_and_ramp_out_of_the_summary():
    clock = FakeClock()
    criterion = StabilityCriterion(cv_threshold=0.05, min_windows=3, max_windows=10)
    window = 4
    # Warm-up: one 500 ms compile-like call; then two slow ramp windows, then steady 1 ms.
    calls = [500.0, *windows_of(5.0, 3.0, window_size=window), *[1.0] * 1000]
    durations = iter(calls)

    def run() -> None:
        clock.now += next(durations) / 1000.0

    result = measure_interleaved(
        {"ramping": run}, warmup_calls=1, window_size=window, criterion=criterion, clock=clock
    )["ramping"]

    assert result.stable
    assert result.window_medians_ms == pytest.approx((5.0, 3.0, 1.0, 1.0, 1.0))
    assert result.summary.max_ms == pytest.approx(1.0)  # Summary: the settled windows only.
    assert max(result.samples_ms) == pytest.approx(5.0)  # Samples: every timed call.
    assert 500.0 not in result.samples_ms


def test_measure_interleaved_names_the_variant_that_raises():
    clock = FakeClock()

    def broken() -> None:
        raise RuntimeError("interpreter crashed")

    with pytest.raises(VariantCallError, match="'broken'.*interpreter crashed") as raised:
        measure_interleaved(
            {"fine": clock.variant([1.0]), "broken": broken},
            warmup_calls=1,
            window_size=2,
            criterion=StabilityCriterion(),
            clock=clock,
        )
    assert raised.value.variant == "broken"


def test_measure_interleaved_runs_on_the_real_clock():
    counter = {"calls": 0}

    def tiny() -> None:
        counter["calls"] += 1
        sum(range(200))

    criterion = StabilityCriterion(cv_threshold=0.5, min_windows=2, max_windows=5, time_budget_s=2)
    result = measure_interleaved(
        {"tiny": tiny}, warmup_calls=3, window_size=20, criterion=criterion
    )["tiny"]

    assert counter["calls"] == 3 + 20 * result.windows
    assert 2 <= result.windows <= 5
    assert 0 < result.summary.min_ms <= result.summary.p50_ms <= result.summary.max_ms


def test_measurement_result_round_trips_through_json():
    clock = FakeClock()
    result = measure_interleaved(
        {"v": clock.variant(windows_of(1.0, 2.0, window_size=2))},
        warmup_calls=0,
        window_size=2,
        criterion=StabilityCriterion(min_windows=2, max_windows=3),
        clock=clock,
    )["v"]

    assert MeasurementResult.from_json(result.to_json()) == result


def test_measurement_result_from_json_reads_an_infinite_cv_written_as_null():
    clock = FakeClock()
    result = measure_interleaved(
        {"v": clock.variant([1.0])},
        warmup_calls=0,
        window_size=2,
        criterion=StabilityCriterion(min_windows=2, time_budget_s=1e-9),
        clock=clock,
    )["v"]

    assert result.windows == 1 and result.cv == math.inf
    assert result.to_json()["cv"] is None
    assert MeasurementResult.from_json(result.to_json()).cv == math.inf


def test_throughput_images_per_s_divides_batch_by_p50_or_mean():
    summary = LatencySummary(4.0, 5.0, 9.0, 5.0, 1.0, 3.0, 10.0, 100)

    assert throughput_images_per_s(8, summary) == pytest.approx(2000.0)
    assert throughput_images_per_s(8, summary, statistic="mean") == pytest.approx(1600.0)
    with pytest.raises(ValueError):
        throughput_images_per_s(0, summary)


def test_a_warmup_budget_ends_a_slow_variants_warmup_and_the_calls_made_are_recorded():
    clock = FakeClock()
    criterion = StabilityCriterion(cv_threshold=0.05, min_windows=3, max_windows=20)

    results = measure_interleaved(
        # A BERT-sized call (1 s) and a small one (1 ms), 20 warm-up calls asked for.
        {"big": clock.variant([1000.0]), "small": clock.variant([1.0])},
        warmup_calls=20,
        window_size=3,
        criterion=criterion,
        clock=clock,
        warmup_budget_s=2.5,
    )

    assert results["big"].warmup_calls == 3  # 2 calls are 2 s < 2.5 s; the 3rd ends it.
    assert results["small"].warmup_calls == 20  # 20 ms: the budget never binds.
    assert results["big"].stable and results["big"].summary.p50_ms == pytest.approx(1000.0)


def test_a_warmup_budget_still_makes_the_first_two_calls():
    clock = FakeClock()
    criterion = StabilityCriterion(cv_threshold=0.05, min_windows=3, max_windows=20)
    results = measure_interleaved(
        {"huge": clock.variant([60_000.0])},
        warmup_calls=20,
        window_size=1,
        criterion=criterion,
        clock=clock,
        warmup_budget_s=0.5,
    )
    assert results["huge"].warmup_calls == 2
