#!/usr/bin/env bash
# The Dockerfile's install steps, without Docker (no engine runs on CI machines):
# the same install script into a fresh non-editable virtualenv, then the image's own
# build-time check that every executor and artifact type a compiled package names
# imports from that install. Needs ~3 GB of temporary disk.
#
# The image installs requirements-gpu.lock: requirements.lock plus the 12 nvidia-*-cu12
# wheels of tensorflow[and-cuda] (about 3 GB more). Here those wheels are resolved
# against the index (a dry run) and checked against tf.sysconfig.get_build_info(), and
# the rest is installed from requirements.lock, whose every pin the GPU lock shares
# (pipelines/kubeflow/gpu_lock.py checks that too). Unverified without a GPU and a
# Docker engine: that a node's driver loads those libraries and TF lists the GPU.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The GPU lock resolves on this platform, and its CUDA and cuDNN are TF's build's.
"$ROOT/.venv/bin/uv" pip install --dry-run --quiet --python "$ROOT/.venv/bin/python" \
  -r "$ROOT/requirements-gpu.lock"
(cd "$ROOT" && "$ROOT/.venv/bin/python" -m pipelines.kubeflow.gpu_lock \
  requirements-gpu.lock requirements.lock)

# As the Dockerfile: dependencies first (its cached layer), then the project itself.
VENV="$WORK/venv" INSTALL_EDITABLE=0 INSTALL_PROJECT=0 bash "$ROOT/scripts/install-env.sh"
VENV="$WORK/venv" INSTALL_EDITABLE=0 bash "$ROOT/scripts/install-env.sh"

# Outside the checkout, so only the installed package can satisfy the imports.
cd "$WORK"
"$WORK/venv/bin/inference-optimizer" compile --output "$WORK/check/pipeline.yaml"
"$WORK/venv/bin/python" -m pipelines.kubeflow.image_check "$WORK/check/pipeline.yaml"
echo "check-image-install: the non-editable install serves every name the package uses"
