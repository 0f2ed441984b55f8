"""Ctrl-C and SIGKILL in the middle of `inference-optimizer run`, then a rerun that finishes.

Real processes on the real CLI: the Benchmarker (whose harness runs in a child process)
is interrupted, then killed, and a third run into the same directory completes from
the cache without reusing anything of the two that did not finish.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from ml_metadata.proto import metadata_store_pb2

from pipelines import cli
from pipelines.lineage.store import SqliteLocation, open_store
from pipelines.local_runner import metadata_path

pytestmark = pytest.mark.slow

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Long enough a Benchmarker to be caught in the middle (the digits CNN settles in ~20 s).
SLOW_BENCHMARK = ["--variants", "", "--time-budget", "20"]


class CliProcess:
    """`python -m pipelines run ...` in a process of its own, its stderr read as it comes."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipelines", "run", *args],
            cwd=_REPOSITORY,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def wait_for_line(self, text: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.stderr_lines):
            assert self.process.poll() is None, "\n".join(self.stderr_lines)
            assert time.monotonic() < deadline, f"no {text!r} in:\n" + "\n".join(self.stderr_lines)
            time.sleep(0.1)

    def finish(self, timeout_s: float = 180) -> tuple[int, str, list[str]]:
        out = self.process.stdout.read()
        code = self.process.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        return code, out, self.stderr_lines


def _processes() -> dict[int, tuple[int, bytes]]:
    """Every live process: pid -> (parent pid, command line)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[-1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if fields[0] != "Z":
            found[int(entry)] = (int(fields[1]), cmdline)
    return found


def _children_of(pid: int) -> list[int]:
    """Live run_isolated children of process `pid`: fresh interpreters it started, and
    children the warm server it started forked (components/common/warm_children.py)."""
    processes = _processes()
    direct = {p for p, (parent, _) in processes.items() if parent == pid}
    servers = {p for p in direct if b"components.common.warm_children" in processes[p][1]}
    return sorted(
        p
        for p, (parent, cmdline) in processes.items()
        if (p in direct and b"components.common.isolation" in cmdline) or parent in servers
    )


def _alive(pid: int) -> bool:
    return pid in _processes()


def _work_folder_of(child_pid: int) -> str:
    """The folder of a run_isolated child's request file."""
    with open(f"/proc/{child_pid}/cmdline", "rb") as f:
        arguments = f.read().rstrip(b"\0").split(b"\0")
    if b"components.common.isolation" in arguments:  # A fresh interpreter: its last argument.
        return os.path.dirname(arguments[-1].decode())
    # Forked: its stdout is a file in its private TMPDIR, inside the work folder. A child
    # caught just after the fork still has the server's stdout (/dev/null) until its dup2.
    stdout = f"/proc/{child_pid}/fd/1"
    assert _wait_until(lambda: os.readlink(stdout).endswith("/stdout.txt"), 30), os.readlink(stdout)
    return os.path.dirname(os.path.dirname(os.readlink(stdout)))


def _wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not condition():
        time.sleep(0.1)
    return condition()


def _benchmarker_executions(output: str) -> list:
    store = open_store(SqliteLocation(metadata_path(output))).mlmd
    context = store.get_context_by_type_and_name("node", "inference-optimizer.Benchmarker")
    return sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)


def _output_artifacts(output: str, execution_id: int) -> list:
    store = open_store(SqliteLocation(metadata_path(output))).mlmd
    events = store.get_events_by_execution_ids([execution_id])
    return [e for e in events if e.type == metadata_store_pb2.Event.OUTPUT]


def _lineage(capsys, *args: str) -> str:
    capsys.readouterr()
    assert cli.main(["lineage", *args]) == 0
    return capsys.readouterr().out


