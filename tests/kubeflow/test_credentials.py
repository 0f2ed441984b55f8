"""compile --env, --secret-env, --secret-volume and --image-pull-secret: on every step, in
the form kfp-kubernetes itself writes, read back with its own messages."""

from __future__ import annotations

import pytest
import yaml

from components.common.errors import UserInputError
from pipelines.kubeflow.config import build_settings

CREDENTIALS = {
    "env": ["AWS_REGION=eu-west-1", "S3_ENDPOINT=https://s3.eu-west-1.amazonaws.com"],
    "secret_env": [
        "AWS_ACCESS_KEY_ID=s3-credentials:access-key",
        "AWS_SECRET_ACCESS_KEY=s3-credentials:secret-key",
    ],
    "secret_volumes": ["gcs-key:/var/secrets/google"],
    "image_pull_secrets": ["registry-credentials"],
}


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    from pipelines.kubeflow.compiler import compile_package

    output = tmp_path_factory.mktemp("credentials") / "pipeline.yaml"
    settings = build_settings(
        overrides={
            **CREDENTIALS,
            "gpu_node_selector": ["pool=gpu"],
            "output": str(output),
        }
    )
    return compile_package(settings)


def _reference_config():
    """What kfp-kubernetes' own functions write for the same secrets, compiled by kfp."""
    from kfp import compiler, dsl, kubernetes

    @dsl.container_component
    def step():
        return dsl.ContainerSpec(image="busybox", command=["true"])

    @dsl.pipeline(name="reference")
    def reference():
        task = step()
        kubernetes.use_secret_as_env(
            task,
            "s3-credentials",
            {"access-key": "AWS_ACCESS_KEY_ID", "secret-key": "AWS_SECRET_ACCESS_KEY"},
        )
        kubernetes.use_secret_as_volume(task, "gcs-key", "/var/secrets/google")

    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/reference.yaml"
        compiler.Compiler().compile(reference, path)
        with open(path, encoding="utf-8") as f:
            documents = list(yaml.safe_load_all(f))
    executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    (config,) = executors.values()
    return config


def test_every_step_gets_the_secrets_as_kfp_kubernetes_writes_them(package):
    from google.protobuf import json_format
    from kfp.kubernetes import kubernetes_executor_config_pb2

    from pipelines.kubeflow.compiler import container_executors, load_package

    load_package(package.path)  # kfp's loader takes it.
    executors = package.platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(executors) == container_executors(package.pipeline_spec)
    reference = _reference_config()
    for label, config in executors.items():
        # kfp-kubernetes' own message reads it back (1.0.0 lacks the pull-secret field,
        # which the KFP backend reads from 2.1 on).
        message = json_format.ParseDict(
            config,
            kubernetes_executor_config_pb2.KubernetesExecutorConfig(),
            ignore_unknown_fields=True,
        )
        assert [s.secret_name for s in message.secret_as_env] == ["s3-credentials"]
        assert {m.env_var: m.secret_key for m in message.secret_as_env[0].key_to_env} == {
            "AWS_ACCESS_KEY_ID": "access-key",
            "AWS_SECRET_ACCESS_KEY": "secret-key",
        }
        assert config["secretAsEnv"] == reference["secretAsEnv"], label
        assert config["secretAsVolume"] == reference["secretAsVolume"], label
        assert config["imagePullSecret"] == [{"secretName": "registry-credentials"}], label
    # Placement stays the Benchmarker's own.
    assert executors[package.benchmarker_executor]["nodeSelector"] == {"labels": {"pool": "gpu"}}
    others = [c for label, c in executors.items() if label != package.benchmarker_executor]
    assert all("nodeSelector" not in c for c in others)


def test_plain_variables_go_on_every_container_in_the_pipeline_spec(package):
    from pipelines.kubeflow.compiler import container_executors

    executors = package.pipeline_spec["deploymentSpec"]["executors"]
    for label in container_executors(package.pipeline_spec):
        env = executors[label]["container"]["env"]
        assert {"name": "AWS_REGION", "value": "eu-west-1"} in env, label


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("secret_env", ["AWS_ACCESS_KEY_ID=s3-credentials"], "NAME=SECRET:KEY"),
        ("secret_env", ["1BAD=s3:key"], "not an environment variable name"),
        ("secret_env", ["A=S3_Credentials:key"], "not a Kubernetes Secret name"),
        ("secret_volumes", ["gcs-key:relative/path"], "SECRET:/ABSOLUTE/PATH"),
        ("image_pull_secrets", ["Registry Credentials"], "not a Kubernetes Secret name"),
        ("env", ["AWS_REGION"], "NAME=VALUE"),
        ("env", ["A=1", "A=2"], "same variable twice"),
    ],
)
def test_a_malformed_credential_is_refused_with_its_form(key, value, message):
    with pytest.raises(UserInputError, match=message):
        build_settings(overrides={key: value})


def test_kubernetes_secrets_are_refused_for_vertex():
    with pytest.raises(UserInputError, match="--secret-env .*Vertex"):
        build_settings(
            overrides={
                "target": "vertex",
                "secret_env": CREDENTIALS["secret_env"],
            }
        )
