"""Vertex AI Pipelines: the PipelineJob JSON, its GPU request in Vertex's terms, submission.

    compile --target vertex --output pipeline.json --gpus 1 --gpu-type NVIDIA_L4 \\
        --machine-type g2-standard-8
    submit --target vertex --package pipeline.json --project P --region us-central1

Vertex runs each step as a CustomJob on a machine it chooses from the step's CPU and
memory limits and its accelerator (type and count). So `--gpu-type` is one of Vertex's
own accelerator names (aiplatform's AcceleratorType enum, not Kubernetes' resource name
`nvidia.com/gpu`), and `--machine-type` becomes the Benchmarker's CPU and memory limits,
checked against the GPU types that machine family carries. Vertex has no Kubernetes
PlatformSpec: node selectors, tolerations and Kubernetes secrets are refused for it.

Only the standard library at module level: the CLI imports this to build its parser.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from components.common.errors import UserInputError

TARGET_KUBEFLOW = "kubeflow"
TARGET_VERTEX = "vertex"
TARGETS = (TARGET_KUBEFLOW, TARGET_VERTEX)
DEFAULT_REGION = "us-central1"


@dataclasses.dataclass(frozen=True)
class MachineFamily:
    """A Compute Engine machine family Vertex can run a pipeline step on."""

    memory_gb_per_cpu: Mapping[str, float]  # by shape: standard, highmem, highcpu
    gpu_types: tuple[str, ...]  # the accelerators it can carry; () for none


# Compute Engine's published shapes. The a2/a3 families are sized by GPU count
# (`a2-highgpu-2g`), so they are read by _GPU_SIZED_FAMILIES instead.
_N1_GPUS = ("NVIDIA_TESLA_T4", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_P4")
MACHINE_FAMILIES: dict[str, MachineFamily] = {
    "e2": MachineFamily({"standard": 4.0, "highmem": 8.0, "highcpu": 1.0}, ()),
    "n1": MachineFamily({"standard": 3.75, "highmem": 6.5, "highcpu": 0.9}, _N1_GPUS),
    "n2": MachineFamily({"standard": 4.0, "highmem": 8.0, "highcpu": 1.0}, ()),
    "c2": MachineFamily({"standard": 4.0}, ()),
    "g2": MachineFamily({"standard": 4.0}, ("NVIDIA_L4",)),
}
# family-shape: (vCPUs per GPU, GB per GPU, the GPU it carries)
_GPU_SIZED_FAMILIES: dict[str, tuple[int, float, str]] = {
    "a2-highgpu": (12, 85.0, "NVIDIA_TESLA_A100"),
    "a2-ultragpu": (12, 170.0, "NVIDIA_A100_80GB"),
    "a3-highgpu": (26, 234.0, "NVIDIA_H100_80GB"),
}
# Vertex's own ceilings for one step (docs: "Specify the machine configuration").
MAX_CPU = 96
MAX_MEMORY_GB = 624.0


@dataclasses.dataclass(frozen=True)
class MachineShape:
    name: str
    cpu: float
    memory_gb: float
    gpu_types: tuple[str, ...]
    gpus: int = 0  # fixed by the shape (a2/a3), else 0: any count of its GPU type


def gpu_types() -> tuple[str, ...]:
    """Vertex's GPU accelerator names, from aiplatform's own enum (TPUs cannot run TF GPU
    kernels, so they are left out)."""
    from google.cloud.aiplatform_v1.types import AcceleratorType

    return tuple(a.name for a in AcceleratorType if a.name.startswith("NVIDIA_"))


def check_gpu_type(name: str) -> str:
    known = gpu_types()
    name = name.strip().upper()
    if name not in known:
        raise UserInputError(
            f"--gpu-type {name!r} is not a Vertex AI accelerator type. Use one of: "
            f"{', '.join(known)} (Kubernetes' resource names such as nvidia.com/gpu are "
            "for --target kubeflow's --accelerator)."
        )
    return name


def machine_shape(name: str) -> MachineShape:
    """The vCPUs, memory and GPUs of a machine type such as g2-standard-8 or a2-highgpu-2g."""
    name = name.strip().lower()
    sized = re.fullmatch(r"([a-z0-9]+-[a-z]+)-(\d+)g", name)
    if sized and sized.group(1) in _GPU_SIZED_FAMILIES:
        per_gpu_cpu, per_gpu_gb, gpu = _GPU_SIZED_FAMILIES[sized.group(1)]
        count = int(sized.group(2))
        return MachineShape(name, per_gpu_cpu * count, per_gpu_gb * count, (gpu,), count)
    match = re.fullmatch(r"([a-z0-9]+)-([a-z]+)-(\d+)", name)
    family = MACHINE_FAMILIES.get(match.group(1)) if match else None
    if match is None or family is None or match.group(2) not in family.memory_gb_per_cpu:
        known = sorted(
            [
                f"{f}-{shape}-N"
                for f, fam in MACHINE_FAMILIES.items()
                for shape in fam.memory_gb_per_cpu
            ]
            + [f"{f}-Ng" for f in _GPU_SIZED_FAMILIES]
        )
        raise UserInputError(
            f"--machine-type {name!r} is not a machine type this tool knows the size of "
            f"({', '.join(known)}). Pass the Benchmarker's limits instead: "
            "--benchmarker-cpu and --benchmarker-memory (Vertex picks a machine that fits)."
        )
    cpu = int(match.group(3))
    return MachineShape(
        name, float(cpu), family.memory_gb_per_cpu[match.group(2)] * cpu, family.gpu_types
    )


def check_vertex_settings(settings: Any) -> None:
    """What a Vertex compile cannot take, refused before anything is built (CompileSettings)."""
    kubernetes_only = {
        "--gpu-node-selector": bool(settings.gpu_node_selector),
        "--gpu-toleration": bool(settings.gpu_tolerations),
        "--secret-env": bool(settings.secret_env),
        "--secret-volume": bool(settings.secret_volumes),
        "--image-pull-secret": bool(settings.image_pull_secrets),
    }
    given = [flag for flag, present in kubernetes_only.items() if present]
    if given:
        raise UserInputError(
            f"{', '.join(given)} place pods on Kubernetes, which Vertex AI Pipelines does "
            "not expose. On Vertex choose the Benchmarker's machine with --gpu-type, --gpus "
            "and --machine-type; give credentials through the run's --service-account, and "
            "plain values with --env."
        )
    if not settings.output.endswith(".json"):
        raise UserInputError(
            f"Output {settings.output!r} must end in .json for --target vertex: Vertex AI "
            "loads a PipelineJob JSON (a two-document KFP YAML fails its loader with "
            "'expected a single document')."
        )
    if settings.gpus > 0 and not settings.gpu_type:
        raise UserInputError(
            f"--gpus {settings.gpus} on Vertex needs --gpu-type, one of {', '.join(gpu_types())}."
        )
    if settings.gpu_type and settings.gpus <= 0:
        raise UserInputError(f"--gpu-type {settings.gpu_type} needs --gpus N (N >= 1).")
    if settings.machine_type:
        shape = machine_shape(settings.machine_type)
        if settings.gpu_type and settings.gpu_type not in shape.gpu_types:
            carried = ", ".join(shape.gpu_types) or "no GPUs"
            raise UserInputError(
                f"--machine-type {shape.name} carries {carried}, not {settings.gpu_type}. "
                f"{_machine_hint(settings.gpu_type)}"
            )
        if shape.gpus and settings.gpus not in (0, shape.gpus):
            raise UserInputError(
                f"--machine-type {shape.name} has {shape.gpus} GPU(s); pass --gpus {shape.gpus}."
            )
        if shape.cpu > MAX_CPU or shape.memory_gb > MAX_MEMORY_GB:
            raise UserInputError(
                f"--machine-type {shape.name} ({shape.cpu:g} vCPUs, {shape.memory_gb:g} GB) is "
                f"above what Vertex gives one pipeline step ({MAX_CPU} vCPUs, "
                f"{MAX_MEMORY_GB:g} GB)."
            )
        if settings.benchmarker_cpu is not None or settings.benchmarker_memory_gb is not None:
            raise UserInputError(
                "Pass --machine-type or --benchmarker-cpu/--benchmarker-memory, not both: "
                "the machine type sets the Benchmarker's limits."
            )


def _machine_hint(gpu_type: str) -> str:
    families = [
        f"{f}-standard-N" for f, fam in MACHINE_FAMILIES.items() if gpu_type in fam.gpu_types
    ]
    families += [f"{f}-Ng" for f, (_, _, gpu) in _GPU_SIZED_FAMILIES.items() if gpu == gpu_type]
    return f"{gpu_type} comes on {', '.join(families)}." if families else ""


def benchmarker_limits(settings: Any) -> tuple[float | None, float | None]:
    """The Benchmarker's (CPU, memory GB) limits: the machine type's, else the flags'."""
    if settings.machine_type:
        shape = machine_shape(settings.machine_type)
        return shape.cpu, shape.memory_gb
    return settings.benchmarker_cpu, settings.benchmarker_memory_gb


