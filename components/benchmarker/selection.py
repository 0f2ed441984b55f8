"""Choosing the variant to serve: fastest among those that kept accuracy and behaved.

    >>> selection = choose_best_variant(results, baseline_name="frozen_graph")
    >>> selection.blessed, selection.winner, selection.reason

The rules, in order:

1. A variant is *eligible* when it ran (`status == "ok"`) and passes every gate
   (`Gate` holds them; the task of the primary output decides which apply):
   * **faithfulness**: for classifiers, its decision (top-1 class, or the 0.5
     threshold) equals the baseline's on at least `min_agreement` (default 0.97) of
     the eval examples; for regression, its relative error against the baseline's
     outputs is at most `max_relative_error` (default 0.05). This catches a broken
     variant whose metric happens to look fine on a small or easy set, and one that
     returns garbage. 0.97 tolerates the few borderline examples that int8 rounding
     legitimately flips, while a wrong graph typically agrees on ~1/classes. When the
     baseline's outputs hardly vary across inputs (`faithfulness_established` False,
     e.g. random weights), no variant is eligible: nothing could show a difference.
   * **metric budget**: the primary metric (top1, accuracy or mae) may lose at most
     `max_drop` against the baseline, in the metric's own units and direction (0.01 =
     one point of top-1; for MAE, in the label's units), or a fraction of the
     baseline's value when `relative`. Skipped, with a note in the reason, when there
     are no labels; a variant without the metric while the baseline has it is excluded.
   * **stability**: its latency measurement settled (see `stats.measure_interleaved`);
     an unsettled latency cannot rank anything. `require_stable=False` lifts this.
   * **uncontaminated**: its timing (latency, or throughput at the objective's batch
     size) was not starved of CPU by other load (see `contention.py`). A contaminated
     figure describes the neighbour, not the variant; `require_stable=False` does not
     lift this.
   * **p99 ceiling**: its p99 is at most `max_p99_ms`, when given.
   * **objective measured**: it has the latency (or throughput at the chosen batch size)
     the objective needs.
   The baseline is exempt from the agreement and accuracy gates (it defines them) but
   not from stability or the p99 ceiling.
2. The baseline is a candidate like the others: if nothing beats it, it wins, and the
   blessing says so (`winner_is_baseline`). Pass `baseline_is_candidate=False` to bless
   only a transformed variant; then "every variant lost more than the budget" ends in
   `state="accuracy_budget_exceeded"`, blessed False.
3. The winner is the best eligible variant on the objective: lowest p50 latency
   (`objective="p50"`) or highest throughput (`objective="throughput"`, at
   `throughput_batch_size`, default the largest batch size every candidate measured).
4. Ties: every eligible variant within `tie_tolerance` (default 2%) of the best value
   is tied; among them prefer the better primary metric, then smaller size, then the
   name (alphabetical), so the result never depends on input order.

States (`Selection.state`): `blessed`; `all_failed` (every variant failed to run);
`baseline_failed` (no reference to judge accuracy against); `accuracy_budget_exceeded`
(the only non-failed candidates were all excluded for accuracy or agreement);
`no_eligible_variant` (excluded for other reasons, e.g. all unstable).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from components.benchmarker.stats import LatencySummary, MeasurementResult
from components.common.artifact_utils import STATUS_FAILED, STATUS_OK, STATUS_SKIPPED

Objective = Literal["p50", "throughput"]

STATE_BLESSED = "blessed"
STATE_ALL_FAILED = "all_failed"
STATE_BASELINE_FAILED = "baseline_failed"
STATE_ACCURACY_BUDGET_EXCEEDED = "accuracy_budget_exceeded"
STATE_NO_ELIGIBLE_VARIANT = "no_eligible_variant"

# Exclusion codes, in the order a verdict lists them.
EXCLUDED_FAILED = "failed"
EXCLUDED_DISAGREES = "disagrees_with_baseline"
EXCLUDED_ACCURACY = "accuracy_drop"
EXCLUDED_NO_ACCURACY = "no_accuracy"
EXCLUDED_UNSTABLE = "unstable"
EXCLUDED_CONTAMINATED = "contaminated"
EXCLUDED_P99 = "p99_above_ceiling"
EXCLUDED_NO_OBJECTIVE = "objective_not_measured"
EXCLUDED_NOT_CANDIDATE = "baseline_not_candidate"
EXCLUDED_NOT_ESTABLISHED = "faithfulness_not_established"

_ACCURACY_EXCLUSIONS = {
    EXCLUDED_DISAGREES,
    EXCLUDED_ACCURACY,
    EXCLUDED_NO_ACCURACY,
    EXCLUDED_NOT_ESTABLISHED,
}

DEFAULT_MAX_ACCURACY_DROP = 0.01
DEFAULT_MIN_TOP1_AGREEMENT = 0.97
DEFAULT_MAX_RELATIVE_ERROR = 0.05
DEFAULT_TIE_TOLERANCE = 0.02
# Metrics that are fractions in [0, 1], shown and budgeted in points.
FRACTION_METRICS = frozenset({"top1", "top5", "accuracy", "auc"})
FAITHFULNESS_AGREEMENT = "agreement"
FAITHFULNESS_RELATIVE_ERROR = "relative_error"


@dataclasses.dataclass(frozen=True)
class Gate:
    """What a variant is judged by against the baseline (see the module docstring)."""

    # The primary metric and its direction; None when there are no labels.
    metric: str | None = "top1"
    higher_is_better: bool = True
    max_drop: float = DEFAULT_MAX_ACCURACY_DROP
    relative: bool = False  # max_drop is a fraction of the baseline's metric value.
    faithfulness: str = FAITHFULNESS_AGREEMENT
    min_agreement: float = DEFAULT_MIN_TOP1_AGREEMENT
    max_relative_error: float = DEFAULT_MAX_RELATIVE_ERROR
    faithfulness_established: bool = True
    # Why faithfulness is not established (shown in verdicts), when it is not.
    not_established_reason: str = ""

    def allowed_drop(self, baseline_value: float) -> float:
        return self.max_drop * abs(baseline_value) if self.relative else self.max_drop

    def drop(self, baseline_value: float, value: float) -> float:
        """How much worse `value` is than the baseline's, in the metric's units (>0: worse)."""
        return baseline_value - value if self.higher_is_better else value - baseline_value

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def budget_text(self) -> str:
        if self.metric is None:
            return "no labels: faithfulness only"
        if self.relative:
            return f"{self.metric} within {100 * self.max_drop:g}% of the baseline"
        if self.metric in FRACTION_METRICS:
            return f"{self.metric} drop at most {100 * self.max_drop:.2f} points"
        return (
            f"{self.metric} {'drop' if self.higher_is_better else 'rise'} at most {self.max_drop:g}"
        )


@dataclasses.dataclass
class VariantResult:
    """Everything measured about one variant: the input of selection and of the report.

    Units: latency in ms (per call at `latency_batch_size`), throughput in images/s per
    batch size, `metrics` in each metric's own units (fractions for top1/accuracy/auc,
    label units for mae/rmse; the primary output's plain, other outputs' as
    `output/metric`), `agreement` a fraction, `relative_error` a ratio and
    `max_abs_diff` in output units (all vs the baseline's outputs, primary output;
    `faithfulness` has them per output), sizes in bytes, times in seconds.
    """

    name: str
    format: str
    status: str = STATUS_OK
    failure_reason: str | None = None
    latency: MeasurementResult | None = None
    latency_batch_size: int = 1
    throughput_images_per_s: dict[int, float] = dataclasses.field(default_factory=dict)
    throughput_stable: dict[int, bool] = dataclasses.field(default_factory=dict)
    # Batch sizes whose throughput timing was starved by other load (contention.py).
    throughput_contaminated: dict[int, bool] = dataclasses.field(default_factory=dict)
    metrics: dict[str, float | None] = dataclasses.field(default_factory=dict)
    agreement: float | None = None
    relative_error: float | None = None
    max_abs_diff: float | None = None
    faithfulness: dict[str, dict[str, float | None]] = dataclasses.field(default_factory=dict)
    size_bytes: int | None = None
    rss_growth_bytes: int | None = None
    load_s: float | None = None
    first_call_s: float | None = None
    device: str | None = None
    uri: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def top1(self) -> float | None:
        return self.metrics.get("top1")

    def metric(self, name: str | None) -> float | None:
        return self.metrics.get(name) if name else None

    @property
    def summary(self) -> LatencySummary | None:
        return self.latency.summary if self.latency is not None else None

    @property
    def latency_stable(self) -> bool | None:
        return self.latency.stable if self.latency is not None else None

    def to_json(self, include_samples: bool = True) -> dict[str, Any]:
        """The report.json form (see report_schema.md); batch-size keys become strings."""
        return {
            "name": self.name,
            "format": self.format,
            "status": self.status,
            "failure_reason": self.failure_reason,
            "device": self.device,
            "uri": self.uri,
            "latency_batch_size": self.latency_batch_size,
            "latency": (
                self.latency.to_json(include_samples=include_samples) if self.latency else None
            ),
            "throughput_images_per_s": {
                str(batch): value for batch, value in sorted(self.throughput_images_per_s.items())
            },
            "throughput_stable": {
                str(batch): value for batch, value in sorted(self.throughput_stable.items())
            },
            "throughput_contaminated": {
                str(batch): value for batch, value in sorted(self.throughput_contaminated.items())
            },
            "metrics": dict(self.metrics),
            "agreement": self.agreement,
            "relative_error": self.relative_error,
            "max_abs_diff": self.max_abs_diff,
            "faithfulness": {k: dict(v) for k, v in self.faithfulness.items()},
            "size_bytes": self.size_bytes,
            "rss_growth_bytes": self.rss_growth_bytes,
            "load_s": self.load_s,
            "first_call_s": self.first_call_s,
            "details": self.details,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> VariantResult:
        """Reads `to_json` output (e.g. the `variants` of a report.json)."""
        latency = value.get("latency")
        return cls(
            name=value["name"],
            format=value.get("format", ""),
            status=value.get("status", STATUS_OK),
            failure_reason=value.get("failure_reason") or None,
            latency=MeasurementResult.from_json(latency) if latency else None,
            latency_batch_size=int(value.get("latency_batch_size", 1)),
            throughput_images_per_s={
                int(batch): float(v)
                for batch, v in (value.get("throughput_images_per_s") or {}).items()
                if v is not None
            },
            throughput_stable={
                int(batch): bool(v) for batch, v in (value.get("throughput_stable") or {}).items()
            },
            throughput_contaminated={
                int(batch): bool(v)
                for batch, v in (value.get("throughput_contaminated") or {}).items()
            },
            metrics=dict(value.get("metrics") or {}),
            agreement=value.get("agreement"),
            relative_error=value.get("relative_error"),
            max_abs_diff=value.get("max_abs_diff"),
            faithfulness=dict(value.get("faithfulness") or {}),
            size_bytes=value.get("size_bytes"),
            rss_growth_bytes=value.get("rss_growth_bytes"),
            load_s=value.get("load_s"),
            first_call_s=value.get("first_call_s"),
            device=value.get("device"),
            uri=value.get("uri"),
            details=dict(value.get("details") or {}),
        )

    @classmethod
    def from_harness_json(
        cls, value: Mapping[str, Any], primary_output: str | None = None
    ) -> VariantResult:
        """Reads one entry of `harness.run_benchmark(...)["variants"]`.

        There, throughput is `{batch: {"images_per_s", "stable", ...} | None}`, the
        latency summary is flattened into `latency`, RSS is `rss_growth_bytes`,
        the size sits in the artifact's `properties`, and `faithfulness` is per output
        (`primary_output` names the one flattened into agreement/relative_error).
        """
        throughput: dict[int, float] = {}
        throughput_stable: dict[int, bool] = {}
        throughput_contaminated: dict[int, bool] = {}
        for batch, entry in (value.get("throughput") or {}).items():
            if entry is None:  # The variant is compiled for another batch size.
                continue
            throughput[int(batch)] = float(entry["images_per_s"])
            if entry.get("stable") is not None:
                throughput_stable[int(batch)] = bool(entry["stable"])
            throughput_contaminated[int(batch)] = bool(entry.get("contaminated", False))
        properties = value.get("properties") or {}
        latency = value.get("latency")
        details = {
            key: value[key]
            for key in ("runtime", "artifact_id", "eval_examples", "properties")
            if key in value
        }
        faithfulness = dict(value.get("faithfulness") or {})
        primary = faithfulness.get(primary_output or "", {})
        diffs = [
            f["max_abs_diff"] for f in faithfulness.values() if f.get("max_abs_diff") is not None
        ]
        return cls(
            name=value["name"],
            format=value.get("format", ""),
            status=value.get("status", STATUS_OK),
            failure_reason=value.get("failure_reason") or None,
            latency=MeasurementResult.from_json(latency) if latency else None,
            throughput_images_per_s=throughput,
            throughput_stable=throughput_stable,
            throughput_contaminated=throughput_contaminated,
            metrics=dict(value.get("metrics") or {}),
            agreement=primary.get("agreement"),
            relative_error=primary.get("relative_error"),
            max_abs_diff=max(diffs) if diffs else None,
            faithfulness=faithfulness,
            size_bytes=value.get("size_bytes", properties.get("size_bytes")),
            rss_growth_bytes=value.get("rss_growth_bytes"),
            load_s=value.get("load_s"),
            first_call_s=value.get("first_call_s"),
            device=value.get("device"),
            uri=value.get("uri"),
            details=details,
        )


@dataclasses.dataclass(frozen=True)
class VariantVerdict:
    """Whether one variant could win, and if not, every reason why not."""

    name: str
    eligible: bool
    exclusions: tuple[str, ...]
    reasons: tuple[str, ...]
    objective_value: float | None
    accuracy_drop: float | None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "eligible"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "eligible": self.eligible,
            "exclusions": list(self.exclusions),
            "reasons": list(self.reasons),
            "objective_value": self.objective_value,
            "accuracy_drop": self.accuracy_drop,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> VariantVerdict:
        return cls(
            name=value["name"],
            eligible=bool(value["eligible"]),
            exclusions=tuple(value.get("exclusions") or ()),
            reasons=tuple(value.get("reasons") or ()),
            objective_value=value.get("objective_value"),
            accuracy_drop=value.get("accuracy_drop"),
        )


@dataclasses.dataclass(frozen=True)
class Selection:
    """The outcome: which variant to serve (if any), why, and each variant's verdict."""

    state: str
    blessed: bool
    winner: str | None
    winner_is_baseline: bool
    reason: str
    baseline_name: str
    objective: Objective
    objective_batch_size: int | None
    tied_with: tuple[str, ...]
    verdicts: dict[str, VariantVerdict]
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "blessed": self.blessed,
            "winner": self.winner,
            "winner_is_baseline": self.winner_is_baseline,
            "reason": self.reason,
            "baseline_name": self.baseline_name,
            "objective": self.objective,
            "objective_batch_size": self.objective_batch_size,
            "tied_with": list(self.tied_with),
            "verdicts": [verdict.to_json() for verdict in self.verdicts.values()],
            "settings": dict(self.settings),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Selection:
        verdicts = [VariantVerdict.from_json(v) for v in value.get("verdicts") or ()]
        return cls(
            state=value["state"],
            blessed=bool(value["blessed"]),
            winner=value.get("winner"),
            winner_is_baseline=bool(value.get("winner_is_baseline")),
            reason=value.get("reason", ""),
            baseline_name=value["baseline_name"],
            objective=value.get("objective", "p50"),
            objective_batch_size=value.get("objective_batch_size"),
            tied_with=tuple(value.get("tied_with") or ()),
            verdicts={verdict.name: verdict for verdict in verdicts},
            settings=dict(value.get("settings") or {}),
        )


