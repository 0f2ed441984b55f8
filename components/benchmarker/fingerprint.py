"""What machine and software stack a benchmark ran on, and whether two runs compare.

A latency is only meaningful beside the hardware, thread settings and TensorFlow build
that produced it. `collect_fingerprint` records them; `check_comparable` refuses to put
runs from different set-ups side by side unless asked; `hardware_warnings` says when a
variant needs an instruction set (VNNI for int8, ...) this CPU lacks.

    >>> fp = collect_fingerprint(intra_op_threads=2, inter_op_threads=1, tflite_threads=2)
    >>> hardware_warnings({"tflite_int8": {"int8"}}, fp)
    []

TensorFlow is never imported just to fingerprint: versions come from package metadata,
and the TF-only probes (XLA, GPUs) run only when TF is already imported or the caller
allows the import (`import_tensorflow=True`).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from components.common.cpu_facts import CPU_FLAGS_OF_INTEREST, CpuFacts, read_cpu
from components.common.errors import UserInputError

# Fields left out of `comparable_key`, and why: `os` is the full kernel/distribution
# string, which changes with every kernel patch release without changing kernel speed.
_NOT_COMPARED = ("os",)
# Runtimes outside TensorFlow whose versions a report records (TF's own are fields).
OPTIONAL_RUNTIMES = ("openvino", "onnxruntime", "tf2onnx", "nncf")


@dataclasses.dataclass(frozen=True)
class HardwareFingerprint:
    """The hardware, threading and software stack of one benchmark run.

    Unknown values are None (e.g. no GPU, TensorFlow not installed). `cpu_flags` holds
    only the `CPU_FLAGS_OF_INTEREST` this CPU has, sorted. `logical_cores` is what the
    machine has; `usable_cores` what this process may run on (container CPU sets).
    """

    cpu_vendor: str | None
    cpu_model: str | None
    cpu_flags: tuple[str, ...]
    logical_cores: int | None
    usable_cores: int | None
    intra_op_threads: int
    inter_op_threads: int
    tflite_threads: int
    gpu_model: str | None
    gpu_driver: str | None
    gpu_count: int
    tensorflow_version: str | None
    tflite_version: str | None
    xla_available: bool | None
    onednn_enabled: bool | None
    machine: str
    os: str
    python_version: str
    # Added later, so with defaults: reports written before them still load.
    gpu_memory_mib: int | None = None  # Per GPU (the smallest, when they differ).
    # The optional runtimes' versions, by distribution name; absent: not installed.
    runtime_versions: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def has_flag(self, flag: str) -> bool:
        return flag in self.cpu_flags

    def comparable_key(self) -> dict[str, Any]:
        """The fields that must be equal for two runs' timings to be compared."""
        return {
            name: value
            for name, value in dataclasses.asdict(self).items()
            if name not in _NOT_COMPARED
        }

    def to_json(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["cpu_flags"] = list(self.cpu_flags)
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> HardwareFingerprint:
        fields = {field.name: value.get(field.name) for field in dataclasses.fields(cls)}
        fields["cpu_flags"] = tuple(value.get("cpu_flags") or ())
        fields["gpu_count"] = int(value.get("gpu_count") or 0)
        fields["runtime_versions"] = dict(value.get("runtime_versions") or {})
        return cls(**fields)


class FingerprintMismatch(UserInputError):
    """Runs from different machines or set-ups were about to be compared.

    `fields` names the fingerprint fields that differ.
    """

    def __init__(self, message: str, fields: Sequence[str]) -> None:
        super().__init__(message)
        self.fields = tuple(fields)


def collect_fingerprint(
    intra_op_threads: int,
    inter_op_threads: int,
    tflite_threads: int,
    *,
    import_tensorflow: bool = False,
    cpuinfo_path: str = "/proc/cpuinfo",
) -> HardwareFingerprint:
    """Fingerprints this machine and process with the given thread settings.

    `import_tensorflow=True` lets the XLA and GPU probes import TensorFlow when no
    nvidia-smi is present (5-13 s); otherwise they use TF only if it is already imported
    and fall back to the installed wheel's contents.
    """
    vendor, model, flags = _read_cpuinfo(cpuinfo_path)
    tf_version = _package_version("tensorflow", "tensorflow-cpu", "tensorflow-intel")
    tflite_version = tf_version or _package_version("tflite-runtime", "ai-edge-litert")
    tf_module = _tensorflow_module(import_tensorflow and tf_version is not None)
    gpu_model, gpu_driver, gpu_count, gpu_memory_mib = _probe_gpus(tf_module)
    machine = platform.machine()
    return HardwareFingerprint(
        cpu_vendor=vendor,
        cpu_model=model,
        cpu_flags=flags,
        logical_cores=os.cpu_count(),
        usable_cores=_usable_cores(),
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
        tflite_threads=tflite_threads,
        gpu_model=gpu_model,
        gpu_driver=gpu_driver,
        gpu_count=gpu_count,
        tensorflow_version=tf_version,
        tflite_version=tflite_version,
        xla_available=_xla_available(tf_module, tf_version),
        onednn_enabled=onednn_enabled(tf_version, os.environ.get("TF_ENABLE_ONEDNN_OPTS"), machine),
        machine=machine,
        os=platform.platform(),
        python_version=platform.python_version(),
        gpu_memory_mib=gpu_memory_mib,
        runtime_versions={
            name: version
            for name in OPTIONAL_RUNTIMES
            if (version := _package_version(name)) is not None
        },
    )


def parse_nvidia_smi(text: str) -> list[tuple[str, str, int | None]]:
    """(model, driver, memory in MiB) per GPU from nvidia-smi's CSV output (no header).

    The command is `nvidia-smi --query-gpu=name,driver_version,memory.total
    --format=csv,noheader,nounits`; a model name may itself hold commas.
    """
    gpus = []
    for line in text.splitlines():
        if line.count(",") < 2:
            continue
        name, driver, memory = line.rsplit(",", 2)
        memory = memory.strip().removesuffix("MiB").strip()
        gpus.append((name.strip(), driver.strip(), int(memory) if memory.isdigit() else None))
    return gpus


def onednn_enabled(tf_version: str | None, env_value: str | None, machine: str) -> bool | None:
    """Whether TF's oneDNN kernels are on: TF_ENABLE_ONEDNN_OPTS wins, else TF's default.

    TF reads the variable as a boolean ("0"/"false" off, "1"/"true" on). Unset, oneDNN is
    on by default on x86-64 since TF 2.9; elsewhere the default is build-specific (None).
    """
    if tf_version is None:
        return None
    if env_value is not None and env_value.strip():
        setting = env_value.strip().lower()
        if setting in ("0", "false"):
            return False
        if setting in ("1", "true"):
            return True
    if machine.lower() in ("x86_64", "amd64"):
        return _version_tuple(tf_version) >= (2, 9)
    return None


def check_comparable(
    fingerprints: Sequence[HardwareFingerprint] | Mapping[str, HardwareFingerprint],
    allow_mismatch: bool = False,
) -> list[str]:
    """Checks that runs were made on the same set-up; returns the differences found.

    Every fingerprint is compared with the first on `comparable_key()`. Pass a mapping
    (run label -> fingerprint) for messages that name the runs. Raises
    FingerprintMismatch naming each differing field unless `allow_mismatch`, in which
    case the differences come back as lines for the report's warnings.
    """
    labelled = (
        dict(fingerprints)
        if isinstance(fingerprints, Mapping)
        else {f"run {i}": fp for i, fp in enumerate(fingerprints)}
    )
    if len(labelled) < 2:
        return []
    (first_label, first), *others = labelled.items()
    reference = first.comparable_key()
    differences = []
    differing_fields: list[str] = []
    for label, fingerprint in others:
        key = fingerprint.comparable_key()
        for field, expected in reference.items():
            if key[field] != expected:
                differences.append(
                    f"{field}: {first_label} has {expected!r}, {label} has {key[field]!r}"
                )
                if field not in differing_fields:
                    differing_fields.append(field)
    if differences and not allow_mismatch:
        raise FingerprintMismatch(
            "These benchmark runs come from different set-ups, so their timings do not "
            "compare: " + "; ".join(differences) + ". Re-run them on the same machine with "
            "the same thread settings and TensorFlow build, or pass allow_mismatch "
            "(--allow-fingerprint-mismatch) to compare them anyway with a warning.",
            differing_fields,
        )
    return differences


# Requirement name -> (CPU flags of which any one suffices, what the warning says).
_REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "int8": (
        ("avx512_vnni", "avx_vnni", "amx_int8"),
        "int8 variant {name} needs AVX512-VNNI or AMX-INT8 for fast kernels; this CPU has "
        "neither, so int8 may run slower than fp32",
    ),
    "bf16": (
        ("avx512_bf16", "amx_bf16"),
        "bf16 variant {name} needs AVX512-BF16 or AMX-BF16 for native bf16 math; this CPU "
        "has neither, so bf16 is emulated and likely slower than fp32",
    ),
    "amx": (
        ("amx_tile",),
        "variant {name} is built for AMX tiles; this CPU has no AMX",
    ),
}


