"""The whole pipeline on BeamDagRunner, read back from ML Metadata."""

from __future__ import annotations

import io
import json
import os
import shutil

import pytest
from ml_metadata.proto import metadata_store_pb2

from components.common.cpu_facts import host_cpu
from components.common.sizes import directory_size_bytes
from components.variant_kinds import select_kinds
from pipelines import cli
from pipelines.lineage.store import SqliteLocation
from pipelines.lineage.store import open_store as open_lineage_store
from pipelines.local_runner import (
    PIPELINE_ROOT_DIRNAME,
    metadata_path,
    run_pipeline,
    sqlite_connection_config,
)
from pipelines.pipeline import create_pipeline
from tests.lineage.pipeline_runs import fast_settings

pytestmark = pytest.mark.slow


def open_store(path: str):
    """The raw MLMD store of a local run (the same reader `inference-optimizer lineage` uses)."""
    return open_lineage_store(SqliteLocation(path)).mlmd


PIPELINE = "inference-optimizer"
# What the default run builds here, and what it skips (e.g. bf16 kinds without bf16).
DEFAULT_KINDS = select_kinds(None, host_cpu())
# Short timing budgets: these tests check wiring and bookkeeping, not speed.
FAST_TIMING = ["--time-budget", "3"]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["run", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, embedded_default):
    output = str(tmp_path_factory.mktemp("run"))
    code = cli.main(
        [
            "run",
            "--model",
            embedded_default.model_uri,
            "--examples",
            embedded_default.examples_uri,
            "--output",
            output,
            *FAST_TIMING,
        ]
    )
    assert code == 0
    return output


def _executions_by_node(store) -> dict[str, list]:
    by_node: dict[str, list] = {}
    for context in store.get_contexts_by_type("node"):
        node_id = context.name.split(".", 1)[-1]
        executions = store.get_executions_by_context(context.id)
        by_node[node_id] = sorted(executions, key=lambda e: e.id)
    return by_node


def test_every_component_completes_once(first_run):
    store = open_store(metadata_path(first_run))
    by_node = _executions_by_node(store)
    assert set(by_node) == {
        "model_importer",
        "examples_importer",
        "Benchmarker",
        # One producer per kind this machine can run (the registry's default set).
        *(kind.component_id for kind in DEFAULT_KINDS.built),
    }
    for node_id, executions in by_node.items():
        states = [e.last_known_state for e in executions]
        assert states == [metadata_store_pb2.Execution.COMPLETE], node_id


def test_every_output_is_linked_to_its_inputs(first_run):
    store = open_store(metadata_path(first_run))
    executions = store.get_executions()
    events = store.get_events_by_execution_ids([e.id for e in executions])
    inputs_of = {e.id: set() for e in executions}
    outputs_of = {e.id: set() for e in executions}
    for event in events:
        if event.type == metadata_store_pb2.Event.INPUT:
            inputs_of[event.execution_id].add(event.artifact_id)
        elif event.type == metadata_store_pb2.Event.OUTPUT:
            outputs_of[event.execution_id].add(event.artifact_id)
    types = {t.id: t.name for t in store.get_artifact_types()}
    artifact_type = {a.id: types[a.type_id] for a in store.get_artifacts()}
    by_output_type = {
        artifact_type[a]: execution_id
        for execution_id, artifact_ids in outputs_of.items()
        for a in artifact_ids
    }
    freezer = by_output_type["components.FrozenGraph"]
    benchmarker = by_output_type["components.BenchmarkReport"]
    assert {artifact_type[a] for a in inputs_of[freezer]} == {"Model"}
    variant_types = {kind.artifact_type for kind in DEFAULT_KINDS.built}
    assert {artifact_type[a] for a in inputs_of[benchmarker]} == {
        "Model",
        "Examples",
        *(f"components.{t}" for t in variant_types),
    }
    for variant_type in variant_types - {"FrozenGraph"}:
        producers = [
            e
            for e, ids in outputs_of.items()
            if any(artifact_type[a] == f"components.{variant_type}" for a in ids)
        ]
        for producer in producers:
            assert "components.FrozenGraph" in {artifact_type[a] for a in inputs_of[producer]}
    assert {artifact_type[a] for a in outputs_of[benchmarker]} == {
        "components.BenchmarkReport",
        "components.VariantBlessing",
        "system.HTML",
        "system.Markdown",
    }


