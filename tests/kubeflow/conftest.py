"""Compiled packages shared by the Kubeflow tests (the first compile imports TFX: ~30 s)."""

from __future__ import annotations

import pytest

from pipelines.kubeflow.config import CompileSettings, build_settings

GPU_OPTIONS = {
    "pipeline_root": "gs://team-bucket/inference-optimizer",
    "model_uri": "gs://team-bucket/models/digits/1",
    "examples_uri": "gs://team-bucket/examples/digits-eval",
    "gpus": 2,
    "accelerator": "nvidia.com/gpu",
    "gpu_node_selector": ["cloud.google.com/gke-accelerator=nvidia-l4", "pool=gpu"],
    "gpu_tolerations": ["nvidia.com/gpu:NoSchedule", "dedicated=benchmark:NoExecute"],
    "benchmarker_cpu": "4",
    "benchmarker_memory": "16Gi",
    "cpu": "500m",
    "memory": "2G",
}


@pytest.fixture(scope="session")
def gpu_settings(tmp_path_factory: pytest.TempPathFactory) -> CompileSettings:
    output = tmp_path_factory.mktemp("gpu_package") / "pipeline.yaml"
    return build_settings(overrides={**GPU_OPTIONS, "output": str(output)})


@pytest.fixture(scope="session")
def gpu_package(gpu_settings):
    """A package compiled with every GPU, placement and resource option."""
    from pipelines.kubeflow.compiler import compile_package

    return compile_package(gpu_settings)


@pytest.fixture(scope="session")
def default_package(tmp_path_factory: pytest.TempPathFactory):
    """A package compiled with no options at all."""
    from pipelines.kubeflow.compiler import compile_package

    output = tmp_path_factory.mktemp("default_package") / "pipeline.yaml"
    return compile_package(build_settings(overrides={"output": str(output)}))


@pytest.fixture(scope="session")
def shared_pipeline():
    """The pipeline as every runner builds it, for comparing against what was compiled.

    Compiled for other machines, it has every default kind: each producer decides on its
    node whether its kind applies there (a bf16 kind on a CPU without bf16 is skipped).
    """
    from pipelines.pipeline import HARDWARE_EACH_NODE, PipelineSettings, create_pipeline

    settings = PipelineSettings(hardware=HARDWARE_EACH_NODE)
    return create_pipeline(
        "inference-optimizer", "/unused", "/model", "/examples", settings=settings
    )
