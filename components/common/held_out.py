"""Held-out examples for the accuracy-aware int8 search: inputs, labels and the task.

    held_out, facts = read_held_out(frozen_graph_uri, examples_uri, exec_properties, 500)
    held_out.metric(run)  # the task's primary metric of run(*inputs) -> [outputs]

The search scores each step on evaluation records, never on the calibration records
(examples_io.resolve_calibration keeps the two apart), with the same task, labels and
feeding as the Benchmarker's accuracy pass. They are the first `limit` records the
Benchmarker evaluates on too, so its figure for the chosen variant was part of the
search; `facts` records both subsets, and the report says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from components.common.errors import UserInputError

# How many evaluation records a step is scored on, unless told otherwise.
DEFAULT_HELD_OUT_EXAMPLES = 500
_ARRAYS = "held_out.npz"
_PLAN = "held_out.json"


class NoLabels(UserInputError):
    """The Examples carry no label for the primary output: there is no metric to keep."""


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Evaluation inputs in signature order, their labels, and how they are scored."""

    inputs: list[np.ndarray]
    labels: np.ndarray
    plan: Any  # components.common.tasks.OutputPlan of the primary output.
    output_index: int = 0  # The primary output's place in the signature.

    def __post_init__(self) -> None:
        if not self.inputs or len(self.labels) != len(self.inputs[0]):
            raise ValueError("held-out inputs and labels must hold the same examples")

    @property
    def task(self) -> Any:  # components.common.tasks.Task
        return self.plan.task

    def metric(self, run: Callable[..., list[np.ndarray]], batch_size: int = 1) -> float:
        """The task's primary metric of `run` over the examples, `batch_size` at a time
        (a static-batch model: the last partial batch is left out)."""
        from components.common.tasks import Counts

        task = self.task
        counts = Counts()
        usable = len(self.labels) - len(self.labels) % batch_size
        for start in range(0, usable, batch_size):
            window = slice(start, start + batch_size)
            outputs = run(*[a[window] for a in self.inputs])
            counts = counts.merge(task.count(outputs[self.output_index], self.labels[window], None))
        return float(task.metrics(counts)[task.primary_metric])

    def latency_ms(self, run: Callable[..., Any], calls: int = 30, warmup: int = 5) -> float:
        """Median of batch-1 calls of `run` on the first example: a rough figure for a
        search step's record (the Benchmarker times the chosen variant properly)."""
        import time

        example = [a[:1] for a in self.inputs]
        for _ in range(warmup):
            run(*example)
        times = []
        for _ in range(calls):
            begun = time.perf_counter()
            run(*example)
            times.append(time.perf_counter() - begun)
        return float(np.median(times) * 1e3)

    def drop(self, reference: float, value: float) -> float:
        """How much worse `value` is than `reference`, in the metric's units (<0: better)."""
        task = self.task
        higher = task.higher_is_better[task.primary_metric]
        return reference - value if higher else value - reference

    def save(self, directory: str) -> str:
        """Writes the examples into `directory` (made if missing) and returns it."""
        os.makedirs(directory, exist_ok=True)
        np.savez(
            os.path.join(directory, _ARRAYS),
            labels=self.labels,
            **{f"input_{i}": a for i, a in enumerate(self.inputs)},
        )
        with open(os.path.join(directory, _PLAN), "w", encoding="utf-8") as f:
            json.dump({"plan": self.plan.to_json(), "output_index": self.output_index}, f)
        return directory

    @classmethod
    def load(cls, directory: str) -> HeldOut:
        from components.common.tasks import OutputPlan

        with open(os.path.join(directory, _PLAN), encoding="utf-8") as f:
            written = json.load(f)
        with np.load(os.path.join(directory, _ARRAYS), allow_pickle=True) as data:
            count = len([k for k in data.files if k.startswith("input_")])
            inputs = [data[f"input_{i}"] for i in range(count)]
            labels = data["labels"]
        return cls(inputs, labels, OutputPlan.from_json(written["plan"]), written["output_index"])


def read_held_out(
    frozen_graph_uri: str, examples_uri: str, exec_properties: dict[str, Any], limit: int
) -> tuple[HeldOut, dict[str, Any]]:
    """The first `limit` evaluation records, fed as the Benchmarker feeds the graph.

    Raises NoLabels when the primary output has no label feature in the Examples.
    """
    from components.common.examples_io import read_records, resolve_calibration
    from components.common.feeds import ExampleRecords, FeedSettings, ModelFeeder
    from components.common.preprocessing import Preprocessing
    from components.common.signature import GraphSignature
    from components.common.tasks import LabelSettings, decode_labels, plan_evaluation

    plan = resolve_calibration(
        examples_uri, exec_properties["eval_split"], exec_properties["calibration_split"]
    )
    records = ExampleRecords(
        read_records(examples_uri, plan.eval_split, limit=limit, part=plan.evaluation_part),
        examples_uri,
    )
    signature = GraphSignature.load(frozen_graph_uri)
    # The baseline's outputs are the frozen graph's (a model core's too: preprocessing
    # changes inputs, not outputs).
    search = json.loads(exec_properties.get("int8_search") or "{}")
    labels_settings = LabelSettings.from_json(search.get("labels"))
    evaluation = plan_evaluation(signature.outputs, labels_settings, records)
    primary = evaluation.primary
    if primary.label_feature is None:
        raise NoLabels(
            f"accuracy-aware int8 keeps the task metric within budget, but the Examples at "
            f"{examples_uri!r} have no label for output {primary.output.name!r}. Pass "
            f"--label-feature (or --label-map), or leave the accuracy-aware kinds out."
        )
    feeder = ModelFeeder(
        FeedSettings.from_json(json.loads(exec_properties["feed_settings"] or "{}")),
        Preprocessing.load(frozen_graph_uri),
    )
    inputs = feeder.inputs(signature, records)
    names = [t.name for t in signature.outputs]
    held_out = HeldOut(
        inputs,
        decode_labels(records, primary.label_feature),
        primary,
        names.index(primary.output.name),
    )
    facts = {
        "search_data": {
            "split": plan.eval_split,
            "records": len(records),
            "rule": f"the first {len(records)} records the Benchmarker evaluates on "
            f"({plan.describe()['evaluation']}); never the calibration records",
        }
    }
    return held_out, facts
