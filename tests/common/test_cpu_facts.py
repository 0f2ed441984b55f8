"""The one /proc/cpuinfo reader."""

from __future__ import annotations

from components.common.cpu_facts import BF16_FLAGS, parse_cpuinfo, read_cpu

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_tile amx_int8

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_tile amx_int8
"""
ZEN2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx f16c fma avx2 bmi2 sha_ni
"""


def test_parse_cpuinfo_reads_vendor_model_and_flags_of_interest():
    facts = parse_cpuinfo(SAPPHIRE_RAPIDS)

    assert facts.vendor == "GenuineIntel"
    assert facts.model_name == "Intel(R) Xeon(R) Platinum 8480+"
    assert facts.flags_of_interest == (
        "amx_int8",
        "amx_tile",
        "avx2",
        "avx512_bf16",
        "avx512_vnni",
        "avx512f",
    )
    assert facts.has_any(BF16_FLAGS)


def test_an_avx2_only_cpu_lacks_the_bf16_and_avx512_flags():
    facts = parse_cpuinfo(ZEN2)

    assert facts.flags_of_interest == ("avx2",)
    assert not facts.has_any(BF16_FLAGS)
    assert facts.missing(("avx2", "avx512f")) == ["avx512f"]
    assert "AMD EPYC" in facts.summary() and "avx2" in facts.summary()


def test_an_unreadable_cpuinfo_decides_nothing(tmp_path):
    facts = read_cpu(str(tmp_path / "no-such-cpuinfo"))

    assert not facts.known
    assert facts.missing(("avx512f",)) == []
