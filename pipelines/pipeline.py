"""The pipeline definition, shared by the local run and the Kubeflow compile.

`create_pipeline(...)` only builds objects: no files are written and nothing runs (it
reads a local run's input files, to fingerprint them).
Runners (pipelines/local_runner.py, pipelines/kubeflow/compiler.py) call it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from components.benchmarker.selection import DEFAULT_MAX_ACCURACY_DROP
from components.common.calibration import DEFAULT_NUM_CALIBRATION
from components.common.held_out import DEFAULT_HELD_OUT_EXAMPLES
from components.common.int8_fallback import (
    CALIBRATION_AUTO,
    DEFAULT_MAX_FALLBACK_LAYERS,
    DEFAULT_SEARCH_BUDGET_S,
)

DEFAULT_PIPELINE_NAME = "inference-optimizer"
# Where the variant kinds' hardware rules are decided: on this machine when it also runs
# the pipeline (a local run), or by each producer on its own node (Kubeflow, Vertex).
HARDWARE_THIS_MACHINE = "this_machine"
HARDWARE_EACH_NODE = "each_node"


def _benchmark_settings_type():  # -> type[components.benchmarker.harness.BenchmarkSettings]
    from components.benchmarker.harness import BenchmarkSettings

    return BenchmarkSettings


def _default_benchmark_settings():
    return _benchmark_settings_type()()


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """User-facing knobs of one pipeline, with defaults a newcomer can run.

    Typed and frozen; `from_json` builds it from a flat JSON-able mapping (a Kubeflow
    config file's `settings:` section, or the `run` flags), refusing unknown keys and
    out-of-range values before any component is built.
    """

    signature_key: str = "serving_default"
    # TF1 checkpoints: the nodes to fetch, and to feed when they are not the placeholders.
    output_nodes: tuple[str, ...] = ()
    input_nodes: tuple[str, ...] = ()
    eval_split: str = "eval"
    # "auto": the train split when the Examples have one, else a hashed slice of eval.
    calibration_split: str = "auto"
    # Feeding: model input -> Example feature where the names differ; image decoding.
    feature_map: dict[str, str] = dataclasses.field(default_factory=dict)
    image_resize_method: str = "bilinear"
    image_size: tuple[int, int] | None = None  # (height, width); None: the input's
    image_scaling: str = "auto"
    # Evaluation: None = the feature `label` when present, else faithfulness only.
    label_feature: str | None = None
    label_map: dict[str, str] = dataclasses.field(default_factory=dict)
    task: str = "auto"
    primary_output: str | None = None
    # The variant kinds to build (components/variant_kinds.py); None: the default set,
    # less the kinds this hardware cannot run (listed as skipped, with the reason).
    variants: tuple[str, ...] | None = None
    hardware: str = HARDWARE_THIS_MACHINE
    # InferenceOptimizer: None runs the default transforms (all but bfloat16).
    transforms: tuple[str, ...] | None = None
    num_calibration: int = DEFAULT_NUM_CALIBRATION
    xla_aot_batch_size: int = 1
    # "host" (this machine's AVX-512) or "generic" (any x86-64: compile and benchmark
    # may run on different node types, as on Kubeflow).
    xla_target_cpu: str = "host"
    # The Benchmarker's timing knobs (split, feeding and labels come from the fields above).
    benchmark_settings: Any = dataclasses.field(default_factory=_default_benchmark_settings)
    objective: str = "p50"
    # The classification spelling of the budget (0.01 = 1 point of top-1 or accuracy).
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP
    # Any task: "" (the task's default), "0.5" in the metric's units, or "2%" of the baseline.
    max_metric_drop: str = ""
    max_p99_ms: float = 0.0  # 0 means no ceiling.
    # The memory the pipeline's transforms and benchmark may take, in bytes; None: what
    # the machine has. Each transform's child is stopped past its share, as a failed
    # variant (components/common/memory_cap.py), and the Benchmarker loads in groups
    # that fit (components/benchmarker/memory.py).
    memory_budget_bytes: int | None = None
    # The accuracy-aware int8 kinds' search (components/common/int8_fallback.py).
    int8_exclude: tuple[str, ...] = ()
    max_fallback_layers: int = DEFAULT_MAX_FALLBACK_LAYERS
    int8_search_budget_s: float = DEFAULT_SEARCH_BUDGET_S
    int8_calibration: str = CALIBRATION_AUTO
    int8_held_out_examples: int = DEFAULT_HELD_OUT_EXAMPLES

    def __post_init__(self) -> None:
        from components.benchmarker.run_parameters import run_parameter_problems
        from components.common.errors import UserInputError

        # The same rules as a scheduled run's parameters (run_parameters.py).
        _, problems = run_parameter_problems(
            {
                "objective": self.objective,
                "max_accuracy_drop": self.max_accuracy_drop,
                "max_p99_ms": self.max_p99_ms,
            }
        )
        if self.memory_budget_bytes is not None and self.memory_budget_bytes < 1:
            problems.append(f"memory_budget_bytes must be positive, got {self.memory_budget_bytes}")
        if self.num_calibration < 1:
            problems.append(f"num_calibration must be at least 1, got {self.num_calibration}")
        if self.xla_aot_batch_size < 1:
            problems.append(f"xla_aot_batch_size must be at least 1, got {self.xla_aot_batch_size}")
        if self.hardware not in (HARDWARE_THIS_MACHINE, HARDWARE_EACH_NODE):
            problems.append(
                f"hardware must be {HARDWARE_THIS_MACHINE!r} or {HARDWARE_EACH_NODE!r}, "
                f"got {self.hardware!r}"
            )
        if not isinstance(self.benchmark_settings, _benchmark_settings_type()):
            problems.append("benchmark_settings must be a BenchmarkSettings (use from_json)")
        if problems:
            raise UserInputError("Invalid pipeline settings: " + "; ".join(problems) + ".")
        if self.max_metric_drop:
            from components.common.tasks import parse_metric_budget

            parse_metric_budget(self.max_metric_drop)
        self.int8_search()  # Refuses malformed patterns and out-of-range bounds now.
        if self.variants is not None:
            try:
                self.kind_selection()
            except ValueError as error:
                raise UserInputError(str(error)) from None

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> PipelineSettings:
        """Settings from a flat mapping; unknown keys are refused with the valid ones listed."""
        from components.common.errors import UserInputError

        values = dict(values)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserInputError(f"Unknown pipeline settings {unknown}; valid: {sorted(known)}.")
        for name in (
            "output_nodes",
            "input_nodes",
            "variants",
            "transforms",
            "image_size",
            "int8_exclude",
        ):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        benchmark = values.get("benchmark_settings")
        if benchmark is None or isinstance(benchmark, Mapping):
            values["benchmark_settings"] = _benchmark_settings_type().from_json(
                dict(benchmark or {})
            )
        return cls(**values)

    def kind_selection(self):  # -> components.variant_kinds.KindSelection
        """The variant kinds this pipeline builds, and the ones skipped here with why."""
        from components.common.cpu_facts import host_cpu
        from components.variant_kinds import select_kinds

        cpu = host_cpu() if self.hardware == HARDWARE_THIS_MACHINE else None
        return select_kinds(self.variants, cpu)

    def feed_settings(self):  # -> components.common.feeds.FeedSettings
        from components.common.feeds import FeedSettings, ImageDecoding

        size = tuple(self.image_size) if self.image_size else None
        return FeedSettings(
            feature_map=dict(self.feature_map),
            image=ImageDecoding(self.image_resize_method, size, self.image_scaling),
        )

    def label_settings(self):  # -> components.common.tasks.LabelSettings
        from components.common.tasks import LabelSettings

        return LabelSettings(
            label_feature=self.label_feature,
            label_map=dict(self.label_map),
            task=self.task,
            primary_output=self.primary_output,
        )

    def int8_search(self):  # -> components.common.int8_fallback.Int8SearchSettings
        """The accuracy-aware kinds' search: its own bounds, and the blessing's budget
        and labels, so that the search keeps to the budget the Benchmarker judges by."""
        from components.common.int8_fallback import Int8SearchSettings

        return Int8SearchSettings(
            exclude=tuple(self.int8_exclude),
            max_fallback_layers=self.max_fallback_layers,
            search_budget_s=self.int8_search_budget_s,
            calibration_method=self.int8_calibration,
            held_out_examples=self.int8_held_out_examples,
            max_accuracy_drop=self.max_accuracy_drop,
            max_metric_drop=self.max_metric_drop,
            labels=self.label_settings().to_json(),
        )

    def benchmark(self):  # -> components.benchmarker.harness.BenchmarkSettings
        """The Benchmarker's settings: the timing knobs plus this pipeline's data settings."""
        return dataclasses.replace(
            self.benchmark_settings,
            memory_budget_bytes=(
                self.benchmark_settings.memory_budget_bytes or self.memory_budget_bytes
            ),
            split=self.eval_split,
            calibration_split=self.calibration_split,
            signature_key=self.signature_key,
            output_nodes=tuple(self.output_nodes),
            input_nodes=tuple(self.input_nodes),
            feed=self.feed_settings(),
            labels=self.label_settings(),
        )


@dataclasses.dataclass(frozen=True)
class _ProducerInputs:
    """What every producer instance may consume, for the builders below."""

    frozen_graph: Any
    examples: Any
    settings: PipelineSettings
    # TFLite models have static batch sizes (XNNPACK steps aside for dynamic ones): one
    # model per benchmarked batch size, batch 1 first for the latency scenario.
    batch_sizes: tuple[int, ...]


def _inference_optimizer(kind: Any, given: _ProducerInputs) -> Any:
    from components.inference_optimizer.component import InferenceOptimizer

    return InferenceOptimizer(
        frozen_graph=given.frozen_graph,
        transforms=given.settings.transforms,
        mode=kind.mode,
        memory_budget_bytes=given.settings.memory_budget_bytes,
    )


def _quantizer(kind: Any, given: _ProducerInputs) -> Any:
    from components.quantizer.component import Quantizer

    return Quantizer(
        frozen_graph=given.frozen_graph,
        mode=kind.mode,
        examples=given.examples if kind.needs_calibration else None,
        num_calibration=given.settings.num_calibration,
        batch_sizes=given.batch_sizes,
        calibration_split=given.settings.calibration_split,
        eval_split=given.settings.eval_split,
        feed_settings=given.settings.feed_settings(),
        memory_budget_bytes=given.settings.memory_budget_bytes,
        int8_search=given.settings.int8_search(),
    )


def _xla_compiler(kind: Any, given: _ProducerInputs) -> Any:
    from components.xla_compiler.component import XlaCompiler

    return XlaCompiler(
        frozen_graph=given.frozen_graph,
        mode=kind.mode,
        batch_size=given.settings.xla_aot_batch_size,
        target_cpu=given.settings.xla_target_cpu,
        memory_budget_bytes=given.settings.memory_budget_bytes,
    )


def _runtime_converter(kind: Any, given: _ProducerInputs) -> Any:
    from components.runtime_converter.component import RuntimeConverter

    return RuntimeConverter(
        frozen_graph=given.frozen_graph,
        mode=kind.mode,
        examples=given.examples if kind.needs_calibration else None,
        num_calibration=given.settings.num_calibration,
        calibration_split=given.settings.calibration_split,
        eval_split=given.settings.eval_split,
        feed_settings=given.settings.feed_settings(),
        memory_budget_bytes=given.settings.memory_budget_bytes,
        int8_search=given.settings.int8_search(),
    )


# One builder per producer component (not per kind): a new mode of a producer is a new
# kind with no change here.
PRODUCER_BUILDERS = {
    "InferenceOptimizer": _inference_optimizer,
    "Quantizer": _quantizer,
    "XlaCompiler": _xla_compiler,
    "RuntimeConverter": _runtime_converter,
}


def optimizer_components(
    model: Any, examples: Any, settings: PipelineSettings | None = None
) -> list[Any]:
    """This project's components after any model and Examples channels, in order.

    `model` is a TFX `Model` channel (a Trainer's `outputs["model"]`, or an importer's)
    and `examples` an `Examples` channel (an ExampleGen's raw examples, not Transform's:
    a serialized-Example signature parses them itself). Returns the Freezer, one
    producer instance per selected variant kind, and the Benchmarker.
    """
    from components.benchmarker.component import Benchmarker
    from components.freezer.component import Freezer

    settings = settings or PipelineSettings()
    selection = settings.kind_selection()
    freezer = Freezer(
        model=model,
        signature_key=settings.signature_key,
        output_nodes=settings.output_nodes,
        input_nodes=settings.input_nodes,
    )
    frozen_graph = freezer.outputs["frozen_graph"]
    benchmark = settings.benchmark()
    given = _ProducerInputs(
        frozen_graph=frozen_graph,
        examples=examples,
        settings=settings,
        batch_sizes=tuple(sorted({1, *benchmark.throughput_batch_sizes})),
    )
    variants = {"frozen_graph": frozen_graph}
    producers = [freezer]
    for kind in selection.built:
        if kind.always:
            continue
        producer = PRODUCER_BUILDERS[kind.producer](kind, given)
        if kind.mode:
            producer = producer.with_id(kind.component_id)
        variants[kind.name] = producer.outputs[kind.output_key]
        producers.append(producer)
    benchmarker = Benchmarker(
        model=model,
        examples=examples,
        variants=variants,
        benchmark_settings=benchmark.to_json(),
        objective=settings.objective,
        max_accuracy_drop=settings.max_accuracy_drop,
        max_metric_drop=settings.max_metric_drop,
        max_p99_ms=settings.max_p99_ms,
        skipped_variants=selection.skipped,
    )
    return [*producers, benchmarker]


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    model_uri: Any,
    examples_uri: Any,
    metadata_connection_config: Any = None,
    settings: PipelineSettings | None = None,
    enable_cache: bool = True,
    beam_pipeline_args: list[str] | None = None,
    model_fingerprint: Any = None,
    examples_fingerprint: Any = None,
):  # -> tfx.orchestration.pipeline.Pipeline (imported lazily: TFX is slow to import)
    """Importers for the model and the examples, then Freezer -> ... -> Benchmarker.

    `model_uri` and `examples_uri` are plain strings for a local run, or runtime
    parameters when compiling for Kubeflow. For plain strings the importers' artifacts
    carry each input's content fingerprint (pipelines/input_fingerprint.py), so that a
    model re-exported into the same folder is a new artifact, not a cache hit; this
    reads the inputs' files (it writes nothing) unless `model_fingerprint` /
    `examples_fingerprint` (InputFingerprint) are given, as `run` does with its cache.
    """
    from tfx.dsl.components.common.importer import Importer
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.types import standard_artifacts

    settings = settings or PipelineSettings()
    model_importer = Importer(
        source_uri=model_uri,
        artifact_type=standard_artifacts.Model,
        custom_properties=_fingerprint_properties(model_uri, model_fingerprint),
    ).with_id("model_importer")
    examples_importer = Importer(
        source_uri=examples_uri,
        artifact_type=standard_artifacts.Examples,
        properties={"split_names": f'["{settings.eval_split}"]'},
        custom_properties=_fingerprint_properties(examples_uri, examples_fingerprint),
    ).with_id("examples_importer")
    components = optimizer_components(
        model_importer.outputs["result"], examples_importer.outputs["result"], settings
    )
    return tfx_pipeline.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[model_importer, examples_importer, *components],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )


def _fingerprint_properties(uri: Any, fingerprint: Any) -> dict[str, str] | None:
    """The importer's custom properties: the input's fingerprint, when it can be known here.

    Boundary: on Kubeflow the URI is a runtime parameter, resolved only when a run
    starts on the cluster, so nothing can be read at compile time and the importer
    keeps TFX's behaviour there (same URI, same artifact: re-export models to a new
    URI, as model registries do).
    """
    if fingerprint is None and not isinstance(uri, str):
        return None
    if fingerprint is None:
        from pipelines.input_fingerprint import fingerprint_input

        fingerprint = fingerprint_input(uri)
    return fingerprint.custom_properties()
