"""--target vertex: a PipelineJob JSON that aiplatform's own loader and PipelineJob accept,
with the GPU request in Vertex's terms, and `submit --target vertex` up to the API call.

The boundary: nothing here reaches Vertex AI. aiplatform.PipelineJob is built for real
(offline, with anonymous credentials), so its template loader, runtime-config builder and
proto types all judge the package; only `PipelineJob.submit` and its state polling, the
calls that need Google Cloud, are stood in for.
"""

from __future__ import annotations

import json

import pytest

from components.common.errors import UserInputError
from pipelines import cli
from pipelines.kubeflow import vertex
from pipelines.kubeflow.config import build_settings

VERTEX_OPTIONS = {
    "target": "vertex",
    "pipeline_root": "gs://team-bucket/inference-optimizer",
    "model_uri": "gs://team-bucket/models/digits/1",
    "examples_uri": "gs://team-bucket/examples/digits-eval",
    "gpus": 1,
    "gpu_type": "NVIDIA_L4",
    "machine_type": "g2-standard-8",
    "cpu": "2",
    "memory": "8G",
}


@pytest.fixture(scope="module")
def vertex_package(tmp_path_factory):
    from pipelines.kubeflow.compiler import compile_package

    output = tmp_path_factory.mktemp("vertex") / "pipeline.json"
    return compile_package(build_settings(overrides={**VERTEX_OPTIONS, "output": str(output)}))


