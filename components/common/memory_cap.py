"""A memory cap on an isolated child: past it, the child ends with a reason, not an OOM kill.

A transform's child can need many times its input. TF's TFLite converter took
11.5-13.9 GiB for one conversion of a 440 MB BERT-base graph. Left alone, such a child
grows until the kernel's OOM killer ends it, a neighbour, or on Kubernetes the pod and
with it the whole run. With a memory budget (`run --memory-budget 10Gi`, or
PipelineSettings.memory_budget_bytes) every child a producer starts gets a cap:

    cap = the budget (or the caller's own cap) - what the caller holds when it starts it

So a caller and its child stay within the budget together. A nested child (a converter
that a producer's child starts) gets its parent's cap less the parent's use. The parent
samples the child's resident memory every 50 ms (ChildWatch); past the cap it kills the
child's process group, and run_isolated reports MemoryBudgetExceeded with a message
naming the cap and the fix. The producer records a failed variant with that reason, and
the pipeline goes on.

Resident memory counts the pages a forked child shares with the warm server (the
TensorFlow import, about 0.5 GiB), so the cap errs on the safe side.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

# A capped child's cap, in bytes; inherited by what it starts (cap_for_child).
CAP_ENV = "INFERENCE_OPTIMIZER_MEMORY_CAP_BYTES"
_SAMPLE_S = 0.05


def cap_for_child(budget_bytes: int | None) -> int | None:
    """The cap for a child started now: the budget, or this process's own cap, whichever is
    smaller, less this process's resident memory; None when neither is set."""
    from components.common.memory_watch import rss_bytes

    bounds = [int(budget_bytes)] if budget_bytes else []
    own = os.environ.get(CAP_ENV)
    if own:
        bounds.append(int(own))
    if not bounds:
        return None
    return max(0, min(bounds) - rss_bytes())


def exceeded_message(what: str, resident_bytes: int, cap_bytes: int, start_bytes: int = 0) -> str:
    from components.common.sizes import format_bytes

    reached = f"reached {format_bytes(resident_bytes)} of resident memory"
    if start_bytes:
        reached = (
            f"grew to {format_bytes(resident_bytes)} of resident memory, "
            f"{format_bytes(resident_bytes - start_bytes)} beyond the "
            f"{format_bytes(start_bytes)} it started with"
        )
    return (
        f"{what} {reached}, past its cap of {format_bytes(cap_bytes)} (the memory budget "
        "less what the processes that started it held), and was stopped. Raise "
        "--memory-budget (memory_budget_bytes), run on a node with more memory, or leave "
        "this kind out with --variants."
    )


class ChildWatch:
    """Watches one child's resident memory from the parent; kills it past the cap.

    From the parent, not a thread in the child: the allocation that crosses the cap is
    usually deep in one native call that holds the GIL (the MLIR converter, a numpy
    copy), where no Python thread of the child's would run until it returned. The
    parent is waiting for the child (the GIL released), so its thread always runs.
    """

    def __init__(self, cap_bytes: int, beyond_start: bool = False) -> None:
        """`beyond_start`: cap what the child adds to the resident memory of its first
        sample (a forked child's is the warm server's image, which the caller's budget
        already counted), not its whole resident memory."""
        self.cap_bytes = cap_bytes
        self.beyond_start = beyond_start
        self.start_bytes = 0  # With `beyond_start`: the child's RSS at its first sample.
        self.exceeded_bytes = 0  # The child's RSS when it was stopped; 0: it never was.
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, pid: int) -> None:
        """Starts watching `pid`, the leader of the child's own process group."""
        self._thread = threading.Thread(
            target=self._sample, args=(pid,), name="memory-cap", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self, pid: int) -> None:
        from components.common.memory_watch import process_rss_bytes

        while not self._stop.wait(_SAMPLE_S):
            resident = process_rss_bytes(pid)
            if resident is None:
                return  # It has ended.
            if self.beyond_start and not self.start_bytes:
                self.start_bytes = resident
            if resident - self.start_bytes > self.cap_bytes:
                self.exceeded_bytes = resident
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # The child and what it started.
                return
