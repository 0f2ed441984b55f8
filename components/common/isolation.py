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

The child never outlives its parent, and leaves no temporary folder behind:

- It runs in a session (and process group) of its own, so a timeout or a Ctrl-C in
  the parent kills the child *and* whatever it started (cmake, gcc) with one killpg.
  The terminal's Ctrl-C reaches only the parent, which then does exactly that.
- It asks the kernel for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG, set at
  the child's own start-up rather than in a preexec_fn, which is unsafe in a parent
  with threads such as TFX's gRPC execution watcher), even by SIGKILL.
- Its TMPDIR is a fresh folder inside `workdir` that the parent removes on every exit
  path it lives through. When the parent is SIGKILLed nobody else is left to clean,
  so the child, on that SIGTERM, removes it, the parent's open `scratch_directory()`
  folders (the tflite_quantization_*, tfcompile_*, ... work folders) and `workdir` when
  that sits right in the temp folder (a TemporaryDirectory; elsewhere only the request
  file, and `workdir` if that left it empty), kills its process group and exits.
  Children clean on SIGTERM because after a SIGKILL they are the only ones left who
  know what to remove (a folder under the dead parent's workdir would simply stay).
  Limit: Python runs the handler between bytecodes, so a child deep in one native
  call (a converter) cleans up when that call returns.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import importlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

from components.common.errors import UserInputError

_TAIL_LINES = 25
# The repository root, put on the child's PYTHONPATH and used as its working directory
# (`-m` searches the working directory first; ours must be the package found).
PACKAGE_ROOT = _PACKAGE_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
# The parent's PID, for the child to notice a parent that died before PR_SET_PDEATHSIG.
PARENT_PID_ENV = _PARENT_PID_ENV = "INFERENCE_OPTIMIZER_PARENT_PID"
# The temp folder the parent had, for caches meant to outlive one child (the XLA AOT
# runtime build): the child's own TMPDIR is removed when it ends.
SHARED_TMPDIR_ENV = "INFERENCE_OPTIMIZER_SHARED_TMPDIR"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# This process's open scratch_directory() folders, which an orphaned child removes.
_open_scratch: list[str] = []
_open_scratch_lock = threading.Lock()


@contextlib.contextmanager
def scratch_directory(prefix: str) -> Iterator[str]:
    """tempfile.TemporaryDirectory that also goes away if this process is SIGKILLed.

    Removed when the block exits (normally, on an exception, or Ctrl-C); if this
    process is killed while a run_isolated child is alive, that child removes it.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as path:
        with _open_scratch_lock:
            _open_scratch.append(path)
        try:
            yield path
        finally:
            with _open_scratch_lock:
                _open_scratch.remove(path)


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
    peak_rss_bytes: int = 0  # The child's own peak resident memory, as it reported it.

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
    memory_budget_bytes: int | None = None,
    cap_bytes: int | None = None,
) -> ChildOutcome:
    """Calls `module:function(**kwargs)` in a new interpreter; never raises for its failure.

    `env` entries are added to this process's environment (e.g. XLA_FLAGS,
    ONEDNN_VERBOSE). `workdir` holds the request and result files (`name` keeps two
    calls in one directory apart). With `memory_budget_bytes`, or when this process is
    itself a capped child, the child is killed past its memory cap, and the outcome's
    error is MemoryBudgetExceeded (memory_cap.py). `cap_bytes`, instead of a budget, is
    a cap the caller has already netted of everything that runs (the Benchmarker's
    share: the budget less the process tree's PSS, the warm server's image in it), so it
    bounds what the child adds to the pages it starts with.
    """
    os.makedirs(workdir, exist_ok=True)
    request_path = os.path.join(workdir, f"{name}_request.json")
    result_path = os.path.join(workdir, f"{name}_result.json")
    if os.path.exists(result_path):
        os.remove(result_path)
    child_tmp = tempfile.mkdtemp(prefix=f"{name}_tmp_", dir=workdir)
    with _open_scratch_lock:
        parent_scratch = list(_open_scratch)
    with open(request_path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "function": function,
                "kwargs": dict(kwargs),
                "result_path": result_path,
                "child_tmp": child_tmp,
                "parent_scratch": parent_scratch,
            },
            f,
        )
    child_env = dict(os.environ)
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_PACKAGE_ROOT, child_env.get("PYTHONPATH")) if p
    )
    child_env.setdefault(SHARED_TMPDIR_ENV, tempfile.gettempdir())
    child_env.update(env or {})
    child_env["TMPDIR"] = child_tmp
    child_env[_PARENT_PID_ENV] = str(os.getpid())
    from components.common import memory_cap

    if cap_bytes is not None:
        cap = cap_bytes
        watch = memory_cap.ChildWatch(cap, beyond_start=True)
    else:
        cap = memory_cap.cap_for_child(memory_budget_bytes)
        watch = memory_cap.ChildWatch(cap) if cap is not None else None
    if cap is not None:
        child_env[memory_cap.CAP_ENV] = str(cap)  # Its own children's caps start from it.
    try:
        outcome = _run_child(request_path, result_path, child_tmp, child_env, env, timeout_s, watch)
    finally:
        if watch is not None:
            watch.stop()
    if watch is not None and watch.exceeded_bytes:
        from components.common.memory_watch import note_child_peak

        note_child_peak(watch.exceeded_bytes)
        message = memory_cap.exceeded_message(
            f"the {name} process ({function})",
            watch.exceeded_bytes,
            watch.cap_bytes,
            watch.start_bytes,
        )
        return dataclasses.replace(
            outcome,
            error_type="MemoryBudgetExceeded",
            error_message=message,
            peak_rss_bytes=watch.exceeded_bytes,
        )
    return outcome


def _run_child(
    request_path: str,
    result_path: str,
    child_tmp: str,
    child_env: dict[str, str],
    env: Mapping[str, str] | None,
    timeout_s: float | None,
    watch: Any,  # memory_cap.ChildWatch | None
) -> ChildOutcome:
    """Runs the child, forked by the warm server when it can be, else a fresh interpreter."""
    from components.common import warm_children

    forked = None
    if warm_children.can_fork(env):
        # Forked by a server that imported TF once: no import bill (warm_children.py).
        try:
            forked = warm_children.run_forked(
                request_path,
                child_env,
                child_tmp,
                _PACKAGE_ROOT,
                timeout_s,
                on_started=watch.watch if watch is not None else None,
            )
        finally:
            if forked is not None:
                shutil.rmtree(child_tmp, ignore_errors=True)
    if forked is not None:
        if forked.returncode is None:
            return ChildOutcome(
                returncode=None, stdout=forked.stdout, stderr=forked.stderr, timeout_s=timeout_s
            )
        return _read_result(
            ChildOutcome(returncode=forked.returncode, stdout=forked.stdout, stderr=forked.stderr),
            result_path,
        )
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", __name__, request_path],
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=_PACKAGE_ROOT,
            start_new_session=True,  # Its own process group: one killpg ends it all.
        )
        if watch is not None:
            watch.watch(process.pid)
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            stdout, stderr = process.communicate()
            return ChildOutcome(
                returncode=None, stdout=_text(stdout), stderr=_text(stderr), timeout_s=timeout_s
            )
        except BaseException:  # Ctrl-C (KeyboardInterrupt) or any error while waiting.
            _kill_group(process)
            process.wait()
            raise
    finally:
        shutil.rmtree(child_tmp, ignore_errors=True)
    return _read_result(
        ChildOutcome(returncode=process.returncode, stdout=stdout, stderr=stderr), result_path
    )


def _read_result(outcome: ChildOutcome, result_path: str) -> ChildOutcome:
    """Fills in what the child wrote: its result or exception, and its peak memory."""
    from components.common.memory_watch import note_child_peak

    if os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as f:
            written = json.load(f)
        outcome.result = written.get("result")
        error = written.get("error") or {}
        outcome.error_type = error.get("type", "")
        outcome.error_message = error.get("message", "")
        outcome.user_error = bool(error.get("user_error"))
        outcome.peak_rss_bytes = int(written.get("peak_rss_bytes") or 0)
        note_child_peak(outcome.peak_rss_bytes)
    elif outcome.returncode == 0:
        outcome.returncode = 1  # Exited cleanly without a result: treat as a failure.
    return outcome


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILLs the child's process group: the child and everything it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # start_new_session: its pgid is its pid.


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


class _Terminated(BaseException):
    """SIGTERM in the child: unwinds to _child_main, past `except Exception` handlers."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # Clean up once, undisturbed.
    raise _Terminated()


