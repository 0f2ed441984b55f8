"""What a model's output means and how it is scored: multi-class, binary, regression.

Each task is one class in a registry (as backends and quantization modes are). A task
turns one output's scores, the labels (optional) and the baseline's scores into
mergeable `Counts`; Beam workers sum those, and the task reads its metrics and the
output's faithfulness to the baseline back from the sums.

| task | output | labels | metrics (primary first) | decision (for agreement) |
|---|---|---|---|---|
| `multiclass` | `[N, C]`, C > 1 | int in [0, C) | top1, top5 | argmax |
| `binary` | `[N, 1]` or `[N]`, sigmoid or logit | int 0/1 | accuracy (at 0.5), auc | p >= 0.5 |
| `regression` | any float | float (or int) | mae, rmse | none |

`infer_task` picks one from the output's shape and activation and the label's kind;
`--task` overrides it. Ties in top-k are broken towards the lower class index, the
same rule argmax uses, so top-5 >= top-1 always holds.

Faithfulness, for every output: the largest absolute difference to the baseline, the
relative error `||variant - baseline|| / ||baseline||` over all examples, and for
classifiers the fraction of examples whose decision agrees. A baseline whose outputs
hardly vary across inputs (random weights) cannot show a difference: `degenerate`.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from components.common.errors import UserInputError
from components.common.signature import TensorDescription

TASK_MULTICLASS = "multiclass"
TASK_BINARY = "binary"
TASK_REGRESSION = "regression"
TASK_AUTO = "auto"
TOP_K = 5
# Score bins for ROC AUC (TFMA uses 10,000 thresholds too); exact to about 1e-4.
AUC_BINS = 10_000
# Per-element output ranges are kept for this many elements (enough for 1000 classes;
# a segmentation map is judged on its first 65,536 values).
RANGE_ELEMENTS = 65_536
# A baseline output whose every element varies less than this across the evaluation
# inputs (relative to max(1, |output|)) is degenerate: no variant can differ visibly.
DEGENERATE_RANGE = 1e-5

LABEL_INT = "int"
LABEL_FLOAT = "float"


@dataclasses.dataclass
class Counts:
    """Mergeable sums for one output of one variant, over a batch or a whole split."""

    sums: dict[str, float] = dataclasses.field(default_factory=dict)
    maxima: dict[str, float] = dataclasses.field(default_factory=dict)
    histograms: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    # Per-element minimum and maximum of the outputs themselves (degeneracy check).
    minimum: list[float] | None = None
    maximum: list[float] | None = None

    def add(self, name: str, value: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(value)

    def add_histogram(self, name: str, counts: list[int]) -> None:
        mine = self.histograms.get(name)
        self.histograms[name] = (
            list(counts) if mine is None else [a + b for a, b in zip(mine, counts, strict=True)]
        )

    def merge(self, other: Counts) -> Counts:
        merged = Counts(
            sums=dict(self.sums),
            maxima=dict(self.maxima),
            histograms={k: list(v) for k, v in self.histograms.items()},
        )
        for name, value in other.sums.items():
            merged.add(name, value)
        for name, value in other.maxima.items():
            merged.maxima[name] = max(merged.maxima.get(name, value), value)
        for name, values in other.histograms.items():
            merged.add_histogram(name, values)
        merged.minimum = _combine(self.minimum, other.minimum, np.minimum)
        merged.maximum = _combine(self.maximum, other.maximum, np.maximum)
        return merged

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Counts:
        return cls(**value)

    @property
    def examples(self) -> int:
        return int(self.sums.get("examples", 0))


def _combine(a: list[float] | None, b: list[float] | None, how: Any) -> list[float] | None:
    if a is None or b is None:
        return a if b is None else b
    return how(np.asarray(a), np.asarray(b)).tolist()


class Task(abc.ABC):
    """How one output is scored; built per output (`for_output`)."""

    name: str = ""
    metric_names: tuple[str, ...] = ()
    higher_is_better: dict[str, bool] = {}
    label_kind: str = LABEL_INT
    #: Whether outputs lead to a discrete decision whose agreement is meaningful.
    decides: bool = False

    def __init__(self, output: TensorDescription) -> None:
        self.output = output

    @property
    def primary_metric(self) -> str:
        return self.metric_names[0]

    @abc.abstractmethod
    def check_labels(self, labels: np.ndarray, feature: str) -> None:
        """Raises UserInputError when the labels cannot be scored by this task."""

    def decide(self, scores: np.ndarray) -> np.ndarray:
        raise TypeError(f"task {self.name} makes no decision")

    @abc.abstractmethod
    def count_labels(self, scores: np.ndarray, labels: np.ndarray, counts: Counts) -> None:
        """Adds this batch's label-based sums to `counts`."""

    @abc.abstractmethod
    def metrics(self, counts: Counts) -> dict[str, float | None]:
        """The task's metrics from summed counts (primary first)."""

    def count(
        self, scores: np.ndarray, labels: np.ndarray | None, baseline: np.ndarray | None
    ) -> Counts:
        """Counts for one batch: labels (when given) and faithfulness to `baseline`."""
        scores = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
        counts = Counts()
        counts.add("examples", len(scores))
        head = scores[:, :RANGE_ELEMENTS]
        counts.minimum = np.min(head, axis=0).tolist() if len(scores) else None
        counts.maximum = np.max(head, axis=0).tolist() if len(scores) else None
        if labels is not None:
            counts.add("labelled", len(scores))
            self.count_labels(scores, labels, counts)
        if baseline is not None:
            reference = np.asarray(baseline, dtype=np.float64).reshape(len(scores), -1)
            difference = scores - reference
            counts.add("squared_difference", float(np.sum(difference**2)))
            counts.add("squared_reference", float(np.sum(reference**2)))
            counts.maxima["max_abs_diff"] = float(np.max(np.abs(difference), initial=0.0))
            if self.decides:
                counts.add("agree", int(np.sum(self.decide(scores) == self.decide(reference))))
        return counts

    def faithfulness(self, counts: Counts) -> dict[str, float | None]:
        """max_abs_diff, relative_error and (classifiers) agreement, from summed counts."""
        if "max_abs_diff" not in counts.maxima:
            return {}
        reference = counts.sums.get("squared_reference", 0.0)
        difference = counts.sums.get("squared_difference", 0.0)
        relative = float(np.sqrt(difference / reference)) if reference > 0 else None
        if reference == 0 and difference == 0:
            relative = 0.0
        value: dict[str, float | None] = {
            "max_abs_diff": counts.maxima["max_abs_diff"],
            "relative_error": relative,
        }
        if self.decides:
            value["agreement"] = counts.sums.get("agree", 0.0) / max(counts.examples, 1)
        return value

    def describe(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "output": self.output.name,
            "metrics": list(self.metric_names),
            "primary_metric": self.primary_metric,
            "higher_is_better": {m: self.higher_is_better[m] for m in self.metric_names},
        }


