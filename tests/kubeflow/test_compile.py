"""The compiled package, checked the way KFP reads it: protos, kfp's loader, placement."""

from __future__ import annotations

import pathlib

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from components.benchmarker.harness import BenchmarkSettings
from components.benchmarker.run_parameters import RUN_PARAMETERS
from pipelines.kubeflow import compiler
from pipelines.kubeflow.image_check import import_failures, referenced_classes
from pipelines.kubeflow.platform_spec import tolerations_from_json


def _documents(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return list(yaml.safe_load_all(f))


def _container_executors(spec: dict) -> dict[str, dict]:
    executors = spec["deploymentSpec"]["executors"]
    return {label: e["container"] for label, e in executors.items() if "container" in e}


def test_package_documents_parse_with_pipeline_spec_protos(gpu_package):
    pipeline_doc, platform_doc = _documents(gpu_package.path)

    pipeline_spec = json_format.ParseDict(pipeline_doc, pipeline_spec_pb2.PipelineSpec())
    platform_spec = json_format.ParseDict(platform_doc, pipeline_spec_pb2.PlatformSpec())

    assert pipeline_spec.schema_version == "2.1.0"
    assert pipeline_spec.pipeline_info.name == "inference-optimizer"
    assert "kubernetes" in platform_spec.platforms


def test_kfp_package_loader_accepts_package(gpu_package, default_package):
    # The loader behind kfp.Client's create_run_from_pipeline_package, upload_pipeline and
    # create_recurring_run.
    from kfp.client.client import _extract_pipeline_yaml

    for package in (gpu_package, default_package):
        document = _extract_pipeline_yaml(package.path)
        assert document.pipeline_spec.root.dag.tasks
        assert document.to_dict()


def test_package_has_a_task_for_every_component_of_the_shared_pipeline(
    gpu_package, shared_pipeline
):
    tasks = gpu_package.pipeline_spec["root"]["dag"]["tasks"]

    assert set(tasks) == {c.id for c in shared_pipeline.components}


def test_benchmarker_executor_gets_requested_node_selectors_tolerations_and_gpus(gpu_package):
    label = gpu_package.benchmarker_executor
    platform = _documents(gpu_package.path)[1]
    placement = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][label]
    resources = _container_executors(gpu_package.pipeline_spec)[label]["resources"]

    assert placement["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4",
        "pool": "gpu",
    }
    assert [t.to_platform_json() for t in tolerations_from_json(placement["tolerations"])] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "benchmark", "effect": "NoExecute"},
    ]
    assert resources["accelerator"] == {"type": "nvidia.com/gpu", "count": "2"}
    assert resources["cpuLimit"] == 4.0
    assert resources["memoryLimit"] == pytest.approx(16 * 2**30 / 1e9)


def test_other_executors_get_cpu_and_memory_but_no_gpu_or_placement(gpu_package):
    label = gpu_package.benchmarker_executor
    platform = _documents(gpu_package.path)[1]
    placed = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    others = {k: v for k, v in _container_executors(gpu_package.pipeline_spec).items()}
    others.pop(label)

    assert set(placed) == {label}
    assert others, "the pipeline should have container steps besides the Benchmarker"
    for other_label, container in others.items():
        assert container["resources"] == {"cpuLimit": 0.5, "memoryLimit": 2.0}, other_label


def test_benchmarker_times_on_the_gpu_when_gpus_are_requested(gpu_package, default_package):
    def device(package) -> str:
        task = package.pipeline_spec["root"]["dag"]["tasks"]["Benchmarker"]
        settings = task["inputs"]["parameters"]["benchmark_settings"]["runtimeValue"]
        return yaml.safe_load(settings["constant"]).get("device", "CPU:0")

    assert device(gpu_package) == "GPU:0"
    # Without GPUs the setting stays "auto": the first visible GPU, else the CPU.
    assert device(default_package) == "auto"


def test_package_without_gpu_options_has_no_gpu_requirement(default_package):
    documents = _documents(default_package.path)
    text = pathlib.Path(default_package.path).read_text(encoding="utf-8")

    assert len(documents) == 1  # No PlatformSpec: no node selectors, no tolerations.
    for container in _container_executors(default_package.pipeline_spec).values():
        assert "resources" not in container
    assert "accelerator" not in text
    assert "nvidia" not in text
    assert compiler._UNSET_ROOT not in text  # TFX's required root does not leak in.


