"""Isolated children without the import bill: forked from a server that imported TF once.

Every conversion, compilation and benchmark runs in a child of its own (isolation.py
says why). A fresh interpreter pays `import tensorflow` each time: 6-18 s on the
2-core machine, and the demo pipeline starts about ten such children. So one server
process per pipeline process imports TensorFlow (and runs nothing: no op, no thread
pool) and forks each child from there in milliseconds. The child is still a process of
its own: a converter abort kills only it, its memory returns to the system when it
ends, and TF's thread pools and XLA's and oneDNN's flags are set in it for the first
time.

    outcome = run_forked(request_path, child_env, child_tmp, cwd, timeout_s)
    outcome.returncode  # as subprocess's: negative for a signal, None after a timeout

Why not multiprocessing's "forkserver": its children re-import the parent's `__main__`
(a user's script, `python -c ...`), which is neither safe nor cheap here.

The protocol, over a Unix socket in a private folder: the client sends one JSON line
(the request file, environment, working folder, output files); the server forks and
answers `{"pid": ...}`, then `{"exit": code}` when the child ends. The server dies with
the process that started it (PR_SET_PDEATHSIG), and its children with it (isolation.py).

Environment variables TensorFlow reads while it is imported cannot reach a child forked
after the import: a call whose extra environment touches others than `FORK_SAFE_ENV`
gets a fresh interpreter, and when this process's own environment changes in such a
variable, the server is started anew.

A forked child that needs a child of its own (a producer running in a child calls a
converter that isolates itself) asks the same server, whose socket it finds in
`SOCKET_ENV`: a nested child costs a fork, not a second TensorFlow import.

`INFERENCE_OPTIMIZER_WARM_CHILDREN=0` turns forking off.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

# Read by TF or its libraries when first used, not at import: safe to set in the child.
FORK_SAFE_ENV = frozenset({"TF_CPP_MIN_LOG_LEVEL", "ONEDNN_VERBOSE", "XLA_FLAGS"})
SWITCH_ENV = "INFERENCE_OPTIMIZER_WARM_CHILDREN"
# Set in every forked child: its server's socket, for the children it asks for.
SOCKET_ENV = "INFERENCE_OPTIMIZER_WARM_SOCKET"
# Variables TensorFlow, its libraries or the interpreter may read at import; a change
# to any other (a test's PYTEST_CURRENT_TEST) cannot matter to the preloaded import.
# (PYTHONPATH is the child's own; the server's is set from the same package root.)
_IMPORT_READ_PREFIXES = (
    "TF_",
    "TENSORFLOW",
    "XLA_",
    "ONEDNN",
    "DNNL",
    "OMP_",
    "KMP_",
    "MKL",
    "CUDA",
    "NVIDIA",
    "LD_",
    "PYTHON",
    "KERAS",
)
# How long a client waits for the server to finish importing TF and listen.
_START_TIMEOUT_S = 180.0
_PR_SET_PDEATHSIG = 1


@dataclasses.dataclass
class _Server:
    process: subprocess.Popen
    socket_path: str
    folder: str
    environ: dict[str, str]  # os.environ when it started.


_LOCK = threading.Lock()
_SERVER: _Server | None = None


def enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "1") != "0" and sys.platform.startswith("linux")


def can_fork(env: Mapping[str, str] | None) -> bool:
    """Whether a call with this extra environment may use a forked child."""
    return enabled() and set(env or {}) <= FORK_SAFE_ENV


def start_in_background() -> None:
    """Starts the server now, so its TensorFlow import overlaps the pipeline's work.

    Call it after this process's own heavy imports: TFX sets TF_USE_LEGACY_KERAS, which
    TF reads when it is imported, and the server must import TF as a fresh child would.
    """
    if enabled():
        _server()


def _import_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith(_IMPORT_READ_PREFIXES)}


def _server() -> _Server:
    """The running server, started anew when this process's environment changed in a
    variable TF may read at import (a test setting TF_ENABLE_ONEDNN_OPTS, TFX's import
    setting TF_USE_LEGACY_KERAS): its preloaded TensorFlow must be the one a fresh
    interpreter would import now."""
    global _SERVER
    with _LOCK:
        server = _SERVER
        if server is not None:
            same = _import_environment(os.environ) == _import_environment(server.environ)
            if server.process.poll() is None and same:
                return server
            _stop(server)
        from components.common.isolation import PACKAGE_ROOT

        folder = tempfile.mkdtemp(prefix="warm-children-")
        socket_path = os.path.join(folder, "server.sock")
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        process = subprocess.Popen(
            [sys.executable, "-m", __name__, socket_path, str(os.getpid())],
            env=env,
            cwd=PACKAGE_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Out of the terminal's group: Ctrl-C reaches the pipeline, which decides.
            start_new_session=True,
        )
        _SERVER = _Server(process, socket_path, folder, dict(os.environ))
        atexit.register(_stop, _SERVER)
        return _SERVER


def _stop(server: _Server) -> None:
    """The server goes (its children went with their requests), and its folder.
    After a SIGKILL of this process the kernel stops the server; only the socket's
    folder is left."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        server.process.kill()
        server.process.wait(timeout=5)
    shutil.rmtree(server.folder, ignore_errors=True)


