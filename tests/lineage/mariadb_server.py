"""A throwaway MariaDB server on 127.0.0.1, in a temporary directory, for the MySQL tests.

Debian's `mariadb-server` provides the binaries (scripts/install-test-services.sh
installs it). The server runs as the current user (`--user` is required when that is
root), listens on a free port, holds one database and one password-protected user, and
is deleted with its directory on `stop()`:

    server = start_mariadb()          # raises ServerUnavailable with the reason
    try:
        config = server.connection_config()   # an MLMD ConnectionConfig
    finally:
        server.stop()

Run `python -m tests.lineage.mariadb_server` to start one by hand (Ctrl-C stops it).
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

# Debian puts the server in /usr/sbin, which is not on a normal user's PATH.
SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/usr/libexec"]
)
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class ServerUnavailable(RuntimeError):
    """The server cannot run here; the message says why (for pytest.skip)."""


@dataclasses.dataclass
class MariaDBServer:
    """A running server and the credentials of its one database."""

    host: str
    port: int
    database: str
    user: str
    password: str
    directory: str
    process: subprocess.Popen

    def connection_config(self) -> Any:
        """An ml_metadata ConnectionConfig for this server's database."""
        from ml_metadata.proto import metadata_store_pb2

        config = metadata_store_pb2.ConnectionConfig()
        config.mysql.host = self.host
        config.mysql.port = self.port
        config.mysql.database = self.database
        config.mysql.user = self.user
        config.mysql.password = self.password
        return config

    def stop(self) -> None:
        """Shuts the server down (SIGTERM, then SIGKILL) and deletes its directory."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        shutil.rmtree(self.directory, ignore_errors=True)


def find_binaries() -> tuple[str, str, str]:
    """(server, install-db, client) paths; ServerUnavailable when MariaDB is not installed."""
    found = {
        role: next((p for n in names if (p := shutil.which(n, path=SEARCH_PATH))), None)
        for role, names in (
            ("server", ("mariadbd", "mysqld")),
            ("install", ("mariadb-install-db", "mysql_install_db")),
            ("client", ("mariadb", "mysql")),
        )
    }
    missing = sorted(role for role, path in found.items() if path is None)
    if missing:
        raise ServerUnavailable(
            f"MariaDB is not installed (no {', '.join(missing)} binary on PATH or in "
            f"/usr/sbin); run scripts/install-test-services.sh (Debian: apt-get install "
            f"mariadb-server)"
        )
    version = subprocess.run(
        [found["server"], "--version"], capture_output=True, text=True, timeout=30
    ).stdout
    if "mariadb" not in version.lower():
        raise ServerUnavailable(
            f"{found['server']} is not MariaDB ({version.strip()}); these tests bootstrap "
            f"a server with mariadb-install-db"
        )
    return found["server"], found["install"], found["client"]  # type: ignore[return-value]


def start_mariadb(database: str = "mlmd", user: str = "mlmd") -> MariaDBServer:
    """Initialises a data directory, starts the server and creates the database and user."""
    server_binary, install_binary, client_binary = find_binaries()
    # A short directory: the Unix socket path must stay under 108 bytes.
    directory = tempfile.mkdtemp(prefix="mlmd-mariadb-")
    os_user = getpass.getuser()
    data = os.path.join(directory, "data")
    socket_path = os.path.join(directory, "mysqld.sock")
    error_log = os.path.join(directory, "error.log")
    os.makedirs(os.path.join(directory, "tmp"))
    try:
        _run(
            [
                install_binary,
                "--no-defaults",
                f"--datadir={data}",
                f"--user={os_user}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            "mariadb-install-db",
        )
        port = _free_port()
        with open(os.path.join(directory, "server.out"), "wb") as out:
            process = subprocess.Popen(
                [
                    server_binary,
                    "--no-defaults",
                    f"--datadir={data}",
                    f"--user={os_user}",
                    "--bind-address=127.0.0.1",
                    f"--port={port}",
                    f"--socket={socket_path}",
                    f"--pid-file={os.path.join(directory, 'mysqld.pid')}",
                    f"--log-error={error_log}",
                    f"--tmpdir={os.path.join(directory, 'tmp')}",
                    "--skip-name-resolve",
                    "--innodb-buffer-pool-size=32M",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a test run does not reach it first.
            )
    except (OSError, ServerUnavailable) as error:
        shutil.rmtree(directory, ignore_errors=True)
        raise ServerUnavailable(str(error)) from error
    password = secrets.token_hex(12)
    server = MariaDBServer("127.0.0.1", port, database, user, password, directory, process)
    try:
        _wait_until_ready(server, client_binary, socket_path, error_log)
        _sql(
            client_binary,
            socket_path,
            f"CREATE DATABASE {database}; "
            f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'; "
            f"GRANT ALL PRIVILEGES ON {database}.* TO '{user}'@'%';",
        )
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_ready(server: MariaDBServer, client: str, socket_path: str, error_log: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerUnavailable(
                f"mariadbd exited with code {server.process.returncode}: {_tail(error_log)}"
            )
        try:
            _sql(client, socket_path, "SELECT 1;")
            socket.create_connection((server.host, server.port), timeout=2).close()
            return
        except (ServerUnavailable, OSError):
            time.sleep(0.2)
    raise ServerUnavailable(
        f"mariadbd did not accept connections within {START_TIMEOUT_S:.0f}s: {_tail(error_log)}"
    )


def _sql(client: str, socket_path: str, statements: str) -> None:
    _run(
        [client, "--no-defaults", f"--socket={socket_path}", "-uroot", "-e", statements],
        "mariadb client",
    )


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()
        raise ServerUnavailable(f"{what} failed: {' | '.join(output[-3:])}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: str, lines: int = 3) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return " | ".join(line.strip() for line in f.read().splitlines()[-lines:])
    except OSError:
        return "(no error log)"


if __name__ == "__main__":
    running = start_mariadb()
    print(
        f"MariaDB on {running.host}:{running.port}, database {running.database}, user "
        f"{running.user}, password {running.password} (in {running.directory}); Ctrl-C stops it."
    )
    try:
        running.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
