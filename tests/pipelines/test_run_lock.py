"""One run per output directory: a second is refused at once; a killed holder frees it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from pipelines.run_lock import OutputDirectoryBusy, hold_run_lock, lock_path, read_holder

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_HOLDER = """
import sys, time
from pipelines.run_lock import hold_run_lock
with hold_run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(300)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding tmp_path/out's run lock."""
    output = str(tmp_path / "out")
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, output], cwd=_REPOSITORY, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    yield output, process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_second_run_into_the_same_directory_is_refused_at_once_naming_the_holder(holder):
    output, process = holder
    started = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", "--output", output],
        cwd=_REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert second.returncode == 1
    assert f"process {process.pid} on host {socket.gethostname()}" in second.stderr
    assert output in second.stderr and "Traceback" not in second.stderr
    # Refused before any model was trained or TFX imported (those take 10 s or more).
    assert "Embedded default" not in second.stderr
    assert elapsed < 10, f"refusing took {elapsed:.1f}s"


def test_a_killed_holder_releases_the_lock_by_itself(holder):
    output, process = holder
    with pytest.raises(OutputDirectoryBusy, match=f"process {process.pid} "), hold_run_lock(output):
        pass
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    with hold_run_lock(output) as mine:
        assert mine["pid"] == os.getpid()
        assert read_holder(lock_path(output))["pid"] == os.getpid()
    assert read_holder(lock_path(output)) == {}  # Released: no stale holder to report.