def choose_best_variant(
    results: Sequence[VariantResult],
    baseline_name: str,
    objective: Objective = "p50",
    gate: Gate | None = None,
    max_p99_ms: float | None = None,
    tie_tolerance: float = DEFAULT_TIE_TOLERANCE,
    throughput_batch_size: int | None = None,
    require_stable: bool = True,
    baseline_is_candidate: bool = True,
    objective_offsets_ms: Mapping[str, float] | None = None,
) -> Selection:
    """Picks the variant to serve by the rules in this module's docstring.

    `objective_offsets_ms` adds a fixed latency to a variant's p50 before ranking: a
    model core's variants are ranked on preprocessing + core, the end-to-end estimate
    that is comparable with an end-to-end baseline.

    Raises ValueError when `baseline_name` is not among `results`, names repeat, or an
    argument is out of range.
    """
    gate = gate or Gate()
    _check_arguments(results, baseline_name, objective, gate)
    by_name = {result.name: result for result in results}
    baseline = by_name[baseline_name]
    offsets = dict(objective_offsets_ms or {})
    settings = {
        "objective": objective,
        "gate": gate.describe(),
        "max_p99_ms": max_p99_ms,
        "tie_tolerance": tie_tolerance,
        "throughput_batch_size": throughput_batch_size,
        "require_stable": require_stable,
        "baseline_is_candidate": baseline_is_candidate,
        "objective_offsets_ms": offsets,
    }
    if objective == "throughput" and throughput_batch_size is None:
        throughput_batch_size = _largest_common_batch_size(results)
    objective_batch = throughput_batch_size if objective == "throughput" else None

    verdicts = {
        result.name: _judge(
            result,
            baseline,
            objective,
            objective_batch,
            gate,
            max_p99_ms,
            require_stable,
            baseline_is_candidate,
            offsets.get(result.name, 0.0),
        )
        for result in results
    }

    def finish(
        state: str, reason: str, winner: str | None = None, tied: Sequence[str] = ()
    ) -> Selection:
        return Selection(
            state=state,
            blessed=winner is not None,
            winner=winner,
            winner_is_baseline=winner == baseline_name,
            reason=reason,
            baseline_name=baseline_name,
            objective=objective,
            objective_batch_size=objective_batch,
            tied_with=tuple(tied),
            verdicts=verdicts,
            settings=settings,
        )

    if not any(result.ok for result in results):
        return finish(
            STATE_ALL_FAILED,
            "Not blessed: every variant failed to run ("
            + "; ".join(f"{r.name}: {r.failure_reason or 'no reason given'}" for r in results)
            + ").",
        )
    if not baseline.ok:
        return finish(
            STATE_BASELINE_FAILED,
            f"Not blessed: the baseline {baseline_name!r} failed "
            f"({baseline.failure_reason or 'no reason given'}), so no variant's accuracy "
            f"or agreement can be judged.",
        )

    eligible = [by_name[name] for name, verdict in verdicts.items() if verdict.eligible]
    if not eligible:
        return _no_winner(verdicts, finish, gate)

    def value(result: VariantResult) -> float:
        objective_value = verdicts[result.name].objective_value
        assert objective_value is not None  # Eligibility required it.
        return objective_value

    lower_is_better = objective == "p50"
    best_value = min(map(value, eligible)) if lower_is_better else max(map(value, eligible))
    tied = [r for r in eligible if abs(value(r) - best_value) <= tie_tolerance * abs(best_value)]
    tied.sort(key=lambda r: _tie_break_key(r, gate))
    winner = tied[0]
    others_tied = [r.name for r in tied[1:]]
    return finish(
        STATE_BLESSED,
        _winner_reason(
            winner, baseline, tied, verdicts, objective, objective_batch, settings, gate
        ),
        winner=winner.name,
        tied=others_tied,
    )


