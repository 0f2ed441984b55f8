"""Choosing the variant to serve: fastest among those that kept accuracy and behaved.

    >>> selection = choose_best_variant(results, baseline_name="frozen_graph")
    >>> selection.blessed, selection.winner, selection.reason

The rules, in order:

1. A variant is *eligible* when it ran (`status == "ok"`) and passes every gate:
   * **agreement**: its top-1 class equals the baseline's on at least
     `min_top1_agreement` (default 0.97) of the eval examples. This catches a broken
     variant whose accuracy happens to look fine on a small or easy set, and one that
     returns garbage. 0.97 tolerates the few borderline examples that int8 rounding
     legitimately flips, while a wrong graph typically agrees on ~1/classes.
   * **accuracy budget**: baseline top-1 minus its top-1 is at most `max_accuracy_drop`
     (an absolute fraction: 0.01 = one percentage point). Skipped, with a note in the
     reason, when the baseline has no top-1 (unlabelled data); a variant without top-1
     while the baseline has one is excluded.
   * **stability**: its latency measurement settled (see `stats.measure_interleaved`);
     an unsettled latency cannot rank anything. `require_stable=False` lifts this.
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
   is tied; among them prefer higher top-1, then smaller size, then the name
   (alphabetical), so the result never depends on input order.

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
from components.common.artifact_utils import STATUS_FAILED, STATUS_OK

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
EXCLUDED_P99 = "p99_above_ceiling"
EXCLUDED_NO_OBJECTIVE = "objective_not_measured"
EXCLUDED_NOT_CANDIDATE = "baseline_not_candidate"

_ACCURACY_EXCLUSIONS = {EXCLUDED_DISAGREES, EXCLUDED_ACCURACY, EXCLUDED_NO_ACCURACY}

DEFAULT_MAX_ACCURACY_DROP = 0.01
DEFAULT_MIN_TOP1_AGREEMENT = 0.97
DEFAULT_TIE_TOLERANCE = 0.02


@dataclasses.dataclass
class VariantResult:
    """Everything measured about one variant: the input of selection and of the report.

    Units: latency in ms (per call at `latency_batch_size`), throughput in images/s per
    batch size, accuracies and agreement as fractions in [0, 1], `max_abs_diff` in
    output units (vs the baseline's outputs), sizes in bytes, times in seconds.
    """

    name: str
    format: str
    status: str = STATUS_OK
    failure_reason: str | None = None
    latency: MeasurementResult | None = None
    latency_batch_size: int = 1
    throughput_images_per_s: dict[int, float] = dataclasses.field(default_factory=dict)
    throughput_stable: dict[int, bool] = dataclasses.field(default_factory=dict)
    top1: float | None = None
    top5: float | None = None
    top1_agreement: float | None = None
    max_abs_diff: float | None = None
    size_bytes: int | None = None
    peak_rss_bytes: int | None = None
    load_s: float | None = None
    first_call_s: float | None = None
    device: str | None = None
    uri: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

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
            "top1": self.top1,
            "top5": self.top5,
            "top1_agreement": self.top1_agreement,
            "max_abs_diff": self.max_abs_diff,
            "size_bytes": self.size_bytes,
            "peak_rss_bytes": self.peak_rss_bytes,
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
            top1=value.get("top1"),
            top5=value.get("top5"),
            top1_agreement=value.get("top1_agreement"),
            max_abs_diff=value.get("max_abs_diff"),
            size_bytes=value.get("size_bytes"),
            peak_rss_bytes=value.get("peak_rss_bytes"),
            load_s=value.get("load_s"),
            first_call_s=value.get("first_call_s"),
            device=value.get("device"),
            uri=value.get("uri"),
            details=dict(value.get("details") or {}),
        )

    @classmethod
    def from_harness_json(cls, value: Mapping[str, Any]) -> VariantResult:
        """Reads one entry of `harness.run_benchmark(...)["variants"]`.

        There, throughput is `{batch: {"images_per_s", "stable", ...} | None}`, the
        latency summary is flattened into `latency`, RSS is `peak_rss_growth_bytes`,
        and the size sits in the artifact's `properties`.
        """
        throughput: dict[int, float] = {}
        throughput_stable: dict[int, bool] = {}
        for batch, entry in (value.get("throughput") or {}).items():
            if entry is None:  # The variant is compiled for another batch size.
                continue
            throughput[int(batch)] = float(entry["images_per_s"])
            if entry.get("stable") is not None:
                throughput_stable[int(batch)] = bool(entry["stable"])
        properties = value.get("properties") or {}
        latency = value.get("latency")
        details = {
            key: value[key]
            for key in ("runtime", "artifact_id", "eval_examples", "properties")
            if key in value
        }
        return cls(
            name=value["name"],
            format=value.get("format", ""),
            status=value.get("status", STATUS_OK),
            failure_reason=value.get("failure_reason") or None,
            latency=MeasurementResult.from_json(latency) if latency else None,
            throughput_images_per_s=throughput,
            throughput_stable=throughput_stable,
            top1=value.get("top1"),
            top5=value.get("top5"),
            top1_agreement=value.get("top1_agreement"),
            max_abs_diff=value.get("max_abs_diff"),
            size_bytes=value.get("size_bytes", properties.get("size_bytes")),
            peak_rss_bytes=value.get("peak_rss_bytes", value.get("peak_rss_growth_bytes")),
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
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
    max_p99_ms: float | None = None,
    min_top1_agreement: float = DEFAULT_MIN_TOP1_AGREEMENT,
    tie_tolerance: float = DEFAULT_TIE_TOLERANCE,
    throughput_batch_size: int | None = None,
    require_stable: bool = True,
    baseline_is_candidate: bool = True,
) -> Selection:
    """Picks the variant to serve by the rules in this module's docstring.

    Raises ValueError when `baseline_name` is not among `results`, names repeat, or an
    argument is out of range.
    """
    _check_arguments(results, baseline_name, objective, max_accuracy_drop, min_top1_agreement)
    by_name = {result.name: result for result in results}
    baseline = by_name[baseline_name]
    settings = {
        "objective": objective,
        "max_accuracy_drop": max_accuracy_drop,
        "max_p99_ms": max_p99_ms,
        "min_top1_agreement": min_top1_agreement,
        "tie_tolerance": tie_tolerance,
        "throughput_batch_size": throughput_batch_size,
        "require_stable": require_stable,
        "baseline_is_candidate": baseline_is_candidate,
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
            max_accuracy_drop,
            max_p99_ms,
            min_top1_agreement,
            require_stable,
            baseline_is_candidate,
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
        return _no_winner(verdicts, finish, max_accuracy_drop)

    def value(result: VariantResult) -> float:
        objective_value = verdicts[result.name].objective_value
        assert objective_value is not None  # Eligibility required it.
        return objective_value

    lower_is_better = objective == "p50"
    best_value = min(map(value, eligible)) if lower_is_better else max(map(value, eligible))
    tied = [r for r in eligible if abs(value(r) - best_value) <= tie_tolerance * abs(best_value)]
    tied.sort(key=_tie_break_key)
    winner = tied[0]
    others_tied = [r.name for r in tied[1:]]
    return finish(
        STATE_BLESSED,
        _winner_reason(winner, baseline, tied, verdicts, objective, objective_batch, settings),
        winner=winner.name,
        tied=others_tied,
    )


def _check_arguments(
    results: Sequence[VariantResult],
    baseline_name: str,
    objective: str,
    max_accuracy_drop: float,
    min_top1_agreement: float,
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
    if not 0 <= max_accuracy_drop <= 1:
        raise ValueError(
            f"max_accuracy_drop is a fraction (0.01 = 1 point), got {max_accuracy_drop}."
        )
    if not 0 <= min_top1_agreement <= 1:
        raise ValueError(f"min_top1_agreement is a fraction, got {min_top1_agreement}.")
    for result in results:
        if result.status not in (STATUS_OK, STATUS_FAILED):
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
    max_accuracy_drop: float,
    max_p99_ms: float | None,
    min_top1_agreement: float,
    require_stable: bool,
    baseline_is_candidate: bool,
) -> VariantVerdict:
    exclusions: list[str] = []
    reasons: list[str] = []

    def exclude(code: str, reason: str) -> None:
        exclusions.append(code)
        reasons.append(reason)

    is_baseline = result.name == baseline.name
    accuracy_drop = None
    if result.top1 is not None and baseline.top1 is not None:
        accuracy_drop = baseline.top1 - result.top1

    if not result.ok:
        exclude(EXCLUDED_FAILED, f"failed: {result.failure_reason or 'no reason given'}")
        return VariantVerdict(result.name, False, tuple(exclusions), tuple(reasons), None, None)

    if not is_baseline and baseline.ok:
        if result.top1_agreement is None:
            exclude(EXCLUDED_DISAGREES, "top-1 agreement with the baseline was not measured")
        elif result.top1_agreement < min_top1_agreement:
            exclude(
                EXCLUDED_DISAGREES,
                f"disagrees with baseline: top-1 agreement {result.top1_agreement:.3f} "
                f"< {min_top1_agreement:.3f}",
            )
        if baseline.top1 is not None:
            if result.top1 is None:
                exclude(EXCLUDED_NO_ACCURACY, "top-1 accuracy was not measured")
            elif accuracy_drop is not None and accuracy_drop > max_accuracy_drop + 1e-9:
                exclude(
                    EXCLUDED_ACCURACY,
                    f"accuracy drop {100 * accuracy_drop:.2f} points > budget "
                    f"{100 * max_accuracy_drop:.2f} (top-1 {result.top1:.4f} vs baseline "
                    f"{baseline.top1:.4f})",
                )

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
    if max_p99_ms is not None:
        if summary is None:
            exclude(EXCLUDED_NO_OBJECTIVE, "no latency measured to check the p99 ceiling")
        elif summary.p99_ms > max_p99_ms:
            exclude(EXCLUDED_P99, f"p99 {summary.p99_ms:.3f} ms above ceiling {max_p99_ms:.3f} ms")

    objective_value: float | None
    if objective == "p50":
        objective_value = summary.p50_ms if summary is not None else None
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
        accuracy_drop=accuracy_drop,
    )


def _tie_break_key(result: VariantResult) -> tuple[float, float, str]:
    top1 = result.top1 if result.top1 is not None else -1.0
    size = result.size_bytes if result.size_bytes is not None else math.inf
    return (-top1, size, result.name)


def _no_winner(verdicts: Mapping[str, VariantVerdict], finish: Any, budget: float) -> Selection:
    """The Selection when every variant was excluded: says which rule excluded them."""
    excluded = [v for v in verdicts.values() if EXCLUDED_FAILED not in v.exclusions]
    candidates = [v for v in excluded if EXCLUDED_NOT_CANDIDATE not in v.exclusions]
    details = "; ".join(f"{v.name}: {v.reason}" for v in verdicts.values())
    accuracy_only = candidates and all(set(v.exclusions) & _ACCURACY_EXCLUSIONS for v in candidates)
    if accuracy_only:
        return finish(
            STATE_ACCURACY_BUDGET_EXCEEDED,
            f"Not blessed: every candidate lost more than {100 * budget:.2f} points of top-1 "
            f"or disagreed with the baseline ({details}).",
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
) -> str:
    winner_value = verdicts[winner.name].objective_value
    baseline_value = verdicts[baseline.name].objective_value
    if objective == "p50":
        measure = f"p50 {winner_value:.4g} ms"
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
        if winner.top1 is not None and baseline.top1 is not None:
            accuracy = f"; top-1 {winner.top1:.4f} vs baseline {baseline.top1:.4f}"
        agreement = (
            f", agreement {winner.top1_agreement:.3f}" if winner.top1_agreement is not None else ""
        )
        parts.append(f"Blessed {winner.name!r} ({measure}{comparison}{accuracy}{agreement}).")
    if len(tied) > 1:
        parts.append(
            f"Tied within {100 * settings['tie_tolerance']:.0f}% with "
            + ", ".join(repr(r.name) for r in tied[1:])
            + "; chosen by higher top-1, then smaller size, then name."
        )
    if baseline.top1 is None:
        parts.append("Accuracy budget not checked: the baseline has no top-1 (no labels).")
    excluded = [v for v in verdicts.values() if not v.eligible]
    if excluded:
        parts.append("Excluded: " + "; ".join(f"{v.name}: {v.reason}" for v in excluded) + ".")
    return " ".join(parts)
