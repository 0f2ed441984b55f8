"""The accuracy pass as an Apache Beam pipeline: top-1/top-5 and agreement with the baseline.

Timing belongs to one device, so the latency pass stays in one process; accuracy does
not, so it is a Beam pipeline that scales out with `beam_pipeline_args` on a real
runner (Dataflow, Flink, Spark) when the eval set is large. Each worker loads every
variant once (`DoFn.setup`), decodes a batch of serialized `tf.Example`s, runs all
variants on it and emits partial counts, which one combiner sums:

    records -> BatchElements -> PredictAndScore (every variant) -> CombineGlobally(sum)

With no arguments it runs on Beam's in-process DirectRunner.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

TOP_K = 5


@dataclasses.dataclass
class VariantCounts:
    """Sums over examples for one variant; merged across workers."""

    examples: int = 0
    top1_correct: int = 0
    top5_correct: int = 0
    agree_with_baseline: int = 0
    max_abs_diff: float = 0.0
    num_classes: int = 0

    def merge(self, other: VariantCounts) -> VariantCounts:
        return VariantCounts(
            examples=self.examples + other.examples,
            top1_correct=self.top1_correct + other.top1_correct,
            top5_correct=self.top5_correct + other.top5_correct,
            agree_with_baseline=self.agree_with_baseline + other.agree_with_baseline,
            max_abs_diff=max(self.max_abs_diff, other.max_abs_diff),
            num_classes=max(self.num_classes, other.num_classes),
        )

    def metrics(self, has_baseline: bool) -> dict[str, Any]:
        """top1, top5 (None with fewer than 5 classes), agreement and max abs diff."""
        n = max(self.examples, 1)
        metrics: dict[str, Any] = {
            "top1": self.top1_correct / n,
            "top5": self.top5_correct / n if self.num_classes >= TOP_K else None,
            "eval_examples": self.examples,
        }
        if has_baseline:
            metrics["top1_agreement"] = self.agree_with_baseline / n
            metrics["max_abs_diff"] = self.max_abs_diff
        return metrics


def score_batch(
    scores: np.ndarray, labels: np.ndarray, baseline_scores: np.ndarray | None
) -> VariantCounts:
    """Counts for one batch of one variant's scores (N, classes)."""
    top1 = np.argmax(scores, axis=1)
    counts = VariantCounts(
        examples=int(len(labels)),
        top1_correct=int(np.sum(top1 == labels)),
        num_classes=int(scores.shape[1]),
    )
    if scores.shape[1] >= TOP_K:
        top5 = np.argsort(-scores, axis=1)[:, :TOP_K]
        counts.top5_correct = int(np.sum(np.any(top5 == labels[:, None], axis=1)))
    if baseline_scores is not None:
        counts.agree_with_baseline = int(np.sum(top1 == np.argmax(baseline_scores, axis=1)))
        counts.max_abs_diff = float(np.max(np.abs(scores - baseline_scores)))
    return counts


def predict_in_batches(variant: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    """First output of a loaded variant over `images`, padding static-batch variants."""
    step = variant.batch_size_for(batch_size)
    outputs = []
    for start in range(0, len(images), step):
        batch = images[start : start + step]
        real = len(batch)
        if real < step and not variant.supports_batch(real):
            # Pad the tail to the compiled batch size; the padding rows are dropped below.
            batch = np.concatenate([batch, np.repeat(batch[-1:], step - real, axis=0)])
        outputs.append(variant.run(variant.prepare([batch]))[0][:real])
    return np.concatenate(outputs).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class AccuracyJob:
    """What each worker needs: the variants to load and how to decode examples."""

    variants: tuple[tuple[str, str, str], ...]  # (name, format, uri)
    baseline_name: str
    model_input: Any  # components.common.signature.TensorDescription
    # Features, accuracy batch size, threads and device: the benchmark's own settings.
    settings: Any  # components.benchmarker.harness.BenchmarkSettings


def _merge_all(partials: Iterable[dict[str, VariantCounts]]) -> dict[str, VariantCounts]:
    merged: dict[str, VariantCounts] = {}
    for partial in partials:
        for name, counts in partial.items():
            merged[name] = merged[name].merge(counts) if name in merged else counts
    return merged


def _decode(records: Sequence[bytes], job: AccuracyJob) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    shape = tuple(job.model_input.shape[1:])
    images, labels = [], []
    for record in records:
        features = tf.train.Example.FromString(record).features.feature
        images.append(np.asarray(features[job.settings.image_feature].float_list.value, np.float32))
        labels.append(int(features[job.settings.label_feature].int64_list.value[0]))
    batch = np.stack(images).reshape((len(records), *shape)).astype(job.model_input.dtype)
    return batch, np.asarray(labels, np.int64)


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
                from components.benchmarker.backends import backend_for

                job = self._job
                threads = job.settings.thread_settings()
                self._loaded: dict[str, Any] = {}
                self._errors: dict[str, str] = {}
                for name, model_format, uri in job.variants:
                    try:
                        variant = backend_for(model_format).load(uri, threads, job.settings.device)
                        self._loaded[name] = variant
                    except Exception as error:  # Reported per variant; others still score.
                        self._errors[name] = f"{type(error).__name__}: {error}"

            def process(self, records: list[bytes]) -> Iterable[dict[str, Any]]:
                images, labels = _decode(records, self._job)
                predictions = {}
                for name, variant in self._loaded.items():
                    if name in self._errors:
                        continue
                    try:
                        predictions[name] = predict_in_batches(
                            variant, images, self._job.settings.accuracy_batch_size
                        )
                    except Exception as error:
                        self._errors[name] = f"{type(error).__name__}: {error}"
                baseline = predictions.get(self._job.baseline_name)
                counts = {
                    name: score_batch(scores, labels, baseline)
                    for name, scores in predictions.items()
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
            "counts": {n: dataclasses.asdict(c) for n, c in combined["counts"].items()},
            "errors": combined["errors"],
        }
    )


def run_accuracy_pipeline(
    job: AccuracyJob,
    files: Sequence[str],
    result_dir: str,
    limit: int | None = None,
    beam_pipeline_args: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Runs the accuracy pipeline and returns `{variant: metrics}` (see VariantCounts.metrics).

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

    result_prefix = os.path.join(result_dir, "accuracy_counts")
    options = PipelineOptions(list(beam_pipeline_args))
    with beam.Pipeline(options=options) as pipeline:
        records = pipeline | "ReadExamples" >> beam.io.ReadFromTFRecord(
            _common_pattern(files), compression_type=beam.io.filesystem.CompressionTypes.GZIP
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
    counts = {n: VariantCounts(**c) for n, c in combined["counts"].items()}
    has_baseline = job.baseline_name in counts
    metrics: dict[str, dict[str, Any]] = {
        name: c.metrics(has_baseline) for name, c in counts.items()
    }
    for name, error in combined["errors"].items():
        metrics[name] = {"error": error}
    return metrics


def _common_pattern(files: Sequence[str]) -> str:
    """A glob matching every file of a split (they share one folder)."""
    import os

    directory = os.path.dirname(files[0])
    return os.path.join(directory, "*")