def _check_arguments(
    results: Sequence[VariantResult], baseline_name: str, objective: str, gate: Gate
) -> None:
    names = [result.name for result in results]
    if len(set(names)) != len(names):
        raise ValueError(f"Variant names repeat: {sorted(names)}; each row needs its own name.")
    if baseline_name not in names:
        raise ValueError(
            f"Baseline {baseline_name!r} is not among the variants ({', '.join(names) or 'none'})."
        )
    if objective not in ("p50", "throughput"):
        raise ValueError(f"objective must be 'p50' or 'throughput', got {objective!r}.")
    if gate.max_drop < 0:
        raise ValueError(f"max_drop cannot be negative, got {gate.max_drop}.")
    if gate.metric in FRACTION_METRICS and not gate.relative and gate.max_drop > 1:
        raise ValueError(
            f"The {gate.metric} budget is a fraction (0.01 = 1 point), got {gate.max_drop}."
        )
    if not 0 <= gate.min_agreement <= 1:
        raise ValueError(f"min_agreement is a fraction, got {gate.min_agreement}.")
    for result in results:
        if result.status not in (STATUS_OK, STATUS_FAILED, STATUS_SKIPPED):
            raise ValueError(f"Variant {result.name!r} has unknown status {result.status!r}.")


def _largest_common_batch_size(results: Sequence[VariantResult]) -> int | None:
    measured = [
        set(r.throughput_images_per_s) for r in results if r.ok and r.throughput_images_per_s
    ]
    if not measured:
        return None
    common = set.intersection(*measured)
    return max(common) if common else max(set.union(*measured))


