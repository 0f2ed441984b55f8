"""The timing and accuracy harness, run in fresh child processes.

Why a child process: TensorFlow fixes its thread pools at first use, and earlier
pipeline steps in the same process have already used it; a converter or runtime
crash in one variant must become a failed row rather than a dead pipeline; and
peak RSS is only meaningful in a process that did nothing else. Variants that do not
fit in memory together are timed in groups, each in a process of its own, because
TensorFlow never gives back a graph it imported.

    result = run_benchmark_in_subprocess(request, workdir)

`BenchmarkRequest` lists the variants (name, format, artifact URI) and the settings;
the result is JSON (see `run_benchmark`). Per variant, load time and first-call time
(which includes XLA compilation) are measured apart from steady state.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from components.benchmarker import memory
from components.common.artifact_utils import STATUS_FAILED, STATUS_OK
from components.common.errors import UserInputError
from components.common.examples_io import AUTO_CALIBRATION_SPLIT
from components.common.feeds import FeedSettings
from components.common.signature import GraphSignature
from components.common.tasks import LabelSettings


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


@dataclasses.dataclass(frozen=True)
class BenchmarkSettings:
    """Every knob of a benchmark run; recorded verbatim in the report.

    Frozen, and checked when built (so at pipeline-build time, not an hour into a run).
    """

    # The thread budget of every runtime (runtimes.ThreadSettings maps it to each one's
    # knobs: TF's pools, TFLite's and ORT's num_threads, OpenVINO's INFERENCE_NUM_THREADS).
    intra_op_threads: int = 2
    inter_op_threads: int = 1
    warmup_calls: int = 20
    # A variant's warm-up in each scenario ends after this long (and at least 2 calls),
    # even before `warmup_calls`: it bounds big models' warm-up (stats.measure_interleaved).
    warmup_budget_s: float = 3.0
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
    # The calibration split the Quantizer used ("auto": train, else a hashed slice of
    # `split`); evaluation leaves out whatever calibration read.
    calibration_split: str = AUTO_CALIBRATION_SPLIT
    # The baseline's function: the same one the Freezer froze (a signature, or for a
    # TF1 checkpoint its output and input nodes).
    signature_key: str = "serving_default"
    output_nodes: tuple[str, ...] = ()
    input_nodes: tuple[str, ...] = ()
    feed: FeedSettings = dataclasses.field(default_factory=FeedSettings)
    labels: LabelSettings = dataclasses.field(default_factory=LabelSettings)
    # "auto": the first visible GPU, else the CPU; or a device name such as "CPU:0".
    device: str = "auto"
    # Judge every timing window for CPU starvation (contention.py) and retry or flag
    # the starved ones. Off only where the kernel's counters cannot be trusted.
    contention_check: bool = True
    # What the benchmark process may hold, in bytes: what it holds before any variant
    # loads, plus the loaded variants by their runtimes' estimates (benchmarker/memory.py);
    # None: what the machine and its container have available. Variants that do not
    # fit beside the loaded ones are timed in a later group; one that cannot fit at all
    # fails with the reason.
    memory_budget_bytes: int | None = None

    def __post_init__(self) -> None:
        positive = {
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "latency_window_size": self.latency_window_size,
            "throughput_window_size": self.throughput_window_size,
            "min_window_size": self.min_window_size,
            "min_windows": self.min_windows,
            "accuracy_batch_size": self.accuracy_batch_size,
        }
        problems = [
            f"{name} must be at least 1, got {value}"
            for name, value in positive.items()
            if value < 1
        ]
        if self.warmup_calls < 0:
            problems.append(f"warmup_calls cannot be negative, got {self.warmup_calls}")
        if self.max_windows < self.min_windows:
            problems.append(
                f"max_windows ({self.max_windows}) is below min_windows ({self.min_windows})"
            )
        for name in ("window_target_s", "cv_threshold", "time_budget_s", "warmup_budget_s"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if any(b < 1 for b in self.throughput_batch_sizes):
            problems.append(
                f"throughput_batch_sizes must be positive, got {list(self.throughput_batch_sizes)}"
            )
        if self.memory_budget_bytes is not None and self.memory_budget_bytes < 1:
            problems.append(f"memory_budget_bytes must be positive, got {self.memory_budget_bytes}")
        if self.max_eval_examples is not None and self.max_eval_examples < 1:
            problems.append(f"max_eval_examples must be at least 1, got {self.max_eval_examples}")
        if problems:
            raise UserInputError("Invalid benchmark settings: " + "; ".join(problems) + ".")

    def selection(self) -> Any:  # -> model_forms.ModelSelection
        from components.freezer.model_forms import ModelSelection

        return ModelSelection(self.signature_key, tuple(self.output_nodes), tuple(self.input_nodes))

    def thread_settings(self) -> Any:  # -> runtimes.ThreadSettings
        from components.runtimes import ThreadSettings

        return ThreadSettings(self.intra_op_threads, self.inter_op_threads)

    def to_json(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["throughput_batch_sizes"] = list(self.throughput_batch_sizes)
        value["output_nodes"] = list(self.output_nodes)
        value["input_nodes"] = list(self.input_nodes)
        value["feed"] = self.feed.to_json()
        value["labels"] = self.labels.to_json()
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> BenchmarkSettings:
        """Settings from JSON; unknown keys are refused with the valid ones listed."""
        value = dict(value)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise UserInputError(f"Unknown benchmark settings {unknown}; valid: {sorted(known)}.")
        for key in ("throughput_batch_sizes", "output_nodes", "input_nodes"):
            if key in value:
                value[key] = tuple(value[key])
        value["feed"] = FeedSettings.from_json(value.get("feed"))
        value["labels"] = LabelSettings.from_json(value.get("labels"))
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
    # The signature the baseline takes, as the Freezer recorded it (which inputs take
    # serialized tf.Examples); None: read from the baseline model itself.
    baseline_signature: GraphSignature | None = None
    # The FrozenGraph artifact holding `preprocessing/`, when the signature was split.
    preprocessing_uri: str = ""
    # Where the child appends progress events (progress.py); none when empty.
    progress_path: str = ""
    # Which memory group this process runs (0: the first, which times the baseline and
    # takes its accuracy), and the progress (done, total) the previous group's ended at.
    timing_group: int = 0
    progress_position: tuple[int, int] = (0, 0)
    # Beside the baseline, this group takes only the first variant and defers the rest:
    # how a group stopped at its memory cap, and every later group, is run, so that a
    # variant that outgrew its estimate is known and fails alone (_run_group_within_cap).
    one_variant_per_group: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "variants": [dataclasses.asdict(v) for v in self.variants],
            "baseline_name": self.baseline_name,
            "examples_uri": self.examples_uri,
            "settings": self.settings.to_json(),
            "beam_pipeline_args": list(self.beam_pipeline_args),
            "accuracy_result_dir": self.accuracy_result_dir,
            "baseline_signature": (
                self.baseline_signature.to_json() if self.baseline_signature else None
            ),
            "preprocessing_uri": self.preprocessing_uri,
            "progress_path": self.progress_path,
            "timing_group": self.timing_group,
            "progress_position": list(self.progress_position),
            "one_variant_per_group": self.one_variant_per_group,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> BenchmarkRequest:
        signature = value.get("baseline_signature")
        return cls(
            variants=[VariantSpec(**v) for v in value["variants"]],
            baseline_name=value["baseline_name"],
            examples_uri=value["examples_uri"],
            settings=BenchmarkSettings.from_json(value["settings"]),
            beam_pipeline_args=list(value.get("beam_pipeline_args", [])),
            accuracy_result_dir=value.get("accuracy_result_dir", ""),
            baseline_signature=GraphSignature.from_json(signature) if signature else None,
            preprocessing_uri=value.get("preprocessing_uri", ""),
            progress_path=value.get("progress_path", ""),
            timing_group=int(value.get("timing_group", 0)),
            progress_position=tuple(value.get("progress_position", (0, 0))),
            one_variant_per_group=bool(value.get("one_variant_per_group", False)),
        )


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _configure_threads(settings: BenchmarkSettings) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(settings.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(settings.inter_op_threads)


def run_benchmark(request: BenchmarkRequest) -> dict[str, Any]:
    """Loads every variant, measures accuracy, latency and throughput; returns JSON-able results.

    Must run in a process whose TensorFlow has not executed anything yet (thread settings).
    """
    from components.benchmarker import stats
    from components.benchmarker.progress import ProgressWriter
    from components.common.examples_io import read_records, resolve_calibration
    from components.common.feeds import ExampleRecords, ModelFeeder, check_feature_map
    from components.common.preprocessing import Preprocessing
    from components.common.tasks import plan_evaluation
    from components.runtimes import backend_for, select_device, visible_gpus

    _configure_threads(request.settings)
    device = select_device(request.settings.device, visible_gpus())
    settings = dataclasses.replace(request.settings, device=device)
    threads = settings.thread_settings()
    baseline = next(v for v in request.variants if v.name == request.baseline_name)
    baseline_signature = request.baseline_signature or backend_for(
        baseline.model_format
    ).for_selection(settings.selection()).signature(baseline.uri, settings.signature_key)
    check_feature_map(settings.feed, baseline_signature.inputs)
    preprocessing = (
        Preprocessing.load(request.preprocessing_uri) if request.preprocessing_uri else None
    )
    feeder = ModelFeeder(settings.feed, preprocessing)
    calibration = resolve_calibration(
        request.examples_uri, settings.split, settings.calibration_split
    )
    # Timing inputs: enough real examples for the largest batch. Feeding them to the
    # baseline and planning the evaluation validate the examples before anything runs.
    where = request.examples_uri
    timing_records = ExampleRecords(
        read_records(
            request.examples_uri,
            settings.split,
            limit=max(settings.throughput_batch_sizes, default=1),
            part=calibration.evaluation_part,
        ),
        where,
    )
    feeder.inputs(baseline_signature, timing_records)
    plan = plan_evaluation(baseline_signature.outputs, settings.labels, timing_records)

    results = {spec.name: _result_row(spec) for spec in request.variants}
    if request.timing_group == 0:
        progress = ProgressWriter(request.progress_path)
        runnable = sum(spec.status == STATUS_OK for spec in request.variants)
        # Per variant: its load and its timing scenarios; one accuracy pass per group.
        progress.plan(runnable * (2 + len(settings.throughput_batch_sizes)) + 1)
    else:
        resume_at = request.progress_position
        progress = ProgressWriter(request.progress_path, (resume_at[0], resume_at[1]))
        progress.add(2)  # The baseline's load in this process, and this group's accuracy pass.
    criterion = stats.StabilityCriterion(
        cv_threshold=settings.cv_threshold,
        min_windows=settings.min_windows,
        max_windows=settings.max_windows,
        time_budget_s=settings.time_budget_s,
    )
    batch_records = {
        size: timing_records.head(size) for size in {1, *settings.throughput_batch_sizes}
    }
    context = _RunContext(
        settings=settings,
        threads=threads,
        feeder=feeder,
        timing_records=timing_records,
        batch_records=batch_records,
        baseline_name=baseline.name,
        baseline_signature=baseline_signature,
        criterion=criterion,
        results=results,
        progress=progress,
    )

    # Variants are loaded, scored and timed in groups that fit in memory, one group per
    # process: TF never gives back the graphs it imported, so a group released inside
    # one process still holds most of its memory (ResNet50 under a 6 GiB budget: 6.9 GiB).
    # This process runs group `request.timing_group` and returns the variants that did
    # not fit beside it as `deferred`; run_benchmark_in_subprocess starts the next one.
    # On the embedded default and most models every variant fits and there is one group:
    # all are timed interleaved, as drift demands. The baseline loads in every group
    # (each group's faithfulness is judged against its outputs) but is timed, and its
    # accuracy taken, in the first group only.
    first_group = request.timing_group == 0
    pending = [spec for spec in request.variants if spec.status == STATUS_OK]
    pending.sort(key=lambda spec: spec.name != baseline.name)
    signatures: dict[str, GraphSignature] = {}
    group: dict[str, Any] = {}
    deferred: list[str] = []
    from components.common.memory_watch import rss_bytes as current_rss_bytes

    memory_base = current_rss_bytes()
    # memory_budget_bytes covers this whole process: what it holds before any variant
    # loads (TF's runtime, the inputs) comes off the variants' share.
    variants_budget = (
        None
        if settings.memory_budget_bytes is None
        else max(0, settings.memory_budget_bytes - memory_base)
    )
    group_start = memory.available_bytes()[0]
    from components.common.memory_cap import CAP_ENV

    # Under a memory budget this process is capped (_run_group_process), and past its
    # cap it is stopped, not the machine. A variant whose estimate does not fit beside
    # the baseline alone is then measured rather than refused on a guess: an estimate is
    # one factor for every model (18x for a GraphDef, from the digits CNN and ResNet50),
    # and it refused all three of BERT-base's GraphDef variants under 10 GiB.
    capped = bool(os.environ.get(CAP_ENV))
    held = 0
    for index, spec in enumerate(pending):
        if request.one_variant_per_group and index > 1:
            deferred = [later.name for later in pending[index:]]
            break
        need, reason = _memory_need(spec, variants_budget, held, group_start, results[spec.name])
        if reason and any(name != baseline.name for name in group):
            # Time what is loaded; this one and the rest go to the next group's process.
            deferred = [later.name for later in pending[index:]]
            break
        # The cap keeps the budget, not the machine: a trial must fit what the machine has.
        if reason and not (capped and need <= memory.available_bytes(None, held, group_start)[0]):
            results[spec.name]["status"] = STATUS_FAILED
            results[spec.name]["failure_reason"] = reason
            progress.step("not loaded (memory)", spec.name)
            continue
        variant, signature = _load(spec, context)
        progress.step(
            "loaded" if variant is not None else "failed to load",
            spec.name,
            (f"in {results[spec.name]['load_s']:.1f}s" if variant is not None else "")
            + (" (past its estimate: tried under the memory cap)" if reason else ""),
        )
        if variant is None:
            continue
        group[spec.name] = variant
        signatures[spec.name] = signature
        results[spec.name]["timing_group"] = request.timing_group
        # What it grew by once loaded and run at batch 1 and its largest batch, when the
        # runtime's factor said less (a per-model arena, constants unpacked, a batch's
        # activations): what later variants in this group must fit beside. The
        # baseline's growth also holds TF's one-time start-up: counted all the same,
        # as its batch-32 working set is real and erring high keeps the budget.
        need = max(need, results[spec.name].get("rss_growth_bytes", 0))
        held += need
    accuracy_summaries: dict[str, dict[str, Any]] = {}
    described: dict[str, Any] = {}
    if group:
        accuracy_summaries = _accuracy_pass(
            request, context, plan, calibration, group, signatures, first_group
        )
        progress.step("accuracy", detail=f"of {len(group)} variants")
        timed = {
            n: v
            for n, v in group.items()
            if results[n]["status"] == STATUS_OK and (first_group or n != baseline.name)
        }
        _time_group(timed, signatures, context)
        for name, variant in group.items():
            # After every scenario ran: runtimes that compile per scenario (OpenVINO's
            # throughput model) can only say then what they chose.
            if results[name]["status"] == STATUS_OK:
                described[name] = variant.describe()
            _release(variant, results[name])
        group.clear()
    if not deferred:
        progress.plan(0)  # Failed variants skip their scenarios: the run is complete.
    eval_examples = accuracy_summaries.get(baseline.name, {}).get("eval_examples", 0)
    for name, description in described.items():
        results[name]["runtime"] = description
    from components.benchmarker.fingerprint import collect_fingerprint

    machine = collect_fingerprint(
        # TFLite's interpreters run on the intra-op budget (runtimes/tflite.py).
        settings.intra_op_threads,
        settings.inter_op_threads,
        settings.intra_op_threads,
    )
    return {
        "fingerprint": machine.to_json(),
        "variants": [results[v.name] for v in request.variants],
        "baseline_name": request.baseline_name,
        "eval_examples": eval_examples,
        "settings": settings.to_json(),
        "evaluation": plan.describe(),
        "data": {
            "inputs": feeder.describe(),
            "split": settings.split,
            **calibration.describe(),
        },
        "preprocessing": (
            {"uri": request.preprocessing_uri, "tables": preprocessing.tables}
            if preprocessing is not None
            else None
        ),
        "process_peak_rss_bytes": peak_rss_bytes(),
        "process_rss_before_variants_bytes": memory_base,
        "deferred": deferred,
        "progress_position": list(progress.position()),
    }


@dataclasses.dataclass
class _RunContext:
    """What every group of one benchmark run shares."""

    settings: BenchmarkSettings
    threads: Any  # runtimes.ThreadSettings
    feeder: Any  # feeds.ModelFeeder
    timing_records: Any  # feeds.ExampleRecords
    batch_records: dict[int, Any]
    baseline_name: str
    baseline_signature: GraphSignature
    criterion: Any  # stats.StabilityCriterion
    results: dict[str, dict[str, Any]]
    progress: Any  # progress.ProgressWriter


def _result_row(spec: VariantSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "format": spec.model_format,
        "uri": spec.uri,
        "artifact_id": spec.artifact_id,
        "status": spec.status,
        "failure_reason": spec.failure_reason,
        "properties": spec.properties,
    }


def _is_model(model_format: str) -> bool:
    from components.runtimes.null import FORMAT_NULL
    from components.runtimes.preprocessing import FORMAT_PREPROCESSING

    return model_format not in (FORMAT_NULL, FORMAT_PREPROCESSING)


def _memory_need(
    spec: VariantSpec,
    budget_bytes: int | None,
    held: int,
    group_start: int,
    result: dict[str, Any],
) -> tuple[int, str]:
    """`spec`'s estimated need, and the refusal when it does not fit beside `held` bytes
    (the estimates of the loaded variants) in the room the group started with, or in
    `budget_bytes` (the group's share: memory_budget_bytes less what the process held
    as the group started, the baseline's estimate added back).

    Records the artifact's size in its row (`result`), for the report."""
    from components.runtimes import backend_for, model_size_bytes

    if not _is_model(spec.model_format):
        return 0, ""
    size = result["size_bytes"] = model_size_bytes(spec.uri, spec.model_format)
    factor = backend_for(spec.model_format).memory_per_artifact_byte
    need = memory.estimate_load_bytes(factor, size)
    room, source = memory.available_bytes(budget_bytes, held, group_start)
    if need <= room:
        return need, ""
    return need, memory.refusal(spec.name, need, size, factor, room, source)


def _load(spec: VariantSpec, context: _RunContext) -> tuple[Any, GraphSignature | None]:
    """Loads a variant and runs it once; a failure becomes its row's reason."""
    from components.common.memory_watch import rss_bytes as current_rss_bytes
    from components.runtimes import backend_for

    settings, result = context.settings, context.results[spec.name]
    try:
        backend = backend_for(spec.model_format).for_selection(settings.selection())
        signature = (
            context.baseline_signature
            if spec.name == context.baseline_name
            else backend.signature(spec.uri, settings.signature_key)
        )
        rss_before = current_rss_bytes()
        started = time.perf_counter()
        variant = backend.load(spec.uri, context.threads, settings.device)
        result["load_s"] = time.perf_counter() - started
        first_input = variant.prepare(
            context.feeder.inputs(
                signature, context.timing_records.head(variant.fixed_batch_size or 1)
            )
        )
        started = time.perf_counter()
        variant.run(first_input)
        result["first_call_s"] = time.perf_counter() - started
        # One call at the largest batch it will be timed and scored at, so that the
        # growth below includes that batch's working memory (a TFLite arena at batch 32,
        # activations): on ResNet50 the growth at batch 1 left the group 1 GiB short.
        largest = max(
            (
                size
                for size in (*settings.throughput_batch_sizes, settings.accuracy_batch_size)
                if size > 1 and variant.supports_batch(size)
            ),
            default=None,
        )
        if largest is not None:
            variant.run(
                variant.prepare(
                    context.feeder.inputs(signature, context.timing_records.head(largest))
                )
            )
        # What this process grew by: not the variant's footprint (the allocator reuses
        # what earlier variants freed), and named so in the report.
        result["rss_growth_bytes"] = max(0, current_rss_bytes() - rss_before)
        result["runtime"] = variant.describe()
        result["device"] = variant.device
    except UserInputError:
        raise
    except Exception as error:  # A variant that cannot load is a failed row, not a crash.
        result["status"] = STATUS_FAILED
        result["failure_reason"] = f"load failed: {type(error).__name__}: {error}"[:2000]
        return None, None
    return variant, signature


def _accuracy_pass(
    request: BenchmarkRequest,
    context: _RunContext,
    plan: Any,
    calibration: Any,
    loaded: dict[str, Any],
    signatures: dict[str, GraphSignature],
    first_group: bool,
) -> dict[str, dict[str, Any]]:
    """Scores one group (with the baseline) over the whole split; updates their rows.

    A Beam pipeline (LoadGen's accuracy mode is also a separate run from its performance
    mode). In this process it borrows the loaded variants instead of loading copies.
    """
    from components.benchmarker.accuracy import (
        AccuracyJob,
        run_accuracy_pipeline,
        share_loaded,
        unshare,
    )
    from components.common.examples_io import split_files

    settings, results = context.settings, context.results
    scored = [name for name in loaded if _is_model(results[name]["format"])]
    job = AccuracyJob(
        variants=tuple((name, results[name]["format"], results[name]["uri"]) for name in scored),
        signatures={name: signatures[name] for name in scored},
        baseline_name=context.baseline_name,
        plan=plan,
        settings=settings,
        preprocessing_uri=request.preprocessing_uri or None,
        part=calibration.evaluation_part,
        where=request.examples_uri,
    )
    for name in scored:
        share_loaded(results[name]["format"], results[name]["uri"], loaded[name])
    try:
        with tempfile.TemporaryDirectory(prefix="accuracy-") as accuracy_dir:
            accuracy = run_accuracy_pipeline(
                job,
                split_files(request.examples_uri, settings.split),
                result_dir=request.accuracy_result_dir or accuracy_dir,
                limit=settings.max_eval_examples,
                beam_pipeline_args=request.beam_pipeline_args,
            )
    finally:
        for name in scored:
            unshare(results[name]["format"], results[name]["uri"])
    if not first_group:
        # The same records, the same baseline: its figures are the first group's.
        accuracy.pop(context.baseline_name, None)
    for name, summary in accuracy.items():
        if "error" in summary:
            results[name]["status"] = STATUS_FAILED
            results[name]["failure_reason"] = f"inference failed: {summary['error']}"[:2000]
        else:
            results[name].update(summary)
    return accuracy


def _time_group(
    loaded: dict[str, Any], signatures: dict[str, GraphSignature], context: _RunContext
) -> None:
    """Latency at batch 1, then throughput at each batch size, interleaved in the group."""
    from components.benchmarker import stats

    settings, results = context.settings, context.results
    loaded = dict(loaded)

    def inputs_for(name: str, batch_size: int) -> list[np.ndarray]:
        return context.feeder.inputs(signatures[name], context.batch_records[batch_size])

    def reporter(scenario: str) -> Callable[[str, str], None]:
        reported: set[str] = set()  # A retry after a failing variant settles some again.

        def settled(name: str, stop_reason: str) -> None:
            if name not in reported:
                reported.add(name)
                context.progress.step(scenario, name, stop_reason.replace("_", " "))

        return settled

    single_stream = {n: v for n, v in loaded.items() if v.supports_batch(1)}
    latency = _measure_batch(
        single_stream,
        inputs_for,
        1,
        settings.latency_window_size,
        settings,
        context.criterion,
        results,
        on_settled=reporter("latency"),
    )
    for name, measurement in latency.items():
        results[name]["latency"] = measurement.to_json()
    loaded = {n: v for n, v in loaded.items() if results[n]["status"] == STATUS_OK}
    for batch_size in settings.throughput_batch_sizes:
        runnable = {n: v for n, v in loaded.items() if v.supports_batch(batch_size)}
        measured = _measure_batch(
            runnable,
            inputs_for,
            batch_size,
            settings.throughput_window_size,
            settings,
            context.criterion,
            results,
            on_settled=reporter(f"throughput at batch {batch_size}"),
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
                    "contaminated": measured[name].contaminated,
                    "contaminated_windows": measured[name].contaminated_windows,
                }
            else:
                entry[str(batch_size)] = None  # The variant is compiled for another batch size.


def _release(variant: Any, result: dict[str, Any]) -> None:
    """Frees a variant before the next group loads; a failing release is recorded."""
    try:
        variant.release()
    except Exception as error:  # The figures are taken; a leak must not lose them.
        result.setdefault("warnings", []).append(f"release failed: {error}")


def _measure_batch(
    loaded: dict[str, Any],
    inputs_for: Callable[[str, int], list[np.ndarray]],
    batch_size: int,
    window_size: int,
    settings: BenchmarkSettings,
    criterion: Any,
    results: dict[str, dict[str, Any]],
    on_settled: Callable[[str, str], None] | None = None,
) -> dict[str, Any]:
    """Interleaved timing of every variant at one batch size.

    Every variant is fed the same records, each in its own signature's form (see
    feeds.ModelFeeder). A variant that raises while being timed is marked failed in
    `results`, dropped (also from `loaded`, so later scenarios skip it) and the rest
    are measured again.
    """
    from components.benchmarker import stats
    from components.benchmarker.contention import ContentionMonitor

    monitor = ContentionMonitor(settings.intra_op_threads) if settings.contention_check else None
    calls = {}
    for name, variant in loaded.items():
        prepared = variant.prepare(inputs_for(name, batch_size))
        calls[name] = lambda v=variant, p=prepared: v.run(p)
    window_sizes = _window_sizes(calls, window_size, settings)
    while calls:
        try:
            return stats.measure_interleaved(
                calls,
                warmup_calls=settings.warmup_calls,
                warmup_budget_s=settings.warmup_budget_s,
                window_size={n: window_sizes[n] for n in calls},
                criterion=criterion,
                monitor=monitor,
                on_settled=on_settled,
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


class HarnessStoppedAtCap(HarnessCrashed):
    """The child process was stopped at its memory cap; the message names the cap."""


def run_benchmark_in_subprocess(
    request: BenchmarkRequest,
    workdir: str,
    timeout_s: float | None = None,
    display: Any = None,
) -> dict[str, Any]:
    """Runs `run_benchmark` in fresh Python processes and returns the combined JSON result.

    A fresh process, because TF's thread pools are fixed by the first op that runs; and
    one per memory group, because TF keeps every graph it imported (see run_benchmark).
    `timeout_s` bounds each process. With a `display` (progress.ProgressDisplay), the
    children's progress is shown live.
    """
    import contextlib

    from components.benchmarker.progress import follow_progress

    following: Any = contextlib.nullcontext()
    if display is not None:
        progress_path = os.path.join(workdir, "progress.jsonl")
        request = dataclasses.replace(request, progress_path=progress_path)
        following = follow_progress(progress_path, display)
    baseline = next(spec for spec in request.variants if spec.name == request.baseline_name)
    with following:
        combined = _run_group_within_cap(request, workdir, timeout_s)
        rows = {row["name"]: row for row in combined["variants"]}
        deferred = combined["deferred"]
        while deferred:
            group = combined["timing_groups"]
            later_request = dataclasses.replace(
                request,
                variants=[baseline, *(s for s in request.variants if s.name in deferred)],
                timing_group=group,
                progress_position=tuple(combined["progress_position"]),
                # Once a group packed by the estimates outgrew its cap, later groups are
                # not packed by them either: each would be stopped and run again.
                one_variant_per_group=combined["one_variant_per_group"],
            )
            try:
                later = _run_group_within_cap(later_request, workdir, timeout_s)
            except HarnessCrashed as crash:
                # The groups already measured keep their figures; these become failed rows.
                for name in deferred:
                    rows[name]["status"] = STATUS_FAILED
                    rows[name]["failure_reason"] = (
                        f"the benchmark process of timing group {group} failed: {crash}"
                    )[:2000]
                break
            for row in later["variants"]:
                if row["name"] != baseline.name:
                    rows[row["name"]] = row
            if set(later["deferred"]) >= set(deferred):  # No progress: never loop forever.
                for name in later["deferred"]:
                    rows[name]["status"] = STATUS_FAILED
                    rows[name]["failure_reason"] = "not loaded: no timing group could fit it"
                break
            deferred = later["deferred"]
            combined["one_variant_per_group"] = later["one_variant_per_group"]
            combined["timing_groups"] += 1
            combined["progress_position"] = later["progress_position"]
            combined["process_peak_rss_bytes"] = max(
                combined["process_peak_rss_bytes"], later["process_peak_rss_bytes"]
            )
    combined["variants"] = [rows[spec.name] for spec in request.variants]
    del combined["deferred"], combined["progress_position"], combined["one_variant_per_group"]
    return combined


def _run_group_within_cap(
    request: BenchmarkRequest, workdir: str, timeout_s: float | None
) -> dict[str, Any]:
    """One timing group, run again one variant per process if it is stopped at its cap.

    A group is packed by the variants' estimates, and a variant can grow past its
    estimate (a GraphDef grew 14.6x to 24.5x its artifact on ResNet50 against an 18x
    estimate). The cap then stops the group's process before the kernel's OOM killer
    would. Rather than lose every variant the group held, the group runs again with the
    baseline and one variant per process: the one that does not fit even so fails with
    the cap's reason, and the others are measured. The result's `one_variant_per_group`
    says whether later groups must go one variant per process as well.
    """
    stopped: list[tuple[VariantSpec, str]] = []
    while True:
        try:
            result = _run_group_process(request, workdir, timeout_s)
            break
        except HarnessStoppedAtCap as stop:
            held = [
                spec
                for spec in request.variants
                if spec.status == STATUS_OK and spec.name != request.baseline_name
            ]
            if not held:
                raise  # The baseline alone is past the cap: nothing can be measured.
            if not request.one_variant_per_group and len(held) > 1:
                from absl import logging as absl_logging

                absl_logging.warning(
                    "Benchmarker: timing group %d was stopped at its memory cap (%s); "
                    "running it again with one variant per process.",
                    request.timing_group,
                    stop,
                )
                request = dataclasses.replace(request, one_variant_per_group=True)
                continue
            culprit = held[0]
            reason = (
                f"the benchmark process of timing group {request.timing_group}, holding "
                f"only the baseline and this variant, was stopped at its memory cap: {stop}"
            )
            stopped.append((culprit, reason[:2000]))
            request = dataclasses.replace(
                request, variants=[s for s in request.variants if s.name != culprit.name]
            )
    for spec, reason in stopped:
        row = _result_row(spec)
        row.update(status=STATUS_FAILED, failure_reason=reason)
        result["variants"].append(row)
    return {**result, "one_variant_per_group": request.one_variant_per_group}


def _run_group_process(
    request: BenchmarkRequest, workdir: str, timeout_s: float | None
) -> dict[str, Any]:
    """One timing group's process: its result, with `timing_groups` = 1.

    The process is capped at the Benchmarker's share of the memory budget (the settings'
    memory_budget_bytes, already net of what runs beside it)."""
    from components.common.isolation import run_isolated

    outcome = run_isolated(
        "components.benchmarker.harness:run_benchmark_json",
        {"request": request.to_json()},
        workdir,
        timeout_s=timeout_s,
        name=f"benchmark_group_{request.timing_group}",
        cap_bytes=request.settings.memory_budget_bytes,
    )
    outcome.raise_user_error()  # Bad input, e.g. examples that do not fit the model.
    if outcome.error_type == "MemoryBudgetExceeded":
        raise HarnessStoppedAtCap(outcome.error_message)
    if not outcome.ok:
        raise HarnessCrashed(outcome.failure("the benchmark process"))
    return {**outcome.result, "timing_groups": 1}


def run_benchmark_json(request: dict[str, Any]) -> dict[str, Any]:
    """`run_benchmark` on a request's JSON form: what the isolated child calls."""
    return run_benchmark(BenchmarkRequest.from_json(request))
