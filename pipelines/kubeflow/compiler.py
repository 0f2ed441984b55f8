"""Compile the shared pipeline into a KFP v2 package: PipelineSpec + Kubernetes PlatformSpec.

    package = compile_package(build_settings(overrides={"gpus": 1}))
    package.path  # pipeline.yaml: two YAML documents, accepted by kfp.Client as is

The pipeline comes from the same `create_pipeline(...)` as the local run. Compiling adds only
what Kubeflow needs and the local runners refuse:

- the model and examples URIs become pipeline parameters (`model_uri`, `examples_uri`), with
  the compile-time values as defaults, so one uploaded pipeline runs on the next model;
- GPU and CPU/memory limits go on the components through `with_platform_config(ResourceSpec)`
  (BeamDagRunner raises on that, hence only here, on the freshly built pipeline object);
- the PipelineSpec gets `defaultPipelineRoot` and the parameter defaults, which TFX keeps only
  in the runtime config that its YAML output drops;
- a second YAML document places the Benchmarker's executor with node selectors and
  tolerations, which TFX never writes.

TFX's KubeflowV2 compiler imports all of `tfx.components` (tens of seconds), so it is
imported inside `compile_package` only.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from components.common.errors import UserInputError
from components.version import __version__
from pipelines.kubeflow.config import CompileSettings
from pipelines.kubeflow.platform_spec import platform_spec_document

MODEL_URI_PARAMETER = "model_uri"
EXAMPLES_URI_PARAMETER = "examples_uri"
SCHEMA_VERSION = "2.1.0"
# TFX needs some root to build the pipeline; it only reaches the runtime config, which the
# YAML form drops. The real root is `defaultPipelineRoot` or the run's `--pipeline-root`.
_UNSET_ROOT = "gs://pipeline-root-is-set-at-submit-time"


@dataclasses.dataclass(frozen=True)
class CompiledPackage:
    """A written package and what it holds."""

    path: str
    pipeline_spec: dict[str, Any]
    platform_spec: dict[str, Any]  # {} when no executor has node selectors or tolerations
    benchmarker_executor: str  # executor label, e.g. "Benchmarker_executor"
    target: str = "kubeflow"  # or "vertex": a PipelineJob JSON (vertex.py)


def build_kubeflow_pipeline(settings: CompileSettings) -> Any:
    """`create_pipeline(...)` with runtime-parameter URIs and the compile's resource limits."""
    from tfx.orchestration import data_types

    from pipelines.pipeline import create_pipeline

    # The URIs are runtime parameters: no input can be read (fingerprinted) at compile
    # time, so the importers carry no content fingerprint here and a re-exported model
    # needs a new URI (pipelines/pipeline.py, _fingerprint_properties).
    pipeline = create_pipeline(
        pipeline_name=settings.pipeline_name,
        pipeline_root=settings.pipeline_root or _UNSET_ROOT,
        model_uri=data_types.RuntimeParameter(
            name=MODEL_URI_PARAMETER, ptype=str, default=settings.default_model_uri()
        ),
        examples_uri=data_types.RuntimeParameter(
            name=EXAMPLES_URI_PARAMETER, ptype=str, default=settings.default_examples_uri()
        ),
        settings=settings.pipeline_settings(),
        enable_cache=settings.enable_cache,
    )
    expose_run_parameters(find_benchmarker(pipeline))
    attach_resources(pipeline, settings)
    return pipeline


def expose_run_parameters(benchmarker: Any) -> None:
    """Makes the Benchmarker's budget, objective, p99 ceiling and time budget pipeline
    parameters, defaulting to the compiled values, so that `submit --param
    max_accuracy_drop=0.02` changes one run without a recompile. The executor checks
    the values it is given (components/benchmarker/run_parameters.py)."""
    from tfx.orchestration import data_types

    from components.benchmarker.executor import parse_settings
    from components.benchmarker.run_parameters import RUN_PARAMETERS

    properties = benchmarker.exec_properties
    compiled = {
        **{name: properties[name] for name in RUN_PARAMETERS if name in properties},
        "time_budget_s": parse_settings(properties["benchmark_settings"]).time_budget_s,
    }
    for name, kind in RUN_PARAMETERS.items():
        properties[name] = data_types.RuntimeParameter(
            name=name, ptype=kind, default=kind(compiled[name])
        )


def run_parameter_defaults(benchmarker: Any) -> dict[str, Any]:
    """The compiled defaults of the Benchmarker's run parameters (expose_run_parameters)."""
    from tfx.orchestration import data_types

    return {
        value.name: value.default
        for value in benchmarker.exec_properties.values()
        if isinstance(value, data_types.RuntimeParameter)
    }