def _judge(
    result: VariantResult,
    baseline: VariantResult,
    objective: Objective,
    objective_batch: int | None,
    gate: Gate,
    max_p99_ms: float | None,
    require_stable: bool,
    baseline_is_candidate: bool,
    offset_ms: float,
) -> VariantVerdict:
    exclusions: list[str] = []
    reasons: list[str] = []

    def exclude(code: str, reason: str) -> None:
        exclusions.append(code)
        reasons.append(reason)

    is_baseline = result.name == baseline.name
    metric_drop = None
    value, reference = result.metric(gate.metric), baseline.metric(gate.metric)
    if value is not None and reference is not None:
        metric_drop = gate.drop(reference, value)

    if not result.ok:
        # A skipped kind (hardware or runtime missing) is excluded like a failed one.
        exclude(EXCLUDED_FAILED, f"{result.status}: {result.failure_reason or 'no reason given'}")
        return VariantVerdict(result.name, False, tuple(exclusions), tuple(reasons), None, None)

    if not is_baseline and baseline.ok:
        _judge_faithfulness(result, gate, exclude)
        if reference is not None:
            if value is None:
                exclude(EXCLUDED_NO_ACCURACY, f"{gate.metric} was not measured")
            elif metric_drop is not None and metric_drop > gate.allowed_drop(reference) + 1e-9:
                exclude(EXCLUDED_ACCURACY, _budget_reason(gate, value, reference, metric_drop))

    if is_baseline and not baseline_is_candidate:
        exclude(
            EXCLUDED_NOT_CANDIDATE, "baseline is the reference only (baseline_is_candidate=False)"
        )

    summary = result.summary
    if require_stable and result.latency is not None and not result.latency.stable:
        cv = result.latency.cv
        cv_text = f"{cv:.3f}" if math.isfinite(cv) else "unknown (too few windows)"
        exclude(
            EXCLUDED_UNSTABLE,
            f"unstable latency: CV of recent window medians {cv_text} after "
            f"{result.latency.windows} windows ({result.latency.stop_reason})",
        )
    if (
        objective == "throughput"
        and require_stable
        and objective_batch is not None
        and result.throughput_stable.get(objective_batch) is False
    ):
        exclude(EXCLUDED_UNSTABLE, f"unstable throughput at batch {objective_batch}")
    if result.latency is not None and result.latency.contaminated:
        exclude(EXCLUDED_CONTAMINATED, _contamination_reason("latency", result.latency))
    if (
        objective == "throughput"
        and objective_batch is not None
        and result.throughput_contaminated.get(objective_batch)
    ):
        exclude(
            EXCLUDED_CONTAMINATED,
            f"throughput at batch {objective_batch} was timed while other load starved it "
            f"of CPU; rerun on a quiet machine",
        )
    if max_p99_ms is not None:
        if summary is None:
            exclude(EXCLUDED_NO_OBJECTIVE, "no latency measured to check the p99 ceiling")
        elif summary.p99_ms + offset_ms > max_p99_ms:
            exclude(
                EXCLUDED_P99,
                f"p99 {summary.p99_ms + offset_ms:.3f} ms above ceiling {max_p99_ms:.3f} ms",
            )

    objective_value: float | None
    if objective == "p50":
        objective_value = summary.p50_ms + offset_ms if summary is not None else None
        if objective_value is None:
            exclude(EXCLUDED_NO_OBJECTIVE, "no latency measured")
    else:
        objective_value = (
            result.throughput_images_per_s.get(objective_batch)
            if objective_batch is not None
            else None
        )
        if objective_value is None:
            exclude(EXCLUDED_NO_OBJECTIVE, f"no throughput measured at batch {objective_batch}")

    return VariantVerdict(
        name=result.name,
        eligible=not exclusions,
        exclusions=tuple(dict.fromkeys(exclusions)),
        reasons=tuple(reasons),
        objective_value=objective_value,
        accuracy_drop=metric_drop,
    )


