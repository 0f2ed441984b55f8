"""Functions run_isolated runs in its child during tests/common/test_isolation.py."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time


def sleep_with_temp_dir(report_path: str, seconds: float = 120.0) -> str:
    """Makes a temp dir and a grandchild, reports their paths and PIDs, then sleeps."""
    own_temp = tempfile.mkdtemp(prefix="child_temp_")
    grandchild = subprocess.Popen(["sleep", str(seconds)])
    partial = report_path + ".tmp"
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(
            {
                "pid": os.getpid(),
                "grandchild_pid": grandchild.pid,
                "temp_dir": own_temp,
                "tmpdir_env": os.environ.get("TMPDIR", ""),
            },
            f,
        )
    os.replace(partial, report_path)
    time.sleep(seconds)
    return own_temp


def temp_dir_of_child() -> str:
    """The child's temp folder (its TMPDIR), for the parent to check it is gone."""
    return tempfile.gettempdir()


def what_the_child_had() -> dict:
    """Whether TensorFlow was imported before this function ran, and the child's setting."""
    import sys

    return {
        "tensorflow_preloaded": "tensorflow" in sys.modules,
        "pid": os.getpid(),
        "server_pid": os.getppid(),
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "cwd": os.getcwd(),
    }


def abort() -> None:
    """Dies as a converter does on an LLVM or XLA abort."""
    os.abort()


def asks_for_a_child_of_its_own(workdir: str) -> dict:
    """A child that isolates a step of its own, as a producer's child calls a converter."""
    from components.common.isolation import run_isolated

    nested = run_isolated(f"{__name__}:what_the_child_had", {}, workdir, name="nested")
    hungry = run_isolated(f"{__name__}:holds_memory", {"mebibytes": 400}, workdir, name="big")
    return {
        "server_pid": os.getppid(),
        "pid": os.getpid(),
        "nested": nested.result,
        "nested_peak_rss_bytes": hungry.peak_rss_bytes,
    }


def holds_memory(mebibytes: int, hold_s: float = 0.0) -> None:
    """Touches `mebibytes` of memory, as a converter holding a model does, for `hold_s`."""
    import time

    block = bytearray(mebibytes << 20)
    block[::4096] = b"x" * len(block[::4096])
    time.sleep(hold_s)


def resident_bytes() -> int:
    """This child's resident memory as it starts (a forked child shares the server's)."""
    from components.common.memory_watch import rss_bytes

    return rss_bytes()


def starts_a_hungry_child(workdir: str, mebibytes: int) -> dict:
    """A capped child that starts a child of its own, which holds `mebibytes`."""
    from components.common.isolation import run_isolated
    from components.common.memory_cap import CAP_ENV

    nested = run_isolated(
        f"{__name__}:holds_memory",
        {"mebibytes": mebibytes, "hold_s": 2.0},
        workdir,
        name="converter",
    )
    return {
        "own_cap": int(os.environ[CAP_ENV]),
        "nested_error": nested.error_type,
        "nested_message": nested.error_message,
    }
