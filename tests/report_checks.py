"""Checks on a Benchmarker report that whole-pipeline tests share."""

from __future__ import annotations


def assert_blessed_unless_starved(report: dict) -> None:
    """A variant is blessed, unless other load starved every timing of the faithful ones.

    On a starved machine (CI shares its cores; the hypervisor stole 30-43% of the CPU in
    one run) the Benchmarker must refuse to bless rather than compare corrupted figures.
    Then the frozen graph, which is faithful by construction, must be kept out only for
    its timing, and the report must say why.
    """
    selection = report["selection"]
    if selection["blessed"]:
        return
    [frozen] = [v for v in selection["verdicts"] if v["name"] == "frozen_graph"]
    timing = ("latency timing contaminated", "unstable latency", "throughput")
    assert frozen["reasons"] and all(r.startswith(timing) for r in frozen["reasons"]), frozen
    assert any("contaminated" in r for r in frozen["reasons"]), frozen
    assert any("starved" in w for w in report["warnings"]), report["warnings"]
