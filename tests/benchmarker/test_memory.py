"""The memory guard's bounds: the machine, the container, the budget and the group's room."""

from __future__ import annotations

from components.benchmarker import memory

GiB = 1 << 30


def _machine(monkeypatch, available: int | None, container: int | None = None) -> None:
    monkeypatch.setattr(memory, "meminfo_available_bytes", lambda: available)
    monkeypatch.setattr(memory, "cgroup_room_bytes", lambda: container)


def test_a_group_is_bounded_by_its_starting_room_less_the_estimates_it_holds(monkeypatch):
    # Live memory still looks plentiful (the loaded variants have not run yet), but
    # their estimates already take 14 of the 20 GiB the group started with.
    _machine(monkeypatch, available=18 * GiB)
    room, source = memory.available_bytes(None, held_bytes=14 * GiB, group_start_bytes=20 * GiB)
    assert room == 6 * GiB
    assert "when this group began" in source


def test_the_tightest_bound_wins_and_names_itself(monkeypatch):
    _machine(monkeypatch, available=18 * GiB, container=4 * GiB)
    room, source = memory.available_bytes(8 * GiB, held_bytes=1 * GiB, group_start_bytes=20 * GiB)
    assert room == 4 * GiB - memory.RESERVE_BYTES
    assert source == "the container's memory limit"
    room, source = memory.available_bytes(2 * GiB, held_bytes=1 * GiB, group_start_bytes=20 * GiB)
    assert (room, source) == (
        1 * GiB,
        "memory_budget_bytes, less what the benchmark process holds beside its variants",
    )


def test_no_room_left_is_zero_not_negative(monkeypatch):
    _machine(monkeypatch, available=None)
    assert memory.available_bytes(None, held_bytes=9 * GiB, group_start_bytes=8 * GiB)[0] == 0
    assert memory.available_bytes()[1] == "no known bound"


def test_a_refusal_says_what_was_needed_what_was_left_and_what_to_do():
    reason = memory.refusal(
        "huge", 180 << 20, 10 << 20, 18.0, 100 << 20, "the container's memory limit"
    )
    assert "huge would need about 180.0 MiB" in reason
    assert "100.0 MiB" in reason and "the container's memory limit" in reason
    assert "--variants" in reason
