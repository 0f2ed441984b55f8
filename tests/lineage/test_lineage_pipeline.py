"""`inference-optimizer lineage` on real pipeline runs: a run, then a rerun with one change.

The node list is read from MLMD, never written here, so components added to the
pipeline are covered without touching these tests.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import pathlib

import pytest

from components.common.cpu_facts import read_cpu
from pipelines.lineage.store import METADATA_FILENAME
from tests.lineage import graph_syntax
from tests.lineage.pipeline_runs import PIPELINE_NAME, run_pipeline_once

pytestmark = pytest.mark.slow


@dataclasses.dataclass
class TwoRuns:
    root: str  # Holds runs/<pipeline>/ as `inference-optimizer run` lays it out.
    metadata: str
    model_uri: str
    examples_uri: str


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, embedded_default) -> TwoRuns:
    """A run, then a rerun that changes only the Benchmarker's accuracy budget."""
    root = str(tmp_path_factory.mktemp("lineage_runs"))
    output = os.path.join(root, "runs", PIPELINE_NAME)
    model, examples = embedded_default.model_uri, embedded_default.examples_uri
    run_pipeline_once(output, model, examples, max_accuracy_drop=0.01)
    run_pipeline_once(output, model, examples, max_accuracy_drop=0.02)
    return TwoRuns(root, os.path.join(output, METADATA_FILENAME), model, examples)


def _pipeline_nodes(metadata: str) -> set[str]:
    """Every node that ran, straight from MLMD's `node` contexts (`<pipeline>.<node>`)."""
    from pipelines.lineage.store import SqliteLocation, open_store

    store = open_store(SqliteLocation(metadata)).mlmd
    return {c.name.split(".", 1)[1] for c in store.get_contexts_by_type("node")}


def test_runs_lists_the_run_and_the_rerun_with_their_results(lineage, two_runs):
    document = lineage("runs", "--metadata", two_runs.metadata, "--json").json()

    runs = document["runs"]
    assert [r["state"] for r in runs] == ["COMPLETE", "COMPLETE"]
    assert all(r["pipeline"] == PIPELINE_NAME for r in runs)
    assert runs[0]["cached_count"] == 0 and runs[1]["cached_count"] >= 1  # Freezer and kin.
    for run in runs:
        headline = run["headline"]  # Found by the BenchmarkReport type name.
        assert headline is not None and headline["baseline_p50_ms"] > 0
        if headline["blessed"]:  # Timing noise may leave every variant unblessed.
            assert headline["winner"] and headline["winner_p50_ms"] > 0
        assert headline["from_cache"] is False  # The rerun's Benchmarker really ran.


def test_default_store_is_the_latest_local_run(lineage, two_runs, monkeypatch):
    monkeypatch.chdir(two_runs.root)

    result = lineage("runs")

    assert result.code == 0, result.err
    assert two_runs.metadata in result.out
    assert "FAILED" not in result.out


def test_show_lists_every_node_with_state_duration_and_existing_uris(lineage, two_runs):
    document = lineage("show", "1", "--metadata", two_runs.metadata, "--json").json()

    assert {e["node_id"] for e in document["executions"]} == _pipeline_nodes(two_runs.metadata)
    assert all(e["state"] == "COMPLETE" and e["duration_s"] >= 0 for e in document["executions"])
    outputs = {e["artifact_id"] for e in document["edges"] if e["kind"] == "output"}
    artifacts = {a["id"]: a for a in document["artifacts"]}
    for artifact_id in outputs:
        # Folders, except value artifacts (the KFP HTML/Markdown report), which are files.
        assert os.path.exists(artifacts[artifact_id]["uri"]), artifacts[artifact_id]
    types = {a["type"] for a in artifacts.values()}
    assert {"Model", "Examples", "components.FrozenGraph", "components.BenchmarkReport"} <= types

    text = lineage("show", "1", "--metadata", two_runs.metadata)
    assert text.code == 0, text.err
    for node in _pipeline_nodes(two_runs.metadata):
        assert f"\n{node}  COMPLETE" in text.out
    # The machine, from the report artifact's MLMD properties (not report.json).
    (report,) = [a for a in artifacts.values() if a["type"] == "components.BenchmarkReport"]
    properties = report["properties"]
    cpu = read_cpu()
    assert properties["hardware_cpu_model"] == cpu.model_name
    assert properties["hardware_amx_int8"] == int("amx_int8" in cpu.flags)
    assert properties["version_tensorflow"] == importlib.metadata.version("tensorflow")
    assert f"machine: {cpu.model_name}, " in text.out
    assert ("(no AMX)" in text.out) == ("amx_tile" not in cpu.flags)