def find_benchmarker(pipeline: Any) -> Any:
    """The pipeline's one Benchmarker, found by type (its id may be anything)."""
    from components.benchmarker.component import Benchmarker

    found = [c for c in pipeline.components if isinstance(c, Benchmarker)]
    if len(found) != 1:
        raise ValueError(
            f"expected exactly one Benchmarker in the pipeline, found {len(found)} "
            f"among {[c.id for c in pipeline.components]}"
        )
    return found[0]


def resource_spec(cpu: float | None, memory_gb: float | None, gpus: int = 0, accelerator: str = ""):
    """A KFP ResourceSpec with limits, or None when nothing is limited.

    Limits only: Kubernetes then requests the same amounts, and a GPU can only be a limit.
    """
    from kfp.pipeline_spec import pipeline_spec_pb2

    if cpu is None and memory_gb is None and gpus <= 0:
        return None
    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
    if cpu is not None:
        spec.cpu_limit = cpu
    if memory_gb is not None:
        spec.memory_limit = memory_gb
    if gpus > 0:
        spec.accelerator.type = accelerator
        spec.accelerator.count = gpus
    return spec


def attach_resources(pipeline: Any, settings: CompileSettings) -> None:
    """Benchmarker: GPU, CPU and memory limits; every other container step: CPU and memory.

    Importers (and resolvers) have no container, so they get nothing.
    """
    from tfx.dsl.components.base import base_component

    benchmarker = find_benchmarker(pipeline)
    for component in pipeline.components:
        if not isinstance(component, base_component.BaseComponent):
            continue
        if component is benchmarker:
            cpu, memory_gb, accelerator = settings.benchmarker_resources()
            spec = resource_spec(cpu, memory_gb, settings.gpus, accelerator)
        else:
            spec = resource_spec(settings.cpu, settings.memory_gb)
        if spec is not None:
            component.with_platform_config(spec)


def compile_pipeline_spec(pipeline: Any, image: str) -> dict[str, Any]:
    """The PipelineSpec dict that KubeflowV2DagRunner builds (schema 2.1; nothing written)."""
    return compile_pipeline_job(pipeline, image)["pipelineSpec"]


def compile_pipeline_job(
    pipeline: Any, image: str, parameter_values: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The PipelineJob dict that KubeflowV2DagRunner builds for Vertex AI: displayName,
    labels, runtimeConfig (gcsOutputDirectory, parameterValues) and pipelineSpec."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=image,
            # 2.0 emits the deprecated runtimeValue.constantValue that KFP backends reject.
            use_pipeline_spec_2_1=True,
        )
    )
    job = runner.run(pipeline, parameter_values=dict(parameter_values or {}), write_out=False)
    spec = job["pipelineSpec"]
    if spec.get("schemaVersion") != SCHEMA_VERSION:
        raise RuntimeError(f"expected PipelineSpec schema {SCHEMA_VERSION}, got {spec!r:.200}")
    return job


def add_pipeline_defaults(
    spec: dict[str, Any], pipeline_root: str, parameter_defaults: Mapping[str, Any]
) -> None:
    """Puts what TFX left in the (dropped) runtime config into the PipelineSpec itself."""
    if pipeline_root:
        spec["defaultPipelineRoot"] = pipeline_root
    parameters = spec.setdefault("root", {}).setdefault("inputDefinitions", {})
    parameters = parameters.setdefault("parameters", {})
    for name, default in parameter_defaults.items():
        if name not in parameters:
            raise RuntimeError(
                f"the compiled pipeline has no parameter {name!r} (has {sorted(parameters)}); "
                "create_pipeline must pass model_uri/examples_uri to its importers, and "
                "expose_run_parameters the Benchmarker's"
            )
        parameters[name]["defaultValue"] = default
        parameters[name]["isOptional"] = True


def container_executors(spec: Mapping[str, Any]) -> list[str]:
    """The executor labels that run a container (importers do not)."""
    executors = spec["deploymentSpec"]["executors"]
    return sorted(label for label, executor in executors.items() if "container" in executor)


def add_container_env(spec: dict[str, Any], env: tuple[tuple[str, str], ...]) -> None:
    """`--env NAME=VALUE` on every container, in the PipelineSpec (both targets read it)."""
    for label in container_executors(spec):
        container = spec["deploymentSpec"]["executors"][label]["container"]
        present = {item["name"] for item in container.get("env", [])}
        clash = sorted(present & {name for name, _ in env})
        if clash:
            raise UserInputError(f"--env {clash} would replace variables the step sets itself.")
        container.setdefault("env", []).extend({"name": n, "value": v} for n, v in env)


def executor_label(spec: Mapping[str, Any], task_name: str) -> str:
    """The executor label of a root DAG task, e.g. 'Benchmarker' -> 'Benchmarker_executor'."""
    task = spec["root"]["dag"]["tasks"][task_name]
    return spec["components"][task["componentRef"]["name"]]["executorLabel"]