def test_model_and_examples_uris_are_run_parameters_with_compiled_defaults(gpu_package):
    spec = gpu_package.pipeline_spec
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    executors = spec["deploymentSpec"]["executors"]
    importer_sources = {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        executor = executors[spec["components"][task["componentRef"]["name"]]["executorLabel"]]
        if "importer" in executor:
            uri_parameter = executor["importer"]["artifactUri"]["runtimeParameter"]
            source = task["inputs"]["parameters"][uri_parameter]["componentInputParameter"]
            importer_sources[name] = source

    assert sorted(importer_sources.values()) == ["examples_uri", "model_uri"]
    assert parameters["model_uri"]["defaultValue"] == "gs://team-bucket/models/digits/1"
    assert parameters["examples_uri"]["defaultValue"] == "gs://team-bucket/examples/digits-eval"
    assert all(p["isOptional"] for p in parameters.values())


def test_the_benchmarkers_budgets_are_run_parameters_with_compiled_defaults(default_package):
    spec = default_package.pipeline_spec
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    benchmarker = spec["root"]["dag"]["tasks"]["Benchmarker"]["inputs"]["parameters"]

    defaults = {name: parameters[name]["defaultValue"] for name in RUN_PARAMETERS}
    assert defaults == {
        "objective": "p50",
        "max_accuracy_drop": 0.01,
        "max_p99_ms": 0.0,
        "time_budget_s": BenchmarkSettings().time_budget_s,
    }
    for name in RUN_PARAMETERS:
        assert benchmarker[name]["componentInputParameter"] == name


def test_pipeline_root_becomes_default_pipeline_root(gpu_package, default_package):
    assert (
        gpu_package.pipeline_spec["defaultPipelineRoot"] == "gs://team-bucket/inference-optimizer"
    )
    assert "defaultPipelineRoot" not in default_package.pipeline_spec


def test_default_uris_point_at_the_demo_baked_into_the_image(default_package):
    parameters = default_package.pipeline_spec["root"]["inputDefinitions"]["parameters"]

    assert parameters["model_uri"]["defaultValue"].startswith("/opt/tfx-inference-optimizer/demo/")
    assert parameters["examples_uri"]["defaultValue"].endswith("/examples")


def test_every_artifact_schema_title_imports_as_a_class(gpu_package):
    from tfx.types.artifact import Artifact

    needed = referenced_classes(gpu_package.pipeline_spec)
    titles = {path for path, why in needed.items() if why.startswith("artifact type")}

    assert "components.BenchmarkReport" in titles
    assert import_failures({p: "" for p in titles}) == {}
    from tfx.utils import import_utils

    for path in titles:
        assert issubclass(import_utils.import_class_by_path(path), Artifact), path


def test_every_executor_class_path_imports(gpu_package):
    needed = referenced_classes(gpu_package.pipeline_spec)
    executors = {path for path, why in needed.items() if why.startswith("executor of")}

    assert "components.benchmarker.executor.Executor" in executors
    assert import_failures({p: "" for p in executors}) == {}


def test_every_container_runs_the_tfx_kubeflow_v2_entrypoint_in_the_image(gpu_package):
    for container in _container_executors(gpu_package.pipeline_spec).values():
        assert container["image"] == gpu_package_image()
        assert container["command"] == [
            "python",
            "-m",
            "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor",
        ]
        assert "{{$}}" in container["args"]


def gpu_package_image() -> str:
    from pipelines.kubeflow.config import DEFAULT_IMAGE

    return DEFAULT_IMAGE


def test_compiled_parameters_are_not_the_deprecated_constant_value_form(gpu_package):
    text = pathlib.Path(gpu_package.path).read_text(encoding="utf-8")

    assert "constantValue" not in text  # KFP backends reject the 2.0 schema's form.


def test_load_package_refuses_a_file_that_is_not_a_package(tmp_path):
    bogus = tmp_path / "pipeline.yaml"
    bogus.write_text("just: text\n", encoding="utf-8")

    with pytest.raises(compiler.UserInputError, match="not a KFP v2 pipeline package"):
        compiler.load_package(str(bogus))


def test_compile_refuses_json_output(gpu_settings, tmp_path):
    with pytest.raises(compiler.UserInputError, match=r"must end in \.yaml"):
        compiler.compile_package(gpu_settings, str(tmp_path / "pipeline.json"))


def test_xla_aot_code_targets_any_x86_64_because_pods_may_land_on_other_cpus(default_package):
    tasks = default_package.pipeline_spec["root"]["dag"]["tasks"]
    targets = {
        name: task["inputs"]["parameters"]["target_cpu"]["runtimeValue"]["constant"]
        for name, task in tasks.items()
        if "target_cpu" in task.get("inputs", {}).get("parameters", {})
    }

    assert all(target == "generic" for target in targets.values()), targets
