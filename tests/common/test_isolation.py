"""run_isolated's children die with their parent and leave no temporary folder behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from components.common.isolation import run_isolated, scratch_directory
from components.common.warm_children import SWITCH_ENV

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CHILDREN = "tests.common.isolation_children"
# The parent under test: a scratch_directory() work folder (as the Quantizer and the XLA
# compiler make), a run_isolated child that sleeps in it; prints the folder's path.
# Other threads, as in a real run (TFX's gRPC watcher, Beam): the kernel then sends the
# parent-death signal while the child still counts a dying thread as its parent.
_PARENT = """
import sys, threading, time
from components.common.isolation import run_isolated, scratch_directory
for _ in range(4):
    threading.Thread(target=time.sleep, args=(300,), daemon=True).start()
import tempfile
folder = (
    scratch_directory("tflite_quantization_") if sys.argv[2] == "scratch"
    # As the Benchmarker does: a plain TemporaryDirectory, with a file of its own in it.
    else tempfile.TemporaryDirectory(prefix="benchmark-")
)
with folder as work:
    open(work + "/progress.jsonl", "w").close()
    print(work, flush=True)
    run_isolated("tests.common.isolation_children:sleep_with_temp_dir",
                 {"report_path": sys.argv[1]}, work, name="sleeper")
"""


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie no one has reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _start_parent(tmp_path, folder: str, warm: bool) -> tuple[subprocess.Popen, str, dict]:
    """`warm`: the child is forked by the warm server (warm_children.py), whose parent is
    the server, not the process under test; else a fresh interpreter."""
    report = str(tmp_path / "child.json")
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, report, folder],
        cwd=_REPOSITORY,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, SWITCH_ENV: "1" if warm else "0"},
    )
    work = parent.stdout.readline().strip()
    # A warm server first imports TensorFlow (up to ~20 s on a busy 2-core machine).
    assert _wait_for(lambda: os.path.exists(report), 90), "the child never started"
    with open(report, encoding="utf-8") as f:
        child = json.load(f)
    return parent, work, child


@pytest.mark.parametrize(
    "how,folder,warm",
    [
        ("SIGKILL", "scratch", False),
        ("SIGKILL", "scratch", True),
        ("SIGKILL", "plain_temp", False),
        ("SIGINT", "scratch", True),
    ],
)
def test_a_killed_parent_takes_its_child_grandchild_and_temp_dirs_with_it(
    tmp_path, how, folder, warm
):
    parent, work, child = _start_parent(tmp_path, folder, warm)
    assert os.path.isdir(work) and os.path.isdir(child["temp_dir"])
    # The child's temp files live in a folder of its own, inside the parent's work folder.
    assert child["temp_dir"].startswith(os.path.join(work, "sleeper_tmp_"))

    parent.send_signal(getattr(signal, how))
    parent.wait(timeout=30)

    assert _wait_for(lambda: not _alive(child["pid"]), 5), "the child outlived its parent"
    assert _wait_for(lambda: not _alive(child["grandchild_pid"]), 5), "the grandchild lived on"
    assert _wait_for(lambda: not os.path.exists(work), 5), f"{work} was left behind"
    assert not os.path.exists(child["temp_dir"])


def test_a_timed_out_child_is_killed_with_its_group_and_its_temp_dir_removed(tmp_path):
    report = str(tmp_path / "child.json")
    with scratch_directory("test_timeout_") as work:
        outcome = run_isolated(
            f"{_CHILDREN}:sleep_with_temp_dir", {"report_path": report}, work, timeout_s=3
        )
        assert outcome.timed_out
        with open(report, encoding="utf-8") as f:
            child = json.load(f)
        assert not os.path.exists(child["tmpdir_env"])
        assert _wait_for(lambda: not _alive(child["grandchild_pid"]), 5)
        assert os.listdir(work) == ["child_request.json"]  # No temp folder, no result.
    assert not os.path.exists(work)


def test_a_finished_child_leaves_only_its_request_and_result(tmp_path):
    outcome = run_isolated(f"{_CHILDREN}:temp_dir_of_child", {}, str(tmp_path), name="probe")
    assert outcome.ok, outcome.failure("the probe")
    assert outcome.result.startswith(os.path.join(str(tmp_path), "probe_tmp_"))
    assert not os.path.exists(outcome.result)
    assert sorted(os.listdir(tmp_path)) == ["probe_request.json", "probe_result.json"]
