"""Accuracy-aware int8: the greedy float-fallback search that every int8 mode shares.

    search = search_fallback(
        sensitivity,  # [LayerSensitivity("conv1", "CONV_2D", error=0.8, macs=1.2e6), ...]
        evaluate,  # evaluate(excluded names) -> StepMeasurement(metric_drop, latency_ms)
        FallbackBudget(max_drop=0.01, max_fallback_layers=8, time_budget_s=600),
    )
    search.chosen.excluded, search.stop_reason, search.reachable, search.steps

Each int8 mode brings two things:
- the per-layer sensitivity, measured by its runtime's own tool (the TFLite
  QuantizationDebugger, the quantized-against-float graph for oneDNN, ...), with each
  layer's share of the compute;
- `evaluate(excluded)`, which re-quantizes with those layers left in float and runs the
  task's accuracy pass on held-out evaluation examples (never the calibration ones).

This module decides which layer goes back to float next and when to stop. It knows
nothing of any runtime, so one policy judges every mode the same way:

1. Step 0 is full int8 (only the user's `--int8-exclude` layers in float).
2. While the metric's drop exceeds the budget, the most harmful quantized layer goes
   back to float, with its group (`LayerSensitivity.group`): the highest error per
   share of the int8 compute it gives up (`harm_score`). Then the mode re-quantizes
   and re-measures.
3. The search stops:
   - `within_budget`: the drop fits;
   - `max_fallback_layers`: that many layers are in float (groups counted whole);
   - `not_faster`: less than `min_int8_compute_share` of the compute (MACs) would be
     left in int8, so reverting more cannot give a variant faster than float. Decided
     on MACs, not on a step's timing: on a shared 2-core machine one contaminated
     timing would end a search early, and the same model would get another answer on
     another run. Each step's latency is still measured and recorded;
   - `time_bound`: the next step would not finish inside `time_budget_s`;
   - `exhausted`: every quantized layer is in float.

4. Once within budget, each earlier step's layers are tried back in int8, oldest first,
   and stay int8 when the drop still fits: the greedy order can put a layer in float
   that helped only together with a later one, or not at all.

The chosen step is the last one within budget, after that pruning. When no step
is within budget, the budget is not reachable: the chosen step is the one with the
smallest drop, and `reachable` is False (the variant's row says so; the Benchmarker
never blesses a variant past the budget).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from components.common.errors import UserInputError
from components.common.held_out import DEFAULT_HELD_OUT_EXAMPLES

STOP_REASONS = ("within_budget", "max_fallback_layers", "not_faster", "time_bound", "exhausted")
# A layer with no multiply-accumulates still costs a quantize/dequantize pair around it
# when it goes back to float: its compute share is counted as at least this much, so a
# MAC-free layer with a small error never outranks a convolution with a large one.
MIN_COMPUTE_SHARE = 0.01
DEFAULT_MAX_FALLBACK_LAYERS = 8
DEFAULT_SEARCH_BUDGET_S = 600.0
DEFAULT_MIN_INT8_COMPUTE_SHARE = 0.1
# How activation ranges are calibrated (`--int8-calibration`). "auto": every method the
# mode's quantizer offers is tried on full int8 and the one with the smallest held-out
# drop is kept for the whole search. "entropy" is the histogram method (KL divergence).
CALIBRATION_AUTO = "auto"
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


@dataclasses.dataclass(frozen=True)
class LayerSensitivity:
    """One quantized layer: the error int8 adds there, and its compute."""

    name: str  # The runtime's name for it: what the mode leaves in float.
    op: str  # The runtime's op type, e.g. CONV_2D or Conv2D.
    error: float  # The error it adds (`error_metric`), comparable within one mode.
    macs: int  # Multiply-accumulates per example (0 for element-wise ops).
    error_metric: str = "normalized_mse"
    #: Layers that go back to float with this one: the MAC-free ops after it (pooling,
    #: reshapes) up to the next layer with weights. Without them its output would only be
    #: quantized again at their input, with the same range and the same error.
    group: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "group": list(self.group)}


@dataclasses.dataclass(frozen=True)
class StepMeasurement:
    """What `evaluate` measured for one set of float layers."""

    metric_drop: float  # Float model's metric minus this one's, on held-out examples.
    metric: float | None = None  # This step's metric itself.
    latency_ms: float | None = None  # None: the mode does not time its steps.


@dataclasses.dataclass(frozen=True)
class FallbackStep:
    """One measured step of the search."""

    excluded: tuple[str, ...]  # The layers in float at this step (user's first).
    metric_drop: float
    metric: float | None
    latency_ms: float | None
    seconds: float  # How long re-quantizing and measuring took.

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "excluded": list(self.excluded)}


@dataclasses.dataclass(frozen=True)
class FallbackBudget:
    max_drop: float  # As a fraction (0.01 is one point of top-1).
    max_fallback_layers: int = DEFAULT_MAX_FALLBACK_LAYERS
    time_budget_s: float = DEFAULT_SEARCH_BUDGET_S
    #: Below this share of the MACs left in int8, no step can beat float (`not_faster`).
    min_int8_compute_share: float = DEFAULT_MIN_INT8_COMPUTE_SHARE

    def __post_init__(self) -> None:
        if self.max_drop < 0:
            raise UserInputError(f"the accuracy budget must be >= 0, got {self.max_drop}")
        if self.max_fallback_layers < 0:
            raise UserInputError(
                f"max_fallback_layers must be >= 0, got {self.max_fallback_layers}"
            )
        if self.time_budget_s <= 0:
            raise UserInputError(
                f"the int8 search budget must be positive, got {self.time_budget_s} s"
            )


@dataclasses.dataclass(frozen=True)
class FallbackSearch:
    """The whole search: every step, the one chosen, and why it stopped."""

    steps: tuple[FallbackStep, ...]
    chosen: FallbackStep
    stop_reason: str
    reachable: bool
    seconds: float
    ranking: tuple[str, ...]  # The quantized layers, most harmful first.

    @property
    def fallback_layers(self) -> tuple[str, ...]:
        """Every name the search put in float, groups included (not the user's)."""
        return self.chosen.excluded[len(self.steps[0].excluded) :]

    @property
    def reverted_layers(self) -> tuple[str, ...]:
        """The ranked layers among them: what "N layers in float" counts (a group's
        MAC-free ops are not layers of their own unless the mode ranked them)."""
        ranked = set(self.ranking)
        return tuple(name for name in self.fallback_layers if name in ranked)

    def summary(self) -> str:
        """One line for a row or a blessing reason."""
        reverted = self.reverted_layers
        layers = ", ".join(display_names(reverted, self.ranking)) or "none"
        drop = f"{self.chosen.metric_drop * 100:+.2f} pt"
        if not self.reachable:
            return (
                f"budget not reachable: the smallest drop found was {drop} with "
                f"{layers_in_float(len(reverted))} ({layers}); stopped: {self.stop_reason}"
            )
        return f"{layers_in_float(len(reverted))} ({layers}), drop {drop}"

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": [s.to_json() for s in self.steps],
            "chosen_step": self.steps.index(self.chosen),
            "fallback_layers": list(self.fallback_layers),
            "stop_reason": self.stop_reason,
            "reachable": self.reachable,
            "seconds": round(self.seconds, 3),
            "ranking": list(self.ranking),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> FallbackSearch:
        steps = tuple(
            FallbackStep(
                tuple(s["excluded"]), s["metric_drop"], s["metric"], s["latency_ms"], s["seconds"]
            )
            for s in value["steps"]
        )
        return cls(
            steps,
            steps[value["chosen_step"]],
            value["stop_reason"],
            bool(value["reachable"]),
            float(value["seconds"]),
            tuple(value["ranking"]),
        )


def search_record(
    mode: str,
    error_metric: str,
    float_metric: float,
    float_latency_ms: float,
    max_drop: float,
    held_out_examples: int,
    sensitivity_samples: int,
    sensitivity: Sequence[LayerSensitivity],
    search: FallbackSearch,
    seconds: float,
    **extra: Any,
) -> dict[str, Any]:
    """The search record every mode writes beside its model (SEARCH_FILENAME; the keys
    are in components/benchmarker/report_schema.md); `extra` holds a mode's own keys."""
    return {
        "mode": mode,
        "error_metric": error_metric,
        "float_metric": float_metric,
        "float_latency_ms": round(float_latency_ms, 4),
        "max_drop": max_drop,
        "held_out_examples": held_out_examples,
        "sensitivity_samples": sensitivity_samples,
        **extra,
        "sensitivity": [layer.to_json() for layer in sensitivity],
        "search": search.to_json(),
        "seconds": round(seconds, 3),
    }


def search_properties(search: FallbackSearch, seconds: float) -> dict[str, Any]:
    """What an accuracy-aware variant records in MLMD, whatever its mode."""
    return {
        "fallback_layer_count": len(search.reverted_layers),
        "fallback_layers": list(search.fallback_layers),
        "int8_search_drop": search.chosen.metric_drop,
        "naive_int8_drop": search.steps[0].metric_drop,
        "int8_search_reachable": int(search.reachable),
        "int8_search_stop_reason": search.stop_reason,
        "int8_search_steps": len(search.steps),
        "int8_search_seconds": round(seconds, 3),
        "int8_search_summary": search.summary(),
    }


def layers_in_float(count: int) -> str:
    return f"{count} layer{'' if count == 1 else 's'} in float"


def display_names(names: Sequence[str], context: Sequence[str] = ()) -> list[str]:
    """Layer names for people: a TFLite layer named by its fused ops joined with ';' is
    named by the first, and the '/'-scopes every layer of the model shares are dropped
    (StatefulPartitionedCall/functional_1/conv_1/Relu -> conv_1/Relu)."""
    firsts = [name.split(";")[0] for name in names]
    # Scopes of the scoped names only: a bare output name (Identity) shares none.
    scopes = [n.split(";")[0].split("/")[:-1] for n in (*names, *context) if "/" in n]
    shared = 0
    for parts in zip(*scopes, strict=False) if scopes else ():
        if len(set(parts)) != 1:
            break
        shared += 1
    return ["/".join(name.split("/")[shared:]) if "/" in name else name for name in firsts]


def harm_score(layer: LayerSensitivity, total_macs: int) -> float:
    """Error per share of the int8 compute given up by putting `layer` in float."""
    share = layer.macs / total_macs if total_macs > 0 else 0.0
    return layer.error / max(share, MIN_COMPUTE_SHARE)


def rank_layers(layers: Sequence[LayerSensitivity]) -> list[LayerSensitivity]:
    """Most harmful first; ties keep the graph's order."""
    total = sum(layer.macs for layer in layers)
    order = sorted(enumerate(layers), key=lambda item: (-harm_score(item[1], total), item[0]))
    return [layer for _, layer in order]


def search_fallback(
    layers: Sequence[LayerSensitivity],
    evaluate: Callable[[tuple[str, ...]], StepMeasurement],
    budget: FallbackBudget,
    user_excluded: Sequence[str] = (),
    clock: Callable[[], float] = time.monotonic,
) -> FallbackSearch:
    """Greedy float fallback (see the module doc); `layers` are the quantized layers."""
    started = clock()
    fixed = tuple(dict.fromkeys(user_excluded))
    candidates = [layer for layer in rank_layers(layers) if layer.name not in fixed]
    ranked = {layer.name for layer in layers}
    steps: list[FallbackStep] = []
    added: list[tuple[str, ...]] = []  # The layers each step put in float.
    stop_reason = "exhausted"

    def measure(excluded: tuple[str, ...]) -> FallbackStep:
        begun = clock()
        measured = evaluate(excluded)
        step = FallbackStep(
            excluded,
            float(measured.metric_drop),
            measured.metric,
            measured.latency_ms,
            clock() - begun,
        )
        steps.append(step)
        return step

    step = measure(fixed)
    while True:
        if step.metric_drop <= budget.max_drop:
            stop_reason = "within_budget"
            break
        in_float = set(step.excluded)
        remaining = [layer for layer in candidates if layer.name not in in_float]
        if not remaining:
            stop_reason = "exhausted"
            break
        reverted = [name for name in step.excluded[len(fixed) :] if name in ranked]
        if len(reverted) >= budget.max_fallback_layers:
            stop_reason = "max_fallback_layers"
            break
        reverting = (remaining[0].name, *remaining[0].group)
        following = tuple(dict.fromkeys((*step.excluded, *reverting)))
        if _int8_share(layers, following) < budget.min_int8_compute_share:
            stop_reason = "not_faster"
            break
        # The next step takes about as long as the last one did.
        if clock() - started + step.seconds > budget.time_budget_s:
            stop_reason = "time_bound"
            break
        step = measure(following)
        added.append(tuple(name for name in following if name not in in_float))
    chosen, reachable = _choose(steps, budget)
    if reachable:
        for group in added[:-1]:  # The last one brought the drop within budget.
            if clock() - started + chosen.seconds > budget.time_budget_s:
                break
            trial = measure(tuple(name for name in chosen.excluded if name not in group))
            if trial.metric_drop <= budget.max_drop:
                chosen = trial
    return FallbackSearch(
        tuple(steps),
        chosen,
        stop_reason,
        reachable,
        clock() - started,
        tuple(layer.name for layer in candidates),
    )


def _int8_share(layers: Sequence[LayerSensitivity], in_float: Sequence[str]) -> float:
    """The share of the quantized layers' MACs still in int8 with `in_float` reverted."""
    total = sum(layer.macs for layer in layers)
    if total == 0:
        return 1.0  # Nothing to weigh by: only the other stop rules apply.
    floating = set(in_float)
    return sum(layer.macs for layer in layers if layer.name not in floating) / total


def _choose(steps: list[FallbackStep], budget: FallbackBudget) -> tuple[FallbackStep, bool]:
    if steps[-1].metric_drop <= budget.max_drop:  # The search stops at the first that fits.
        return steps[-1], True
    return min(steps, key=lambda s: (s.metric_drop, len(s.excluded))), False


# ----------------------------------------------------------------- the search record

# Beside every accuracy-aware variant's model: the sensitivity table and every step, as
# its mode's `to_json` wrote them; the Benchmarker's report reads it.
SEARCH_FILENAME = "accuracy_aware.json"


def write_search_record(record: Mapping[str, Any], directory: str) -> str:
    import json

    import tensorflow as tf

    path = os.path.join(directory, SEARCH_FILENAME)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(record, indent=2))
    return path


