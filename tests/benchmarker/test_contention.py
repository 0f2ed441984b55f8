"""Contention: starved timing windows are found, retried, and never blessed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from components.benchmarker import contention
from components.benchmarker.contention import ContentionMonitor, CpuSample
from components.benchmarker.selection import (
    EXCLUDED_CONTAMINATED,
    VariantResult,
    choose_best_variant,
)
from components.benchmarker.stats import StabilityCriterion, measure_interleaved


def _sample(wall, own=0.0, busy=0.0, steal=0.0, throttled=0.0) -> CpuSample:
    return CpuSample(wall, own, busy, steal, throttled)


def test_other_processes_on_the_variants_cores_contaminate_a_window():
    monitor = ContentionMonitor(threads=2, cores=2)
    # 1 s: this process used 1.2 cores, the machine 2.0: others took 0.8 of no spare core.
    verdict = monitor.judge(_sample(0.0), _sample(1.0, own=1.2, busy=2.0))
    assert verdict.contaminated
    assert "other processes used 0.80 of 2 cores" in verdict.reason


def test_others_on_spare_cores_do_not_contaminate():
    # 8 cores, 2 threads: a neighbour on 4 other cores takes nothing the variant needs.
    monitor = ContentionMonitor(threads=2, cores=8)
    verdict = monitor.judge(_sample(0.0), _sample(1.0, own=2.0, busy=6.0))
    assert not verdict.contaminated
    assert verdict.others_cores == pytest.approx(4.0)


def test_steal_and_cpu_quota_throttling_contaminate():
    monitor = ContentionMonitor(threads=1, cores=4)
    stolen = monitor.judge(_sample(0.0), _sample(1.0, own=1.0, busy=1.0, steal=0.8))
    assert stolen.contaminated and "stole 20%" in stolen.reason
    throttled = monitor.judge(_sample(0.0), _sample(1.0, own=0.5, busy=0.5, throttled=0.3))
    assert throttled.contaminated and "throttled the process for 30%" in throttled.reason


def test_threads_beyond_the_cores_are_capped():
    monitor = ContentionMonitor(threads=16, cores=2)
    assert monitor.threads == 2


class _ScriptedMonitor:
    """A monitor whose windows are contaminated while `starved()` says so."""

    def __init__(self, starved):
        self.starved = starved
        self.clock = 0.0

    def sample(self):
        self.clock += 0.2  # Every window looks long enough to be judged on its own.
        return _sample(self.clock)

    def judge(self, before, after):
        bad = self.starved()
        return contention.WindowContention(
            wall_s=after.wall_s - before.wall_s,
            own_cores=1.0,
            others_cores=1.5 if bad else 0.0,
            steal_fraction=0.0,
            throttled_fraction=0.0,
            contaminated=bad,
            reason="other processes used 1.50 of 2 cores" if bad else "",
        )


def test_contaminated_windows_are_retried_and_the_variant_settles_on_clean_ones():
    calls = {"n": 0}

    def steady():
        calls["n"] += 1

    # The first 4 windows are starved, then the neighbour goes away.
    monitor = _ScriptedMonitor(lambda: calls["n"] <= 4 * 5)
    results = measure_interleaved(
        {"a": steady},
        warmup_calls=0,
        window_size=5,
        criterion=StabilityCriterion(cv_threshold=10.0, min_windows=3, max_windows=5),
        monitor=monitor,
    )
    result = results["a"]
    assert result.contaminated_windows == 4
    assert result.windows == 3  # Clean windows only: the starved ones counted for nothing.
    assert result.stable and not result.contaminated
    assert result.summary.count == 15
    assert result.contention["worst"]["reason"] == "other processes used 1.50 of 2 cores"


def test_a_variant_starved_for_the_whole_budget_is_contaminated():
    results = measure_interleaved(
        {"a": lambda: None},
        warmup_calls=0,
        window_size=5,
        criterion=StabilityCriterion(min_windows=3, max_windows=5, time_budget_s=0.05),
        monitor=_ScriptedMonitor(lambda: True),
    )
    result = results["a"]
    assert result.contaminated and not result.stable
    assert result.windows == 0 and result.contaminated_windows >= 1
    assert result.summary.count >= 5  # The starved figures are still shown.
    assert result.stop_reason == "time_budget"


def test_a_contaminated_variant_is_never_blessed_however_fast():
    starved = measure_interleaved(
        {"fast": lambda: None},
        warmup_calls=0,
        window_size=3,
        criterion=StabilityCriterion(min_windows=2, max_windows=3, time_budget_s=0.05),
        monitor=_ScriptedMonitor(lambda: True),
    )["fast"]
    clean = measure_interleaved(
        {"baseline": lambda: time.sleep(0.002)},
        warmup_calls=0,
        window_size=3,
        criterion=StabilityCriterion(cv_threshold=10.0, min_windows=2, max_windows=3),
    )["baseline"]
    selection = choose_best_variant(
        [
            VariantResult("baseline", "saved_model", latency=clean),
            VariantResult("fast", "tflite", latency=starved),
        ],
        baseline_name="baseline",
        require_stable=False,  # Contamination is not lifted with the stability rule.
    )
    assert selection.winner == "baseline"
    verdict = selection.verdicts["fast"]
    assert EXCLUDED_CONTAMINATED in verdict.exclusions
    assert "starved of CPU" in verdict.reason


_BUSY_LOOP = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def test_a_real_competing_process_on_the_same_cores_is_flagged():
    """Busy loops started here, one per core, for a few seconds: the kernel's counters
    must show this process was starved while it timed a 2-thread-sized workload."""
    cores = contention.cpu_count()
    monitor = ContentionMonitor(threads=cores, cores=cores)
    neighbours = [
        subprocess.Popen([sys.executable, "-c", _BUSY_LOOP.format(seconds=6)]) for _ in range(cores)
    ]
    try:
        time.sleep(0.5)  # Let them get going.

        def work():
            sum(range(20_000))

        results = measure_interleaved(
            {"variant": work},
            warmup_calls=5,
            window_size=200,
            criterion=StabilityCriterion(min_windows=3, max_windows=6, time_budget_s=2.0),
            monitor=monitor,
        )
    finally:
        for neighbour in neighbours:
            neighbour.kill()
            neighbour.wait()
    result = results["variant"]
    assert result.contaminated_windows >= 1, result
    assert result.contention["worst"]["others_cores"] > contention.OTHERS_TOLERANCE_CORES