def compile_package(settings: CompileSettings, output: str | None = None) -> CompiledPackage:
    """Compiles, validates with the target's own loader, and writes the package: a KFP v2
    YAML (kfp's protos and loader) or, for --target vertex, a PipelineJob JSON
    (aiplatform's loader and runtime-config builder)."""
    from pipelines.kubeflow.vertex import TARGET_VERTEX, load_pipeline_job, write_pipeline_job

    output = output or settings.output
    vertex = settings.target == TARGET_VERTEX
    if not vertex and not output.endswith((".yaml", ".yml")):
        raise UserInputError(
            f"Output {output!r} must end in .yaml: kfp.Client uploads YAML packages. For "
            "Vertex AI Pipelines, which loads a PipelineJob JSON, pass --target vertex."
        )
    pipeline = build_kubeflow_pipeline(settings)
    benchmarker = find_benchmarker(pipeline)
    defaults = {
        MODEL_URI_PARAMETER: settings.default_model_uri(),
        EXAMPLES_URI_PARAMETER: settings.default_examples_uri(),
        **run_parameter_defaults(benchmarker),
    }
    job = compile_pipeline_job(pipeline, settings.image, defaults if vertex else None)
    spec = job["pipelineSpec"]
    add_pipeline_defaults(spec, settings.pipeline_root, defaults)
    label = executor_label(spec, benchmarker.id)
    add_container_env(spec, settings.env)
    if vertex:
        runtime = job.setdefault("runtimeConfig", {})
        if settings.pipeline_root:
            runtime["gcsOutputDirectory"] = settings.pipeline_root
        else:  # Not the placeholder TFX needed: Vertex then takes the run's root.
            runtime.pop("gcsOutputDirectory", None)
        from google.protobuf import json_format
        from kfp.pipeline_spec import pipeline_spec_pb2

        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # Before writing.
        write_pipeline_job(output, job)
        load_pipeline_job(output)  # The file as aiplatform.PipelineJob will read it.
        return CompiledPackage(os.path.abspath(output), spec, {}, label, TARGET_VERTEX)
    placements = {other: settings.step_placement() for other in container_executors(spec)}
    placements[label] = settings.benchmarker_placement()
    platform = platform_spec_document(placements)
    write_package(output, spec, platform)
    load_package(output)  # The file as kfp.Client will read it must parse.
    return CompiledPackage(os.path.abspath(output), spec, platform, label)


def package_text(spec: Mapping[str, Any], platform: Mapping[str, Any]) -> str:
    """The YAML text: a comment header, the PipelineSpec, then the PlatformSpec if any."""
    import yaml

    parameters = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    header = [
        "# PIPELINE DEFINITION",
        f"# Name: {spec['pipelineInfo']['name']}",
        f"# Compiled by tfx-inference-optimizer {__version__} with TFX's KubeflowV2DagRunner "
        f"({spec.get('sdkVersion', '')}), schema {spec.get('schemaVersion', '')}.",
        "# Inputs:",
        *(
            f"#  {name}: {p.get('parameterType', '')} [Default: {p.get('defaultValue', '')!r}]"
            for name, p in sorted(parameters.items())
        ),
    ]
    documents = [dict(spec)] + ([dict(platform)] if platform else [])
    body = yaml.safe_dump_all(documents, sort_keys=True, default_flow_style=False)
    return "\n".join(header) + "\n" + body


def write_package(path: str, spec: Mapping[str, Any], platform: Mapping[str, Any]) -> None:
    """Writes atomically, so a failed compile never leaves a half-written package behind."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    # Both documents must be valid protos before anything is written.
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=directory, suffix=".partial", delete=False, encoding="utf-8"
    ) as f:
        f.write(package_text(spec, platform))
    os.replace(f.name, path)


def load_package(path: str) -> tuple[Any, Any]:
    """(PipelineSpec, PlatformSpec) protos, read the way kfp.Client reads a YAML package.

    kfp takes the first YAML document as the PipelineSpec and merges the others into the
    PlatformSpec; both must parse into kfp-pipeline-spec's protos.
    """
    import yaml
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    if not os.path.isfile(path):
        raise UserInputError(
            f"Pipeline package {path!r} does not exist. Create it with "
            "`inference-optimizer compile --output PATH.yaml`."
        )
    try:
        with open(path, encoding="utf-8") as f:
            documents = [d for d in yaml.safe_load_all(f) if d is not None]
        if not documents or not isinstance(documents[0], dict):
            raise ValueError("no PipelineSpec document")
        platform: dict[str, Any] = {}
        for document in documents[1:]:
            platform.update(document)
        pipeline_spec = json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())
        platform_spec = json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    except (yaml.YAMLError, json_format.ParseError, ValueError, AttributeError) as error:
        raise UserInputError(
            f"Pipeline package {path!r} is not a KFP v2 pipeline package: {error}. "
            "Compile one with `inference-optimizer compile`."
        ) from None
    return pipeline_spec, platform_spec