def test_report_has_a_row_per_variant_with_sane_figures(first_run):
    store = open_store(metadata_path(first_run))
    [report_artifact] = store.get_artifacts_by_type("components.BenchmarkReport")
    with open(os.path.join(report_artifact.uri, "report.json")) as f:
        report = json.load(f)
    rows = {v["name"]: v for v in report["variants"]}
    assert set(rows) == {
        "baseline",
        "null_harness_overhead",
        *DEFAULT_KINDS.built_names,
        *DEFAULT_KINDS.skipped,
    }
    for name, reason in DEFAULT_KINDS.skipped.items():
        assert rows[name]["status"] == "skipped", name
        assert rows[name]["failure_reason"] == reason
    for name in rows.keys() - {"null_harness_overhead"} - set(DEFAULT_KINDS.skipped):
        row = rows[name]
        assert row["status"] == "ok", (name, row.get("failure_reason"))
        latency = row["latency"]["summary"]
        assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"] < 1000
        assert row["metrics"]["top1"] > 0.85, name  # The digits CNN reaches ~0.94.
        assert row["size_bytes"] > 10_000, name
    assert rows["frozen_graph"]["agreement"] == pytest.approx(1.0)
    # The KFP-visualization copies are files at their URIs with the same content.
    [html_artifact] = store.get_artifacts_by_type("system.HTML")
    with open(html_artifact.uri) as f, open(os.path.join(report_artifact.uri, "report.html")) as g:
        assert f.read() == g.read()
    properties = report_artifact.custom_properties
    assert properties["frozen_graph.p50_ms"].double_value > 0
    assert properties["baseline_p50_ms"].double_value > 0
    # One size: what each producer published to MLMD is what the report shows. The
    # optimized graph's counts graph.pb, not the servable SavedModel written beside it.
    published = {}
    for artifact in store.get_artifacts():
        name = artifact.custom_properties.get("variant_name")
        if name is not None and "size_bytes" in artifact.custom_properties:
            published[name.string_value] = artifact.custom_properties["size_bytes"].int_value
    for name, size in published.items():
        if rows.get(name, {}).get("status") == "ok":
            assert rows[name]["size_bytes"] == size, name
    optimized = next(
        a
        for a in store.get_artifacts_by_type("components.OptimizedGraph")
        if a.custom_properties["variant_name"].string_value == "optimized_graph"
    )
    assert published["optimized_graph"] < directory_size_bytes(optimized.uri) * 0.75
    # The Freezer froze in a child process (its peak is recorded), not in the pipeline's.
    [frozen] = store.get_artifacts_by_type("components.FrozenGraph")
    assert frozen.custom_properties["child_process_peak_rss_bytes"].int_value > 0


def test_second_run_is_served_from_cache(first_run, embedded_default, capsys):
    code, out, _ = _run(
        capsys,
        "--model",
        embedded_default.model_uri,
        "--examples",
        embedded_default.examples_uri,
        "--output",
        first_run,
        *FAST_TIMING,
    )
    assert code == 0
    assert "Served from cache" in out
    store = open_store(metadata_path(first_run))
    freezer_states = [e.last_known_state for e in _executions_by_node(store)["Freezer"]]
    assert freezer_states == [
        metadata_store_pb2.Execution.COMPLETE,
        metadata_store_pb2.Execution.CACHED,
    ]


