"""The timing and accuracy harness, run in a fresh child process.

Why a child process: TensorFlow fixes its thread pools at first use, and earlier
pipeline steps in the same process have already used it; a converter or runtime
crash in one variant must become a failed row rather than a dead pipeline; and
peak RSS is only meaningful in a process that did nothing else.

    result = run_benchmark_in_subprocess(request, workdir)

`BenchmarkRequest` lists the variants (name, format, artifact URI) and the settings;
the result is JSON (see `run_benchmark`). Per variant, load time and first-call time
(which includes XLA compilation) are measured apart from steady state.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from components.common.artifact_utils import STATUS_FAILED, STATUS_OK, directory_size_bytes
from components.common.errors import UserInputError


@dataclasses.dataclass
class VariantSpec:
    """One variant to benchmark: where it is and how to load it."""

    name: str
    model_format: str
    uri: str
    status: str = STATUS_OK
    failure_reason: str = ""
    artifact_id: int | None = None
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class BenchmarkSettings:
    """Every knob of a benchmark run; recorded verbatim in the report."""

    intra_op_threads: int = 2
    inter_op_threads: int = 1
    tflite_threads: int = 2
    warmup_calls: int = 20
    # Calls per timing window, at most; slow variants get fewer calls so that a window
    # lasts about `window_target_s` (never fewer than `min_window_size` calls).
    latency_window_size: int = 50
    throughput_window_size: int = 5
    window_target_s: float = 0.25
    min_window_size: int = 3
    cv_threshold: float = 0.05
    min_windows: int = 3
    max_windows: int = 30
    time_budget_s: float = 60.0
    throughput_batch_sizes: tuple[int, ...] = (1, 8, 32)
    accuracy_batch_size: int = 32
    max_eval_examples: int | None = None
    split: str = "eval"
    image_feature: str = "image"
    label_feature: str = "label"
    # "auto": the first visible GPU, else the CPU; or a device name such as "CPU:0".
    device: str = "auto"

    def thread_settings(self) -> Any:  # -> backends.ThreadSettings (TF-free import path)
        from components.benchmarker.backends import ThreadSettings

        return ThreadSettings(self.intra_op_threads, self.inter_op_threads, self.tflite_threads)

    def to_json(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["throughput_batch_sizes"] = list(self.throughput_batch_sizes)
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> BenchmarkSettings:
        value = dict(value)
        value["throughput_batch_sizes"] = tuple(value["throughput_batch_sizes"])
        return cls(**value)


@dataclasses.dataclass
class BenchmarkRequest:
    variants: list[VariantSpec]
    baseline_name: str
    examples_uri: str
    settings: BenchmarkSettings
    # Passed to the accuracy pass's Beam pipeline (e.g. a Dataflow or Flink runner).
    beam_pipeline_args: list[str] = dataclasses.field(default_factory=list)
    # Where the accuracy pipeline writes its combined counts; a temp dir when empty.
    # A distributed runner needs a location every worker can write (gs://, s3://).
    accuracy_result_dir: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "variants": [dataclasses.asdict(v) for v in self.variants],
            "baseline_name": self.baseline_name,
            "examples_uri": self.examples_uri,
            "settings": self.settings.to_json(),
            "beam_pipeline_args": list(self.beam_pipeline_args),
            "accuracy_result_dir": self.accuracy_result_dir,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> BenchmarkRequest:
        return cls(
            variants=[VariantSpec(**v) for v in value["variants"]],
            baseline_name=value["baseline_name"],
            examples_uri=value["examples_uri"],
            settings=BenchmarkSettings.from_json(value["settings"]),
            beam_pipeline_args=list(value.get("beam_pipeline_args", [])),
            accuracy_result_dir=value.get("accuracy_result_dir", ""),
        )


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def current_rss_bytes() -> int:
    """This process's resident set size now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _configure_threads(settings: BenchmarkSettings) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(settings.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(settings.inter_op_threads)


