"""How a local run ends other than by success: an interrupt, or a full disk.

Standard library only (and the light errors module): the CLI imports this to word its
last line without loading TFX.
"""

from __future__ import annotations

import errno
import re

from components.common.errors import UserInputError

# Beam re-raises a DoFn's error as a new exception whose text is the old one's; the
# original stays reachable through __context__/__cause__, or at least its message.
# SQLite (MLMD's store) says "database or disk is full".
_NO_SPACE_TEXT = re.compile(r"\[Errno 28\]|No space left on device|ENOSPC|database or disk is full")
_PATH_IN_TEXT = (
    re.compile(r"No space left on device: '([^']+)'"),  # OSError's own str()
    re.compile(r"\(ENOSPC: no space left on device\) while writing (.+?)\. The component"),
)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a run; the message says what was recorded in MLMD.

    A KeyboardInterrupt, so that whatever catches Ctrl-C generically still does; the CLI
    prints the message and exits 130 (128 + SIGINT), as shells expect.
    """

    def __init__(self, message: str = "Interrupted.") -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else "Interrupted."


def interrupted_message(node_id: str | None, execution_id: int | None) -> str:
    """The one line a user sees after Ctrl-C."""
    if node_id and execution_id is not None:
        return (
            f"Interrupted: the {node_id} execution ({execution_id}) was marked CANCELED in "
            "MLMD and published nothing; rerun the same command to resume from cache."
        )
    return (
        "Interrupted between components: no execution was left half-done in MLMD; rerun "
        "the same command to resume from cache."
    )


def find_interrupt(error: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt behind `error` (Beam turns one into a RuntimeError)."""
    for current in _chain(error):
        if isinstance(current, KeyboardInterrupt):
            return current
    if str(error).startswith("KeyboardInterrupt"):
        return KeyboardInterrupt()
    return None


def find_disk_full(error: BaseException) -> OSError | None:
    """The ENOSPC OSError behind `error`, or one rebuilt from its text (a child's error)."""
    for current in _chain(error):
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return current
    for current in _chain(error):
        text = str(current)
        if _NO_SPACE_TEXT.search(text):
            matches = (pattern.search(text) for pattern in _PATH_IN_TEXT)
            path = next((m.group(1) for m in matches if m), None)
            return OSError(errno.ENOSPC, "No space left on device", path)
    return None


class DiskFull(UserInputError):
    """The disk filled up during a run; the message names the path and the way out."""


def disk_full_message(
    error: OSError, output_dir: str | None = None, writing: str | None = None
) -> str:
    """What to tell a user whose disk filled up: the path, that nothing was published, the fix.

    `writing` is the folder being written when the error does not name a file itself.
    """
    path = error.filename or writing
    where = f" while writing {path}" if path else ""
    kept = (
        f" Earlier results in {output_dir} are intact (`inference-optimizer lineage runs`)."
        if output_dir
        else ""
    )
    return (
        f"The disk is full (ENOSPC: no space left on device){where}. The component that was "
        "writing was marked FAILED and published nothing." + kept + " Free some space (or pass "
        "--output on a disk with room) and rerun the same command."
    )


def _chain(error: BaseException):
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