def test_run_json_and_the_speedup_gate_on_a_cached_rerun(first_run, embedded_default, capsys):
    from pipelines.run_summary import EXIT_SPEEDUP_NOT_MET

    inputs = ["--model", embedded_default.model_uri, "--examples", embedded_default.examples_uri]
    code, out, err = _run(
        capsys, *inputs, "--output", first_run, *FAST_TIMING, "--json", "--require-speedup", "1e6"
    )
    document = json.loads(out)  # Only the document on stdout: progress went to stderr.
    assert code == EXIT_SPEEDUP_NOT_MET == document["exit_code"]
    assert document["require_speedup"] == {"required": 1e6, "met": False}
    assert "--require-speedup 1e+06: NOT MET" in err
    assert "Benchmarker" in document["served_from_cache"]
    assert document["inputs"]["model_uri"] == embedded_default.model_uri
    assert os.path.exists(document["report"]["html"])
    names = {v["name"] for v in document["variants"]}
    assert {"baseline", "frozen_graph"} <= names
    if document["blessed"]:
        assert document["winner"] in names and document["winner_speedup"] > 0
        code, _, _ = _run(
            capsys,
            *inputs,
            "--output",
            first_run,
            *FAST_TIMING,
            "--require-speedup",
            str(document["winner_speedup"] * 0.99),
        )
        assert code == 0


def _live_artifacts(store, type_name: str) -> list:
    return [
        a
        for a in store.get_artifacts_by_type(type_name)
        if a.state == metadata_store_pb2.Artifact.LIVE
    ]


def test_missing_model_fails_clearly_and_keeps_earlier_results(
    tmp_path, first_run, embedded_default, capsys
):
    output = str(tmp_path / "out")
    shutil.copytree(first_run, output)
    store = open_store(metadata_path(output))
    reports_before = _live_artifacts(store, "components.BenchmarkReport")
    frozen_before = _live_artifacts(store, "components.FrozenGraph")
    missing = str(tmp_path / "no-such-model")

    code, _, err = _run(
        capsys,
        "--model",
        missing,
        "--examples",
        embedded_default.examples_uri,
        "--output",
        output,
        *FAST_TIMING,
    )

    assert code != 0
    assert missing in err and "does not exist" in err
    assert "Traceback" not in err
    # The CLI's pre-flight check refused it before any component ran.
    store = open_store(metadata_path(output))
    executions_before = len(store.get_executions())
    assert "Running pipeline" not in err

    # Without the CLI (as on Kubeflow) the Freezer refuses it: FAILED, its reason kept.
    pipeline = create_pipeline(
        pipeline_name="inference-optimizer",
        pipeline_root=os.path.join(output, PIPELINE_ROOT_DIRNAME),
        model_uri=missing,
        examples_uri=embedded_default.examples_uri,
        metadata_connection_config=sqlite_connection_config(output),
        settings=fast_settings(),
    )
    with pytest.raises(Exception, match="does not exist"):
        run_pipeline(pipeline, progress_stream=io.StringIO())
    store = open_store(metadata_path(output))
    freezer = _executions_by_node(store)["Freezer"][-1]
    assert freezer.last_known_state == metadata_store_pb2.Execution.FAILED
    assert "does not exist" in freezer.custom_properties["__execution_result__"].string_value
    assert len(store.get_executions()) > executions_before
    assert [a.id for a in _live_artifacts(store, "components.FrozenGraph")] == [
        a.id for a in frozen_before
    ]
    for report in reports_before:  # Earlier results are untouched.
        assert os.path.exists(os.path.join(report.uri, "report.json"))


def test_examples_that_do_not_fit_the_model_fail_clearly(tmp_path, embedded_default, capsys):
    import numpy as np

    from components.common.examples_io import write_labelled_images

    wrong = str(tmp_path / "wrong_examples")
    write_labelled_images(wrong, np.zeros((4, 8, 8, 1), np.float32), np.zeros(4, np.int64))

    code, _, err = _run(
        capsys,
        "--model",
        embedded_default.model_uri,
        "--examples",
        wrong,
        "--output",
        str(tmp_path / "out"),
        *FAST_TIMING,
    )

    assert code != 0
    assert "do not match the model input" in err and wrong in err
    assert "64 float values" in err and "1024" in err
    assert "Traceback" not in err


def test_unknown_signature_fails_clearly(tmp_path, embedded_default, capsys):
    code, _, err = _run(
        capsys,
        "--model",
        embedded_default.model_uri,
        "--examples",
        embedded_default.examples_uri,
        "--signature",
        "classify",
        "--output",
        str(tmp_path / "out"),
        *FAST_TIMING,
    )
    assert code != 0
    assert "no signature 'classify'" in err and "serving_default" in err