def _connect(server: _Server) -> socket.socket | None:
    """A connection once the server listens; None if it died or never listened."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return None
        if os.path.exists(server.socket_path):
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                connection.connect(server.socket_path)
                return connection
            except OSError:
                connection.close()
        time.sleep(0.05)
    return None


def _connect_to(socket_path: str) -> socket.socket | None:
    """A connection to the server that forked this process; None if it is gone."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(socket_path)
        return connection
    except OSError:
        connection.close()
        return None


@dataclasses.dataclass
class ForkedOutcome:
    returncode: int | None  # None: killed after the timeout.
    stdout: str
    stderr: str


def run_forked(
    request_path: str,
    child_env: Mapping[str, str],
    child_tmp: str,
    cwd: str,
    timeout_s: float | None,
    on_started: Callable[[int], None] | None = None,
) -> ForkedOutcome | None:
    """Runs `isolation.child_main(request_path)` in a child forked by the warm server.

    The child gets `child_env` as its whole environment, `cwd`, a session (and process
    group) of its own, and its stdout and stderr in files under `child_tmp`. None when
    no server could be reached: the caller starts a fresh interpreter instead.
    `on_started(pid)` is called once the child exists (the memory cap watches it).
    """
    inherited = os.environ.get(SOCKET_ENV)
    connection = _connect_to(inherited) if inherited else _connect(_server())
    if connection is None:
        return None
    stdout_path = os.path.join(child_tmp, "stdout.txt")
    stderr_path = os.path.join(child_tmp, "stderr.txt")
    request = {
        "request_path": request_path,
        "env": dict(child_env),
        "cwd": cwd,
        "stdout": stdout_path,
        "stderr": stderr_path,
    }
    pid = None
    with connection, connection.makefile("rwb") as stream:
        stream.write((json.dumps(request) + "\n").encode())
        stream.flush()
        try:
            pid = json.loads(stream.readline())["pid"]
            if on_started is not None:
                on_started(pid)
            connection.settimeout(timeout_s)
            try:
                exit_code: int | None = json.loads(stream.readline())["exit"]
            except TimeoutError:
                _kill_group(pid)
                exit_code = None
        except BaseException:  # Ctrl-C in the parent: the child and its children go too.
            _kill_group(pid)
            raise
    return ForkedOutcome(exit_code, _read(stdout_path), _read(stderr_path))


def _kill_group(pid: int | None) -> None:
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # setsid in the child: its pgid is its pid.


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# ------------------------------------------------------------------------- server side


def _serve(socket_path: str, parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:
        return  # The parent is gone already.
    import tensorflow  # noqa: F401 - the import every child would otherwise pay.

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    partial = socket_path + ".partial"
    listener.bind(partial)
    listener.listen(16)
    os.replace(partial, socket_path)  # Clients connect only once it listens.
    while True:
        connection, _ = listener.accept()
        with connection.makefile("rb") as stream:
            request = json.loads(stream.readline())
        pid = os.fork()
        if pid == 0:
            listener.close()
            connection.close()
            _child(request, socket_path)
        connection.sendall((json.dumps({"pid": pid}) + "\n").encode())
        threading.Thread(target=_report_exit, args=(pid, connection), daemon=True).start()


def _report_exit(pid: int, connection: socket.socket) -> None:
    _, status = os.waitpid(pid, 0)
    with contextlib.suppress(OSError), connection:
        connection.sendall(
            (json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\n").encode()
        )


def _child(request: dict[str, Any], socket_path: str) -> None:
    """In the forked child: its own group, environment and output; then the request."""
    code = 1
    try:
        os.setsid()
        os.environ.clear()
        os.environ.update(request["env"])
        from components.common import isolation

        # Its parent is the server, which dies with the process that started it.
        os.environ[isolation.PARENT_PID_ENV] = str(os.getppid())
        os.environ[SOCKET_ENV] = socket_path
        tempfile.tempdir = None  # Read TMPDIR (the child's own folder) afresh.
        os.chdir(request["cwd"])
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(handle, fd)
            os.close(handle)
        code = isolation.child_main(request["request_path"])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # Skip the interpreter's exit handlers: they belong to the server.
        os._exit(code)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