# ---------------------------------------------------------------------------- the package


def write_pipeline_job(path: str, job: Mapping[str, Any]) -> None:
    """Writes the PipelineJob JSON atomically (never a half-written package)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=directory, suffix=".partial", delete=False, encoding="utf-8"
    ) as f:
        json.dump(job, f, indent=2, sort_keys=True)
    os.replace(f.name, path)


def load_pipeline_job(
    path: str, pipeline_root: str | None = None, parameter_values: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The package read and its runtime config built the way aiplatform.PipelineJob does
    (its yaml_utils loader and PipelineRuntimeConfigBuilder), with no connection: a
    package or a parameter Vertex would refuse is refused here, with the fix."""
    from google.cloud.aiplatform.utils import pipeline_utils, yaml_utils

    if not os.path.isfile(path):
        raise UserInputError(
            f"Pipeline package {path!r} does not exist. Create it with "
            "`inference-optimizer compile --target vertex --output PATH.json`."
        )
    try:
        job = yaml_utils.load_yaml(path)
    except Exception as error:  # yaml's errors, e.g. two documents in a KFP package.
        raise UserInputError(
            f"Pipeline package {path!r} is not a Vertex PipelineJob ({error}). Compile one "
            "with `inference-optimizer compile --target vertex --output PATH.json`; the "
            ".yaml package is for --target kubeflow."
        ) from None
    if not isinstance(job, dict) or "pipelineSpec" not in job:
        raise UserInputError(
            f"Pipeline package {path!r} has no pipelineSpec: it is not a PipelineJob JSON. "
            "Compile one with `inference-optimizer compile --target vertex`."
        )
    try:
        builder = pipeline_utils.PipelineRuntimeConfigBuilder.from_job_spec_json(job)
        if pipeline_root:
            builder.update_pipeline_root(pipeline_root)
        builder.update_runtime_parameters(dict(parameter_values or {}))
        job["runtimeConfig"] = builder.build()
    except (ValueError, TypeError, KeyError) as error:
        raise UserInputError(f"Pipeline package {path!r}: {error}") from None
    return job