def is_degenerate(counts: Counts) -> bool:
    """Whether the outputs hardly varied across inputs (see DEGENERATE_RANGE)."""
    if counts.minimum is None or counts.maximum is None or counts.examples < 2:
        return False
    low, high = np.asarray(counts.minimum), np.asarray(counts.maximum)
    scale = max(1.0, float(np.max(np.abs(np.concatenate([low, high])))))
    return float(np.max(high - low)) <= DEGENERATE_RANGE * scale


_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator adding a task to the registry; a second `name` is an error."""
    if cls.name in _TASKS:
        raise ValueError(f"task {cls.name!r} registered twice")
    _TASKS[cls.name] = cls
    return cls


def task_names() -> list[str]:
    return list(_TASKS)


def make_task(name: str, output: TensorDescription) -> Task:
    if name not in _TASKS:
        raise UserInputError(
            f"Unknown task {name!r}; choose one of {', '.join(_TASKS)} or {TASK_AUTO} (--task)."
        )
    return _TASKS[name](output)


def _num_classes(output: TensorDescription) -> int:
    size = 1
    for dim in output.shape[1:]:
        if dim is None:
            return 0
        size *= int(dim)
    return size


@register_task
class MultiClass(Task):
    """Softmax probabilities or logits over C > 1 classes; labels are class indices."""

    name = TASK_MULTICLASS
    metric_names = ("top1", "top5")
    higher_is_better = {"top1": True, "top5": True}
    decides = True

    def check_labels(self, labels: np.ndarray, feature: str) -> None:
        classes = _num_classes(self.output)
        _require_integer(labels, feature, self.name)
        if labels.size and (labels.min() < 0 or (classes and labels.max() >= classes)):
            raise UserInputError(
                f"The label feature {feature!r} holds values from {labels.min()} to "
                f"{labels.max()}, but the output {self.output.name!r} scores {classes} classes "
                f"(indices 0..{classes - 1}). Pass the feature holding class indices with "
                f"--label-feature, or --task regression if the output is not a classifier."
            )

    def decide(self, scores: np.ndarray) -> np.ndarray:
        return np.argmax(scores, axis=1)  # The lowest index among ties.

    def count_labels(self, scores: np.ndarray, labels: np.ndarray, counts: Counts) -> None:
        labels = labels.reshape(-1).astype(np.int64)
        label_scores = scores[np.arange(len(labels)), labels]
        higher = np.sum(scores > label_scores[:, None], axis=1)
        columns = np.arange(scores.shape[1])[None, :]
        tied_before = np.sum(
            (scores == label_scores[:, None]) & (columns < labels[:, None]), axis=1
        )
        rank = higher + tied_before
        counts.add("top1_correct", int(np.sum(rank < 1)))
        counts.add("top5_correct", int(np.sum(rank < TOP_K)))
        counts.maxima["classes"] = float(scores.shape[1])

    def metrics(self, counts: Counts) -> dict[str, float | None]:
        labelled = counts.sums.get("labelled", 0.0)
        if not labelled:
            return {"top1": None, "top5": None}
        classes = counts.maxima.get("classes", 0)
        return {
            "top1": counts.sums["top1_correct"] / labelled,
            "top5": counts.sums["top5_correct"] / labelled if classes >= TOP_K else None,
        }


@register_task
class Binary(Task):
    """One probability (sigmoid) or logit per example; labels are 0 or 1."""

    name = TASK_BINARY
    metric_names = ("accuracy", "auc")
    higher_is_better = {"accuracy": True, "auc": True}
    decides = True

    def check_labels(self, labels: np.ndarray, feature: str) -> None:
        _require_integer(labels, feature, self.name)
        unexpected = sorted(set(np.unique(labels).tolist()) - {0, 1})
        if unexpected:
            raise UserInputError(
                f"The label feature {feature!r} holds values {unexpected[:5]} besides 0 and 1, "
                f"but the output {self.output.name!r} is a binary classifier (one score per "
                f"example). Pass the 0/1 label with --label-feature, or --task regression."
            )

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        values = scores.reshape(len(scores), -1)[:, 0]
        if self.output.activation == "sigmoid":
            return values
        return 1.0 / (1.0 + np.exp(-np.clip(values, -60, 60)))  # Logits.

    def decide(self, scores: np.ndarray) -> np.ndarray:
        return (self.probabilities(scores) >= 0.5).astype(np.int64)

    def count_labels(self, scores: np.ndarray, labels: np.ndarray, counts: Counts) -> None:
        labels = labels.reshape(-1).astype(np.int64)
        probabilities = self.probabilities(scores)
        counts.add("correct", int(np.sum(self.decide(scores) == labels)))
        bins = np.clip((probabilities * AUC_BINS).astype(np.int64), 0, AUC_BINS - 1)
        for name, selected in (("positive", labels == 1), ("negative", labels == 0)):
            counts.add_histogram(name, np.bincount(bins[selected], minlength=AUC_BINS).tolist())

    def metrics(self, counts: Counts) -> dict[str, float | None]:
        labelled = counts.sums.get("labelled", 0.0)
        if not labelled:
            return {"accuracy": None, "auc": None}
        return {
            "accuracy": counts.sums["correct"] / labelled,
            "auc": _auc(counts.histograms.get("positive"), counts.histograms.get("negative")),
        }


def _auc(positive: list[int] | None, negative: list[int] | None) -> float | None:
    """ROC AUC from score histograms: P(positive > negative) + P(same bin) / 2."""
    if not positive or not negative:
        return None
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    if pos.sum() == 0 or neg.sum() == 0:
        return None
    negatives_below = np.cumsum(neg) - neg
    return float(
        (np.sum(pos * negatives_below) + 0.5 * np.sum(pos * neg)) / (pos.sum() * neg.sum())
    )


@register_task
class Regression(Task):
    """Real-valued outputs; labels are numbers of the same size per example."""

    name = TASK_REGRESSION
    metric_names = ("mae", "rmse")
    higher_is_better = {"mae": False, "rmse": False}
    label_kind = LABEL_FLOAT

    def check_labels(self, labels: np.ndarray, feature: str) -> None:
        size = _num_classes(self.output)
        per_example = labels.reshape(len(labels), -1).shape[1] if labels.size else 0
        if size and per_example != size:
            raise UserInputError(
                f"The label feature {feature!r} holds {per_example} values per example, but "
                f"the output {self.output.name!r} has {size}. Pass the matching target with "
                f"--label-feature."
            )

    def count_labels(self, scores: np.ndarray, labels: np.ndarray, counts: Counts) -> None:
        error = scores - labels.reshape(len(labels), -1).astype(np.float64)
        counts.add("absolute_error", float(np.sum(np.abs(error))))
        counts.add("squared_error", float(np.sum(error**2)))
        counts.add("label_values", float(error.size))

    def metrics(self, counts: Counts) -> dict[str, float | None]:
        values = counts.sums.get("label_values", 0.0)
        if not values:
            return {"mae": None, "rmse": None}
        return {
            "mae": counts.sums["absolute_error"] / values,
            "rmse": float(np.sqrt(counts.sums["squared_error"] / values)),
        }


def _require_integer(labels: np.ndarray, feature: str, task: str) -> None:
    if not np.issubdtype(labels.dtype, np.integer):
        raise UserInputError(
            f"The label feature {feature!r} holds float values, but the task is {task} "
            f"classification, which needs integer class labels (an int64_list feature). "
            f"Pass an integer label with --label-feature, or --task regression if the model "
            f"predicts a number."
        )


def infer_task(
    output: TensorDescription, label_kind: str | None, requested: str = TASK_AUTO
) -> Task:
    """The task for an output: `requested`, or inferred from its shape, activation and labels."""
    if requested != TASK_AUTO:
        return make_task(requested, output)
    classes = _num_classes(output)
    if classes > 1 and output.activation != "sigmoid":
        # Float labels for such an output are refused by MultiClass.check_labels.
        return make_task(TASK_MULTICLASS, output)
    one_score = classes == 1 or len(output.shape) == 1
    looks_binary = label_kind == LABEL_INT or (
        label_kind is None and output.activation == "sigmoid"
    )
    if one_score and looks_binary:
        return make_task(TASK_BINARY, output)
    return make_task(TASK_REGRESSION, output)


@dataclasses.dataclass(frozen=True)
class LabelSettings:
    """Which Example features label which outputs, and what the task is."""

    # The primary output's label; None: the feature `label` when the Examples have it.
    label_feature: str | None = None
    # More outputs' labels: output name -> feature.
    label_map: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The primary output's task, or "auto" (inferred; see infer_task).
    task: str = TASK_AUTO
    # The output whose metric gates the blessing; None: the only output, else the first.
    primary_output: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "label_feature": self.label_feature,
            "label_map": dict(sorted(self.label_map.items())),
            "task": self.task,
            "primary_output": self.primary_output,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> LabelSettings:
        value = dict(value or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise UserInputError(f"Unknown label settings {unknown}; valid: {sorted(known)}.")
        value["label_map"] = dict(value.get("label_map") or {})
        return cls(**value)


DEFAULT_LABEL_FEATURE = "label"


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """How one output is scored: its task and the feature labelling it (None: no labels)."""

    output: TensorDescription
    task_name: str
    label_feature: str | None

    @property
    def task(self) -> Task:
        return make_task(self.task_name, self.output)

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output.to_json(),
            "task": self.task_name,
            "label_feature": self.label_feature,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> OutputPlan:
        return cls(
            output=TensorDescription.from_json(value["output"]),
            task_name=value["task"],
            label_feature=value.get("label_feature"),
        )


@dataclasses.dataclass(frozen=True)
class EvaluationPlan:
    """Every output's task and labels, and which output is primary."""

    outputs: tuple[OutputPlan, ...]
    primary_output: str

    @property
    def primary(self) -> OutputPlan:
        return next(p for p in self.outputs if p.output.name == self.primary_output)

    @property
    def has_labels(self) -> bool:
        return self.primary.label_feature is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "outputs": [p.to_json() for p in self.outputs],
            "primary_output": self.primary_output,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> EvaluationPlan:
        return cls(
            outputs=tuple(OutputPlan.from_json(v) for v in value["outputs"]),
            primary_output=value["primary_output"],
        )

    def describe(self) -> dict[str, Any]:
        """The report's account of what was measured how."""
        primary = self.primary
        task = primary.task
        return {
            "primary_output": self.primary_output,
            "task": primary.task_name,
            "primary_metric": task.primary_metric,
            "metrics": list(task.metric_names),
            "higher_is_better": dict(task.higher_is_better),
            "decides": task.decides,
            "activation": primary.output.activation,
            "labels": primary.label_feature,
            "outputs": [
                {
                    "output": p.output.name,
                    "task": p.task_name,
                    "label_feature": p.label_feature,
                    "metrics": list(p.task.metric_names) if p.label_feature else [],
                }
                for p in self.outputs
            ],
        }


