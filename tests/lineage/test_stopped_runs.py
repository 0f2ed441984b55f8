"""Runs that did not finish, and inputs that changed in place, as `lineage` shows them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from pipelines.execution_owner import owner_properties
from tests.lineage import synthetic_store


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def stopped_store(tmp_path, dead_pid):
    """A finished run, an interrupted one, one whose process died, one still running."""
    path = str(tmp_path / "metadata.sqlite")
    store = synthetic_store.create_store(path)
    synthetic_store.add_run(store, "20260101-100000.000001")
    synthetic_store.add_run(
        store,
        "20260101-110000.000002",
        benchmarker_stopped=pb.Execution.CANCELED,
        benchmarker_properties={"reason": "interrupted", **owner_properties()},
    )
    synthetic_store.add_run(
        store,
        "20260101-120000.000003",
        benchmarker_stopped=pb.Execution.RUNNING,
        benchmarker_properties=owner_properties(dead_pid),
    )
    synthetic_store.add_run(
        store,
        "20260101-130000.000004",
        benchmarker_stopped=pb.Execution.RUNNING,
        benchmarker_properties=owner_properties(),  # This very process: alive.
    )
    del store
    return path


def test_runs_tells_interrupted_abandoned_and_running_apart(lineage, stopped_store):
    result = lineage("--metadata", stopped_store, "runs", "--json")
    assert result.code == 0, result.err
    runs = result.json()["runs"] if isinstance(result.json(), dict) else result.json()
    states = [(r["state"], r["stopped_nodes"], r["headline"] is not None) for r in runs]
    assert states == [
        ("COMPLETE", [], True),
        ("CANCELED", ["Benchmarker"], False),
        ("ABANDONED", ["Benchmarker"], False),
        ("RUNNING", [], False),
    ]
    text = lineage("--metadata", stopped_store, "runs").out
    assert "CANCELED at Benchmarker (interrupted)" in text
    assert "ABANDONED at Benchmarker (its process is gone)" in text


def test_show_says_an_abandoned_execution_is_not_running_and_names_its_dead_pid(
    lineage, stopped_store, dead_pid
):
    out = lineage("--metadata", stopped_store, "show", "3").out
    benchmarker = next(line for line in out.splitlines() if line.startswith("Benchmarker"))
    assert "ABANDONED (MLMD still says RUNNING" in benchmarker
    assert f"pid {dead_pid} on host" in benchmarker
    assert "Result:" not in out  # Never shown as a result.
    interrupted = lineage("--metadata", stopped_store, "show", "2").out
    assert "CANCELED (interrupted; nothing of it was published)" in interrupted
    running = lineage("--metadata", stopped_store, "show", "4").out
    assert "RUNNING (pid " in running and "ABANDONED" not in running


def test_a_reused_pid_counts_as_abandoned(lineage, tmp_path):
    """Same PID, but another process now (its start time differs): not the run's process."""
    path = str(tmp_path / "metadata.sqlite")
    store = synthetic_store.create_store(path)
    properties = owner_properties()
    properties["runner:process_start_ticks"] -= 1
    synthetic_store.add_run(
        store,
        "20260101-100000.000001",
        benchmarker_stopped=pb.Execution.RUNNING,
        benchmarker_properties=properties,
    )
    del store
    assert "ABANDONED at Benchmarker" in lineage("--metadata", path, "runs").out


def test_runner_bookkeeping_is_not_a_parameter_change_in_diff(lineage, stopped_store):
    out = lineage("--metadata", stopped_store, "diff", "2", "3").out
    assert "runner:" not in out and "reason" not in out


def test_diff_shows_that_the_same_model_path_held_different_contents(lineage, tmp_path):
    path = str(tmp_path / "metadata.sqlite")
    store = synthetic_store.create_store(path)
    for run_id, digest in (("20260101-100000.000001", "aaa"), ("20260101-110000.000002", "bbb")):
        synthetic_store.add_run(
            store,
            run_id,
            model_properties={
                "input_fingerprint": f"num_files:3,total_bytes:10,xor_checksum:1,"
                f"sum_checksum:1,sha256:{digest}",
                "input_content_sha256": digest,
            },
        )
    del store
    result = lineage("--metadata", path, "diff")
    assert result.code == 0, result.err
    assert "model: /models/digits: same path, DIFFERENT CONTENTS" in result.out
    assert "sha256:aaa" in result.out and "sha256:bbb" in result.out
    inputs = {i["name"]: i for i in lineage("--metadata", path, "diff", "--json").json()["inputs"]}
    assert inputs["model"]["fingerprint_a"] != inputs["model"]["fingerprint_b"]
    assert inputs["model"]["uri_a"] == inputs["model"]["uri_b"]