def test_interrupt_then_kill_then_rerun_completes_from_cache(tmp_path, embedded_default, capsys):
    output = str(tmp_path / "out")
    inputs = ["--model", embedded_default.model_uri, "--examples", embedded_default.examples_uri]
    pipeline_root = os.path.join(output, "pipeline_root")

    # 1. Ctrl-C while the Benchmarker's harness child is measuring.
    run = CliProcess(*inputs, "--output", output, *SLOW_BENCHMARK)
    run.wait_for_line("Benchmarker                  running")
    assert _wait_until(lambda: _children_of(run.process.pid), 30), "no harness child started"
    work_folder = _work_folder_of(_children_of(run.process.pid)[0])
    time.sleep(1)
    run.process.send_signal(signal.SIGINT)
    code, _, err = run.finish()
    assert code == 130, "\n".join(err)
    [interrupted] = _benchmarker_executions(output)
    assert err[-1] == (
        f"Interrupted: the Benchmarker execution ({interrupted.id}) was marked CANCELED in "
        "MLMD and published nothing; rerun the same command to resume from cache."
    )
    assert not any("Traceback" in line or line.startswith("error:") for line in err)
    assert interrupted.last_known_state == metadata_store_pb2.Execution.CANCELED
    assert interrupted.custom_properties["reason"].string_value == "interrupted"
    assert interrupted.custom_properties["runner:pid"].int_value == run.process.pid
    assert interrupted.custom_properties["runner:host"].string_value == socket.gethostname()
    assert _output_artifacts(output, interrupted.id) == []
    assert not os.path.exists(
        os.path.join(pipeline_root, "Benchmarker", "report", str(interrupted.id))
    )
    assert _children_of(run.process.pid) == []
    assert not os.path.exists(work_folder)  # The Benchmarker's temporary folder.

    # 2. SIGKILL (nothing in the process can react): the execution is left RUNNING.
    run = CliProcess(*inputs, "--output", output, *SLOW_BENCHMARK)
    run.wait_for_line("Benchmarker                  running")
    assert _wait_until(lambda: _children_of(run.process.pid), 30), "no harness child started"
    work_folder = _work_folder_of(_children_of(run.process.pid)[0])
    # Meanwhile a second run into the same directory is refused, naming the holder.
    refused = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", *inputs, "--output", output],
        cwd=_REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1
    assert f"process {run.process.pid} on host {socket.gethostname()}" in refused.stderr
    harness = _children_of(run.process.pid)
    run.process.send_signal(signal.SIGKILL)
    code, _, _ = run.finish()
    assert code == -signal.SIGKILL
    killed_pid = run.process.pid
    assert _wait_until(lambda: not any(map(_alive, harness)), 5), "the harness outlived its parent"
    # Nobody is left to clean but the harness child: it removed the folder as it went.
    assert _wait_until(lambda: not os.path.exists(work_folder), 5), work_folder
    abandoned = _benchmarker_executions(output)[-1]
    assert abandoned.last_known_state == metadata_store_pb2.Execution.RUNNING  # What MLMD says.
    runs = json.loads(_lineage(capsys, "--metadata", output, "runs", "--json"))
    runs = runs["runs"] if isinstance(runs, dict) else runs
    assert [(r["state"], r["stopped_nodes"], r["headline"]) for r in runs] == [
        ("CANCELED", ["Benchmarker"], None),
        ("ABANDONED", ["Benchmarker"], None),
    ]
    shown = _lineage(capsys, "--metadata", output, "show", "latest")
    assert f"ABANDONED (MLMD still says RUNNING, but pid {killed_pid} on host" in shown
    assert "Result:" not in shown

    # 3. The same command again: the Freezer comes from cache, the Benchmarker runs anew.
    run = CliProcess(*inputs, "--output", output, "--variants", "", "--time-budget", "2")
    code, out, err = run.finish()
    assert code == 0, "\n".join(err)
    assert "Served from cache: Freezer " in out
    states = [e.last_known_state for e in _benchmarker_executions(output)]
    assert states == [
        metadata_store_pb2.Execution.CANCELED,
        metadata_store_pb2.Execution.RUNNING,
        metadata_store_pb2.Execution.COMPLETE,  # Computed: not CACHED from either above.
    ]
    runs = json.loads(_lineage(capsys, "--metadata", output, "runs", "--json"))
    runs = runs["runs"] if isinstance(runs, dict) else runs
    assert runs[-1]["state"] == "COMPLETE" and runs[-1]["headline"] is not None
    assert not runs[-1]["headline"]["from_cache"]
