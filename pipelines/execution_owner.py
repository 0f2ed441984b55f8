"""Which process runs an MLMD execution, and whether that process is still alive.

TFX marks an execution RUNNING when it starts and COMPLETE, FAILED or CANCELED when it
ends, but a process killed with SIGKILL (or a machine that lost power) ends nothing: its
execution stays RUNNING forever. The local runner therefore stamps each execution it
starts with the process that runs it (`owner_properties()`, recorded as `runner:*`
custom properties), and readers such as `inference-optimizer lineage` ask
`owner_status(...)` whether that process still exists:

    status = owner_status(properties_of(execution))   # ALIVE, DEAD or UNKNOWN
    if state == "RUNNING" and status == DEAD: shown as ABANDONED

A PID alone is not enough: PIDs are reused. The process's start time (field 22 of
`/proc/<pid>/stat`, in clock ticks since boot) and the boot id tell "the same process"
from "another process that now has this PID". Only the standard library is used, so
lineage reads this without TensorFlow or TFX.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

# Custom properties of an execution, written when it starts (pipelines/local_runner.py).
RUNNER_PROPERTY_PREFIX = "runner:"
PID_PROPERTY = RUNNER_PROPERTY_PREFIX + "pid"
HOST_PROPERTY = RUNNER_PROPERTY_PREFIX + "host"
PROCESS_START_PROPERTY = RUNNER_PROPERTY_PREFIX + "process_start_ticks"
BOOT_ID_PROPERTY = RUNNER_PROPERTY_PREFIX + "boot_id"
# Why an execution ended CANCELED (TFX's own state for "stopped on purpose").
CANCEL_REASON_PROPERTY = "reason"
REASON_INTERRUPTED = "interrupted"

ALIVE = "alive"
DEAD = "dead"
UNKNOWN = "unknown"  # Another host, or nothing recorded: cannot tell from here.
# What lineage shows for a RUNNING execution whose process is gone. It is not an MLMD
# state (MLMD still says RUNNING); it is this tool's reading of one.
ABANDONED = "ABANDONED"

_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def host_name() -> str:
    return socket.gethostname()


def boot_id() -> str:
    """This boot's random id (Linux); "" elsewhere. PIDs and start ticks restart at boot."""
    try:
        with open(_BOOT_ID_PATH, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def process_start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot; None if it does not exist.

    On systems without /proc, -1 for a process that exists (its start is unknown).
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return -1 if _pid_exists(pid) else None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19])  # Field 22 overall; fields[0] is field 3 (the state).


def owner_properties(pid: int | None = None) -> dict[str, Any]:
    """The `runner:*` custom properties that name this process (or `pid`) on this host."""
    pid = os.getpid() if pid is None else pid
    return {
        PID_PROPERTY: pid,
        HOST_PROPERTY: host_name(),
        PROCESS_START_PROPERTY: process_start_ticks(pid) or -1,
        BOOT_ID_PROPERTY: boot_id(),
    }


def owner_status(properties: Mapping[str, Any]) -> str:
    """ALIVE, DEAD or UNKNOWN for the process an execution's `runner:*` properties name."""
    pid = properties.get(PID_PROPERTY)
    host = properties.get(HOST_PROPERTY)
    if not isinstance(pid, int) or not host:
        return UNKNOWN
    if host != host_name():
        return UNKNOWN
    recorded_boot = properties.get(BOOT_ID_PROPERTY) or ""
    if recorded_boot and boot_id() and recorded_boot != boot_id():
        return DEAD  # The machine rebooted since: every process of then is gone.
    started = process_start_ticks(pid)
    if started is None:
        return DEAD
    recorded_start = properties.get(PROCESS_START_PROPERTY)
    if isinstance(recorded_start, int) and recorded_start >= 0 and started >= 0:
        return ALIVE if started == recorded_start else DEAD  # DEAD: the PID was reused.
    return ALIVE


def describe_owner(properties: Mapping[str, Any]) -> str:
    """`pid 4242 on host vm`, or "" when nothing was recorded."""
    pid, host = properties.get(PID_PROPERTY), properties.get(HOST_PROPERTY)
    return f"pid {pid} on host {host}" if pid is not None and host else ""


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # It exists, under another user.
    return True
