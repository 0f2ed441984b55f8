"""Runs one function in a fresh Python process and brings back its JSON result.

Why a process of its own: converters abort the whole process on some graphs (TFLite's
`LLVM ERROR`, XLA's CHECK failures), XLA and oneDNN read their flags once per process,
TF's thread pools are fixed by the first op, and a conversion's memory is returned to
the system only when its process ends.

    outcome = run_isolated("components.runtime_converter.openvino_ir:convert_to_ir",
                           {"graph_dir": ..., "output_dir": ...}, workdir, timeout_s=600)
    if not outcome.ok:
        raise RuntimeError(outcome.failure("the OpenVINO conversion"))
    outcome.result  # what the function returned (JSON-able)

The child is `python -m components.common.isolation request.json`: it imports the
named module, calls the function with the request's keyword arguments, and writes the
return value (or the exception) to a result file by write-then-rename, so the parent
never reads half a result. Output on the child's stdout and stderr is captured; the
last lines come back with a failure.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Mapping
from typing import Any

from components.common.errors import UserInputError

_TAIL_LINES = 25
# The repository root, put on the child's PYTHONPATH and used as its working directory
# (`-m` searches the working directory first; ours must be the package found).
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass
class ChildOutcome:
    """How the child ended, and what it returned."""

    returncode: int | None  # None: killed after the timeout
    result: Any = None
    error_type: str = ""
    error_message: str = ""
    user_error: bool = False
    stdout: str = ""
    stderr: str = ""
    timeout_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.error_type

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def stderr_tail(self, lines: int = _TAIL_LINES) -> str:
        return "\n".join(self.stderr.strip().splitlines()[-lines:])

    def failure(self, what: str) -> str:
        """One message saying how `what` failed: its exception, a signal, a timeout."""
        if self.timed_out:
            return f"{what} did not finish within {self.timeout_s:.0f} s"
        if self.error_type:
            return f"{what} failed: {self.error_type}: {self.error_message}"
        tail = self.stderr_tail() or "(no output)"
        if self.returncode is not None and self.returncode < 0:
            return (
                f"{what} was killed by {signal_name(-self.returncode)} (it crashed, e.g. an "
                f"LLVM/XLA abort, or ran out of memory). Last output lines:\n{tail}"
            )
        return f"{what} exited with code {self.returncode}. Last output lines:\n{tail}"

    def raise_user_error(self) -> None:
        """Bad input found in the child is raised here as the same error type."""
        if self.user_error:
            raise UserInputError(self.error_message)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_isolated(
    function: str,
    kwargs: Mapping[str, Any],
    workdir: str,
    *,
    timeout_s: float | None = None,
    env: Mapping[str, str] | None = None,
    name: str = "child",
) -> ChildOutcome:
    """Calls `module:function(**kwargs)` in a new interpreter; never raises for its failure.

    `env` entries are added to this process's environment (e.g. XLA_FLAGS,
    ONEDNN_VERBOSE). `workdir` holds the request and result files (`name` keeps two
    calls in one directory apart).
    """
    os.makedirs(workdir, exist_ok=True)
    request_path = os.path.join(workdir, f"{name}_request.json")
    result_path = os.path.join(workdir, f"{name}_result.json")
    if os.path.exists(result_path):
        os.remove(result_path)
    with open(request_path, "w", encoding="utf-8") as f:
        json.dump({"function": function, "kwargs": dict(kwargs), "result_path": result_path}, f)
    child_env = dict(os.environ)
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_PACKAGE_ROOT, child_env.get("PYTHONPATH")) if p
    )
    child_env.update(env or {})
    try:
        process = subprocess.run(
            [sys.executable, "-m", __name__, request_path],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=_PACKAGE_ROOT,
        )
    except subprocess.TimeoutExpired as error:
        return ChildOutcome(
            returncode=None,
            stdout=_text(error.stdout),
            stderr=_text(error.stderr),
            timeout_s=timeout_s,
        )
    outcome = ChildOutcome(
        returncode=process.returncode, stdout=process.stdout, stderr=process.stderr
    )
    if os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as f:
            written = json.load(f)
        outcome.result = written.get("result")
        error = written.get("error") or {}
        outcome.error_type = error.get("type", "")
        outcome.error_message = error.get("message", "")
        outcome.user_error = bool(error.get("user_error"))
    elif process.returncode == 0:
        outcome.returncode = 1  # Exited cleanly without a result: treat as a failure.
    return outcome


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def _child_main(request_path: str) -> int:
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    module_name, _, function_name = request["function"].partition(":")
    written: dict[str, Any]
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        written = {"result": function(**request["kwargs"])}
        code = 0
    except Exception as error:  # Reported to the parent, which decides what it means.
        from components.common.errors import find_user_error

        user_error = find_user_error(error)
        reported = user_error or error
        written = {
            "error": {
                "type": type(reported).__name__,
                "message": str(reported),
                "user_error": user_error is not None,
                "traceback": traceback.format_exc(limit=8),
            }
        }
        traceback.print_exc()
        code = 3
    partial = request["result_path"] + ".tmp"
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(written, f)
    os.replace(partial, request["result_path"])
    return code


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
