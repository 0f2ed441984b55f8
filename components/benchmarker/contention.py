"""Did a timing window get the CPU it asked for? Per-window contention from the kernel.

A busy neighbour does not make a measurement noisy so much as wrong: XNNPACK's 2-thread
pool on a 2-core machine with one core taken runs 200x slower, and steadily so, so the
stability rule (window medians agree) calls it stable. The window's latencies alone
cannot tell. The kernel can:

* **other processes' CPU**: the machine's busy time over the window (`/proc/stat`) less
  this process's own CPU time. When they used more cores than the machine had to spare
  beyond the variant's threads, the variant was starved;
* **steal**: a hypervisor ran someone else on our virtual CPUs (`/proc/stat` steal);
* **throttling**: a CFS quota (a Kubernetes CPU limit) stopped the process's cgroup
  (`cpu.stat` throttled time, cgroup v1 or v2).

    monitor = ContentionMonitor(threads=2)
    before = monitor.sample()
    ... time a window ...
    verdict = monitor.judge(before, monitor.sample())
    verdict.contaminated, verdict.reason

`/proc/stat` counts in clock ticks (usually 10 ms), so windows shorter than
`MIN_JUDGED_S` are judged over a longer interval by the caller (stats.py judges such
windows by their whole round). Where a source is missing (no /proc, no cgroup file)
its signal reads as zero: no contention is claimed that was not seen.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

# Below this, /proc/stat's tick counts are too coarse to judge a window on its own.
MIN_JUDGED_S = 0.1
# Other processes may use this many cores beyond the machine's spare ones (daemons,
# the pipeline's own idle threads) before a window counts as starved.
OTHERS_TOLERANCE_CORES = 0.3
# Steal or throttling above this fraction of the window's wall time contaminates it.
STOLEN_FRACTION_LIMIT = 0.05

_CGROUP_CPU_STAT = (
    # (path, field, nanoseconds per unit)
    ("/sys/fs/cgroup/cpu.stat", "throttled_usec", 1_000),  # cgroup v2
    ("/sys/fs/cgroup/cpu/cpu.stat", "throttled_time", 1),  # cgroup v1 (ns)
    ("/sys/fs/cgroup/cpu,cpuacct/cpu.stat", "throttled_time", 1),
)


@dataclasses.dataclass(frozen=True)
class CpuSample:
    """Counters at one instant (seconds); the difference of two spans a window."""

    wall_s: float
    own_cpu_s: float
    machine_busy_s: float
    machine_steal_s: float
    throttled_s: float


@dataclasses.dataclass(frozen=True)
class WindowContention:
    """What the CPU did during one window, and whether the window is to be trusted."""

    wall_s: float
    own_cores: float  # This process's CPU time over wall time (all its threads).
    others_cores: float  # Other processes' average core use over the window.
    steal_fraction: float
    throttled_fraction: float
    contaminated: bool
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            key: round(value, 4) if isinstance(value, float) else value
            for key, value in dataclasses.asdict(self).items()
        }


def _read_proc_stat() -> tuple[float, float]:
    """(busy, steal) seconds of the whole machine since boot; (0, 0) without /proc."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return 0.0, 0.0
    # cpu user nice system idle iowait irq softirq steal [guest guest_nice]
    ticks = [int(value) for value in fields[1:9]]
    ticks += [0] * (8 - len(ticks))
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq) / hz, steal / hz


def _read_throttled_s() -> float:
    for path, field, ns_per_unit in _CGROUP_CPU_STAT:
        try:
            with open(path, encoding="ascii") as f:
                for line in f:
                    name, _, value = line.partition(" ")
                    if name == field:
                        return int(value) * ns_per_unit / 1e9
        except (OSError, ValueError):
            continue
    return 0.0


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask, e.g. a cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ContentionMonitor:
    """Samples the counters around windows and judges them for a variant's thread count."""

    def __init__(self, threads: int, cores: int | None = None) -> None:
        self.cores = cores or cpu_count()
        # A runtime cannot use more cores than the machine has, whatever it is told.
        self.threads = max(1, min(threads, self.cores))

    def sample(self) -> CpuSample:
        busy, steal = _read_proc_stat()
        return CpuSample(
            wall_s=time.perf_counter(),
            own_cpu_s=time.process_time(),
            machine_busy_s=busy,
            machine_steal_s=steal,
            throttled_s=_read_throttled_s(),
        )

    def judge(self, before: CpuSample, after: CpuSample) -> WindowContention:
        wall = max(after.wall_s - before.wall_s, 1e-9)
        own = max(0.0, after.own_cpu_s - before.own_cpu_s)
        busy = max(0.0, after.machine_busy_s - before.machine_busy_s)
        others_cores = max(0.0, busy - own) / wall
        steal = max(0.0, after.machine_steal_s - before.machine_steal_s) / wall / self.cores
        throttled = max(0.0, after.throttled_s - before.throttled_s) / wall
        spare_cores = self.cores - self.threads
        reasons = []
        if others_cores > spare_cores + OTHERS_TOLERANCE_CORES:
            reasons.append(
                f"other processes used {others_cores:.2f} of {self.cores} cores while the "
                f"variant ran on {self.threads} thread(s)"
            )
        if steal > STOLEN_FRACTION_LIMIT:
            reasons.append(f"the hypervisor stole {steal:.0%} of the CPU time")
        if throttled > STOLEN_FRACTION_LIMIT:
            reasons.append(f"the CPU quota throttled the process for {throttled:.0%} of it")
        return WindowContention(
            wall_s=wall,
            own_cores=own / wall,
            others_cores=others_cores,
            steal_fraction=steal,
            throttled_fraction=throttled,
            contaminated=bool(reasons),
            reason="; ".join(reasons),
        )


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages, for the report's context."""
    try:
        return os.getloadavg()
    except OSError:
        return None
