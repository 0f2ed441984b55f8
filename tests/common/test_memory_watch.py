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
