"""The pipeline definition, shared by the local run and the Kubeflow compile.

`create_pipeline(...)` only builds objects: no files are written and nothing runs.
Runners (pipelines/local_runner.py, pipelines/kubeflow_runner.py) call it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

DEFAULT_PIPELINE_NAME = "inference-optimizer"


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """User-facing knobs of one pipeline, with defaults a newcomer can run."""

    signature_key: str = "serving_default"
    eval_split: str = "eval"
    image_feature: str = "image"
    label_feature: str = "label"
    # Benchmarker: JSON-able dict of components.benchmarker.harness.BenchmarkSettings fields.
    benchmark_settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    objective: str = "p50"
    max_accuracy_drop: float = 0.01
    max_p99_ms: float = 0.0  # 0 means no ceiling.


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

    from components.benchmarker.component import Benchmarker
    from components.freezer.component import Freezer

    settings = settings or PipelineSettings()
    model_importer = Importer(source_uri=model_uri, artifact_type=standard_artifacts.Model).with_id(
        "model_importer"
    )
    examples_importer = Importer(
        source_uri=examples_uri,
        artifact_type=standard_artifacts.Examples,
        properties={"split_names": f'["{settings.eval_split}"]'},
    ).with_id("examples_importer")
    model = model_importer.outputs["result"]
    examples = examples_importer.outputs["result"]

    freezer = Freezer(model=model, signature_key=settings.signature_key)
    benchmarker = Benchmarker(
        model=model,
        examples=examples,
        variants={"frozen_graph": freezer.outputs["frozen_graph"]},
        benchmark_settings={
            "split": settings.eval_split,
            "image_feature": settings.image_feature,
            "label_feature": settings.label_feature,
            **settings.benchmark_settings,
        },
        objective=settings.objective,
        max_accuracy_drop=settings.max_accuracy_drop,
        max_p99_ms=settings.max_p99_ms,
    )
    return tfx_pipeline.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[model_importer, examples_importer, freezer, benchmarker],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
