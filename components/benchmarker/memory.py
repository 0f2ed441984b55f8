"""How much memory a variant will need, how much there is, and the guard between them.

The benchmark process holds variants while it scores and times them. Letting it grow
until the kernel's OOM killer ends the whole run (and on Kubernetes, the pod) loses
every variant's figures for the sake of one. So before a variant loads:

    need = estimate_load_bytes(backend, size_bytes)   # the runtime's factor x artifact
    room = available_bytes(budget, held, group_start) # MemAvailable, cgroup, budget,
                                                      # and the group's room by estimates
    need > room  -> the variant is a failed row saying so, and the run goes on

The harness also uses `room` to decide how many variants it keeps loaded at once
(harness.py: variants are timed in groups that fit, and released between groups).
"""

from __future__ import annotations

from components.common.sizes import format_bytes

MiB = 1 << 20
# Beyond every variant's own estimate: interpreter state, one batch of inputs.
FIXED_OVERHEAD_BYTES = 32 * MiB
# Left to everything else on the machine (the pipeline process, the page cache).
RESERVE_BYTES = 512 * MiB

_CGROUP_LIMITS = (
    # (limit file, usage file): cgroup v2, then v1.
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)
# cgroup v1 writes "no limit" as a page-rounded 2**63 - 1.
_NO_LIMIT = 1 << 62


def meminfo_available_bytes() -> int | None:
    """The kernel's MemAvailable: what can be allocated without swapping."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cgroup_room_bytes() -> int | None:
    """The container's limit less its usage (a Kubernetes memory limit), when there is one."""
    for limit_path, usage_path in _CGROUP_LIMITS:
        try:
            with open(limit_path, encoding="ascii") as f:
                limit_text = f.read().strip()
            with open(usage_path, encoding="ascii") as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit_text == "max" or int(limit_text) >= _NO_LIMIT:
            return None
        return max(0, int(limit_text) - usage)
    return None


def available_bytes(
    budget_bytes: int | None = None,
    held_bytes: int = 0,
    group_start_bytes: int | None = None,
) -> tuple[int, str]:
    """Bytes a variant about to load may take, and where the bound comes from.

    The smallest of: MemAvailable and the cgroup's room (live, less a reserve), and
    `budget_bytes` (the variants' share of the benchmark's `memory_budget_bytes`:
    what the loaded variants may hold at once, by their estimates) less `held_bytes`,
    the estimates of the variants loaded already; and `group_start_bytes` (the live
    room when the group began loading) less `held_bytes`.

    The last bound is what keeps a group within memory. The live room alone is not: a
    variant just loaded holds far less than it will once it runs (XLA compiles per
    batch size, runtimes allocate their arenas at the first call), so each of BERT-base's
    13 variants passed the live check at its load, and the group then grew past 18 GiB
    of the machine's 24 in the accuracy pass.
    """
    bounds: list[tuple[int, str]] = []
    machine = meminfo_available_bytes()
    if machine is not None:
        bounds.append((machine - RESERVE_BYTES, "the machine's available memory"))
    container = cgroup_room_bytes()
    if container is not None:
        bounds.append((container - RESERVE_BYTES, "the container's memory limit"))
    if budget_bytes is not None:
        bounds.append(
            (
                budget_bytes - held_bytes,
                "memory_budget_bytes, less what the benchmark process holds beside its variants",
            )
        )
    if group_start_bytes is not None:
        bounds.append(
            (
                group_start_bytes - held_bytes,
                "the memory available when this group began loading, less the loaded "
                "variants' estimates",
            )
        )
    if not bounds:
        return 1 << 62, "no known bound"
    room, source = min(bounds)
    return max(0, room), source


def estimate_load_bytes(memory_per_artifact_byte: float, size_bytes: int) -> int:
    """What loading and running a variant of `size_bytes` will hold, by its runtime's factor."""
    return int(memory_per_artifact_byte * size_bytes) + FIXED_OVERHEAD_BYTES


def refusal(name: str, need: int, size_bytes: int, factor: float, room: int, source: str) -> str:
    """The failed-variant reason when a variant would not fit."""
    return (
        f"not loaded: {name} would need about {format_bytes(need)} ({factor:g} x its "
        f"{format_bytes(size_bytes)} artifact, its runtime's estimate), but only "
        f"{format_bytes(room)} is left within {source}. Benchmark on a node with more "
        f"memory, raise memory_budget_bytes, or leave this kind out with --variants."
    )
