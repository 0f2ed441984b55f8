#!/usr/bin/env bash
# The one install path: the Makefile, .ci/run and the Dockerfile all call this.
#
# It finds a Python 3.10 interpreter, creates the virtualenv (default ./.venv),
# installs the pinned set from requirements.lock with uv, then installs this
# project into it (editable unless INSTALL_EDITABLE=0). It is idempotent: when the
# lock has not changed since the last install, it returns at once.
#
#   scripts/install-env.sh                 # ./.venv, editable
#   VENV=/opt/venv INSTALL_EDITABLE=0 scripts/install-env.sh   # the Docker image
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
LOCK="${LOCK:-$ROOT/requirements.lock}"
INSTALL_EDITABLE="${INSTALL_EDITABLE:-1}"
# 0: only the pinned dependencies (the Dockerfile's cached layer); 1: the project too.
INSTALL_PROJECT="${INSTALL_PROJECT:-1}"
UV_VERSION="0.13.9"

find_python310() {
  local candidate
  # An explicit choice wins; then whatever is on PATH; then pyenv's and the
  # usual system locations (a pyenv shim may refuse to run unless selected, so
  # every candidate is actually executed before it is trusted).
  for candidate in "${PYTHON:-}" python3.10 \
      "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10*/bin/python3.10 \
      /usr/local/bin/python3.10 /usr/bin/python3.10; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

lock_stamp() {
  # The environment is current when both the lock and setup.py are unchanged.
  cat "$LOCK" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1
}

install_project() {
  if [ "$INSTALL_PROJECT" != "1" ]; then
    return 0
  fi
  if [ "$INSTALL_EDITABLE" = "1" ]; then
    # An editable install points at this checkout; redo it only if it points elsewhere.
    if [ "$(cat "$VENV/.editable-root" 2>/dev/null)" != "$ROOT" ]; then
      "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps -e "$ROOT"
      echo "$ROOT" > "$VENV/.editable-root"
    fi
  else
    "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps --reinstall-package tfx-inference-optimizer "$ROOT"
  fi
}

if [ -x "$VENV/bin/python" ] && [ -f "$VENV/.install-stamp" ] \
    && [ "$(cat "$VENV/.install-stamp")" = "$(lock_stamp)" ]; then
  install_project
  exit 0
fi

if ! PY310="$(find_python310)"; then
  cat >&2 <<'MSG'
error: no Python 3.10 interpreter found.
  tfx 1.16 (the newest full TFX that installs) supports Python 3.10 only.
  Install one, for example `pyenv install 3.10` or `apt-get install python3.10 python3.10-venv`,
  or point PYTHON at it: `PYTHON=/path/to/python3.10 make test`.
MSG
  exit 1
fi

echo "install-env: using $PY310 -> $VENV" >&2
if [ ! -x "$VENV/bin/python" ]; then
  "$PY310" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
"$VENV/bin/uv" pip install --python "$VENV/bin/python" -r "$LOCK"
lock_stamp > "$VENV/.install-stamp"
rm -f "$VENV/.editable-root"
install_project
echo "install-env: ready ($VENV)" >&2
