"""The peak memory of one transform, for its artifact's record.

A transform runs partly in the pipeline's process (graph rewriting, calibration reads)
and partly in isolated children (converters, tfcompile; see isolation.py). Neither the
process's `ru_maxrss` (monotonic over the whole pipeline) nor the children's
`RUSAGE_CHILDREN` (the largest child ever) can be split per transform, so:

    with watch_peak_rss() as peak:
        produce the variant
    peak.process_growth_bytes  # the highest RSS seen above the start, sampled every 20 ms
    peak.child_peak_bytes      # the largest peak RSS any child of this block reported

The names say what they are: the first is the growth of a shared process, the
second a whole process's own peak (including the TF runtime it imported or shared).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import os
import threading
from collections.abc import Iterator

_SAMPLE_S = 0.02
# Watchers open now; isolation.py reports each child's peak to all of them.
_OPEN: list[PeakRss] = []
_LOCK = threading.Lock()
# The largest peak any child of this process reported: an isolated child that ran
# children of its own reports it as its peak too (isolation.child_main).
_LARGEST_CHILD_PEAK = [0]


@dataclasses.dataclass
class PeakRss:
    start_bytes: int = 0
    highest_bytes: int = 0
    child_peak_bytes: int = 0

    @property
    def process_growth_bytes(self) -> int:
        return max(0, self.highest_bytes - self.start_bytes)

    def properties(self) -> dict[str, int]:
        """Custom properties for the produced artifact (0: no child ran)."""
        return {
            "pipeline_process_peak_rss_growth_bytes": self.process_growth_bytes,
            "child_process_peak_rss_bytes": self.child_peak_bytes,
        }


def rss_bytes() -> int:
    """This process's resident memory (0 where /proc cannot tell)."""
    return process_rss_bytes("self") or 0


def process_rss_bytes(pid: int | str) -> int | None:
    """A process's resident memory; None when it is gone (or /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


# ---- A process tree's memory: what a run holds across its forked children.


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                # The command name may hold spaces and parentheses; the ppid follows the last ")".
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    return children


def _tree(root: int) -> list[int]:
    children = _children()
    pending, tree = [root], []
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def _read_first_int(path: str, prefix: str = "", field: int = 0) -> int:
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith(prefix):
                    return int(line.split()[field])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_rss_bytes(root: int) -> int:
    """The summed RSS of `root` and its descendants (cheap: statm): an upper bound, as
    pages a forked child shares with its server count once per process."""
    page = os.sysconf("SC_PAGE_SIZE")
    return sum(_read_first_int(f"/proc/{pid}/statm", field=1) * page for pid in _tree(root))


def tree_pss_bytes(root: int) -> tuple[int, int]:
    """The summed PSS of `root` and its descendants (shared pages split between their
    sharers: what the run really holds), and how many processes there were."""
    tree = _tree(root)
    pss = [_read_first_int(f"/proc/{pid}/smaps_rollup", "Pss:", 1) * 1024 for pid in tree]
    return sum(pss), len(tree)


def largest_child_peak_bytes() -> int:
    return _LARGEST_CHILD_PEAK[0]


def release_memory() -> None:
    """Gives freed memory back to the system: a full collection, then glibc's malloc_trim.

    A loaded SavedModel is a web of reference cycles, so its tensors wait for the
    cyclic collector, and glibc keeps freed heap pages for reuse. In the pipeline's
    process, after the Freezer froze a 440 MB BERT-base, RSS went 4.84 GiB -> 3.35 GiB
    with gc.collect() and -> 0.65 GiB with malloc_trim(0) (benchmarks/big_models.py).
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def note_child_peak(peak_bytes: int) -> None:
    """Called by isolation.py when a child reports its peak RSS."""
    with _LOCK:
        _LARGEST_CHILD_PEAK[0] = max(_LARGEST_CHILD_PEAK[0], int(peak_bytes))
        for watcher in _OPEN:
            watcher.child_peak_bytes = max(watcher.child_peak_bytes, int(peak_bytes))


@contextlib.contextmanager
def watch_peak_rss() -> Iterator[PeakRss]:
    peak = PeakRss(start_bytes=rss_bytes())
    peak.highest_bytes = peak.start_bytes
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(_SAMPLE_S):
            peak.highest_bytes = max(peak.highest_bytes, rss_bytes())

    thread = threading.Thread(target=sample, name="peak-rss", daemon=True)
    with _LOCK:
        _OPEN.append(peak)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        peak.highest_bytes = max(peak.highest_bytes, rss_bytes())
        with _LOCK:
            _OPEN.remove(peak)