def read_search_record(directory: str) -> dict[str, Any] | None:
    """The record beside a variant's model, or None when there is none."""
    import json

    import tensorflow as tf

    path = os.path.join(directory, SEARCH_FILENAME)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())


# ----------------------------------------------------------------- user exclusions


@dataclasses.dataclass(frozen=True)
class ExclusionPattern:
    """`--int8-exclude`: `op:CONV_2D` (an op type), `re:block_1.*` (a regular expression
    over layer names, matched whole), or a layer's exact name."""

    text: str

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise UserInputError("an --int8-exclude pattern is empty")
        if self.text.startswith("re:"):
            try:
                re.compile(self.text[3:])
            except re.error as error:
                raise UserInputError(
                    f"--int8-exclude {self.text!r} is not a valid regular expression: {error}"
                ) from None

    def matches(self, layer: LayerSensitivity) -> bool:
        if self.text.startswith("op:"):
            return layer.op.lower() == self.text[3:].lower()
        if self.text.startswith("re:"):
            return re.fullmatch(self.text[3:], layer.name) is not None
        return layer.name == self.text


def excluded_layers(
    patterns: Sequence[str], layers: Sequence[LayerSensitivity], mode: str
) -> tuple[str, ...]:
    """The names `patterns` pick; a pattern that picks nothing names the layers there are."""
    picked: dict[str, None] = {}
    for text in patterns:
        pattern = ExclusionPattern(text)
        matched = [layer.name for layer in layers if pattern.matches(layer)]
        if not matched:
            shown = ", ".join(f"{layer.name} ({layer.op})" for layer in layers[:40])
            more = f", and {len(layers) - 40} more" if len(layers) > 40 else ""
            raise UserInputError(
                f"--int8-exclude {text!r} matches none of {mode}'s quantized layers. Use a "
                f"layer name, re:REGEX or op:TYPE; the layers are: {shown}{more}."
            )
        picked.update(dict.fromkeys(matched))
    return tuple(picked)


