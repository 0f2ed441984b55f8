"""A model re-exported in place is never served from cache; a full disk fails cleanly.

Real runs of `inference-optimizer run` (in this process, on BeamDagRunner, MLMD in
sqlite) with the frozen graph as the only variant: the quickest end-to-end run there is.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess

import pytest
from ml_metadata.proto import metadata_store_pb2

from pipelines import cli
from pipelines.lineage.store import SqliteLocation, open_store
from pipelines.local_runner import PIPELINE_ROOT_DIRNAME, metadata_path

pytestmark = pytest.mark.slow

QUICK = ["--variants", "", "--time-budget", "2"]


def _run(capsys, model: str, examples: str, output: str, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(
        ["run", "--model", model, "--examples", examples, "--output", output, *QUICK, *extra]
    )
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _lineage(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["lineage", *args])
    return code, capsys.readouterr().out


def _mlmd(output: str):
    return open_store(SqliteLocation(metadata_path(output))).mlmd


def _executions(output: str, node: str) -> list:
    store = _mlmd(output)
    context = store.get_context_by_type_and_name("node", f"inference-optimizer.{node}")
    return sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)


def _outputs_of(output: str, execution_id: int) -> list:
    store = _mlmd(output)
    events = store.get_events_by_execution_ids([execution_id])
    ids = [e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
    return store.get_artifacts_by_id(ids)


def _report(output: str, execution_id: int) -> dict:
    [report] = [a for a in _outputs_of(output, execution_id) if a.type.endswith("BenchmarkReport")]
    with open(os.path.join(report.uri, "report.json"), encoding="utf-8") as f:
        return json.load(f)


def _export_untrained_digits_cnn(model_dir: str) -> None:
    """Another model, same architecture and signature: untrained, in the same folder."""
    import numpy as np

    from pipelines.embedded_default import build_digits_cnn

    shutil.rmtree(model_dir)
    model = build_digits_cnn()
    rng = np.random.default_rng(99)
    for weight in model.weights:
        if "kernel" in weight.path:  # Batch-norm statistics keep their neutral start.
            weight.assign(rng.normal(0, 0.5, weight.shape).astype("float32"))
    model.export(os.path.join(model_dir, "Format-Serving"), format="tf_saved_model", verbose=False)


@pytest.fixture(scope="module")
def overwritten_model_runs(tmp_path_factory, embedded_default):
    """Run 1 on the trained digits CNN; the model re-exported in place; run 2."""
    root = tmp_path_factory.mktemp("changed_inputs")
    model = str(root / "model")
    shutil.copytree(embedded_default.model_uri, model)
    output = str(root / "out")
    # A module fixture cannot take capsys: the first run prints to the real streams.
    command = ["run", "--model", model, "--examples", embedded_default.examples_uri]
    assert cli.main([*command, "--output", output, *QUICK]) == 0
    _export_untrained_digits_cnn(model)
    return model, embedded_default.examples_uri, output


def test_a_model_overwritten_in_place_is_rerun_not_served_from_cache(
    overwritten_model_runs, capsys
):
    model, examples, output = overwritten_model_runs
    code, out, err = _run(capsys, model, examples, output)
    assert code == 0, err

    assert "Served from cache" not in out  # Neither the Freezer nor the Benchmarker.
    for node in ("Freezer", "Benchmarker"):
        states = [e.last_known_state for e in _executions(output, node)]
        assert states == [metadata_store_pb2.Execution.COMPLETE] * 2, node
    # Two Model artifacts at one URI, told apart by their content fingerprints.
    models = _mlmd(output).get_artifacts_by_type("Model")
    assert len({m.uri for m in models}) == 1 and len(models) == 2
    fingerprints = {m.custom_properties["input_fingerprint"].string_value for m in models}
    assert len(fingerprints) == 2
    # The new figures are the new model's: random weights are far from 94% top-1.
    first, second = (_report(output, e.id) for e in _executions(output, "Benchmarker"))
    assert json.dumps(first["variants"], sort_keys=True) != json.dumps(
        second["variants"], sort_keys=True
    )
    top1 = [_baseline_top1(r) for r in (first, second)]
    assert top1[0] > 0.8 and top1[1] < 0.5, top1

    code, diff = _lineage(capsys, "--metadata", output, "diff")
    assert code == 0
    assert f"model: {model}: same path, DIFFERENT CONTENTS" in diff


def _baseline_top1(report: dict) -> float:
    rows = report["variants"]
    rows = rows.values() if isinstance(rows, dict) else rows
    baseline = next(r for r in rows if str(r.get("name", "")).startswith("baseline"))
    return float(baseline.get("metrics", baseline).get("top1"))


@contextlib.contextmanager
def _small_disk(path: str, size_bytes: int):
    """A tmpfs of `size_bytes` mounted at `path` for the block: a real full disk.

    The Freezer writes in a child process, where no monkeypatch reaches, so the disk
    really fills up. Mounting hides what `path` held and unmounting brings it back.
    """
    os.makedirs(path, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "full-disk-test", path],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "the full-disk case mounts a small tmpfs, which needs root or CAP_SYS_ADMIN: "
            + (mounted.stderr.strip() or f"mount exited {mounted.returncode}")
        )
    try:
        yield
    finally:
        subprocess.run(["umount", path], check=True)


def test_a_full_disk_fails_the_writer_publishes_nothing_and_keeps_earlier_results(
    overwritten_model_runs, tmp_path, capsys
):
    model, examples, finished = overwritten_model_runs
    output = str(tmp_path / "out")
    shutil.copytree(finished, output)
    runs_before = _lineage(capsys, "--metadata", output, "runs", "--json")[1]
    reports_before = [a for a in _mlmd(output).get_artifacts_by_type("components.BenchmarkReport")]
    frozen_before = _mlmd(output).get_artifacts_by_type("components.FrozenGraph")
    graph_bytes = min(os.path.getsize(os.path.join(a.uri, "graph.pb")) for a in frozen_before)
    frozen_graphs = os.path.join(output, PIPELINE_ROOT_DIRNAME, "Freezer", "frozen_graph")

    # Room for the folders and a quarter of the graph (one page at least): the write fails.
    with _small_disk(frozen_graphs, max(4096, graph_bytes // 4)):
        code, _, err = _run(capsys, model, examples, output, "--no-cache")
        written = [os.path.join(frozen_graphs, name) for name in os.listdir(frozen_graphs)]

    assert code == cli.EXIT_FAILED, err
    freezer = _executions(output, "Freezer")[-1]
    frozen_dir = os.path.join(frozen_graphs, str(freezer.id))
    assert "The disk is full (ENOSPC" in err and frozen_dir in err, err
    assert f"Earlier results in {output} are intact" in err
    assert "Traceback" not in err
    assert freezer.last_known_state == metadata_store_pb2.Execution.FAILED
    assert "disk is full" in freezer.custom_properties["__execution_result__"].string_value
    assert _outputs_of(output, freezer.id) == []  # Nothing of it published...
    assert written == []  # ... nor left half-written on the full disk.
    for frozen in frozen_before:  # The earlier frozen graphs are back, whole.
        assert os.path.getsize(os.path.join(frozen.uri, "graph.pb")) >= graph_bytes
    assert not any(
        e.last_known_state == metadata_store_pb2.Execution.RUNNING
        for e in _mlmd(output).get_executions()
    )
    # The earlier runs' results: still LIVE, on disk, and read back by lineage.
    for report in reports_before:
        [now] = _mlmd(output).get_artifacts_by_id([report.id])
        assert now.state == metadata_store_pb2.Artifact.LIVE
        assert os.path.exists(os.path.join(report.uri, "report.json"))
    code, runs = _lineage(capsys, "--metadata", output, "runs", "--json")
    assert code == 0
    before, after = json.loads(runs_before), json.loads(runs)
    before = before["runs"] if isinstance(before, dict) else before
    after = after["runs"] if isinstance(after, dict) else after
    assert after[: len(before)] == before
    assert after[-1]["state"] == "FAILED" and after[-1]["failed_nodes"] == ["Freezer"]
    code, shown = _lineage(capsys, "--metadata", output, "show", "1")
    assert code == 0 and "Result:" in shown
    assert os.path.isdir(os.path.join(output, PIPELINE_ROOT_DIRNAME))
