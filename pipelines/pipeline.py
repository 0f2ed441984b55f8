"""The pipeline definition, shared by the local run and the Kubeflow compile.

`create_pipeline(...)` only builds objects: no files are written and nothing runs.
Runners (pipelines/local_runner.py, pipelines/kubeflow/compiler.py) call it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

DEFAULT_PIPELINE_NAME = "inference-optimizer"
ALL_QUANTIZE_MODES = ("float16", "dynamic_range", "int8", "weights_int8_graph", "onednn_int8")


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """User-facing knobs of one pipeline, with defaults a newcomer can run.

    Flat and JSON-able, so a Kubeflow config file's `settings:` section sets them by name.
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
    # InferenceOptimizer: None runs the default transforms (all but bfloat16).
    transforms: tuple[str, ...] | None = None
    # One Quantizer instance per mode, one XlaCompiler instance per mode.
    quantize_modes: tuple[str, ...] = ALL_QUANTIZE_MODES
    num_calibration: int = 200
    xla_modes: tuple[str, ...] = ("jit", "aot")
    xla_aot_batch_size: int = 1
    # "host" (this machine's AVX-512) or "generic" (any x86-64: compile and benchmark
    # may run on different node types, as on Kubeflow).
    xla_target_cpu: str = "host"
    # Benchmarker: JSON-able dict of components.benchmarker.harness.BenchmarkSettings fields.
    benchmark_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    objective: str = "p50"
    # The classification spelling of the budget (0.01 = 1 point of top-1 or accuracy).
    max_accuracy_drop: float = 0.01
    # Any task: "" (the task's default), "0.5" in the metric's units, or "2%" of the baseline.
    max_metric_drop: str = ""
    max_p99_ms: float = 0.0  # 0 means no ceiling.

    def feed_settings(self):  # -> components.common.feeds.FeedSettings
        from components.common.feeds import FeedSettings, ImageDecoding

        size = tuple(self.image_size) if self.image_size else None
        return FeedSettings(
            feature_map=dict(self.feature_map),
            image=ImageDecoding(self.image_resize_method, size, self.image_scaling),
        )

    def label_settings(self):  # -> components.benchmarker.tasks.LabelSettings
        from components.benchmarker.tasks import LabelSettings

        return LabelSettings(
            label_feature=self.label_feature,
            label_map=dict(self.label_map),
            task=self.task,
            primary_output=self.primary_output,
        )


def optimizer_components(
    model: Any, examples: Any, settings: PipelineSettings | None = None
) -> list[Any]:
    """This project's components after any model and Examples channels, in order.

    `model` is a TFX `Model` channel (a Trainer's `outputs["model"]`, or an importer's)
    and `examples` an `Examples` channel (an ExampleGen's raw examples, not Transform's:
    a serialized-Example signature parses them itself). Returns Freezer ->
    InferenceOptimizer, one Quantizer and one XlaCompiler per mode -> Benchmarker.
    """
    from components.benchmarker.component import Benchmarker
    from components.freezer.component import Freezer
    from components.inference_optimizer.component import InferenceOptimizer
    from components.quantizer.component import Quantizer
    from components.quantizer.modes import get_mode
    from components.xla_compiler.component import XlaCompiler

    settings = settings or PipelineSettings()
    feed = settings.feed_settings()
    freezer = Freezer(
        model=model,
        signature_key=settings.signature_key,
        output_nodes=settings.output_nodes,
        input_nodes=settings.input_nodes,
    )
    frozen_graph = freezer.outputs["frozen_graph"]
    optimizer = InferenceOptimizer(frozen_graph=frozen_graph, transforms=settings.transforms)
    variants = {
        "frozen_graph": frozen_graph,
        "optimized_graph": optimizer.outputs["optimized_graph"],
    }
    benchmark_settings = {
        "split": settings.eval_split,
        "calibration_split": settings.calibration_split,
        "signature_key": settings.signature_key,
        "output_nodes": list(settings.output_nodes),
        "input_nodes": list(settings.input_nodes),
        "feed": feed.to_json(),
        "labels": settings.label_settings().to_json(),
        **settings.benchmark_settings,
    }
    # TFLite models have static batch sizes (XNNPACK steps aside for dynamic ones): one
    # model per benchmarked batch size, batch 1 first for the latency scenario.
    batch_sizes = sorted({1, *benchmark_settings.get("throughput_batch_sizes", (1, 8, 32))})
    transforms = [freezer, optimizer]
    for mode in settings.quantize_modes:
        calibrates = get_mode(mode).needs_calibration
        quantizer = Quantizer(
            frozen_graph=frozen_graph,
            mode=mode,
            examples=examples if calibrates else None,
            num_calibration=settings.num_calibration,
            batch_sizes=batch_sizes,
            calibration_split=settings.calibration_split,
            eval_split=settings.eval_split,
            feed_settings=feed,
        ).with_id(f"Quantizer_{mode}")
        variants[f"quantized_{mode}"] = quantizer.outputs["quantized_model"]
        transforms.append(quantizer)
    for mode in settings.xla_modes:
        compiler = XlaCompiler(
            frozen_graph=frozen_graph,
            mode=mode,
            batch_size=settings.xla_aot_batch_size,
            target_cpu=settings.xla_target_cpu,
        ).with_id(f"XlaCompiler_{mode}")
        variants[f"xla_{mode}"] = compiler.outputs["compiled_model"]
        transforms.append(compiler)
    benchmarker = Benchmarker(
        model=model,
        examples=examples,
        variants=variants,
        benchmark_settings=benchmark_settings,
        objective=settings.objective,
        max_accuracy_drop=settings.max_accuracy_drop,
        max_metric_drop=settings.max_metric_drop,
        max_p99_ms=settings.max_p99_ms,
    )
    return [*transforms, benchmarker]


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    model_uri: Any,
    examples_uri: Any,
    metadata_connection_config: Any = None,
    settings: PipelineSettings | None = None,
    enable_cache: bool = True,
    beam_pipeline_args: list[str] | None = None,
):  # -> tfx.orchestration.pipeline.Pipeline (imported lazily: TFX is slow to import)
    """Importers for the model and the examples, then Freezer -> ... -> Benchmarker.

    `model_uri` and `examples_uri` are plain strings for a local run, or runtime
    parameters when compiling for Kubeflow.
    """
    from tfx.dsl.components.common.importer import Importer
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.types import standard_artifacts

    settings = settings or PipelineSettings()
    model_importer = Importer(source_uri=model_uri, artifact_type=standard_artifacts.Model).with_id(
        "model_importer"
    )
    examples_importer = Importer(
        source_uri=examples_uri,
        artifact_type=standard_artifacts.Examples,
        properties={"split_names": f'["{settings.eval_split}"]'},
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