def hardware_warnings(
    variant_requirements: Mapping[str, Iterable[str]], fp: HardwareFingerprint
) -> list[str]:
    """Warnings for variants whose fast path this machine lacks, plus thread oversubscription.

    `variant_requirements` maps a variant name to what it needs: `int8`, `bf16`, `amx`,
    `fp16`, `gpu`, `xla`, `onednn`, or any name in `CPU_FLAGS_OF_INTEREST`. Raises
    ValueError for any other requirement name (a typo would otherwise silence a warning).
    """
    known = set(_REQUIREMENTS) | {"fp16", "gpu", "xla", "onednn"} | set(CPU_FLAGS_OF_INTEREST)
    warnings = []
    for name, requirements in variant_requirements.items():
        for requirement in sorted(set(requirements)):
            if requirement not in known:
                raise ValueError(
                    f"Unknown hardware requirement {requirement!r} for variant {name!r}; "
                    f"known: {', '.join(sorted(known))}."
                )
            message = _requirement_warning(name, requirement, fp)
            if message:
                warnings.append(message)
    cores = fp.usable_cores or fp.logical_cores
    if cores:
        for setting in ("intra_op_threads", "tflite_threads"):
            threads = getattr(fp, setting)
            if threads > cores:
                warnings.append(
                    f"{setting}={threads} exceeds the {cores} usable cores; threads will "
                    f"oversubscribe the CPU and latencies will be noisy and pessimistic"
                )
    return warnings