def run_benchmark(request: BenchmarkRequest) -> dict[str, Any]:
    """Loads every variant, measures accuracy, latency and throughput; returns JSON-able results.

    Must run in a process whose TensorFlow has not executed anything yet (thread settings).
    """
    from components.benchmarker import stats
    from components.benchmarker.accuracy import AccuracyJob, run_accuracy_pipeline
    from components.benchmarker.backends import (
        FORMAT_NULL,
        backend_for,
        select_device,
        visible_gpus,
    )
    from components.common.examples_io import read_labelled_images, split_files

    _configure_threads(request.settings)
    device = select_device(request.settings.device, visible_gpus())
    settings = dataclasses.replace(request.settings, device=device)
    threads = settings.thread_settings()
    baseline = next(v for v in request.variants if v.name == request.baseline_name)
    baseline_signature = backend_for(baseline.model_format).signature(baseline.uri)
    # Timing inputs: enough real examples for the largest batch. This read also
    # validates the examples against the model input before anything else runs.
    eval_set = read_labelled_images(
        request.examples_uri,
        baseline_signature.inputs[0],
        split=settings.split,
        image_feature=settings.image_feature,
        label_feature=settings.label_feature,
        limit=max(settings.throughput_batch_sizes, default=1),
    )

    results: dict[str, dict[str, Any]] = {}
    loaded: dict[str, Any] = {}
    for spec in request.variants:
        result: dict[str, Any] = {
            "name": spec.name,
            "format": spec.model_format,
            "uri": spec.uri,
            "artifact_id": spec.artifact_id,
            "status": spec.status,
            "failure_reason": spec.failure_reason,
            "properties": spec.properties,
        }
        results[spec.name] = result
        if spec.status != STATUS_OK:
            continue
        if spec.model_format != "null":
            result["size_bytes"] = directory_size_bytes(spec.uri)
        try:
            rss_before = current_rss_bytes()
            started = time.perf_counter()
            variant = backend_for(spec.model_format).load(spec.uri, threads, settings.device)
            result["load_s"] = time.perf_counter() - started
            first_input = variant.prepare([eval_set.images[: variant.fixed_batch_size or 1]])
            started = time.perf_counter()
            variant.run(first_input)
            result["first_call_s"] = time.perf_counter() - started
            # Resident memory the variant added by loading and running once. Peak RSS
            # cannot be split per variant in one process; the process peak is reported too.
            result["peak_rss_growth_bytes"] = max(0, current_rss_bytes() - rss_before)
            result["runtime"] = variant.describe()
            result["device"] = variant.device
            loaded[spec.name] = variant
        except Exception as error:  # A variant that cannot load is a failed row, not a crash.
            result["status"] = STATUS_FAILED
            result["failure_reason"] = f"load failed: {type(error).__name__}: {error}"[:2000]

    # Accuracy pass: a Beam pipeline over the whole split (LoadGen's accuracy mode is
    # also a separate run from its performance mode).
    accuracy_job = AccuracyJob(
        variants=tuple(
            (name, results[name]["format"], results[name]["uri"])
            for name in loaded
            if results[name]["format"] != FORMAT_NULL
        ),
        baseline_name=baseline.name,
        model_input=baseline_signature.inputs[0],
        settings=settings,
    )
    with tempfile.TemporaryDirectory(prefix="accuracy-") as accuracy_dir:
        accuracy = run_accuracy_pipeline(
            accuracy_job,
            split_files(request.examples_uri, settings.split),
            result_dir=request.accuracy_result_dir or accuracy_dir,
            limit=settings.max_eval_examples,
            beam_pipeline_args=request.beam_pipeline_args,
        )
    for name, metrics in accuracy.items():
        if "error" in metrics:
            results[name]["status"] = STATUS_FAILED
            results[name]["failure_reason"] = f"inference failed: {metrics['error']}"[:2000]
        else:
            results[name].update(metrics)
    loaded = {n: v for n, v in loaded.items() if results[n]["status"] == STATUS_OK}
    eval_examples = accuracy.get(baseline.name, {}).get("eval_examples", 0)

    criterion = stats.StabilityCriterion(
        cv_threshold=settings.cv_threshold,
        min_windows=settings.min_windows,
        max_windows=settings.max_windows,
        time_budget_s=settings.time_budget_s,
    )
    single_stream = {n: v for n, v in loaded.items() if v.supports_batch(1)}
    latency = _measure_batch(
        single_stream,
        eval_set.images,
        1,
        settings.latency_window_size,
        settings,
        criterion,
        results,
    )
    for name, measurement in latency.items():
        results[name]["latency"] = measurement.to_json()

    for batch_size in settings.throughput_batch_sizes:
        runnable = {n: v for n, v in loaded.items() if v.supports_batch(batch_size)}
        measured = _measure_batch(
            runnable,
            eval_set.images,
            batch_size,
            settings.throughput_window_size,
            settings,
            criterion,
            results,
        )
        loaded = {n: v for n, v in loaded.items() if results[n]["status"] == STATUS_OK}
        for name in loaded:
            entry = results[name].setdefault("throughput", {})
            if name in measured:
                summary = measured[name].summary
                entry[str(batch_size)] = {
                    "images_per_s": stats.throughput_images_per_s(batch_size, summary),
                    "p50_ms": summary.p50_ms,
                    "stable": measured[name].stable,
                }
            else:
                entry[str(batch_size)] = None  # The variant is compiled for another batch size.
    from components.benchmarker.fingerprint import collect_fingerprint

    machine = collect_fingerprint(
        settings.intra_op_threads, settings.inter_op_threads, settings.tflite_threads
    )
    return {
        "fingerprint": machine.to_json(),
        "variants": [results[v.name] for v in request.variants],
        "baseline_name": request.baseline_name,
        "eval_examples": eval_examples,
        "settings": settings.to_json(),
        "process_peak_rss_bytes": peak_rss_bytes(),
    }