def plan_evaluation(
    outputs: tuple[TensorDescription, ...], settings: LabelSettings, records: Any
) -> EvaluationPlan:
    """Tasks and labels for every output, checked against `records` (feeds.ExampleRecords).

    Raises UserInputError for unknown outputs or features, and labels unfit for the task.
    """
    names = [t.name for t in outputs]
    for output in (settings.primary_output, *settings.label_map):
        if output is not None and output not in names:
            raise UserInputError(
                f"The model has no output {output!r} (outputs: {', '.join(names)}); check "
                f"--primary-output and --label-map."
            )
    primary = settings.primary_output or names[0]
    features = records.first.features.feature
    present = ", ".join(sorted(features)) or "none"
    label_features = dict(settings.label_map)
    if settings.label_feature is not None:
        if settings.label_feature not in features:
            raise UserInputError(
                f"The label feature {settings.label_feature!r} is not in the Examples at "
                f"{records.where!r} (features: {present}). Pass --label-feature one of those, "
                f"or leave it out to measure faithfulness only."
            )
        label_features[primary] = settings.label_feature
    elif primary not in label_features and DEFAULT_LABEL_FEATURE in features:
        label_features[primary] = DEFAULT_LABEL_FEATURE
    for output, feature in label_features.items():
        if feature not in features:
            raise UserInputError(
                f"The label feature {feature!r} of output {output!r} is not in the Examples "
                f"at {records.where!r} (features: {present}). Fix --label-map."
            )
    plans = []
    for tensor in outputs:
        feature = label_features.get(tensor.name)
        labels = decode_labels(records, feature) if feature else None
        kind = None if labels is None else label_kind(labels)
        requested = settings.task if tensor.name == primary else TASK_AUTO
        task = infer_task(tensor, kind, requested)
        if labels is not None:
            task.check_labels(labels, feature)
        plans.append(OutputPlan(tensor, task.name, feature))
    return EvaluationPlan(outputs=tuple(plans), primary_output=primary)


