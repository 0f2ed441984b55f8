"""`inference-optimizer lineage` on small MLMD stores written through MLMD's API (fast)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.lineage import graph_syntax, synthetic_store

RUN_1, RUN_2, RUN_3 = "20260101-100000.000001", "20260101-110000.000002", "20260102-090000.000003"


def test_runs_lists_every_run_oldest_first_with_state_and_headline(lineage, synthetic):
    result = lineage("runs", "--metadata", synthetic.path)

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    rows = [line for line in lines if line[:1].isdigit()]
    assert [row.split()[:2] for row in rows] == [["1", RUN_1], ["2", RUN_2], ["3", RUN_3]]
    assert "COMPLETE" in rows[0] and "baseline" in rows[0] and "0.6" in rows[0]
    assert "FAILED at Freezer" in rows[2]
    assert synthetic.path in lines[0]


def test_runs_json_carries_index_state_and_headline(lineage, synthetic):
    document = lineage("runs", "--metadata", synthetic.path, "--json").json()

    runs = document["runs"]
    assert [r["run_id"] for r in runs] == [RUN_1, RUN_2, RUN_3]
    assert [r["index"] for r in runs] == [1, 2, 3]
    assert [r["state"] for r in runs] == ["COMPLETE", "COMPLETE", "FAILED"]
    assert runs[2]["failed_nodes"] == ["Freezer"]
    headline = runs[1]["headline"]
    assert headline["winner"] == "baseline" and headline["blessed"] is True
    assert headline["winner_p50_ms"] == pytest.approx(0.62)
    assert headline["report_artifact_id"] == synthetic.runs[1].report_id
    assert runs[2]["headline"] is None
    assert all(r["pipeline"] == synthetic_store.PIPELINE for r in runs)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("latest", RUN_3),
        ("-1", RUN_3),
        ("1", RUN_1),
        ("-2", RUN_2),
        (RUN_2, RUN_2),
        ("20260102", RUN_3),
    ],
)
def test_show_accepts_run_id_prefix_index_or_latest(lineage, synthetic, ref, expected):
    result = lineage("show", ref, "--metadata", synthetic.path, "--json")

    assert result.code == 0, result.err
    assert result.json()["run"]["run_id"] == expected


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nope", "No run 'nope'"),
        ("9", "no run number 9"),
        ("0", "no run number 0"),
        ("-4", "no run number -4"),
        ("20260101", "is ambiguous"),
    ],
)
def test_unknown_run_is_a_clear_error(lineage, synthetic, ref, message):
    result = lineage("show", ref, "--metadata", synthetic.path)

    assert result.code == 1
    assert message in result.err and "Traceback" not in result.err
    assert result.err.startswith("error: ") and result.err.count("\n") == 1


def test_show_prints_each_execution_in_dependency_order_with_its_artifacts(lineage, synthetic):
    result = lineage("show", "2", "--metadata", synthetic.path)

    assert result.code == 0, result.err
    out = result.out
    order = [out.index(f"\n{node}  ") for node in ("Freezer", "Benchmarker")]
    assert out.index("model_importer  ") < order[0] < order[1]
    assert f"/root/{RUN_2}/Benchmarker/report" in out
    assert "max_accuracy_drop=0.02" in out
    assert "benchmark_settings.time_budget_s=3" in out  # JSON settings are spread out.
    assert f"[{synthetic.runs[1].report_id}] components.BenchmarkReport" in out
    assert "variant_name=frozen_graph" in out and "size_bytes=89223" in out


def test_show_marks_the_failed_node_of_a_failed_run(lineage, synthetic):
    result = lineage("show", RUN_3, "--metadata", synthetic.path)

    assert result.code == 0, result.err
    assert "FAILED at Freezer" in result.out.splitlines()[0]
    assert "Freezer  FAILED" in result.out
    assert "Benchmarker" not in result.out


def test_trace_from_a_report_reaches_the_imported_model_and_data(lineage, synthetic):
    run = synthetic.runs[0]
    document = lineage("trace", str(run.report_id), "--metadata", synthetic.path, "--json").json()

    executions = {e["id"]: e for e in document["graph"]["executions"]}
    nodes = [executions[s["execution_id"]]["node_id"] for s in document["steps"]]
    assert nodes[0] == "Benchmarker"
    assert set(nodes) == {"Benchmarker", "Freezer", "model_importer", "examples_importer"}
    artifacts = {a["id"]: a for a in document["graph"]["artifacts"]}
    assert {artifacts[i]["type"] for i in document["origins"]} == {"Model", "Examples"}
    benchmarker = next(executions[s["execution_id"]] for s in document["steps"])
    assert benchmarker["parameters"]["max_accuracy_drop"] == 0.01


def test_trace_text_prints_every_execution_and_its_parameters(lineage, synthetic):
    result = lineage("trace", str(synthetic.runs[1].report_id), "--metadata", synthetic.path)

    assert result.code == 0, result.err
    out = result.out
    for line in ("1. Benchmarker", "Freezer", "model_importer", "examples_importer"):
        assert line in out
    assert "max_accuracy_drop=0.02" in out and "signature_key=serving_default" in out
    assert "Original inputs:" in out and "/models/digits" in out


@pytest.mark.parametrize(
    "ref",
    [
        "{report_id}",
        "/root/{run}/Benchmarker/report",
        "/root/{run}/Benchmarker/report/",
        "/root/{run}/Benchmarker/report/report.html",
        "report",
    ],
)
def test_trace_accepts_an_id_a_uri_a_file_inside_it_or_a_name(lineage, synthetic, ref):
    run = synthetic.runs[1]
    ref = ref.format(report_id=run.report_id, run=RUN_2)

    result = lineage("trace", ref, "--run", RUN_2, "--metadata", synthetic.path, "--json")

    assert result.code == 0, result.err
    assert result.json()["artifact"]["id"] == run.report_id


def test_trace_finds_a_variant_by_its_name(lineage, synthetic):
    result = lineage("trace", "frozen_graph", "--run", "1", "--metadata", synthetic.path, "--json")

    assert result.code == 0, result.err
    assert result.json()["artifact"]["id"] == synthetic.runs[0].frozen_id


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("999", "No artifact with id 999"),
        ("/no/such/uri", "No artifact has the URI '/no/such/uri'"),
        ("nothing_called_this", "names there:"),
        ("result", "names several artifacts"),
    ],
)
def test_unknown_artifact_is_a_clear_error(lineage, synthetic, ref, message):
    result = lineage("trace", ref, "--run", "1", "--metadata", synthetic.path)

    assert result.code == 1
    assert message in result.err and "Traceback" not in result.err


def test_diff_shows_exactly_the_changed_parameter(lineage, synthetic):
    document = lineage("diff", "1", "2", "--metadata", synthetic.path, "--json").json()

    assert document["parameter_changes"] == [
        {"node_id": "Benchmarker", "parameter": "max_accuracy_drop", "a": 0.01, "b": 0.02}
    ]
    variants = {v["variant"]: v for v in document["variants"]}
    assert variants["frozen_graph"]["a"]["p50_ms"] == pytest.approx(0.75)
    assert variants["frozen_graph"]["b"]["p50_ms"] == pytest.approx(0.5)
    assert variants["frozen_graph"]["b"]["size_bytes"] == 89223
    assert document["nodes_only_in_a"] == document["nodes_only_in_b"] == []


def test_diff_text_puts_parameters_and_metrics_side_by_side(lineage, synthetic):
    result = lineage("diff", RUN_1, RUN_2, "--metadata", synthetic.path)

    assert result.code == 0, result.err
    assert "Parameters that changed (1):" in result.out
    changed = [line.split() for line in result.out.splitlines() if "max_accuracy_drop" in line]
    assert changed == [["Benchmarker", "max_accuracy_drop", "0.01", "0.02"]]
    p50_rows = [line.split() for line in result.out.splitlines() if "p50_ms" in line]
    assert ["frozen_graph", "p50_ms", "0.75", "0.5", "0.67x"] in p50_rows


def test_diff_spreads_json_settings_into_single_changes(lineage, tmp_path):
    path = str(tmp_path / "metadata.sqlite")
    store = synthetic_store.create_store(path)
    synthetic_store.add_run(store, "a", benchmark_settings={"warmup_calls": 20})
    synthetic_store.add_run(store, "b", benchmark_settings={"warmup_calls": 5})
    del store

    document = lineage("diff", "--metadata", path, "--json").json()  # The last two runs.

    assert [(c["parameter"], c["a"], c["b"]) for c in document["parameter_changes"]] == [
        ("benchmark_settings.warmup_calls", 20, 5)
    ]


def test_diff_of_a_failed_run_names_the_nodes_that_did_not_run(lineage, synthetic):
    result = lineage("diff", "2", "3", "--metadata", synthetic.path)

    assert result.code == 0, result.err
    assert "Nodes with no execution in B: Benchmarker" in result.out
    assert "B (no report)" in result.out


def test_diff_needs_two_runs(lineage, tmp_path):
    path = str(tmp_path / "metadata.sqlite")
    synthetic_store.add_run(synthetic_store.create_store(path), "only")

    result = lineage("diff", "--metadata", path)

    assert result.code == 1
    assert "holds only one" in result.err


def test_runs_of_several_pipelines_can_be_filtered(lineage, tmp_path):
    path = str(tmp_path / "metadata.sqlite")
    store = synthetic_store.create_store(path)
    synthetic_store.add_run(store, "run-a", pipeline="alpha")
    synthetic_store.add_run(store, "run-b", pipeline="beta")
    del store

    both = lineage("runs", "--metadata", path)
    beta = lineage("runs", "--metadata", path, "--pipeline", "beta", "--json").json()
    missing = lineage("runs", "--metadata", path, "--pipeline", "gamma")

    assert "pipeline" in both.out and "alpha" in both.out and "beta" in both.out
    assert [r["run_id"] for r in beta["runs"]] == ["run-b"]
    assert missing.code == 1 and "alpha, beta" in missing.err


def test_export_dot_is_valid_graphviz(lineage, synthetic):
    result = lineage("export", "2", "--format", "dot", "--metadata", synthetic.path)

    assert result.code == 0, result.err
    graph_syntax.check_dot(result.out)
    parsed = graph_syntax.parse_dot(result.out)
    assert len(parsed["nodes"]) == 4 + 5  # 4 executions, 5 artifacts.
    assert f"a{synthetic.runs[1].report_id}" in parsed["nodes"]


def test_dot_fallback_parser_rejects_broken_graphs():
    with pytest.raises(graph_syntax.SyntaxProblem):
        graph_syntax.parse_dot('digraph g { a [label="x"]; a -> b; }')  # b undeclared.
    with pytest.raises(graph_syntax.SyntaxProblem):
        graph_syntax.parse_dot('digraph g { a [label="unterminated]; }')


def test_export_mermaid_is_a_well_formed_flowchart(lineage, synthetic):
    result = lineage("export", "2", "--format", "mermaid", "--metadata", synthetic.path)

    assert result.code == 0, result.err
    parsed = graph_syntax.check_mermaid(result.out)
    assert len(parsed["nodes"]) == 9
    assert f"e{_execution_id(lineage, synthetic, 'Benchmarker')}" in parsed["nodes"]


def test_export_html_is_one_self_contained_page(lineage, synthetic, tmp_path):
    output = str(tmp_path / "run.html")

    result = lineage("export", "2", "--output", output, "--metadata", synthetic.path)

    assert result.code == 0, result.err
    with open(output, encoding="utf-8") as f:
        page = f.read()
    parsed = graph_syntax.check_html(page)
    assert "<svg" in page
    report_id = synthetic.runs[1].report_id
    assert f"a{report_id}" in parsed["ids"]  # Each node has a properties section.
    assert "max_accuracy_drop" in parsed["text"] and "frozen_graph.p50_ms" in parsed["text"]


def test_export_json_lists_every_node_and_edge(lineage, synthetic):
    document = lineage("export", "2", "--format", "json", "--metadata", synthetic.path).json()

    assert len(document["executions"]) == 4 and len(document["artifacts"]) == 5
    kinds = sorted((e["kind"], e["key"]) for e in document["edges"])
    assert ("output", "report") in kinds and ("input", "frozen_graph") in kinds


def test_export_without_a_format_is_a_clear_error(lineage, synthetic):
    result = lineage("export", "--metadata", synthetic.path)

    assert result.code == 1 and "Pass --format" in result.err


def test_store_flags_work_before_the_subcommand(lineage, synthetic):
    result = lineage("--metadata", synthetic.path, "--json", "runs")

    assert result.code == 0, result.err
    assert len(result.json()["runs"]) == 3


def test_building_the_cli_parser_loads_no_metadata_or_tensorflow():
    code = (
        "import sys; import pipelines.lineage.commands as c, argparse; "
        "p = argparse.ArgumentParser(); c.add_parser(p.add_subparsers()); "
        "print(sorted(m for m in ('ml_metadata', 'tensorflow', 'tfx') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _execution_id(lineage, synthetic, node_id: str) -> int:
    document = lineage("show", "2", "--metadata", synthetic.path, "--json").json()
    return next(e["id"] for e in document["executions"] if e["node_id"] == node_id)


def test_runs_with_more_executions_than_one_lineage_query_are_read_whole(synthetic, monkeypatch):
    from pipelines.lineage import queries
    from pipelines.lineage.store import SqliteLocation, open_store

    store = open_store(SqliteLocation(synthetic.path))
    run = queries.resolve_run(store, "1")
    whole = queries.run_graph(store, run).to_json()
    monkeypatch.setattr(queries, "MAX_STARTING_NODES", 3)  # MLMD's limit is 100 per query.

    chunked = queries.run_graph(store, run).to_json()

    assert chunked == whole
    assert len(chunked["executions"]) == 4 and len(chunked["edges"]) == 9


def test_a_run_that_recorded_no_execution_can_still_be_shown_and_exported(lineage, tmp_path):
    path = str(tmp_path / "metadata.sqlite")
    store = synthetic_store.create_store(path)
    synthetic_store.add_run(store, "complete")
    synthetic_store._context(store, "pipeline_run", "crashed-at-start")
    del store

    runs = lineage("runs", "--metadata", path, "--json").json()["runs"]
    shown = lineage("show", "crashed-at-start", "--metadata", path)
    page = lineage("export", "crashed-at-start", "--format", "html", "--metadata", path)

    assert [r["state"] for r in runs] == ["COMPLETE", "EMPTY"]
    assert shown.code == 0 and "EMPTY" in shown.out
    assert page.code == 0, page.err
    graph_syntax.check_html(page.out)