def _measure_batch(
    loaded: dict[str, Any],
    images: np.ndarray,
    batch_size: int,
    window_size: int,
    settings: BenchmarkSettings,
    criterion: Any,
    results: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Interleaved timing of every variant at one batch size.

    A variant that raises while being timed is marked failed in `results`, dropped
    (also from `loaded`, so later scenarios skip it) and the rest are measured again.
    """
    from components.benchmarker import stats

    batch = images[:batch_size]
    if len(batch) < batch_size:  # Small eval sets: repeat images to fill the batch.
        batch = np.resize(images, (batch_size, *images.shape[1:]))
    calls = {}
    for name, variant in loaded.items():
        prepared = variant.prepare([batch])
        calls[name] = lambda v=variant, p=prepared: v.run(p)
    window_sizes = _window_sizes(calls, window_size, settings)
    while calls:
        try:
            return stats.measure_interleaved(
                calls,
                warmup_calls=settings.warmup_calls,
                window_size={n: window_sizes[n] for n in calls},
                criterion=criterion,
            )
        except stats.VariantCallError as error:
            results[error.variant]["status"] = STATUS_FAILED
            results[error.variant]["failure_reason"] = str(error)[:2000]
            calls.pop(error.variant)
            loaded.pop(error.variant)
    return {}


def _window_sizes(
    calls: dict[str, Any], max_size: int, settings: BenchmarkSettings
) -> dict[str, int]:
    """Calls per window for each variant, so slow and fast variants get similar windows.

    A 400 ms XLA call with 50-call windows would spend the whole time budget in one
    window and could never be judged stable; a 0.05 ms TFLite call needs many calls
    per window to beat timer noise. Three probe calls estimate each latency. A probe
    that raises is left for the measurement to report (as a failed variant).
    """
    import statistics

    sizes = {}
    for name, call in calls.items():
        durations = []
        try:
            for _ in range(3):
                started = time.perf_counter()
                call()
                durations.append(time.perf_counter() - started)
        except Exception:  # Reported by measure_interleaved as VariantCallError.
            sizes[name] = settings.min_window_size
            continue
        estimate = max(statistics.median(durations), 1e-9)
        fitting = int(settings.window_target_s / estimate)
        sizes[name] = max(settings.min_window_size, min(max_size, fitting))
    return sizes


class HarnessCrashed(RuntimeError):
    """The child process died; the message carries its exit code and stderr tail."""


def run_benchmark_in_subprocess(
    request: BenchmarkRequest, workdir: str, timeout_s: float | None = None
) -> dict[str, Any]:
    """Runs `run_benchmark` in a fresh Python process and returns its JSON result."""
    os.makedirs(workdir, exist_ok=True)
    request_path = os.path.join(workdir, "benchmark_request.json")
    result_path = os.path.join(workdir, "benchmark_result.json")
    with open(request_path, "w", encoding="utf-8") as f:
        json.dump(request.to_json(), f, indent=2)
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    process = subprocess.run(
        [sys.executable, "-m", "components.benchmarker.harness", request_path, result_path],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if process.returncode != 0 or not os.path.exists(result_path):
        tail = "\n".join(process.stderr.strip().splitlines()[-25:])
        raise HarnessCrashed(f"benchmark process exited with code {process.returncode}:\n{tail}")
    with open(result_path, encoding="utf-8") as f:
        result = json.load(f)
    if "user_input_error" in result:
        raise UserInputError(result["user_input_error"])
    return result


def main(argv: Sequence[str]) -> int:
    request_path, result_path = argv
    with open(request_path, encoding="utf-8") as f:
        request = BenchmarkRequest.from_json(json.load(f))
    try:
        result = run_benchmark(request)
    except UserInputError as error:
        # Bad input (e.g. examples that do not fit the model) goes back to the parent
        # as a message, to be raised there as the same error type.
        result = {"user_input_error": str(error)}
    # Write then rename, so the parent never reads a half-written result.
    with open(result_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(result_path + ".tmp", result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