def label_kind(labels: np.ndarray) -> str:
    return LABEL_INT if np.issubdtype(labels.dtype, np.integer) else LABEL_FLOAT


def decode_labels(records: Any, feature: str) -> np.ndarray:
    """One row of label values per record (int64 or float32); raises when one lacks them."""
    rows = []
    kind = None
    for index, example in enumerate(records.examples):
        value = example.features.feature.get(feature)
        which = value.WhichOneof("kind") if value is not None else None
        values = getattr(value, which).value if which else []
        if not values or which == "bytes_list":
            raise UserInputError(
                f"Record #{index} of the Examples at {records.where!r} has no numeric label in "
                f"feature {feature!r} ({which or 'missing'}). Every example needs an int64 "
                f"(class) or float (regression) label; pass another --label-feature, or leave "
                f"it out to measure faithfulness only."
            )
        kind = kind or which
        rows.append(list(values))
    if len({len(r) for r in rows}) > 1:
        raise UserInputError(
            f"The label feature {feature!r} holds a different number of values per example "
            f"in the Examples at {records.where!r}; labels need one fixed size."
        )
    dtype = np.int64 if kind == "int64_list" else np.float32
    array = np.asarray(rows, dtype=dtype)
    return array[:, 0] if array.shape[1] == 1 else array


