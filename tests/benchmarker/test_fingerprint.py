"""Hardware fingerprints: collecting them, refusing to compare unlike runs, warnings."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import sys

import pytest

from components.benchmarker.fingerprint import (
    FingerprintMismatch,
    HardwareFingerprint,
    check_comparable,
    collect_fingerprint,
    hardware_warnings,
    onednn_enabled,
    parse_nvidia_smi,
)
from components.common.errors import UserInputError


def fingerprint(**changes) -> HardwareFingerprint:
    """An Intel AMX machine with 2 threads; `changes` override fields."""
    base = HardwareFingerprint(
        cpu_vendor="GenuineIntel",
        cpu_model="Intel(R) Xeon(R) Platinum 8480+",
        cpu_flags=("amx_bf16", "amx_int8", "amx_tile", "avx2", "avx512_bf16", "avx512_vnni"),
        logical_cores=2,
        usable_cores=2,
        intra_op_threads=2,
        inter_op_threads=1,
        tflite_threads=2,
        gpu_model=None,
        gpu_driver=None,
        gpu_count=0,
        tensorflow_version="2.16.2",
        tflite_version="2.16.2",
        xla_available=True,
        onednn_enabled=True,
        machine="x86_64",
        os="Linux-6.1.0-x86_64-with-glibc2.36",
        python_version="3.10.13",
    )
    return dataclasses.replace(base, **changes)


def test_parse_nvidia_smi_reads_model_driver_and_memory_per_gpu():
    text = "NVIDIA A100-SXM4-40GB, 535.104.05, 40960\nNVIDIA L4, Rev, 535.104.05, [N/A]\n"

    assert parse_nvidia_smi(text) == [
        ("NVIDIA A100-SXM4-40GB", "535.104.05", 40960),
        ("NVIDIA L4, Rev", "535.104.05", None),
    ]


def test_collect_fingerprint_describes_this_machine_without_importing_tensorflow():
    tf_was_imported = "tensorflow" in sys.modules

    fp = collect_fingerprint(intra_op_threads=2, inter_op_threads=1, tflite_threads=3)

    assert ("tensorflow" in sys.modules) == tf_was_imported
    assert (fp.intra_op_threads, fp.inter_op_threads, fp.tflite_threads) == (2, 1, 3)
    assert fp.logical_cores == os.cpu_count()
    assert fp.usable_cores is not None and 1 <= fp.usable_cores <= fp.logical_cores
    assert fp.tensorflow_version == importlib.metadata.version("tensorflow")
    assert fp.tflite_version == fp.tensorflow_version
    if os.path.exists("/proc/cpuinfo"):
        assert fp.cpu_model
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            assert set(fp.cpu_flags) <= set(f.read().split())
    assert HardwareFingerprint.from_json(fp.to_json()) == fp


def test_onednn_enabled_follows_the_environment_then_tf_default():
    assert onednn_enabled("2.16.2", None, "x86_64") is True
    assert onednn_enabled("2.16.2", "0", "x86_64") is False
    assert onednn_enabled("2.16.2", "false", "x86_64") is False
    assert onednn_enabled("2.8.0", None, "x86_64") is False
    assert onednn_enabled("2.8.0", "1", "x86_64") is True
    assert onednn_enabled(None, "1", "x86_64") is None


def test_check_comparable_raises_naming_the_differing_fields():
    runs = {
        "monday": fingerprint(),
        "tuesday": fingerprint(intra_op_threads=8, cpu_model="AMD EPYC 9654"),
    }

    with pytest.raises(FingerprintMismatch) as raised:
        check_comparable(runs)

    assert set(raised.value.fields) == {"intra_op_threads", "cpu_model"}
    assert "intra_op_threads: monday has 2, tuesday has 8" in str(raised.value)
    assert isinstance(raised.value, UserInputError)


def test_check_comparable_returns_differences_when_mismatch_is_allowed():
    differences = check_comparable(
        [fingerprint(), fingerprint(tensorflow_version="2.17.0")], allow_mismatch=True
    )

    assert differences == ["tensorflow_version: run 0 has '2.16.2', run 1 has '2.17.0'"]


def test_check_comparable_accepts_equal_set_ups_despite_a_kernel_update():
    updated = fingerprint(os="Linux-6.1.9-x86_64-with-glibc2.36")

    assert check_comparable([fingerprint(), updated]) == []
    assert "os" not in fingerprint().comparable_key()


def test_hardware_warnings_int8_without_vnni_or_amx_warns():
    old_cpu = fingerprint(cpu_flags=("avx2", "avx512f"))

    warnings = hardware_warnings({"tflite_int8": {"int8"}, "frozen_graph": set()}, old_cpu)

    assert warnings == [
        "int8 variant tflite_int8 needs AVX512-VNNI or AMX-INT8 for fast kernels; this CPU "
        "has neither, so int8 may run slower than fp32"
    ]


def test_hardware_warnings_stay_quiet_when_the_cpu_has_the_kernels():
    amx_only = fingerprint(cpu_flags=("amx_bf16", "amx_int8", "amx_tile"))

    assert hardware_warnings({"int8": {"int8"}, "bf16": {"bf16"}, "amx": {"amx"}}, amx_only) == []


def test_hardware_warnings_cover_bf16_gpu_xla_and_onednn():
    fp = fingerprint(cpu_flags=("avx2",), xla_available=False, onednn_enabled=False)

    warnings = hardware_warnings(
        {"bf16_graph": {"bf16", "onednn"}, "xla_jit": {"xla"}, "gpu_graph": {"gpu"}}, fp
    )

    assert any(w.startswith("bf16 variant bf16_graph needs AVX512-BF16") for w in warnings)
    assert any("bf16_graph relies on oneDNN" in w for w in warnings)
    assert any("xla_jit needs XLA" in w for w in warnings)
    assert any("gpu_graph targets a GPU" in w for w in warnings)


def test_hardware_warnings_flag_thread_oversubscription():
    warnings = hardware_warnings({}, fingerprint(intra_op_threads=8))

    assert warnings == [
        "intra_op_threads=8 exceeds the 2 usable cores; threads will oversubscribe the CPU "
        "and latencies will be noisy and pessimistic"
    ]


def test_hardware_warnings_reject_an_unknown_requirement():
    with pytest.raises(ValueError, match="Unknown hardware requirement 'vnni'"):
        hardware_warnings({"tflite_int8": {"vnni"}}, fingerprint())