@pytest.mark.parametrize("run", ["1", "2"])
def test_trace_from_the_report_reaches_the_imported_model_through_every_component(
    lineage, two_runs, run
):
    document = lineage(
        "trace", "report", "--run", run, "--metadata", two_runs.metadata, "--json"
    ).json()

    graph = document["graph"]
    executions = {e["id"]: e for e in graph["executions"]}
    artifacts = {a["id"]: a for a in graph["artifacts"]}
    steps = [executions[s["execution_id"]] for s in document["steps"]]
    assert document["artifact"]["type"] == "components.BenchmarkReport"
    assert steps[0]["node_id"] == "Benchmarker"
    assert {s["node_id"] for s in steps} == _pipeline_nodes(two_runs.metadata)
    # The trace follows the executions that computed each artifact, even through the cache.
    assert all(s["state"] == "COMPLETE" for s in steps)
    origins = {artifacts[i]["type"]: artifacts[i]["uri"] for i in document["origins"]}
    assert origins == {"Model": two_runs.model_uri, "Examples": two_runs.examples_uri}
    # Every step's inputs come from another step: one connected walk down to the imports.
    produced = {edge["artifact_id"] for s in document["steps"] for edge in s["outputs"]}
    for step in document["steps"]:
        assert {edge["artifact_id"] for edge in step["inputs"]} <= produced
    if run == "2":
        reused = [s for s in document["steps"] if s["reused_by"]]
        assert {executions[s["execution_id"]]["node_id"] for s in reused} >= {"Freezer"}


def test_trace_text_names_every_component_and_the_model_uri(lineage, two_runs):
    result = lineage("trace", "blessing", "--metadata", two_runs.metadata)

    assert result.code == 0, result.err
    for node in _pipeline_nodes(two_runs.metadata):
        assert f". {node}  " in result.out
    assert "max_accuracy_drop=0.02" in result.out
    assert two_runs.model_uri in result.out.split("Original inputs:")[1]


def test_diff_of_a_run_and_its_rerun_shows_exactly_the_changed_parameter(lineage, two_runs):
    document = lineage("diff", "1", "2", "--metadata", two_runs.metadata, "--json").json()

    assert document["parameter_changes"] == [
        {"node_id": "Benchmarker", "parameter": "max_accuracy_drop", "a": 0.01, "b": 0.02}
    ]
    assert document["nodes_only_in_a"] == document["nodes_only_in_b"] == []
    variants = {v["variant"]: v for v in document["variants"]}
    assert "frozen_graph" in variants
    for name in ("baseline", "frozen_graph"):
        assert variants[name]["a"]["p50_ms"] > 0 and variants[name]["b"]["p50_ms"] > 0

    text = lineage("diff", "1", "2", "--metadata", two_runs.metadata)
    assert "Parameters that changed (1):" in text.out
    assert "Benchmarker  max_accuracy_drop  0.01  0.02" in text.out


def test_export_writes_valid_dot_mermaid_json_and_html(lineage, two_runs, tmp_path):
    shown = lineage("show", "--metadata", two_runs.metadata, "--json").json()
    node_count = len(shown["executions"]) + len(shown["artifacts"])
    paths = {fmt: str(tmp_path / f"run.{fmt}") for fmt in ("dot", "mmd", "json", "html")}

    for path in paths.values():
        result = lineage("export", "latest", "-o", path, "--metadata", two_runs.metadata)
        assert result.code == 0, result.err

    texts = {fmt: pathlib.Path(path).read_text(encoding="utf-8") for fmt, path in paths.items()}
    graph_syntax.check_dot(texts["dot"])
    assert len(graph_syntax.parse_dot(texts["dot"])["nodes"]) == node_count
    assert len(graph_syntax.check_mermaid(texts["mmd"])["nodes"]) == node_count
    page = graph_syntax.check_html(texts["html"])
    assert len([i for i in page["ids"] if i[:1] in "ea" and i[1:].isdigit()]) == node_count
    assert len(json.loads(texts["json"])["executions"]) == len(shown["executions"])


def test_diff_refuses_runs_from_different_machines_unless_allowed(lineage, two_runs):
    from pipelines.lineage.store import SqliteLocation, open_store

    store = open_store(SqliteLocation(two_runs.metadata)).mlmd
    reports = sorted(store.get_artifacts_by_type("components.BenchmarkReport"), key=lambda a: a.id)
    path = pathlib.Path(reports[-1].uri) / "report.json"
    original = path.read_text()
    report = json.loads(original)
    report["fingerprint"]["cpu_model"] = "Some Other CPU"
    try:
        path.write_text(json.dumps(report))

        refused = lineage("diff", "1", "2", "--metadata", two_runs.metadata)
        allowed = lineage(
            "diff", "1", "2", "--metadata", two_runs.metadata, "--allow-fingerprint-mismatch"
        )
    finally:
        path.write_text(original)

    assert refused.code != 0
    assert "different set-ups" in refused.err and "cpu_model" in refused.err
    assert "--allow-fingerprint-mismatch" in refused.err
    assert allowed.code == 0
    assert "warning: runs measured on different machines" in allowed.out
    assert "Some Other CPU" in allowed.out
