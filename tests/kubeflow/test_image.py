"""The runtime image, short of a Docker engine: what it copies, installs and exposes.

No Docker engine runs here. The boundary: these tests rebuild the image's project install
from exactly what the Dockerfile COPYs (minus .dockerignore), install it the way the image
does (non-editable, no dependencies: they come from the same lock as this .venv), and import
every name a compiled package uses from that install, from outside the source tree. What
they cannot check: the CUDA/cuDNN layers, apt packages, and the dependency layer itself
(CI can run that step through scripts/install-env.sh into a scratch VENV).
"""

from __future__ import annotations

import fnmatch
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not current and raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1]
            continue
        current += raw
        if current.strip():
            instruction, _, rest = current.strip().partition(" ")
            lines.append((instruction.upper(), rest.strip()))
        current = ""
    return lines


def _dockerignore() -> list[str]:
    patterns = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [p.strip() for p in patterns if p.strip() and not p.startswith("#")]


def _ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        if fnmatch.fnmatch(relative, pattern) or any(fnmatch.fnmatch(p, bare) for p in parts):
            return True
    return False


def copy_build_context(destination: pathlib.Path) -> None:
    """Replays the Dockerfile's COPY lines from the repo into `destination` (its WORKDIR)."""
    patterns = _dockerignore()
    for instruction, arguments in _dockerfile_instructions():
        if instruction != "COPY":
            continue
        *sources, target = shlex.split(arguments)
        for source in sources:
            source_path = REPO / source
            target_path = destination / target
            if source_path.is_dir():
                for path in source_path.rglob("*"):
                    relative = path.relative_to(REPO).as_posix()
                    if path.is_file() and not _ignored(relative, patterns):
                        out = target_path / path.relative_to(source_path)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(path, out)
            else:
                out = target_path / source_path.name if target.endswith("/") else target_path
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source_path, out)


@pytest.fixture(scope="module")
def image_site(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The project as the image installs it: non-editable, into its own directory."""
    context = tmp_path_factory.mktemp("image_context")
    copy_build_context(context)
    site = tmp_path_factory.mktemp("image_site")
    # pip without build isolation uses this .venv's setuptools, so no download is needed;
    # the image runs `uv pip install --no-deps <dir>`, the same setup.py build.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(context),
        ],
        check=True,
    )
    return site


def test_dockerfile_installs_through_the_shared_script_and_lock():
    instructions = _dockerfile_instructions()
    runs = [args for name, args in instructions if name == "RUN"]
    copies = [args for name, args in instructions if name == "COPY"]

    install_runs = [r for r in runs if "scripts/install-env.sh" in r]
    assert len(install_runs) == 2  # Dependencies layer, then the project (non-editable).
    assert all("INSTALL_EDITABLE=0" in r for r in install_runs)
    assert any("requirements.lock" in c for c in copies)
    assert any(c.startswith("components/") for c in copies)
    assert any(c.startswith("pipelines/") for c in copies)
    assert not any("pip install" in r for r in runs)  # No second install path.


def test_the_image_gets_cuda_and_cudnn_from_the_gpu_lock_not_apt():
    instructions = _dockerfile_instructions()
    runs = [args for name, args in instructions if name == "RUN"]
    install_runs = [r for r in runs if "scripts/install-env.sh" in r]
    base = next(args for name, args in instructions if name == "FROM")

    assert all("LOCK=requirements-gpu.lock" in r for r in install_runs)
    assert not base.startswith("nvidia/cuda")  # The wheels bring CUDA; the node, the driver.
    apt = " ".join(r for r in runs if "apt-get" in r)
    assert "libcudnn" not in apt and "cuda-" not in apt


def test_the_gpu_lock_pins_the_cuda_and_cudnn_this_tensorflow_was_built_for():
    """The real lock against the installed TF's build info and its and-cuda extra."""
    import tensorflow as tf

    from pipelines.kubeflow import gpu_lock

    gpu_pins = gpu_lock.read_pins((REPO / "requirements-gpu.lock").read_text())
    cpu_pins = gpu_lock.read_pins((REPO / "requirements.lock").read_text())
    and_cuda = gpu_lock.and_cuda_requirements()
    build = tf.sysconfig.get_build_info()
    assert len([n for n in gpu_pins if n.startswith("nvidia-")]) == len(and_cuda) == 12
    assert gpu_lock.check_gpu_lock(gpu_pins, cpu_pins, build, and_cuda) == []
    # And the check can fail: a cuDNN 9 wheel beside a TF built for cuDNN 8.
    wrong = {**gpu_pins, "nvidia-cudnn-cu12": "9.1.0.70"}
    problems = gpu_lock.check_gpu_lock(wrong, cpu_pins, build, and_cuda)
    assert any("cuDNN 8" in p for p in problems)
    drifted = {**gpu_pins, "numpy": "2.0.0"}
    assert any("numpy" in p for p in gpu_lock.check_gpu_lock(drifted, cpu_pins, build, and_cuda))


def test_dockerfile_runs_as_non_root():
    users = [args for name, args in _dockerfile_instructions() if name == "USER"]

    assert users and users[-1] not in ("root", "0")


def test_dockerignore_keeps_the_virtualenv_and_history_out_of_the_context():
    patterns = _dockerignore()

    for path in (".venv/bin/python", ".git/HEAD", "runs/x/metadata.sqlite", "tests/conftest.py"):
        assert _ignored(path, patterns), path
    for path in ("components/artifacts.py", "pipelines/pipeline.py", "requirements.lock"):
        assert not _ignored(path, patterns), path


def test_image_demo_path_matches_the_compile_default():
    from pipelines.kubeflow.config import IMAGE_DEMO_DIR

    assert f"ensure_embedded_default as e; print(e('{IMAGE_DEMO_DIR}'))" in " ".join(
        args for _, args in _dockerfile_instructions()
    )


@pytest.mark.slow
def test_image_install_exposes_every_name_the_compiled_package_uses(image_site, gpu_package):
    # Run from an empty directory, with the installed copy first on the path, as in the pod.
    workdir = image_site.parent / "pod_cwd"
    workdir.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(image_site), CUDA_VISIBLE_DEVICES="")
    where = subprocess.run(
        [sys.executable, "-c", "import components, pipelines; print(components.__file__)"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    check = subprocess.run(
        [sys.executable, "-m", "pipelines.kubeflow.image_check", gpu_package.path],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert where.stdout.strip().startswith(str(image_site))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "components.benchmarker.executor.Executor" in check.stdout


def test_image_install_includes_every_non_python_file_of_the_packages(image_site):
    missing = []
    for package in ("components", "pipelines"):
        for path in (REPO / package).rglob("*"):
            relative = path.relative_to(REPO)
            shipped = path.suffix in (".py", ".pyc") or "__pycache__" in relative.parts
            if path.is_file() and not shipped and not (image_site / relative).exists():
                missing.append(relative.as_posix())

    assert missing == []