def _contamination_reason(what: str, measurement: MeasurementResult) -> str:
    worst = (measurement.contention.get("worst") or {}).get("reason") or "other load"
    return (
        f"{what} timing contaminated: {measurement.contaminated_windows} window(s) were "
        f"starved of CPU (worst: {worst}) and no settled figure was left within the time "
        f"budget; rerun on a quiet machine or a node of its own"
    )


def _judge_faithfulness(result: VariantResult, gate: Gate, exclude: Any) -> None:
    if not gate.faithfulness_established:
        exclude(
            EXCLUDED_NOT_ESTABLISHED,
            "faithfulness not established: "
            + (gate.not_established_reason or "the baseline's outputs cannot show a difference"),
        )
        return
    if gate.faithfulness == FAITHFULNESS_AGREEMENT:
        if result.agreement is None:
            exclude(EXCLUDED_DISAGREES, "agreement with the baseline was not measured")
        elif result.agreement < gate.min_agreement:
            exclude(
                EXCLUDED_DISAGREES,
                f"disagrees with baseline: agreement {result.agreement:.3f} "
                f"< {gate.min_agreement:.3f}",
            )
    elif result.relative_error is None:
        exclude(EXCLUDED_DISAGREES, "relative error against the baseline was not measured")
    elif result.relative_error > gate.max_relative_error:
        exclude(
            EXCLUDED_DISAGREES,
            f"differs from baseline: relative error {result.relative_error:.4f} "
            f"> {gate.max_relative_error:.4f}",
        )