# The budget of a regression's metric when none is given: 1% of the baseline's value.
DEFAULT_REGRESSION_BUDGET = "1%"


def parse_metric_budget(text: str) -> tuple[float, bool]:
    """`0.01` -> (0.01, absolute); `1%` -> (0.01, relative to the baseline's value)."""
    value = text.strip()
    relative = value.endswith("%")
    try:
        number = float(value[:-1] if relative else value)
    except ValueError:
        raise ValueError(
            f"A metric budget is a number in the metric's units (0.01) or a percentage of "
            f"the baseline's value (1%), got {text!r}."
        ) from None
    if number < 0:
        raise ValueError(f"A metric budget cannot be negative, got {text!r}.")
    return (number / 100.0 if relative else number), relative


def metric_budget(
    task_name: str, max_accuracy_drop: float, max_metric_drop: str = ""
) -> tuple[float, bool]:
    """(budget, relative) of the primary metric, by the Benchmarker's rule.

    `max_metric_drop` ("0.5" in the metric's units, or "1%" of the baseline's value)
    wins when given; else classifiers use `max_accuracy_drop` and regressions 1%. The
    accuracy-aware int8 search keeps its drop within the same budget.
    """
    if max_metric_drop:
        return parse_metric_budget(max_metric_drop)
    if task_name == TASK_REGRESSION:
        return parse_metric_budget(DEFAULT_REGRESSION_BUDGET)
    return float(max_accuracy_drop), False
