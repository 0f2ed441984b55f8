"""The shared report check lets only a starved machine off a blessing."""

from __future__ import annotations

import pytest

from tests.report_checks import assert_blessed_unless_starved

# As the CI run of 2026-12-03 wrote them, with 43% of the CPU stolen by the hypervisor.
STARVED = [
    "unstable latency: CV of recent window medians unknown (too few windows) after 0 windows "
    "(time_budget)",
    "latency timing contaminated: 7 window(s) were starved of CPU (worst: the hypervisor stole "
    "43% of the CPU time) and no settled figure was left within the time budget",
]
WARNING = "the latency of 6 variant(s) (...) was timed while other load starved the benchmark"


def _report(reasons, warnings=(WARNING,), blessed=False):
    verdicts = [{"name": "frozen_graph", "eligible": False, "reasons": list(reasons)}]
    return {"selection": {"blessed": blessed, "verdicts": verdicts}, "warnings": list(warnings)}


def test_a_blessing_or_a_starved_machine_passes():
    assert_blessed_unless_starved(_report([], blessed=True))
    assert_blessed_unless_starved(_report(STARVED))


@pytest.mark.parametrize(
    "report",
    [
        _report(["disagrees with baseline: agreement 0.5 < 0.970", *STARVED]),
        _report(STARVED[:1]),  # Unstable without any starved window: not an excuse.
        _report(STARVED, warnings=()),
    ],
)
def test_anything_else_fails(report):
    with pytest.raises(AssertionError):
        assert_blessed_unless_starved(report)
