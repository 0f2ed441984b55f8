#!/usr/bin/env bash
# The Dockerfile's install steps, without Docker (no engine runs on CI machines):
# the same install script and lock into a fresh non-editable virtualenv, then the
# image's own build-time check that every executor and artifact type a compiled
# package names imports from that install. Needs ~3 GB of temporary disk.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# As the Dockerfile: dependencies first (its cached layer), then the project itself.
VENV="$WORK/venv" INSTALL_EDITABLE=0 INSTALL_PROJECT=0 bash "$ROOT/scripts/install-env.sh"
VENV="$WORK/venv" INSTALL_EDITABLE=0 bash "$ROOT/scripts/install-env.sh"

# Outside the checkout, so only the installed package can satisfy the imports.
cd "$WORK"
"$WORK/venv/bin/inference-optimizer" compile --output "$WORK/check/pipeline.yaml"
"$WORK/venv/bin/python" -m pipelines.kubeflow.image_check "$WORK/check/pipeline.yaml"
echo "check-image-install: the non-editable install serves every name the package uses"
