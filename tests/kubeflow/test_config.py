"""Compile settings: parsing of placement and quantities, the YAML config file, precedence."""

from __future__ import annotations

import pytest

from components.common.errors import UserInputError
from pipelines.kubeflow import config as kf_config
from pipelines.kubeflow.platform_spec import (
    Toleration,
    parse_cpu,
    parse_memory_gb,
    parse_node_selector,
    parse_toleration,
    platform_spec_document,
)

TEAM_YAML = """\
image: registry.example.com/ml/tfx-inference-optimizer:0.1.0
pipeline_root: gs://team-bucket/io/
model_uri: gs://team-bucket/models/resnet50/7
gpus: 1
gpu_node_selector: {cloud.google.com/gke-accelerator: nvidia-l4}
gpu_tolerations:
  - nvidia.com/gpu:NoSchedule
  - {key: spot, value: "true", effect: NoExecute, toleration_seconds: 300}
benchmarker_cpu: 4
benchmarker_memory: 16Gi
cpu: 1500m
memory: 4G
enable_cache: false
time_budget: 30
settings: {objective: throughput, benchmark_settings: {max_windows: 10}}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nvidia.com/gpu:NoSchedule", Toleration("nvidia.com/gpu", "NoSchedule", "Exists")),
        ("dedicated=gpu:NoExecute", Toleration("dedicated", "NoExecute", "Equal", "gpu")),
        (
            "example.com/pool=a-1:PreferNoSchedule",
            Toleration("example.com/pool", "PreferNoSchedule", "Equal", "a-1"),
        ),
    ],
)
def test_parse_toleration_reads_key_value_and_effect(text, expected):
    assert parse_toleration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nvidia.com/gpu", "KEY\\[=VALUE\\]:EFFECT"),
        ("nvidia.com/gpu:NoSchedul", "effect 'NoSchedul'"),
        (":NoSchedule", "KEY\\[=VALUE\\]:EFFECT"),
        ("bad key!:NoSchedule", "not a valid Kubernetes label key"),
    ],
)
def test_parse_toleration_refuses_malformed_text(text, message):
    with pytest.raises(UserInputError, match=message):
        parse_toleration(text)


def test_toleration_seconds_are_written_as_a_string():
    assert Toleration("spot", "NoExecute", "Equal", "true", 300).to_platform_json() == {
        "key": "spot",
        "operator": "Equal",
        "value": "true",
        "effect": "NoExecute",
        "tolerationSeconds": "300",
    }


def test_parse_node_selector_checks_label_syntax():
    assert parse_node_selector("cloud.google.com/gke-accelerator=nvidia-l4") == (
        "cloud.google.com/gke-accelerator",
        "nvidia-l4",
    )
    with pytest.raises(UserInputError, match="KEY=VALUE"):
        parse_node_selector("pool")
    with pytest.raises(UserInputError, match="label value"):
        parse_node_selector("pool=-bad-")


@pytest.mark.parametrize(("text", "cores"), [("4", 4.0), ("1.5", 1.5), ("500m", 0.5), (2, 2.0)])
def test_parse_cpu_reads_cores_and_millicores(text, cores):
    assert parse_cpu(text) == cores


@pytest.mark.parametrize(
    ("text", "gigabytes"),
    [("16Gi", 17.179869184), ("512Mi", 0.536870912), ("8G", 8.0), ("1500M", 1.5)],
)
def test_parse_memory_converts_to_the_decimal_gb_kfp_expects(text, gigabytes):
    assert parse_memory_gb(text) == gigabytes


@pytest.mark.parametrize("text", ["16GB", "lots", "-1Gi", "0"])
def test_parse_memory_refuses_what_kubernetes_would(text):
    with pytest.raises(UserInputError):
        parse_memory_gb(text)


def test_platform_spec_document_is_empty_without_placement():
    assert (
        platform_spec_document(
            {"Benchmarker_executor": kf_config.CompileSettings().benchmarker_placement()}
        )
        == {}
    )


def test_config_file_sets_every_compile_option(tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text(TEAM_YAML, encoding="utf-8")

    settings = kf_config.build_settings(str(path))

    assert settings.image == "registry.example.com/ml/tfx-inference-optimizer:0.1.0"
    assert settings.pipeline_root == "gs://team-bucket/io"
    assert settings.model_uri == "gs://team-bucket/models/resnet50/7"
    assert settings.gpus == 1
    assert settings.gpu_node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert settings.gpu_tolerations == (
        Toleration("nvidia.com/gpu", "NoSchedule", "Exists"),
        Toleration("spot", "NoExecute", "Equal", "true", 300),
    )
    assert (settings.benchmarker_cpu, settings.benchmarker_memory_gb) == (4.0, 17.179869184)
    assert (settings.cpu, settings.memory_gb) == (1.5, 4.0)
    assert settings.enable_cache is False
    pipeline_settings = settings.pipeline_settings()
    assert pipeline_settings.objective == "throughput"
    benchmark = pipeline_settings.benchmark_settings
    assert (benchmark.max_windows, benchmark.time_budget_s, benchmark.device) == (10, 30.0, "GPU:0")
    # Compiled on one machine, run on others: each producer decides its kind's hardware.
    assert pipeline_settings.hardware == "each_node"


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text(TEAM_YAML, encoding="utf-8")

    settings = kf_config.build_settings(
        str(path), {"gpus": 0, "image": "mine:1", "gpu_tolerations": None}
    )

    assert settings.gpus == 0
    assert settings.image == "mine:1"
    assert len(settings.gpu_tolerations) == 2  # Not given on the command line: kept.
    assert settings.pipeline_settings().benchmark_settings.device == "auto"


def test_config_file_refuses_unknown_keys_and_lists_valid_ones(tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text("gpu: 1\n", encoding="utf-8")

    with pytest.raises(UserInputError, match=r"Unknown key\(s\) \['gpu'\].*gpus"):
        kf_config.build_settings(str(path))


def test_config_file_refuses_unknown_pipeline_settings(tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text("settings: {objectiv: p50}\n", encoding="utf-8")

    with pytest.raises(UserInputError, match="objectiv"):
        kf_config.build_settings(str(path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpus: two\n", "whole number"),
        ("pipeline_root: minio://mlpipeline/v2/artifacts\n", "not a gs:// or s3:// URI"),
        ("gpu_tolerations: nvidia.com/gpu:NoSchedule\n", "must be a list"),
        ("[1, 2]\n", "must hold a mapping"),
        ("image: [\n", "not valid YAML"),
    ],
)
def test_config_file_errors_name_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "team.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(UserInputError, match=message) as error:
        kf_config.build_settings(str(path))
    assert "team.yaml" in str(error.value) or "YAML" in str(error.value)


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        kf_config.build_settings(str(tmp_path / "nope.yaml"))


def test_compile_cli_reads_config_and_prints_a_summary(tmp_path, capsys, gpu_package):
    # gpu_package makes sure TFX is already imported, so this compile takes seconds.
    from pipelines import cli

    path = tmp_path / "team.yaml"
    path.write_text(TEAM_YAML + f"output: {tmp_path / 'out.yaml'}\n", encoding="utf-8")

    code = cli.main(["compile", "--config", str(path), "--gpus", "2"])

    out = capsys.readouterr().out
    assert code == 0
    assert (tmp_path / "out.yaml").exists()
    assert "2 x nvidia.com/gpu" in out
    assert "tolerates nvidia.com/gpu:NoSchedule, spot=true:NoExecute" in out
    assert "gs://team-bucket/io" in out


def test_compile_json_prints_the_package_and_its_parameters(tmp_path, capsys, gpu_package):
    import json

    from pipelines import cli

    path = tmp_path / "team.yaml"
    path.write_text(TEAM_YAML + f"output: {tmp_path / 'out.yaml'}\n", encoding="utf-8")

    code = cli.main(["compile", "--config", str(path), "--json", "--time-budget", "12"])

    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert document["package"] == str(tmp_path / "out.yaml")
    assert document["pipeline_root"].startswith("gs://team-bucket/io")
    # The compiled settings are the run parameters' defaults (objective from the config).
    assert document["parameters"]["objective"]["default"] == "throughput"
    assert document["parameters"]["time_budget_s"] == {"type": "NUMBER_DOUBLE", "default": 12.0}
    assert document["parameters"]["model_uri"]["type"] == "STRING"
    assert document["has_platform_spec"] is True
