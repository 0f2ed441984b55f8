"""The CPU that AOT machine code is compiled for, and checking a machine can run it.

AOT code compiled for this machine's AVX-512 dies with SIGILL on a machine without it,
and a pipeline may benchmark on another node than it compiled on. So the target is
explicit: `host` (this machine's x86-64 level plus its useful extensions), `generic`
(baseline x86-64, runs anywhere), or a level `x86-64-v2|v3|v4`. The cpuinfo flags the
code needs are recorded, and `missing_cpu_flags` tells a loader what this machine lacks.

    >>> target = resolve_cpu_target("host")
    >>> target.llvm_cpu, target.llvm_features, target.required_cpu_flags
    ('x86-64-v4', '+avx512vnni,+avx512bf16', ('avx', 'avx2', ...))
"""

from __future__ import annotations

import dataclasses
import platform

from components.common.cpu_facts import host_cpu
from components.common.errors import UserInputError

TARGET_TRIPLE = "x86_64-pc-linux"

# The x86-64 micro-architecture levels (as gcc, glibc and LLVM define them), spelled as
# /proc/cpuinfo flags. `pni` is SSE3 and `abm` carries LZCNT in cpuinfo's naming.
_LEVEL_FLAGS: dict[str, tuple[str, ...]] = {
    "x86-64": (),
    "x86-64-v2": ("cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"),
    "x86-64-v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"),
    "x86-64-v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
}
_LEVELS = tuple(_LEVEL_FLAGS)

# Extensions beyond the level that XLA's CPU backend can use (int8 dot products, bf16),
# as (cpuinfo flag, LLVM feature, level they need).
_EXTRA_FEATURES: tuple[tuple[str, str, str], ...] = (
    ("avx512_vnni", "+avx512vnni", "x86-64-v4"),
    ("avx512_bf16", "+avx512bf16", "x86-64-v4"),
    ("avx_vnni", "+avxvnni", "x86-64-v3"),
)

TARGET_CHOICES = ("host", "generic", "x86-64-v2", "x86-64-v3", "x86-64-v4")


@dataclasses.dataclass(frozen=True)
class CpuTarget:
    """What LLVM compiles the model for and what gcc compiles the XLA runtime for."""

    name: str
    triple: str
    llvm_cpu: str
    llvm_features: str
    gcc_flags: tuple[str, ...]
    required_cpu_flags: tuple[str, ...]


def host_cpu_flags() -> frozenset[str]:
    """This machine's cpuinfo flags (empty when /proc/cpuinfo is not there)."""
    return host_cpu().flags


def _required_flags(level: str) -> tuple[str, ...]:
    flags: list[str] = []
    for name in _LEVELS[: _LEVELS.index(level) + 1]:
        flags.extend(_LEVEL_FLAGS[name])
    return tuple(flags)


def _host_level(flags: frozenset[str]) -> str:
    level = "x86-64"
    for name in _LEVELS[1:]:
        if not set(_LEVEL_FLAGS[name]) <= flags:
            break
        level = name
    return level


def _gcc_flags(level: str) -> tuple[str, ...]:
    """gcc flags for the XLA runtime's Eigen kernels at a level (x86-64 is the default)."""
    if level == "x86-64":
        return ()
    if level == "x86-64-v4":
        # TF's spatial-convolution packers support Eigen's nr=4 GEMM blocking only; Eigen's
        # AVX-512 GEMM kernels switch to nr=8 and the runtime no longer compiles (TF's own
        # build turns them off the same way).
        return (f"-march={level}", "-DEIGEN_USE_AVX512_GEMM_KERNELS=0")
    return (f"-march={level}",)


def _level_target(name: str, level: str, extras: tuple[tuple[str, str], ...] = ()) -> CpuTarget:
    return CpuTarget(
        name=name,
        triple=TARGET_TRIPLE,
        llvm_cpu=level,
        llvm_features=",".join(feature for _, feature in extras),
        gcc_flags=_gcc_flags(level),
        required_cpu_flags=_required_flags(level) + tuple(flag for flag, _ in extras),
    )


def resolve_cpu_target(target_cpu: str = "host") -> CpuTarget:
    """Turns a target name (one of TARGET_CHOICES) into LLVM and gcc settings.

    Raises UserInputError for an unknown name, or for `host` on a non-x86-64 machine.
    """
    if target_cpu not in TARGET_CHOICES:
        raise UserInputError(
            f"Unknown AOT target_cpu {target_cpu!r}. Use one of {', '.join(TARGET_CHOICES)}: "
            f"'host' for the fastest code on this machine, 'generic' for code that runs "
            f"on any x86-64 machine."
        )
    if target_cpu == "generic":
        return _level_target("generic", "x86-64")
    if target_cpu != "host":
        return _level_target(target_cpu, target_cpu)
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        raise UserInputError(
            f"XLA AOT here compiles for x86-64 only, and this machine is {machine!r}. "
            f"Skip the AOT variant on this machine."
        )
    flags = host_cpu_flags()
    level = _host_level(flags)
    extras = tuple(
        (flag, feature)
        for flag, feature, needs in _EXTRA_FEATURES
        if flag in flags and _LEVELS.index(level) >= _LEVELS.index(needs)
    )
    return _level_target(f"host:{level}", level, extras)


def missing_cpu_flags(required: tuple[str, ...] | list[str]) -> list[str]:
    """The required cpuinfo flags this machine lacks ([] when unknown: no /proc/cpuinfo)."""
    return host_cpu().missing(required)
