"""What this machine's CPU is and which fast kernels it can run: the one /proc/cpuinfo reader.

The Benchmarker's fingerprint, the XLA target, the oneDNN int8 check and the variant
kinds' hardware rules all read the CPU through here, so they cannot disagree.

    >>> facts = host_cpu()
    >>> facts.model_name, facts.has("avx2"), facts.flags_of_interest
    ('AMD EPYC', True, ('avx2',))
"""

from __future__ import annotations

import dataclasses
import functools
import platform

CPUINFO_PATH = "/proc/cpuinfo"

# The /proc/cpuinfo flags that decide which fast kernels exist (Linux flag spelling).
CPU_FLAGS_OF_INTEREST = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
# Any of these means bf16 math runs natively (AMX tiles or AVX-512 BF16 dot products).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Any of these means int8 dot products in one instruction (VNNI) or tiles (AMX).
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclasses.dataclass(frozen=True)
class CpuFacts:
    """The first processor's vendor, model name and flags (all cores are alike)."""

    vendor: str | None
    model_name: str | None
    flags: frozenset[str]

    @property
    def known(self) -> bool:
        """False when no cpuinfo could be read (not Linux, or a sandbox hiding /proc)."""
        return bool(self.flags)

    @property
    def flags_of_interest(self) -> tuple[str, ...]:
        return tuple(sorted(flag for flag in CPU_FLAGS_OF_INTEREST if flag in self.flags))

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def has_any(self, flags: tuple[str, ...] | list[str]) -> bool:
        return any(flag in self.flags for flag in flags)

    def missing(self, required: tuple[str, ...] | list[str]) -> list[str]:
        """The required flags this CPU lacks ([] when unknown: nothing can be decided)."""
        if not self.known:
            return []
        return [flag for flag in required if flag not in self.flags]

    def summary(self) -> str:
        """'AMD EPYC (flags of interest: avx2)', for messages."""
        return (
            f"{self.model_name or 'CPU'} (flags of interest: "
            f"{' '.join(self.flags_of_interest) or 'none'})"
        )


def parse_cpuinfo(text: str) -> CpuFacts:
    """CpuFacts from /proc/cpuinfo text (the first processor's block)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return CpuFacts(
        vendor=fields.get("vendor_id"),
        model_name=fields.get("model name"),
        flags=frozenset(fields.get("flags", "").split()),
    )


def read_cpu(path: str = CPUINFO_PATH) -> CpuFacts:
    """CpuFacts of the machine `path` describes; platform's guess where it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            facts = parse_cpuinfo(f.read())
    except OSError:
        return CpuFacts(None, platform.processor() or None, frozenset())
    if not facts.model_name:
        facts = dataclasses.replace(facts, model_name=platform.processor() or None)
    return facts


@functools.lru_cache(maxsize=1)
def host_cpu() -> CpuFacts:
    """This machine's CpuFacts (read once per process)."""
    return read_cpu()
