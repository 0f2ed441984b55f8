"""The GPU image's lock against the TensorFlow it installs: CUDA and cuDNN from the wheels.

    python -m pipelines.kubeflow.gpu_lock requirements-gpu.lock

`requirements-gpu.lock` is compiled from setup.py's `gpu` extra
(`tensorflow[and-cuda]==2.16.2`) with requirements.lock as constraints (`make lock-gpu`),
so it adds NVIDIA's `nvidia-*-cu12` wheels and changes no pin the CPU lock holds. This
check reads `tf.sysconfig.get_build_info()` (the same TensorFlow wheel serves CPU and GPU)
and confirms that the lock's CUDA runtime and cuDNN are the versions that build names,
that every `and-cuda` requirement of that TensorFlow is pinned to the version it asks
for, and that the shared pins agree with requirements.lock. Exit 1 with the differences.

What it cannot check here, with no GPU and no Docker engine: that the driver on a node
loads these libraries, and that TF then lists the GPU (scripts/check-image-install.sh
says the same).
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from collections.abc import Mapping

_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", re.MULTILINE)
_AND_CUDA = re.compile(r"(nvidia-[a-z0-9-]+-cu12) *==([0-9.]+) *; *extra *== *.and-cuda.")


def read_pins(lock_text: str) -> dict[str, str]:
    return {name.lower(): version for name, version in _PIN.findall(lock_text)}


def and_cuda_requirements() -> dict[str, str]:
    """What the installed TensorFlow's `and-cuda` extra pins."""
    pins = {}
    for requirement in importlib.metadata.requires("tensorflow") or []:
        match = _AND_CUDA.match(requirement)
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def check_gpu_lock(
    gpu_pins: Mapping[str, str],
    cpu_pins: Mapping[str, str],
    build_info: Mapping[str, str],
    and_cuda: Mapping[str, str],
) -> list[str]:
    """The problems, or [] when the GPU lock matches the TensorFlow build."""
    problems = []
    cuda = str(build_info.get("cuda_version", ""))
    cudnn = str(build_info.get("cudnn_version", ""))
    runtime = gpu_pins.get("nvidia-cuda-runtime-cu12", "")
    cudnn_pin = gpu_pins.get("nvidia-cudnn-cu12", "")
    if not cuda or not runtime.startswith(cuda + "."):
        problems.append(
            f"TensorFlow was built against CUDA {cuda or '?'}, the lock has "
            f"nvidia-cuda-runtime-cu12=={runtime or 'nothing'}"
        )
    if not cudnn or not cudnn_pin.startswith(cudnn.split(".")[0] + "."):
        problems.append(
            f"TensorFlow was built against cuDNN {cudnn or '?'}, the lock has "
            f"nvidia-cudnn-cu12=={cudnn_pin or 'nothing'}"
        )
    for name, version in sorted(and_cuda.items()):
        if gpu_pins.get(name) != version:
            problems.append(
                f"tensorflow[and-cuda] asks for {name}=={version}, the lock has "
                f"{gpu_pins.get(name) or 'nothing'}"
            )
    for name, version in sorted(cpu_pins.items()):
        if name in gpu_pins and gpu_pins[name] != version:
            problems.append(
                f"{name} is {gpu_pins[name]} in the GPU lock but {version} in requirements.lock"
            )
    return problems


def main(argv: list[str]) -> int:
    import tensorflow as tf

    gpu_path = argv[0] if argv else "requirements-gpu.lock"
    cpu_path = argv[1] if len(argv) > 1 else "requirements.lock"
    with open(gpu_path, encoding="utf-8") as f:
        gpu_pins = read_pins(f.read())
    with open(cpu_path, encoding="utf-8") as f:
        cpu_pins = read_pins(f.read())
    build = tf.sysconfig.get_build_info()
    problems = check_gpu_lock(gpu_pins, cpu_pins, build, and_cuda_requirements())
    for problem in problems:
        print(f"gpu-lock: {problem}", file=sys.stderr)
    if problems:
        return 1
    nvidia = sorted(name for name in gpu_pins if name.startswith("nvidia-"))
    print(
        f"gpu-lock: TensorFlow {tf.__version__} built for CUDA {build['cuda_version']} and "
        f"cuDNN {build['cudnn_version']}; the lock pins nvidia-cuda-runtime-cu12=="
        f"{gpu_pins['nvidia-cuda-runtime-cu12']}, nvidia-cudnn-cu12=="
        f"{gpu_pins['nvidia-cudnn-cu12']} ({len(nvidia)} nvidia wheels), and no shared pin "
        "differs from requirements.lock"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
