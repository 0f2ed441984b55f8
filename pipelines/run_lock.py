"""One `inference-optimizer run` at a time per output directory.

Two runs writing one MLMD file and one pipeline root would interleave their executions
and could take each other's half-written folders for cached results. The first run
holds an exclusive `fcntl.flock` on `DIR/.run.lock`; a second is refused at once, with
the holder's PID, host and start time, which the holder writes into the file.

    with hold_run_lock(output_dir):
        ...  # the whole run, from the embedded default's training to the table

flock belongs to the open file: the kernel releases it when the holder's process ends
in any way, SIGKILL included, so a crashed run never leaves a stale lock behind. The
file itself is kept (deleting a locked file lets a third process lock a new inode while
a second still waits on the old one). flock is advisory and per host: on a network file
system shared by several machines, use separate output directories.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator

from components.common.errors import UserInputError

LOCK_FILENAME = ".run.lock"


class OutputDirectoryBusy(UserInputError):
    """Another run holds this output directory."""


def lock_path(output_dir: str) -> str:
    return os.path.join(output_dir, LOCK_FILENAME)


@contextlib.contextmanager
def hold_run_lock(output_dir: str) -> Iterator[dict[str, object]]:
    """Holds `output_dir`'s run lock for the block; raises OutputDirectoryBusy if taken.

    Yields what it wrote in the lock file (pid, host, started, command).
    """
    os.makedirs(output_dir, exist_ok=True)
    path = lock_path(output_dir)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputDirectoryBusy(busy_message(output_dir, read_holder(path))) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(holder) + "\n").encode(), 0)
        try:
            yield holder
        finally:
            os.ftruncate(descriptor, 0)  # Before unlocking: the next holder writes its own.
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def read_holder(path: str) -> dict[str, object]:
    """What the holder wrote; {} if it has not written yet (it locks, then writes)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def busy_message(output_dir: str, holder: dict[str, object]) -> str:
    if holder:
        who = (
            f"process {holder.get('pid')} on host {holder.get('host')}, started "
            f"{holder.get('started')}"
        )
    else:
        who = "a process that has not written its details yet"
    return (
        f"Another `inference-optimizer run` is using the output directory {output_dir} "
        f"({who}; lock file {lock_path(output_dir)}). Wait for it to finish, stop it, or "
        "pass another --output. (A killed run releases the lock by itself.)"
    )
