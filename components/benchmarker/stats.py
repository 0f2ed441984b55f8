"""Latency statistics, the stability rule, and the interleaved measurement scheduler.

Timing on a shared machine drifts: a neighbour starts a job, the CPU clocks down. Two
variants measured one after the other can therefore differ only because the machine
changed between them. `measure_interleaved` runs the variants in rounds instead, one
window of calls each per round with the order rotated every round, so drift hits every
variant alike; each variant stops once the medians of its recent windows agree.

    >>> results = measure_interleaved(
    ...     {"frozen_graph": run_graph, "tflite_fp32": run_tflite},
    ...     warmup_calls=20,
    ...     window_size=50,
    ...     criterion=StabilityCriterion(cv_threshold=0.05, min_windows=3),
    ... )
    >>> results["tflite_fp32"].summary.p50_ms, results["tflite_fp32"].stable

Nothing here imports TensorFlow; the callables are whatever the harness builds.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

# numpy's default percentile method: linear interpolation between the two closest ranks
# (Hyndman & Fan type 7, the same as Excel's PERCENTILE.INC and pandas' quantile). With
# n sorted samples x[0..n-1], percentile q sits at rank h = (n - 1) * q / 100 and is
# x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]).
PERCENTILE_METHOD = "linear"


# A variant's warm-up under a time budget still makes its first call (compilation,
# allocation) and one more (measure_interleaved).
MIN_WARMUP_CALLS = 2


@dataclasses.dataclass(frozen=True)
class LatencySummary:
    """Order statistics of one variant's per-call latencies, in milliseconds.

    Percentiles use `PERCENTILE_METHOD` (linear interpolation); `stdev_ms` is the sample
    standard deviation (n - 1 in the denominator; 0.0 for a single sample).
    """

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    stdev_ms: float
    min_ms: float
    max_ms: float
    count: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> LatencySummary:
        return cls(**{field.name: value[field.name] for field in dataclasses.fields(cls)})


def summarize_latencies(samples_ms: Sequence[float]) -> LatencySummary:
    """Summarizes per-call latencies (ms) into percentiles, mean, spread and range.

    Raises ValueError for an empty sequence or a non-finite sample.
    """
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("summarize_latencies needs at least one sample; got none.")
    if not np.all(np.isfinite(values)):
        raise ValueError("summarize_latencies got a NaN or infinite latency sample.")
    p50, p90, p99 = np.percentile(values, [50, 90, 99], method=PERCENTILE_METHOD)
    return LatencySummary(
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(values.mean()),
        stdev_ms=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        min_ms=float(values.min()),
        max_ms=float(values.max()),
        count=int(values.size),
    )


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_CONFIDENCE = 0.95
# Fewer calls than this many blocks give resamples that barely differ (three windows
# resampled as whole blocks have 10 distinct mixes): the report then gives no interval.
MIN_BOOTSTRAP_BLOCKS = 3


def bootstrap_percentile_ci(
    samples_ms: Sequence[float],
    percentiles: Sequence[float] = (50, 99),
    block_calls: int = 1,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = BOOTSTRAP_CONFIDENCE,
    seed: int = 0,
) -> dict[float, tuple[float, float]]:
    """Percentile-bootstrap confidence intervals of latency percentiles.

    A moving-block bootstrap: consecutive calls share caches, frequency and neighbours, so
    calls are resampled in runs of `block_calls` (the timing window's size) rather than one
    by one, which would understate the spread. A fixed seed makes a report reproducible.
    {percentile: (low, high)}; a single sample gives a zero-width interval.
    """
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("bootstrap_percentile_ci needs at least one sample; got none.")
    block = int(max(1, min(block_calls, values.size)))
    starts_available = values.size - block + 1
    blocks_per_resample = math.ceil(values.size / block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, starts_available, size=(resamples, blocks_per_resample))
    index = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(resamples, -1)
    resampled = values[index[:, : values.size]]
    estimates = np.percentile(resampled, list(percentiles), axis=1, method=PERCENTILE_METHOD)
    tail = (1 - confidence) / 2 * 100
    result = {}
    for percentile, row in zip(percentiles, estimates, strict=True):
        low, high = np.percentile(row, [tail, 100 - tail])
        result[percentile] = (float(low), float(high))
    return result


@dataclasses.dataclass(frozen=True)
class StabilityCriterion:
    """When a variant's latency counts as settled, and how long to try.

    A variant settles once the coefficient of variation (population stdev / mean) of
    its last `min_windows` window medians is below `cv_threshold`. A variant stops
    unsettled after `max_windows` windows; all stop once `time_budget_s` of measuring
    rounds (warm-up excluded) have passed.
    """

    cv_threshold: float = 0.05
    min_windows: int = 3
    max_windows: int = 30
    time_budget_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.cv_threshold > 0:
            raise ValueError(f"cv_threshold must be > 0, got {self.cv_threshold}.")
        if self.min_windows < 2:
            raise ValueError(
                f"min_windows must be >= 2 (a CV of one median is meaningless), "
                f"got {self.min_windows}."
            )
        if self.max_windows < self.min_windows:
            raise ValueError(
                f"max_windows ({self.max_windows}) must be >= min_windows ({self.min_windows})."
            )
        if not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be > 0, got {self.time_budget_s}.")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def window_medians_cv(window_medians: Sequence[float], last: int | None = None) -> float:
    """Coefficient of variation (population stdev / mean) of the last `last` medians.

    `last=None` uses every median. Returns `math.inf` with fewer than two medians (no
    spread can be judged yet), 0.0 when all of them are 0.
    """
    values = np.asarray(window_medians, dtype=np.float64)
    if last is not None:
        if last < 2:
            raise ValueError(f"last must be >= 2, got {last}.")
        values = values[-last:]
    if values.size < 2:
        return math.inf
    mean = float(values.mean())
    if mean == 0.0:
        return 0.0 if float(np.abs(values).max()) == 0.0 else math.inf
    return float(values.std(ddof=0) / abs(mean))


def is_stable(window_medians: Sequence[float], criterion: StabilityCriterion) -> bool:
    """Whether there are `min_windows` medians and their CV is below the threshold."""
    if len(window_medians) < criterion.min_windows:
        return False
    return window_medians_cv(window_medians, last=criterion.min_windows) < criterion.cv_threshold


# "unknown" only appears when reading results from a writer that did not record it.
StopReason = Literal["settled", "max_windows", "time_budget", "unknown"]


@dataclasses.dataclass(frozen=True)
class MeasurementResult:
    """One variant's latency measurement from `measure_interleaved`.

    * `summary`: statistics over the samples of the last `min_windows` windows, the
      ones the stability verdict (`stable`, `cv`) is about; earlier windows are
      ramp-up that the verdict rejected. `samples_ms` keeps every timed call, oldest
      first, for anyone who wants another cut.
    * `stable`: False when the variant never settled (see `stop_reason`); its numbers
      are then reported but must not be trusted for ranking.
    * `cv`: CV of the last `min_windows` window medians (`math.inf` with < 2 windows).
    * `elapsed_s`: wall time from the first measuring round's start to the end of
      this variant's last window (warm-up excluded).
    * `contaminated_windows`: windows thrown away because the variant did not get the
      CPU it asked for (contention.py); their medians and reasons are in
      `contention`. They count towards no verdict and are retried within the time
      budget. `contaminated`: the variant never settled on clean windows while some
      were contaminated, so its figures describe a starved process, not the variant.
    """

    summary: LatencySummary
    samples_ms: tuple[float, ...]
    window_medians_ms: tuple[float, ...]
    stable: bool
    cv: float
    warmup_calls: int
    windows: int
    window_size: int
    elapsed_s: float
    stop_reason: StopReason
    contaminated_windows: int = 0
    contaminated: bool = False
    # The contaminated windows: {"medians_ms": [...], "worst": {..., "reason": ...}}.
    contention: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self, include_samples: bool = True) -> dict[str, Any]:
        """A JSON-safe dict (a non-finite `cv` becomes None)."""
        value: dict[str, Any] = {
            "summary": self.summary.to_json(),
            "window_medians_ms": list(self.window_medians_ms),
            "stable": self.stable,
            "cv": self.cv if math.isfinite(self.cv) else None,
            "warmup_calls": self.warmup_calls,
            "windows": self.windows,
            "window_size": self.window_size,
            "elapsed_s": self.elapsed_s,
            "stop_reason": self.stop_reason,
            "contaminated_windows": self.contaminated_windows,
            "contaminated": self.contaminated,
            "contention": self.contention,
        }
        if include_samples:
            value["samples_ms"] = list(self.samples_ms)
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> MeasurementResult:
        """Reads `to_json` output; also accepts the summary fields flattened into `value`.

        Fields older writers left out default to: `window_size` from the sample count,
        `elapsed_s` 0.0, `stop_reason` "unknown".
        """
        cv = value.get("cv")
        samples = tuple(float(s) for s in value.get("samples_ms") or ())
        windows = int(value["windows"])
        default_window_size = len(samples) // windows if windows else 0
        return cls(
            summary=LatencySummary.from_json(value.get("summary", value)),
            samples_ms=samples,
            window_medians_ms=tuple(float(m) for m in value["window_medians_ms"]),
            stable=bool(value["stable"]),
            cv=math.inf if cv is None else float(cv),
            warmup_calls=int(value.get("warmup_calls", 0)),
            windows=windows,
            window_size=int(value.get("window_size", default_window_size)),
            elapsed_s=float(value.get("elapsed_s", 0.0)),
            stop_reason=value.get("stop_reason", "unknown"),
            contaminated_windows=int(value.get("contaminated_windows", 0)),
            contaminated=bool(value.get("contaminated", False)),
            contention=dict(value.get("contention") or {}),
        )


class VariantCallError(RuntimeError):
    """A variant's callable raised during warm-up or measurement.

    `variant` names it so the harness can mark it failed and measure the rest again.
    """

    def __init__(self, variant: str, error: BaseException) -> None:
        super().__init__(
            f"Variant {variant!r} raised during measurement: {type(error).__name__}: {error}"
        )
        self.variant = variant


def rotated_order(names: Sequence[str], round_index: int) -> list[str]:
    """The order of a round: `names` rotated left by `round_index` places."""
    if not names:
        return []
    shift = round_index % len(names)
    return list(names[shift:]) + list(names[:shift])


def measure_interleaved(
    variants: Mapping[str, Callable[[], object]],
    warmup_calls: int,
    window_size: int | Mapping[str, int],
    criterion: StabilityCriterion,
    clock: Callable[[], float] = time.perf_counter,
    on_window: Callable[[str, int, float], None] | None = None,
    monitor: Any = None,
    on_settled: Callable[[str, StopReason], None] | None = None,
    warmup_budget_s: float | None = None,
) -> dict[str, MeasurementResult]:
    """Measures every variant's per-call latency in interleaved rounds until each settles.

    1. Warm-up: each variant is called `warmup_calls` times, untimed, in the given
       order (first-call compilation belongs here, not in the steady state). With
       `warmup_budget_s`, a variant's warm-up ends once that long has passed, after at
       least MIN_WARMUP_CALLS calls: 20 calls of BERT-base at batch 32 are 2-3 minutes
       per variant on 2 cores, and once the first call has compiled and allocated,
       the rest warm nothing. Each result records the calls its warm-up made.
    2. Rounds: round r takes the variant names rotated left by r and, in that order,
       runs one window of `window_size` (an int, or one per variant name) separately
       timed calls of every variant that has not stopped yet.
    3. With a `monitor` (contention.ContentionMonitor), each window is judged: did the
       variant get the CPU it asked for? A window shorter than contention.MIN_JUDGED_S
       is judged over its whole round (the kernel counts in 10 ms ticks). A
       contaminated window is set aside and retried in later rounds; it counts towards
       neither stability nor `max_windows`.
    4. After each round a variant stops when its clean windows are stable (see
       `is_stable`) or it has run `criterion.max_windows` clean windows.
    5. The loop ends when every variant has stopped, or when `criterion.time_budget_s`
       has passed since the first round began (checked after each whole round, so every
       live variant gets the same number of windows); the rest stop with
       `stop_reason="time_budget"` and `stable=False`.

    `clock` returns seconds (injected so tests can drive synthetic timings);
    `on_window(name, window_index, median_ms)` is called after every clean window and
    `on_settled(name, stop_reason)` when a variant stops (progress reporting). Raises
    VariantCallError naming the variant whose callable raised.
    """
    if not variants:
        raise ValueError("measure_interleaved needs at least one variant.")
    sizes = (
        {name: int(window_size[name]) for name in variants}
        if isinstance(window_size, Mapping)
        else dict.fromkeys(variants, int(window_size))
    )
    if min(sizes.values(), default=1) < 1:
        raise ValueError(f"window_size must be >= 1, got {window_size}.")
    if warmup_calls < 0:
        raise ValueError(f"warmup_calls must be >= 0, got {warmup_calls}.")
    from components.benchmarker.contention import MIN_JUDGED_S

    names = list(variants)
    warmed: dict[str, int] = {}
    for name in names:
        function = variants[name]
        started = clock()
        warmed[name] = 0
        try:
            while warmed[name] < warmup_calls:
                function()
                warmed[name] += 1
                if (
                    warmup_budget_s is not None
                    and warmed[name] >= MIN_WARMUP_CALLS
                    and clock() - started >= warmup_budget_s
                ):
                    break
        except Exception as error:  # Any failure means the variant cannot be measured.
            raise VariantCallError(name, error) from error

    samples: dict[str, list[float]] = {name: [] for name in names}
    medians: dict[str, list[float]] = {name: [] for name in names}
    # Contaminated windows: their samples (a fallback summary), medians and verdicts.
    spoiled_samples: dict[str, list[float]] = {name: [] for name in names}
    spoiled: dict[str, list[tuple[float, Any]]] = {name: [] for name in names}
    stop_reasons: dict[str, StopReason] = {}
    elapsed: dict[str, float] = {}
    rounds_start = clock()
    round_index = 0
    while len(stop_reasons) < len(names):
        round_before = monitor.sample() if monitor is not None else None
        windows: list[tuple[str, list[float], Any]] = []
        for name in rotated_order(names, round_index):
            if name in stop_reasons:
                continue
            before = monitor.sample() if monitor is not None else None
            window = _time_window(name, variants[name], sizes[name], clock)
            verdict = None
            if monitor is not None:
                after = monitor.sample()
                if after.wall_s - before.wall_s >= MIN_JUDGED_S:
                    verdict = monitor.judge(before, after)
            windows.append((name, window, verdict))
            elapsed[name] = clock() - rounds_start
        round_verdict = (
            monitor.judge(round_before, monitor.sample()) if monitor is not None else None
        )
        for name, window, verdict in windows:
            verdict = verdict or round_verdict
            median = float(np.median(window))
            if verdict is not None and verdict.contaminated:
                spoiled_samples[name].extend(window)
                spoiled[name].append((median, verdict))
                continue
            samples[name].extend(window)
            medians[name].append(median)
            if on_window is not None:
                on_window(name, len(medians[name]) - 1, median)
            if is_stable(medians[name], criterion):
                stop_reasons[name] = "settled"
            elif len(medians[name]) >= criterion.max_windows:
                stop_reasons[name] = "max_windows"
            if name in stop_reasons and on_settled is not None:
                on_settled(name, stop_reasons[name])
        round_index += 1
        if clock() - rounds_start >= criterion.time_budget_s:
            for name in names:
                if name not in stop_reasons:
                    stop_reasons[name] = "time_budget"
                    if on_settled is not None:
                        on_settled(name, "time_budget")

    return {
        name: _result(
            name,
            samples,
            medians,
            spoiled_samples,
            spoiled,
            sizes,
            criterion,
            warmed[name],
            elapsed,
            stop_reasons,
        )
        for name in names
    }


def _result(
    name: str,
    samples: dict[str, list[float]],
    medians: dict[str, list[float]],
    spoiled_samples: dict[str, list[float]],
    spoiled: dict[str, list[tuple[float, Any]]],
    sizes: dict[str, int],
    criterion: StabilityCriterion,
    warmup_calls: int,
    elapsed: dict[str, float],
    stop_reasons: dict[str, StopReason],
) -> MeasurementResult:
    window_medians = medians[name]
    kept_windows = min(criterion.min_windows, len(window_medians))
    kept_samples = samples[name][-kept_windows * sizes[name] :] if kept_windows else []
    stable = stop_reasons[name] == "settled"
    contention: dict[str, Any] = {}
    if spoiled[name]:
        worst = max(spoiled[name], key=lambda entry: entry[1].others_cores)[1]
        contention = {
            "medians_ms": [median for median, _ in spoiled[name]],
            "worst": worst.to_json(),
        }
    return MeasurementResult(
        # With no clean window at all, the starved figures are all there is to show
        # (flagged `contaminated`, so nothing is ranked on them).
        summary=summarize_latencies(kept_samples or spoiled_samples[name]),
        samples_ms=tuple(samples[name]),
        window_medians_ms=tuple(window_medians),
        stable=stable,
        cv=window_medians_cv(window_medians, last=criterion.min_windows),
        warmup_calls=warmup_calls,
        windows=len(window_medians),
        window_size=sizes[name],
        elapsed_s=elapsed.get(name, 0.0),
        stop_reason=stop_reasons[name],
        contaminated_windows=len(spoiled[name]),
        contaminated=bool(spoiled[name]) and not stable,
        contention=contention,
    )


def _time_window(
    name: str, function: Callable[[], object], window_size: int, clock: Callable[[], float]
) -> list[float]:
    """Times `window_size` calls one by one; returns their latencies in milliseconds."""
    latencies = []
    try:
        for _ in range(window_size):
            start = clock()
            function()
            latencies.append((clock() - start) * 1000.0)
    except Exception as error:  # Any failure means the variant cannot be measured.
        raise VariantCallError(name, error) from error
    return latencies


ThroughputStatistic = Literal["p50", "mean"]


def throughput_images_per_s(
    batch_size: int, summary: LatencySummary, statistic: ThroughputStatistic = "p50"
) -> float:
    """Images per second of one stream: `batch_size` over the per-batch latency.

    The default divides by the median batch latency, which is robust to the odd
    stall a shared machine adds; `statistic="mean"` gives the sustained rate including
    those stalls (what a long-running batch job sees). Single stream only: concurrent
    requests are not modelled.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if statistic not in ("p50", "mean"):
        raise ValueError(f"statistic must be 'p50' or 'mean', got {statistic!r}.")
    latency_ms = summary.p50_ms if statistic == "p50" else summary.mean_ms
    if latency_ms <= 0:
        raise ValueError(f"Batch latency must be > 0 ms to give a throughput, got {latency_ms}.")
    return batch_size * 1000.0 / latency_ms
