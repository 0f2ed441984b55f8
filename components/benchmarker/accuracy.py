"""The accuracy pass as an Apache Beam pipeline: task metrics and faithfulness per output.

Timing belongs to one device, so the latency pass stays in one process; accuracy does
not, so it is a Beam pipeline that scales out with `beam_pipeline_args` on a real
runner (Dataflow, Flink, Spark) when the eval set is large. Each worker loads every
variant once (`DoFn.setup`; in the benchmark's own process it borrows the variants
the harness loaded, see `share_loaded`), turns a batch of serialized `tf.Example`s into each
variant's inputs (`feeds.ModelFeeder`: the same records feed the baseline and, through
the preprocessing graph, a model core), runs all variants and emits mergeable counts
per output (`tasks.Counts`), which one combiner sums:

    records -> [Filter: evaluation slice] -> BatchElements -> PredictAndScore -> Sum

With no arguments it runs on Beam's in-process DirectRunner.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from components.common.examples_io import PART_ALL
from components.common.tasks import Counts, EvaluationPlan, is_degenerate

# Variants the benchmark process holds already, by (format, uri). On Beam's in-process
# DirectRunner the DoFn below runs in that same process and scores with them rather
# than loading a second copy (which doubled the benchmark's memory). Workers of a
# distributed runner find this empty and load their own.
_RESIDENT: dict[tuple[str, str], Any] = {}


def share_loaded(model_format: str, uri: str, variant: Any) -> None:
    """Lets this process's accuracy pass use `variant` instead of loading it again."""
    _RESIDENT[(model_format, uri)] = variant


def unshare(model_format: str, uri: str) -> None:
    _RESIDENT.pop((model_format, uri), None)


def predict_in_batches(
    variant: Any, inputs: Sequence[np.ndarray], batch_size: int
) -> list[np.ndarray]:
    """Every output of a loaded variant over `inputs`, padding static-batch variants."""
    rows = len(inputs[0])
    step = variant.batch_size_for(batch_size)
    outputs: list[list[np.ndarray]] = []
    for start in range(0, rows, step):
        batch = [x[start : start + step] for x in inputs]
        real = len(batch[0])
        if real < step and not variant.supports_batch(real):
            # Pad the tail to the compiled batch size; the padding rows are dropped below.
            batch = [np.concatenate([x, np.repeat(x[-1:], step - real, axis=0)]) for x in batch]
        results = variant.run(variant.prepare(batch))
        outputs.append([r[:real] for r in results])
    return [np.concatenate([o[i] for o in outputs]) for i in range(len(outputs[0]))]


@dataclasses.dataclass(frozen=True)
class AccuracyJob:
    """What each worker needs: the variants to load, how to feed them, how to score."""

    variants: tuple[tuple[str, str, str], ...]  # (name, format, uri)
    signatures: dict[str, Any]  # name -> GraphSignature: what each variant takes
    baseline_name: str
    plan: EvaluationPlan
    # Features, accuracy batch size, threads and device: the benchmark's own settings.
    settings: Any  # components.benchmarker.harness.BenchmarkSettings
    preprocessing_uri: str | None = None
    # Which records evaluate (examples_io.PART_*): all, or those calibration left out.
    part: str = PART_ALL
    where: str = ""  # The Examples' location, for messages.


def _merge_all(partials: Iterable[dict[str, dict[str, Counts]]]) -> dict[str, dict[str, Counts]]:
    merged: dict[str, dict[str, Counts]] = {}
    for partial in partials:
        for name, outputs in partial.items():
            mine = merged.setdefault(name, {})
            for output, counts in outputs.items():
                mine[output] = mine[output].merge(counts) if output in mine else counts
    return merged


class _PredictAndScore:
    """Factory for the DoFn (built lazily so importing this module does not import Beam)."""

    @staticmethod
    def make(job: AccuracyJob) -> Any:
        import apache_beam as beam

        class PredictAndScore(beam.DoFn):
            """Loads every variant once per worker and scores each batch with all of them."""

            def __init__(self, job: AccuracyJob) -> None:
                self._job = job

            def setup(self) -> None:
                from components.common.feeds import ModelFeeder
                from components.common.preprocessing import Preprocessing
                from components.runtimes import backend_for

                job = self._job
                threads = job.settings.thread_settings()
                self._loaded: dict[str, Any] = {}
                self._owned: list[Any] = []  # Loaded here (not shared): released here.
                self._errors: dict[str, str] = {}
                for name, model_format, uri in job.variants:
                    shared = _RESIDENT.get((model_format, uri))
                    if shared is not None:
                        self._loaded[name] = shared
                        continue
                    try:
                        backend = backend_for(model_format).for_selection(job.settings.selection())
                        variant = backend.load(uri, threads, job.settings.device)
                        self._loaded[name] = variant
                        self._owned.append(variant)
                    except Exception as error:  # Reported per variant; others still score.
                        self._errors[name] = f"{type(error).__name__}: {error}"
                preprocessing = (
                    Preprocessing.load(job.preprocessing_uri) if job.preprocessing_uri else None
                )
                self._feeder = ModelFeeder(job.settings.feed, preprocessing)
                self._tasks = {p.output.name: p.task for p in job.plan.outputs}

            def teardown(self) -> None:
                for variant in getattr(self, "_owned", []):
                    variant.release()
                self._loaded = {}
                self._owned = []

            def process(self, records: list[bytes]) -> Iterable[dict[str, Any]]:
                from components.common.errors import UserInputError
                from components.common.feeds import ExampleRecords
                from components.common.tasks import decode_labels

                job = self._job
                batch = ExampleRecords(records, job.where)
                labels = {
                    p.output.name: decode_labels(batch, p.label_feature)
                    for p in job.plan.outputs
                    if p.label_feature
                }
                predictions: dict[str, dict[str, np.ndarray]] = {}
                for name, variant in self._loaded.items():
                    if name in self._errors:
                        continue
                    signature = job.signatures[name]
                    try:
                        inputs = self._feeder.inputs(signature, batch)
                        outputs = predict_in_batches(
                            variant, inputs, job.settings.accuracy_batch_size
                        )
                    except UserInputError:
                        raise  # Bad data fails the run, as it would for the baseline.
                    except Exception as error:
                        self._errors[name] = f"{type(error).__name__}: {error}"
                        continue
                    predictions[name] = dict(zip(signature.output_names, outputs, strict=True))
                baseline = predictions.get(job.baseline_name)
                counts = {
                    name: {
                        output: task.count(
                            outputs[output],
                            labels.get(output),
                            baseline[output] if baseline and name != job.baseline_name else None,
                        )
                        for output, task in self._tasks.items()
                        if output in outputs
                    }
                    for name, outputs in predictions.items()
                }
                yield {"counts": counts, "errors": dict(self._errors)}

        return PredictAndScore(job)


