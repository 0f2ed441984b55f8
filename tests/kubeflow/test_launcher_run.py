"""Proof that the compiled package runs: every task, as KFP's launcher would run it, on CPU."""

from __future__ import annotations

import json
import os

import pytest

from pipelines import cli
from pipelines.kubeflow.compiler import compile_package
from pipelines.kubeflow.config import build_settings
from tests.kubeflow.kfp_api_standin import KfpApiStandIn
from tests.kubeflow.kfp_launcher import LocalKfpRun

pytestmark = pytest.mark.slow

# Small timing budgets, and one instance of each variant-producing component (the default
# compiles one per mode): this checks that every kind of step runs, not how fast the model is.
FAST_SETTINGS = {
    "benchmark_settings": {"throughput_batch_sizes": [1, 8], "max_windows": 6},
    "variants": ["optimized_graph", "tflite_dynamic_range", "xla_jit"],
    "num_calibration": 32,
}


# Non-default run parameters, given at submit time: the run must use them, not the
# compiled defaults (max_accuracy_drop 0.01, time_budget_s 2).
SUBMITTED_BUDGET = {"max_accuracy_drop": 0.05, "time_budget_s": 1.5}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, embedded_default):
    """Compile with no pipeline root; submit to the KFP API stand-in with the root, the URIs
    and a non-default budget; then run the parameters the stand-in received."""
    directory = tmp_path_factory.mktemp("kfp_local_run")
    package = compile_package(
        build_settings(
            overrides={
                "output": str(directory / "pipeline.yaml"),
                "time_budget": 2,
                "settings": FAST_SETTINGS,
            }
        )
    )
    workdir = directory / "pods"
    workdir.mkdir()
    with KfpApiStandIn() as api:
        code = cli.main(
            ["submit", "--host", api.url, "--package", package.path]
            + ["--model-uri", embedded_default.model_uri]
            + ["--examples-uri", embedded_default.examples_uri]
            + ["--pipeline-root", "gs://unused-by-the-local-run/root"]
            + [f"--param={name}={value}" for name, value in SUBMITTED_BUDGET.items()]
        )
        assert code == 0
        (submitted,) = api.calls("POST", "/runs")
    run = LocalKfpRun(
        package.pipeline_spec,
        pipeline_root=str(directory / "pipeline_root"),
        workdir=str(workdir),
        params=submitted.json["runtime_config"]["parameters"],
    )
    return package, run, run.run()


def test_every_task_of_the_compiled_package_completes(local_run):
    package, run, results = local_run

    assert set(results) == set(package.pipeline_spec["root"]["dag"]["tasks"])
    containers = [r for r in results.values() if r.kind == "container"]
    for result in containers:
        assert result.command[:3] == [
            "python",
            "-m",
            "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor",
        ]
    executors = {r.command[r.command.index("--executor_class_path") + 1] for r in containers}
    # Freezer, InferenceOptimizer, Quantizer, XlaCompiler and Benchmarker all ran.
    assert len(executors) >= 5, executors


def test_importers_pass_the_run_parameters_downstream(local_run, embedded_default):
    _, _, results = local_run
    imported = [
        artifact["uri"]
        for result in results.values()
        if result.kind == "importer"
        for artifact in result.outputs.values()
    ]

    assert sorted(imported) == sorted([embedded_default.model_uri, embedded_default.examples_uri])


def test_benchmarker_report_exists_and_covers_every_upstream_variant(local_run):
    package, run, results = local_run
    benchmarker = _benchmarker_task(package)
    report_uri = results[benchmarker].outputs["report"]["uri"]
    report = _report(package, results)

    assert os.path.exists(os.path.join(report_uri, "report.html"))
    assert report_uri.startswith(run.run_root)
    names = {v["name"] for v in report["variants"]}
    assert {"baseline", "frozen_graph"} <= names
    variant_inputs = set(
        package.pipeline_spec["root"]["dag"]["tasks"][benchmarker]["inputs"]["artifacts"]
    )
    assert len(names) >= len(variant_inputs - {"model", "examples"}) + 1
    # The Benchmarker's custom properties reached the launcher through ExecutorOutput.
    metadata = results[benchmarker].outputs["report"]["metadata"]
    assert metadata["baseline_p50_ms"] > 0
    assert "frozen_graph.p50_ms" in metadata


def test_the_submitted_budget_and_time_budget_took_effect_in_the_run(local_run):
    package, _, results = local_run
    parameters = package.pipeline_spec["root"]["inputDefinitions"]["parameters"]
    assert {name: parameters[name]["defaultValue"] for name in SUBMITTED_BUDGET} == {
        "max_accuracy_drop": 0.01,
        "time_budget_s": 2.0,
    }
    report = _report(package, results)
    assert report["selection"]["settings"]["gate"]["max_drop"] == 0.05
    assert report["settings"]["time_budget_s"] == 1.5


def _benchmarker_task(package) -> str:
    return next(
        name
        for name, task in package.pipeline_spec["root"]["dag"]["tasks"].items()
        if package.pipeline_spec["components"][task["componentRef"]["name"]]["executorLabel"]
        == package.benchmarker_executor
    )


def _report(package, results) -> dict:
    report_uri = results[_benchmarker_task(package)].outputs["report"]["uri"]
    with open(os.path.join(report_uri, "report.json"), encoding="utf-8") as f:
        return json.load(f)