# ----------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class Int8SearchSettings:
    """What `run --int8-exclude/--max-fallback-layers/--int8-search-budget-s` set for
    every accuracy-aware kind; the accuracy budget is the Benchmarker's own."""

    exclude: tuple[str, ...] = ()
    max_fallback_layers: int = DEFAULT_MAX_FALLBACK_LAYERS
    search_budget_s: float = DEFAULT_SEARCH_BUDGET_S
    held_out_examples: int = DEFAULT_HELD_OUT_EXAMPLES
    calibration_method: str = CALIBRATION_AUTO
    # The Benchmarker's budget and labels (tasks.metric_budget, tasks.LabelSettings),
    # compiled into the producer: the search keeps the same budget the blessing does.
    max_accuracy_drop: float = 0.01
    max_metric_drop: str = ""
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for pattern in self.exclude:
            ExclusionPattern(pattern)  # A malformed pattern is refused when set.
        FallbackBudget(0.0, self.max_fallback_layers, self.search_budget_s)
        if self.held_out_examples < 1:
            raise UserInputError(
                f"the int8 search needs at least 1 held-out example, got {self.held_out_examples}"
            )
        if self.calibration_method not in (CALIBRATION_AUTO, *CALIBRATION_METHODS):
            raise UserInputError(
                f"unknown int8 calibration method {self.calibration_method!r}; choose from "
                f"{', '.join((CALIBRATION_AUTO, *CALIBRATION_METHODS))}"
            )

    def calibration_methods(self, mode: str, offered: Sequence[str]) -> tuple[str, ...]:
        """The methods `mode` tries at step 0: all it offers for "auto", else the one asked
        for; a method the mode's quantizer lacks is refused when the pipeline is built."""
        if self.calibration_method == CALIBRATION_AUTO:
            return tuple(offered)
        if self.calibration_method not in offered:
            raise UserInputError(
                f"--int8-calibration {self.calibration_method}: {mode}'s quantizer calibrates "
                f"by {', '.join(offered)} only. Choose one of those, or auto, or leave "
                f"{mode} out of --variants."
            )
        return (self.calibration_method,)

    def budget(self, task_name: str, float_metric: float) -> FallbackBudget:
        """The search's budget in the metric's units, by the Benchmarker's rule."""
        from components.common.tasks import metric_budget

        value, relative = metric_budget(task_name, self.max_accuracy_drop, self.max_metric_drop)
        allowed = value * abs(float_metric) if relative else value
        return FallbackBudget(allowed, self.max_fallback_layers, self.search_budget_s)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "exclude": list(self.exclude)}

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> Int8SearchSettings:
        value = dict(value or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise UserInputError(f"unknown int8 search settings {unknown}; valid: {sorted(known)}")
        value["exclude"] = tuple(value.get("exclude") or ())
        return cls(**value)