def _pipeline_job(path, **kwargs):
    """aiplatform.PipelineJob itself, built offline."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    return aiplatform.PipelineJob(
        display_name="inference-optimizer",
        template_path=path,
        project="team-project",
        location="us-central1",
        credentials=AnonymousCredentials(),
        **kwargs,
    )


def test_aiplatform_builds_a_pipeline_job_from_the_package_with_a_runtime_parameter(
    vertex_package,
):
    job = _pipeline_job(vertex_package.path, parameter_values={"max_accuracy_drop": 0.02})
    runtime = job._gca_resource.runtime_config
    assert runtime.parameter_values["max_accuracy_drop"] == 0.02
    # The compiled defaults stay for the parameters not given.
    assert runtime.parameter_values["model_uri"] == VERTEX_OPTIONS["model_uri"]
    assert runtime.gcs_output_directory == VERTEX_OPTIONS["pipeline_root"]
    assert job._gca_resource.pipeline_spec["pipelineInfo"]["name"] == "inference-optimizer"


def test_the_benchmarker_asks_vertex_for_its_gpu_type_and_the_machine_types_size(
    vertex_package,
):
    executors = vertex_package.pipeline_spec["deploymentSpec"]["executors"]
    resources = {  # Importers have no container.
        label: e["container"].get("resources", {})
        for label, e in executors.items()
        if "container" in e
    }
    benchmarker = resources.pop(vertex_package.benchmarker_executor)
    # g2-standard-8: 8 vCPUs, 32 GB, the machine family that carries L4s.
    assert benchmarker["accelerator"] == {"type": "NVIDIA_L4", "count": "1"}
    assert (benchmarker["cpuLimit"], benchmarker["memoryLimit"]) == (8.0, 32.0)
    for label, other in resources.items():
        assert "accelerator" not in other, label
        assert (other["cpuLimit"], other["memoryLimit"]) == (2.0, 8.0), label
    assert vertex_package.platform_spec == {}  # No Kubernetes document for Vertex.
    from pipelines.kubeflow.commands import package_document

    document = package_document(vertex_package)
    assert document["target"] == "vertex"
    assert document["benchmarker_resources"]["accelerator"]["type"] == "NVIDIA_L4"


def test_a_kubeflow_yaml_package_fails_aiplatforms_loader_and_submit_says_which_target(
    tmp_path,
):
    from pipelines.kubeflow.compiler import package_text

    kfp_package = tmp_path / "pipeline.yaml"
    kfp_package.write_text(
        package_text({"pipelineInfo": {"name": "p"}}, {"platforms": {"kubernetes": {}}})
    )
    with pytest.raises(Exception, match="single document"):
        _pipeline_job(str(kfp_package))
    with pytest.raises(UserInputError, match="(?s)not a Vertex PipelineJob.*--target kubeflow"):
        vertex.check_offline(str(kfp_package), {}, None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gpu_type": "nvidia.com/gpu"}, "not a Vertex AI accelerator type.*NVIDIA_L4"),
        ({"gpu_type": "NVIDIA_TESLA_T4"}, "g2-standard-8 carries NVIDIA_L4, not NVIDIA_TESLA_T4"),
        ({"gpu_type": None}, "needs --gpu-type"),
        ({"machine_type": "m9-huge-4"}, "not a machine type.*--benchmarker-cpu"),
        ({"machine_type": "a2-highgpu-2g", "gpu_type": "NVIDIA_TESLA_A100"}, "pass --gpus 2"),
        ({"gpu_node_selector": ["pool=gpu"]}, "--gpu-node-selector .*Vertex"),
        ({"output": "pipeline.yaml"}, r"must end in \.json"),
        ({"benchmarker_cpu": "4"}, "not both"),
    ],
)
def test_a_vertex_compile_that_cannot_work_is_refused_before_anything_is_built(overrides, message):
    with pytest.raises(UserInputError, match=message):
        build_settings(overrides={**VERTEX_OPTIONS, "output": "p.json", **overrides})


def test_vertex_terms_on_the_kubeflow_target_are_refused():
    with pytest.raises(UserInputError, match="Vertex AI's terms"):
        build_settings(overrides={"gpus": 1, "gpu_type": "NVIDIA_L4"})


def test_machine_shapes_follow_compute_engines_families():
    assert vertex.machine_shape("n1-highmem-8").memory_gb == 52.0
    assert vertex.machine_shape("a2-highgpu-2g").cpu == 24
    assert vertex.machine_shape("a2-highgpu-2g").gpus == 2
    assert "NVIDIA_TESLA_T4" in vertex.machine_shape("n1-standard-4").gpu_types


class _StandInJob:
    """Stands in for the two calls that need Google Cloud; wraps the real PipelineJob."""

    def __init__(self, job, states):
        self.job, self.states, self.submitted_as = job, list(states), None

    def __getattr__(self, name):
        return getattr(self.job, name)

    def submit(self, service_account=None):
        # What Vertex's create call gives back: the resource, now with its name.
        self.submitted_as = service_account
        self.job._gca_resource.name = (
            f"projects/team-project/locations/us-central1/pipelineJobs/{self.job.job_id}"
        )

    @property
    def state(self):
        from google.cloud.aiplatform_v1.types import PipelineState

        return PipelineState[self.states.pop(0) if len(self.states) > 1 else self.states[0]]


@pytest.fixture
def stand_in(monkeypatch):
    from google.auth.credentials import AnonymousCredentials

    made = []
    real_build = vertex.build_job

    def build_job(package, **kwargs):
        job = _StandInJob(
            real_build(package, **{**kwargs, "credentials": AnonymousCredentials()}),
            made_states[0],
        )
        made.append(job)
        return job

    made_states = [["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_SUCCEEDED"]]
    monkeypatch.setattr(vertex, "build_job", build_job)
    return made, made_states


def _submit(package, *extra):
    return cli.main(
        [
            "submit",
            "--target",
            "vertex",
            "--package",
            package,
            "--project",
            "team-project",
            "--poll-interval",
            "0",
            *extra,
        ]
    )


def test_submit_vertex_waits_and_exits_with_the_jobs_final_state(vertex_package, stand_in, capsys):
    made, states = stand_in
    code = _submit(
        vertex_package.path,
        "--param",
        "max_accuracy_drop=0.02",
        "--service-account",
        "bench@team-project.iam.gserviceaccount.com",
        "--wait",
        "--json",
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert (code, document["final_state"], document["exit_code"]) == (0, "SUCCEEDED", 0)
    (job,) = made
    assert job.submitted_as == "bench@team-project.iam.gserviceaccount.com"
    assert job.job._gca_resource.runtime_config.parameter_values["max_accuracy_drop"] == 0.02

    states[0] = ["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_FAILED"]
    assert _submit(vertex_package.path, "--wait") == 4
    assert "ended: FAILED" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--param", "max_accuracy_drop=2"], "max_accuracy_drop"),
        (["--param", "nonexistent=1"], "Unknown pipeline parameter"),
        (["--pipeline-root", "s3://bucket/x"], "not a gs:// URI"),
        (["--namespace", "team"], "--namespace are for a Kubeflow API"),
    ],
)
def test_submit_vertex_refuses_bad_input_before_building_a_job(
    vertex_package, stand_in, capsys, extra, message
):
    made, _ = stand_in
    assert _submit(vertex_package.path, *extra) == cli.EXIT_FAILED
    assert message in capsys.readouterr().err
    assert made == []
