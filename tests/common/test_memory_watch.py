"""A transform's peak memory: the pipeline process's growth and its children's peaks."""

from __future__ import annotations

import time

from components.common.memory_watch import note_child_peak, watch_peak_rss


def test_a_short_lived_allocation_is_caught_by_the_sampler():
    with watch_peak_rss() as peak:
        block = bytearray(200 << 20)  # Touched pages: 200 MiB resident.
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(0.1)  # Long enough for several 20 ms samples.
        del block
    assert peak.process_growth_bytes >= 150 << 20


def test_children_report_to_every_open_watcher_and_only_to_those():
    with watch_peak_rss() as outer:
        with watch_peak_rss() as inner:
            note_child_peak(300 << 20)
        note_child_peak(100 << 20)
    note_child_peak(900 << 20)  # No watcher open: recorded nowhere.
    assert inner.child_peak_bytes == 300 << 20
    assert outer.child_peak_bytes == 300 << 20
    assert outer.properties()["child_process_peak_rss_bytes"] == 300 << 20


def test_a_process_tree_s_memory_counts_its_children():
    # The Benchmarker takes what the run already holds (this process and its children,
    # the warm server among them) off the memory budget before its harness starts.
    import os
    import subprocess
    import sys

    from components.common.memory_watch import process_rss_bytes, tree_pss_bytes, tree_rss_bytes

    alone, processes_alone = tree_pss_bytes(os.getpid())
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nx = bytearray(200 << 20)\n"
            "for i in range(0, len(x), 4096): x[i] = 1\ntime.sleep(60)",
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while (process_rss_bytes(child.pid) or 0) < 200 << 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        held, processes = tree_pss_bytes(os.getpid())
        assert processes >= processes_alone + 1
        assert held - alone > 180 << 20, (alone, held)
        assert tree_rss_bytes(os.getpid()) >= held  # RSS counts shared pages per process.
    finally:
        child.kill()
        child.wait()