def _budget_reason(gate: Gate, value: float, reference: float, drop: float) -> str:
    metric = gate.metric
    allowed = gate.allowed_drop(reference)
    if metric in FRACTION_METRICS:
        return (
            f"{metric} drop {100 * drop:.2f} points > budget {100 * allowed:.2f} "
            f"({metric} {value:.4f} vs baseline {reference:.4f})"
        )
    change = "drop" if gate.higher_is_better else "rise"
    relative = f" ({100 * gate.max_drop:g}% of the baseline)" if gate.relative else ""
    return (
        f"{metric} {change} {drop:.4g} > budget {allowed:.4g}{relative} "
        f"({metric} {value:.4g} vs baseline {reference:.4g})"
    )


def _tie_break_key(result: VariantResult, gate: Gate) -> tuple[float, float, str]:
    value = result.metric(gate.metric)
    better = -math.inf if value is None else (value if gate.higher_is_better else -value)
    size = result.size_bytes if result.size_bytes is not None else math.inf
    return (-better, size, result.name)


def _no_winner(verdicts: Mapping[str, VariantVerdict], finish: Any, gate: Gate) -> Selection:
    """The Selection when every variant was excluded: says which rule excluded them."""
    excluded = [v for v in verdicts.values() if EXCLUDED_FAILED not in v.exclusions]
    candidates = [v for v in excluded if EXCLUDED_NOT_CANDIDATE not in v.exclusions]
    details = "; ".join(f"{v.name}: {v.reason}" for v in verdicts.values())
    accuracy_only = candidates and all(set(v.exclusions) & _ACCURACY_EXCLUSIONS for v in candidates)
    if accuracy_only:
        return finish(
            STATE_ACCURACY_BUDGET_EXCEEDED,
            f"Not blessed: every candidate failed the accuracy gate ({gate.budget_text()}) "
            f"or the faithfulness gate ({details}).",
        )
    return finish(
        STATE_NO_ELIGIBLE_VARIANT,
        f"Not blessed: no variant passed every gate ({details}).",
    )


