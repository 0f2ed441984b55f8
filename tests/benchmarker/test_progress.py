"""Progress events cross from the benchmark child to the parent's bar and log."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

from absl import logging as absl_logging

from components.benchmarker.progress import (
    ProgressDisplay,
    ProgressWriter,
    describe,
    follow_progress,
)


def test_events_written_by_another_process_are_shown_live_and_logged(tmp_path, caplog):
    path = str(tmp_path / "progress.jsonl")
    child = textwrap.dedent(
        f"""
        import time
        from components.benchmarker.progress import ProgressWriter
        writer = ProgressWriter({path!r})
        writer.plan(3)
        for name in ("baseline", "tflite_int8"):
            writer.step("loaded", name, "in 0.1s")
            time.sleep(0.3)
        writer.step("latency", "tflite_int8", "settled")
        """
    )
    stream = io.StringIO()
    display = ProgressDisplay(stream=stream, force_bar=True)
    # A local run's quiet mode (run_command.quiet_pipeline_logs) may have silenced absl
    # earlier in this process; the Kubeflow launcher sets INFO, as here.
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    with caplog.at_level("INFO"), follow_progress(path, display):
        subprocess.run([sys.executable, "-c", child], check=True, cwd=".")
    steps = [e for e in display.events if e["event"] == "step"]
    assert [(e["what"], e["variant"], e["done"], e["total"]) for e in steps] == [
        ("loaded", "baseline", 1, 3),
        ("loaded", "tflite_int8", 2, 3),
        ("latency", "tflite_int8", 3, 3),
    ]
    assert "latency: tflite_int8 settled" in stream.getvalue()  # The bar's last state.
    absl_logging.set_verbosity(verbosity)
    assert "[3/3] latency: tflite_int8 settled" in caplog.text


def test_without_a_terminal_a_plain_line_at_most_every_interval():
    stream = io.StringIO()
    now = [100.0]
    display = ProgressDisplay(stream=stream, line_interval_s=30.0, clock=lambda: now[0])

    def step(done: int, at: float) -> None:
        now[0] = at
        display.show(
            {"event": "step", "what": "loaded", "variant": f"v{done}", "done": done, "total": 4}
        )

    step(1, 110.0)  # The first step is shown at once.
    step(2, 120.0)  # Within 30 s of the last line: not shown.
    step(3, 190.0)
    display.close()
    assert stream.getvalue().splitlines() == [
        "  Benchmarker [1/4] loaded: v1 (10s in, about 30s left)",
        "  Benchmarker [3/4] loaded: v3 (1m30s in, about 30s left)",
    ]


def test_a_writer_never_counts_past_its_total_and_can_be_closed_early(tmp_path):
    writer = ProgressWriter(str(tmp_path / "p.jsonl"))
    writer.plan(5)
    writer.step("loaded", "a")
    writer.plan(0)  # The rest failed: the run is complete at 1 of 1.
    assert describe({"done": 1, "total": 1, "what": "accuracy", "detail": "of 2 variants"}) == (
        "[1/1] accuracy of 2 variants"
    )
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert lines[-1].startswith('{"event": "plan", "total": 1, "done": 1')


def test_without_a_path_the_writer_writes_nothing(tmp_path):
    writer = ProgressWriter("")
    writer.plan(2)
    writer.step("loaded", "a")
    assert list(tmp_path.iterdir()) == []