# ---------------------------------------------------------------------------- submission


@dataclasses.dataclass(frozen=True)
class VertexRun:
    """A submitted PipelineJob, as `submit --target vertex` reports it."""

    kind: str
    id: str
    name: str
    url: str
    project: str
    region: str


# PipelineState names -> the short names `submit --wait` prints (as for KFP).
_FINAL_STATES = {
    "PIPELINE_STATE_SUCCEEDED": "SUCCEEDED",
    "PIPELINE_STATE_FAILED": "FAILED",
    "PIPELINE_STATE_CANCELLED": "CANCELED",
}


def check_offline(
    package: str, params: Mapping[str, str], pipeline_root: str | None
) -> dict[str, Any]:
    """Everything about a Vertex submission that needs no connection, as for Kubeflow
    (client.check_offline): the package, the parameters' names, types and ranges, and the
    root. Returns the parameters converted to their declared types."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from components.benchmarker.run_parameters import check_run_parameters
    from pipelines.kubeflow.client import check_params

    if pipeline_root and not pipeline_root.startswith("gs://"):
        raise UserInputError(
            f"Pipeline root {pipeline_root!r} is not a gs:// URI; Vertex AI Pipelines writes "
            "artifacts to Cloud Storage. Pass --pipeline-root gs://BUCKET/PATH."
        )
    job = load_pipeline_job(package, pipeline_root)
    spec = json_format.ParseDict(
        job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=True
    )
    values = check_params(spec, params)
    check_run_parameters(values)
    load_pipeline_job(package, pipeline_root, values)  # aiplatform's own type checks.
    return values


def build_job(
    package: str,
    *,
    project: str,
    region: str,
    display_name: str | None,
    pipeline_root: str | None,
    parameter_values: Mapping[str, Any],
    enable_caching: bool | None,
    credentials: Any = None,
) -> Any:
    """An aiplatform.PipelineJob built from a checked package (check_offline's values). It
    makes no call to Vertex; `credentials=None` means the environment's default ones."""
    import google.auth.exceptions
    from google.cloud import aiplatform

    if not project:
        raise UserInputError(
            "--target vertex needs --project (or GOOGLE_CLOUD_PROJECT in the environment)."
        )
    job = load_pipeline_job(package, pipeline_root, parameter_values)
    name = display_name or job["pipelineSpec"]["pipelineInfo"]["name"]
    try:
        return aiplatform.PipelineJob(
            display_name=name,
            template_path=package,
            pipeline_root=pipeline_root or None,
            parameter_values=dict(parameter_values),
            enable_caching=enable_caching,
            project=project,
            location=region,
            credentials=credentials,
        )
    except google.auth.exceptions.DefaultCredentialsError as error:
        raise UserInputError(
            f"No Google Cloud credentials for Vertex AI ({error}). Run `gcloud auth "
            "application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a "
            "service-account key file."
        ) from None
    except ValueError as error:
        raise UserInputError(f"Vertex AI refused the job: {error}") from None


def submit(job: Any, service_account: str | None) -> VertexRun:
    """Creates the PipelineJob on Vertex (the one call that needs the network)."""
    job.submit(service_account=service_account or None)
    return VertexRun(
        kind="pipeline job",
        id=job.job_id,
        name=job.display_name,
        url=_console_url(job),
        project=job.project,
        region=job.location,
    )


def _console_url(job: Any) -> str:
    return (
        f"https://console.cloud.google.com/vertex-ai/locations/{job.location}/pipelines/runs/"
        f"{job.name}?project={job.project}"
    )


def wait(
    job: Any,
    timeout_s: float | None,
    poll_s: float = 10.0,
    on_state: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Polls the job until it ends; its final state (SUCCEEDED, FAILED, CANCELED), or None
    when `timeout_s` passed first. `on_state` hears each new state."""
    started, last = clock(), None
    while True:
        state = getattr(job.state, "name", str(job.state))
        if state != last and on_state is not None:
            on_state(_FINAL_STATES.get(state, state.replace("PIPELINE_STATE_", "")))
        last = state
        if state in _FINAL_STATES:
            return _FINAL_STATES[state]
        if timeout_s is not None and clock() - started >= timeout_s:
            return None
        sleep(poll_s)


def describe_run(run: VertexRun) -> str:
    return "\n".join([f"Created Vertex AI {run.kind} {run.name!r} (id {run.id})", f"  {run.url}"])


def default_project() -> str:
    return os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("CLOUDSDK_CORE_PROJECT", "")