def _winner_reason(
    winner: VariantResult,
    baseline: VariantResult,
    tied: Sequence[VariantResult],
    verdicts: Mapping[str, VariantVerdict],
    objective: Objective,
    objective_batch: int | None,
    settings: Mapping[str, Any],
    gate: Gate,
) -> str:
    winner_value = verdicts[winner.name].objective_value
    baseline_value = verdicts[baseline.name].objective_value
    if objective == "p50":
        measure = f"p50 {winner_value:.4g} ms"
        if settings["objective_offsets_ms"].get(winner.name):
            measure += " end to end (preprocessing + core, estimated)"
    else:
        measure = f"{winner_value:.4g} images/s at batch {objective_batch}"
    parts = []
    if winner.name == baseline.name:
        parts.append(
            f"Blessed the baseline {winner.name!r} ({measure}): no other variant beat it "
            f"within the gates."
        )
    else:
        comparison = ""
        if winner_value and baseline_value:
            speedup = (
                baseline_value / winner_value
                if objective == "p50"
                else winner_value / baseline_value
            )
            comparison = f", {speedup:.2f}x the baseline {baseline.name!r}"
        accuracy = ""
        value, reference = winner.metric(gate.metric), baseline.metric(gate.metric)
        if value is not None and reference is not None:
            accuracy = f"; {gate.metric} {value:.4g} vs baseline {reference:.4g}"
        faithful = ""
        if gate.faithfulness == FAITHFULNESS_AGREEMENT and winner.agreement is not None:
            faithful = f", agreement {winner.agreement:.3f}"
        elif winner.relative_error is not None:
            faithful = f", relative error {winner.relative_error:.2g}"
        parts.append(f"Blessed {winner.name!r} ({measure}{comparison}{accuracy}{faithful}).")
        search = (winner.details.get("properties") or {}).get("int8_search_summary")
        if search:  # An accuracy-aware int8 variant: which layers it keeps in float.
            parts.append(f"Accuracy-aware int8: {search}.")
        parts.append(f"Gated by {gate.budget_text()} and {_faithfulness_text(gate)}.")
    if len(tied) > 1:
        parts.append(
            f"Tied within {100 * settings['tie_tolerance']:.0f}% with "
            + ", ".join(repr(r.name) for r in tied[1:])
            + f"; chosen by better {gate.metric or 'metric'}, then smaller size, then name."
        )
    if gate.metric is None:
        parts.append("Metric budget not checked: the Examples have no labels.")
    excluded = [v for v in verdicts.values() if not v.eligible]
    if excluded:
        parts.append("Excluded: " + "; ".join(f"{v.name}: {v.reason}" for v in excluded) + ".")
    return " ".join(parts)


def _faithfulness_text(gate: Gate) -> str:
    if gate.faithfulness == FAITHFULNESS_AGREEMENT:
        return f"agreement with the baseline at least {gate.min_agreement:.2f}"
    return f"relative error against the baseline at most {gate.max_relative_error:g}"