def _requirement_warning(name: str, requirement: str, fp: HardwareFingerprint) -> str | None:
    if requirement in _REQUIREMENTS:
        flags, message = _REQUIREMENTS[requirement]
        return None if any(fp.has_flag(flag) for flag in flags) else message.format(name=name)
    if requirement == "fp16":
        if fp.gpu_count > 0 or fp.has_flag("avx512_fp16"):
            return None
        return (
            f"fp16 variant {name}: this CPU has no native fp16 arithmetic (AVX512-FP16) and "
            f"there is no GPU, so fp16 values are widened to fp32; expect no speed-up over "
            f"fp32, only a smaller file"
        )
    if requirement == "gpu":
        return None if fp.gpu_count > 0 else f"variant {name} targets a GPU, but none was found"
    if requirement == "xla":
        if fp.xla_available is False:
            return f"variant {name} needs XLA, but this TensorFlow build has none"
        return None
    if requirement == "onednn":
        if fp.onednn_enabled is False:
            return (
                f"variant {name} relies on oneDNN (e.g. bf16 auto-mixed-precision), but "
                f"oneDNN is off (TF_ENABLE_ONEDNN_OPTS=0)"
            )
        return None
    if fp.has_flag(requirement):
        return None
    return f"variant {name} needs the CPU flag {requirement}; this CPU lacks it"


