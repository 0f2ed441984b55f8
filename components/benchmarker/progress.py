"""The Benchmarker's progress: which variant and scenario, how many done, elapsed, ETA.

The benchmark runs in a child process (harness.py), so progress crosses a process
boundary as a file of JSON lines, one event per step:

    child:   writer = ProgressWriter(path); writer.plan(total=14); writer.step("loaded", "x")
    parent:  with follow_progress(path, ProgressDisplay()): run the child

A step is one variant loaded, one group's accuracy pass, or one variant settled in one
timing scenario (latency, throughput at batch b). The parent shows them on a tqdm bar
when stderr is a terminal (else a plain line at most every 30 s), and logs every event
through Python logging either way, so Kubeflow pod logs carry the same lines (absl
logging, as TFX's executors use).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

# absl's logger, as TFX's own executors use: the Kubeflow launcher sets it to INFO (the
# pod log), while a local run's quiet mode silences it and shows the bar instead.
from absl import logging as absl_logging

_POLL_S = 0.2


class ProgressWriter:
    """Appends events to a JSON-lines file; a no-op without a path."""

    def __init__(self, path: str | None, resume_at: tuple[int, int] | None = None) -> None:
        """`resume_at` (done, total): go on from where another process's writer stopped,
        appending to its file (the Benchmarker's later timing groups, harness.py)."""
        self._path = path or None
        self._done, self._total = resume_at or (0, 0)
        if self._path and resume_at is None:
            open(self._path, "w", encoding="utf-8").close()

    def position(self) -> tuple[int, int]:
        """(done, total): what a writer in the next process resumes at."""
        return self._done, self._total

    def plan(self, total: int) -> None:
        """Sets (or corrects) how many steps the run will take."""
        self._total = max(total, self._done)
        self._write({"event": "plan", "total": self._total, "done": self._done})

    def add(self, steps: int) -> None:
        self.plan(self._total + steps)

    def step(self, what: str, variant: str = "", detail: str = "") -> None:
        self._done += 1
        self._total = max(self._total, self._done)
        self._write(
            {
                "event": "step",
                "what": what,
                "variant": variant,
                "detail": detail,
                "done": self._done,
                "total": self._total,
            }
        )

    def _write(self, event: dict[str, Any]) -> None:
        if not self._path:
            return
        event["time"] = time.time()
        with open(self._path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")


def describe(event: dict[str, Any]) -> str:
    """One line for the log: `[5/14] latency: tflite_int8 settled`."""
    parts = [event.get("what", "")]
    if event.get("variant"):
        parts.append(event["variant"])
    text = ": ".join(p for p in parts if p)
    if event.get("detail"):
        text += f" {event['detail']}"
    return f"[{event.get('done', 0)}/{event.get('total', 0)}] {text}"


class ProgressDisplay:
    """Shows events on a tqdm bar on a terminal, and logs each one.

    Without a terminal (a CI log, output piped to a file) there is no bar, and a plain
    line is written instead, at most one per `line_interval_s`: on a BERT-sized model
    the Benchmarker runs for 15 minutes, and a log that stays silent that long looks
    hung.
    """

    def __init__(
        self,
        stream: Any = None,
        force_bar: bool | None = None,
        line_interval_s: float = 30.0,
        clock: Any = time.monotonic,
    ) -> None:
        self._stream = stream or sys.stderr
        self._line_interval_s = line_interval_s
        self._clock = clock
        self._started = clock()
        self._last_line: float | None = None
        interactive = force_bar if force_bar is not None else _is_terminal(self._stream)
        self._bar = None
        if interactive:
            from tqdm import tqdm

            self._bar = tqdm(
                total=0,
                file=self._stream,
                desc="  Benchmarker",
                unit="step",
                leave=False,
                bar_format="{desc}: {n}/{total} [{elapsed}<{remaining}] {postfix}",
            )
        self.events: list[dict[str, Any]] = []

    def show(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event.get("event") == "step":
            absl_logging.info("Benchmarker %s", describe(event))
        if self._bar is None:
            self._plain_line(event)
            return
        self._bar.total = event.get("total", self._bar.total)
        self._bar.n = event.get("done", self._bar.n)
        if event.get("event") == "step":
            self._bar.set_postfix_str(describe(event).split("] ", 1)[-1], refresh=False)
        self._bar.refresh()

    def _plain_line(self, event: dict[str, Any]) -> None:
        now = self._clock()
        if event.get("event") != "step":
            return
        if self._last_line is not None and now - self._last_line < self._line_interval_s:
            return
        self._last_line = now
        elapsed = now - self._started
        done, total = event.get("done", 0), event.get("total", 0)
        left = f", about {_minutes(elapsed / done * (total - done))} left" if done else ""
        self._stream.write(f"  Benchmarker {describe(event)} ({_minutes(elapsed)} in{left})\n")
        self._stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _minutes(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def follow_progress(path: str, display: ProgressDisplay) -> Iterator[None]:
    """Shows the events written to `path` while the body runs, and the last ones after."""
    stop = threading.Event()
    offset = [0]

    def drain() -> None:
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            f.seek(offset[0])
            while True:
                line = f.readline()
                if not line.endswith("\n"):
                    break  # Half a line: read it whole next time.
                offset[0] = f.tell()
                try:
                    display.show(json.loads(line))
                except ValueError:
                    continue

    def follow() -> None:
        while not stop.wait(_POLL_S):
            drain()

    thread = threading.Thread(target=follow, name="benchmark-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        drain()
        display.close()