def _die_with_parent(parent_pid: int) -> None:
    """Asks for SIGTERM when the parent dies; exits at once if it already has."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    # The parent may have died before prctl: then no signal would ever come.
    if parent_pid and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def _parent_is_gone(parent_pid: int, wait_s: float = 2.0) -> bool:
    """True once the parent has died; False if it still lives after `wait_s`.

    PR_SET_PDEATHSIG fires when the parent *thread* that started us exits. A process
    killed with SIGKILL loses its threads one by one, and for a moment the child is
    the child of a dying sibling thread: getppid() still says the parent. So wait for
    a new parent, or for the old one to be a zombie or no more.
    """
    deadline = time.monotonic() + wait_s
    while True:
        if os.getppid() != parent_pid or _is_dead(parent_pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _is_dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except OSError:
        return False  # No /proc: getppid() alone decides.


def _clean_up_after_termination(request: dict[str, Any], request_path: str, parent_pid: int):
    """What an orphaned (or terminated) child removes before it exits."""
    shutil.rmtree(request.get("child_tmp") or "", ignore_errors=True)
    if parent_pid and _parent_is_gone(parent_pid):  # No one else will clean up now.
        for folder in request.get("parent_scratch") or []:
            shutil.rmtree(folder, ignore_errors=True)
        workdir = os.path.dirname(request_path)
        shared_tmp = os.environ.get(SHARED_TMPDIR_ENV) or ""
        if shared_tmp and os.path.dirname(workdir) == os.path.abspath(shared_tmp):
            # A folder right in the temp folder is the parent's TemporaryDirectory (the
            # Benchmarker's benchmark-*): throwaway, and its owner is gone.
            shutil.rmtree(workdir, ignore_errors=True)
        else:  # Somewhere else it may hold more than this call's files: only ours go.
            with contextlib.suppress(OSError):
                os.remove(request_path)
            with contextlib.suppress(OSError):
                os.rmdir(workdir)  # Only if that left it empty.
    if os.getpgrp() == os.getpid():  # Our own group (start_new_session): grandchildren too.
        os.killpg(os.getpgrp(), signal.SIGKILL)  # Includes this process: the last act.


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG and the SIGTERM clean-up, for a child started some other way.

    The parent is the one named by the environment (none: only the signal is asked for).
    """
    _die_with_parent(int(os.environ.get(_PARENT_PID_ENV) or 0))


def child_main(request_path: str) -> int:
    """The child's whole life: die with the parent, call the function, write the result."""
    return _child_main(request_path)


def _child_main(request_path: str) -> int:
    parent_pid = int(os.environ.get(_PARENT_PID_ENV) or 0)
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    try:
        _die_with_parent(parent_pid)
        return _call_and_write_result(request)
    except _Terminated:
        _clean_up_after_termination(request, request_path, parent_pid)
        return 128 + signal.SIGTERM


def _call_and_write_result(request: dict[str, Any]) -> int:
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
    # The whole child's peak, what a transform's record calls child_process_peak_rss;
    # or its own children's, when they held more (a producer's child runs converters).
    from components.common.memory_watch import largest_child_peak_bytes

    written["peak_rss_bytes"] = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, largest_child_peak_bytes()
    )
    partial = request["result_path"] + ".tmp"
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(written, f)
    os.replace(partial, request["result_path"])
    return code


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