def combine_partials(partials: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sums the per-batch counts of every variant and collects per-variant errors."""
    partials = list(partials)
    errors: dict[str, str] = {}
    for partial in partials:
        errors.update(partial["errors"])
    return {"counts": _merge_all(p["counts"] for p in partials), "errors": errors}


def _to_json_line(combined: dict[str, Any]) -> str:
    import json

    return json.dumps(
        {
            "counts": {
                name: {output: c.to_json() for output, c in outputs.items()}
                for name, outputs in combined["counts"].items()
            },
            "errors": combined["errors"],
        }
    )


def summarize(
    plan: EvaluationPlan, counts: dict[str, dict[str, Counts]], baseline_name: str
) -> dict[str, dict[str, Any]]:
    """Per variant: metrics (the primary output's plain, others as `output/metric`),
    faithfulness per output, and the primary output's faithfulness flattened."""
    baseline = counts.get(baseline_name, {})
    degenerate = [o for o, c in baseline.items() if is_degenerate(c)]
    summaries: dict[str, dict[str, Any]] = {}
    for name, outputs in counts.items():
        metrics: dict[str, float | None] = {}
        faithfulness: dict[str, dict[str, float | None]] = {}
        for output_plan in plan.outputs:
            output = output_plan.output.name
            if output not in outputs:
                continue
            task = output_plan.task
            if output_plan.label_feature:
                prefix = "" if output == plan.primary_output else f"{output}/"
                for metric, value in task.metrics(outputs[output]).items():
                    metrics[prefix + metric] = value
            faithful = task.faithfulness(outputs[output])
            if faithful:
                faithfulness[output] = faithful
        primary = outputs.get(plan.primary_output)
        summaries[name] = {
            "eval_examples": primary.examples if primary else 0,
            "metrics": metrics,
            "faithfulness": faithfulness,
            "degenerate_baseline_outputs": degenerate,
        }
    return summaries


def run_accuracy_pipeline(
    job: AccuracyJob,
    files: Sequence[str],
    result_dir: str,
    limit: int | None = None,
    beam_pipeline_args: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Runs the accuracy pipeline and returns `{variant: summary}` (see `summarize`).

    The combined counts are written as one JSON line under `result_dir` (on a
    distributed runner, give a path every worker can write, e.g. gs://...). A variant
    whose loading or predictions raise is reported as `{"error": "..."}`. With `limit`,
    a uniform random sample of that many examples is scored.
    """
    import json
    import os

    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.options.pipeline_options import PipelineOptions

    from components.common.examples_io import record_part

    result_prefix = os.path.join(result_dir, "accuracy_counts")
    options = PipelineOptions(list(beam_pipeline_args))
    part = job.part
    with beam.Pipeline(options=options) as pipeline:
        records = pipeline | "ReadExamples" >> beam.io.ReadFromTFRecord(
            _common_pattern(files), compression_type=beam.io.filesystem.CompressionTypes.GZIP
        )
        if part != PART_ALL:
            records = records | "EvaluationSlice" >> beam.Filter(
                lambda record: record_part(record) == part
            )
        if limit is not None:
            records = (
                records
                | "Sample" >> beam.combiners.Sample.FixedSizeGlobally(limit)
                | "Unpack" >> beam.FlatMap(lambda sample: sample)
            )
        _ = (
            records
            | "Batch"
            >> beam.BatchElements(
                min_batch_size=job.settings.accuracy_batch_size, max_batch_size=256
            )
            | "PredictAndScore" >> beam.ParDo(_PredictAndScore.make(job))
            | "Sum" >> beam.CombineGlobally(combine_partials)
            | "ToJson" >> beam.Map(_to_json_line)
            | "Write" >> beam.io.WriteToText(result_prefix, shard_name_template="")
        )
    with tf.io.gfile.GFile(result_prefix) as f:
        combined = json.loads(f.read())
    counts = {
        name: {output: Counts.from_json(c) for output, c in outputs.items()}
        for name, outputs in combined["counts"].items()
    }
    results = summarize(job.plan, counts, job.baseline_name)
    for name, error in combined["errors"].items():
        results[name] = {"error": error}
    return results


def _common_pattern(files: Sequence[str]) -> str:
    """A glob matching every file of a split (they share one folder)."""
    import os

    directory = os.path.dirname(files[0])
    return os.path.join(directory, "*")
