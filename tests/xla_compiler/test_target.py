"""Choosing the CPU that AOT code is compiled for."""

from __future__ import annotations

import pytest

from components.common.errors import UserInputError
from components.xla_compiler.target import missing_cpu_flags, resolve_cpu_target


def test_generic_target_needs_no_cpu_extensions():
    target = resolve_cpu_target("generic")

    assert target.llvm_cpu == "x86-64" and target.llvm_features == ""
    assert target.required_cpu_flags == () and target.gcc_flags == ()


def test_host_target_needs_only_flags_this_machine_has():
    target = resolve_cpu_target("host")

    assert target.name.startswith("host:x86-64")
    assert missing_cpu_flags(target.required_cpu_flags) == []


def test_level_target_lists_the_level_flags():
    target = resolve_cpu_target("x86-64-v3")

    assert {"avx2", "fma", "sse4_2"} <= set(target.required_cpu_flags)
    assert "avx512f" not in target.required_cpu_flags
    assert target.gcc_flags == ("-march=x86-64-v3",)


def test_unknown_target_is_refused_with_the_choices():
    with pytest.raises(UserInputError, match="generic"):
        resolve_cpu_target("pentium4")