def _read_cpuinfo(path: str) -> tuple[str | None, str | None, tuple[str, ...]]:
    facts: CpuFacts = read_cpu(path)
    return facts.vendor, facts.model_name, facts.flags_of_interest


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # Not available on macOS/Windows.
        return os.cpu_count()


def _package_version(*distributions: str) -> str | None:
    for distribution in distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _tensorflow_module(allow_import: bool) -> Any:
    """TensorFlow if it is already imported (or may be imported), else None."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if not allow_import:
        return None
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf


def _probe_gpus(tf_module: Any) -> tuple[str | None, str | None, int, int | None]:
    """(model, driver, count, memory in MiB): nvidia-smi when present, else TF's device
    list (which says nothing of the memory)."""
    if shutil.which("nvidia-smi"):
        try:
            completed = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,driver_version,memory.total",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            completed = None
        if completed is not None and completed.returncode == 0:
            gpus = parse_nvidia_smi(completed.stdout)
            if gpus:
                models = sorted({model for model, _, _ in gpus})
                drivers = sorted({driver for _, driver, _ in gpus})
                memories = [memory for _, _, memory in gpus if memory is not None]
                smallest = min(memories) if memories else None
                return ", ".join(models), ", ".join(drivers), len(gpus), smallest
    if tf_module is None:
        return None, None, 0, None
    try:
        devices = tf_module.config.list_physical_devices("GPU")
    except Exception:  # A broken CUDA set-up must not stop a CPU benchmark.
        return None, None, 0, None
    if not devices:
        return None, None, 0, None
    names = set()
    for device in devices:
        try:
            details = tf_module.config.experimental.get_device_details(device)
        except Exception:  # Details are optional; the count is what matters.
            details = {}
        names.add(details.get("device_name") or device.name)
    return ", ".join(sorted(names)), None, len(devices), None


def _xla_available(tf_module: Any, tf_version: str | None) -> bool | None:
    """Whether XLA JIT is built in: asked of TF if imported, else read from the wheel."""
    if tf_version is None:
        return None
    if tf_module is not None:
        try:
            return bool(tf_module.test.is_built_with_xla())
        except Exception:  # Older or stripped builds lack the query; fall through.
            pass
    spec = importlib.util.find_spec("tensorflow")  # Locates the package without importing.
    for location in (spec.submodule_search_locations or []) if spec else []:
        if os.path.isdir(os.path.join(location, "compiler", "jit")):
            return True
    return None


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def machine_text(properties: dict[str, Any]) -> str:
    """A BenchmarkReport's hardware and runtime versions in one line, from its MLMD
    properties (report.hardware_properties): what `lineage show` prints and the report's
    first screen shows; "" if none."""
    if "hardware_cpu_model" not in properties:
        return ""
    cores = properties.get("hardware_usable_cores")
    logical = properties.get("hardware_logical_cores")
    parts = [
        f"{properties['hardware_cpu_model']}, {cores} of {logical} cores"
        if cores is not None and logical is not None
        else str(properties["hardware_cpu_model"])
    ]
    flags = [
        key.removeprefix("hardware_")
        for key, value in properties.items()
        if key.startswith(("hardware_avx", "hardware_amx")) and value == 1
    ]
    has_amx = any(flag.startswith("amx") for flag in flags)
    parts.append(f"flags: {' '.join(flags) or 'none of interest'}{'' if has_amx else ' (no AMX)'}")
    if properties.get("hardware_gpu_count"):
        memory = properties.get("hardware_gpu_memory_mib")
        parts.append(
            f"GPU: {properties['hardware_gpu_count']} x {properties.get('hardware_gpu_model')}"
            + (f", {memory} MiB each" if memory else "")
        )
    else:
        parts.append("no GPU")
    versions = [
        f"{key.removeprefix('version_')} {value}"
        for key, value in properties.items()
        if key.startswith("version_")
    ]
    if versions:
        parts.append(", ".join(versions))
    return "; ".join(parts)
