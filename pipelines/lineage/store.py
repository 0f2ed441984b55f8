"""Opening an ML Metadata store for reading: a local sqlite file or a MySQL server.

A sqlite path is checked with Python's own sqlite3, read-only, *before* MLMD sees it:
MLMD creates its schema in any database it opens read-write, and a user's random
sqlite file must not gain MLMD tables because it was passed to `lineage` by mistake.
MLMD then opens it in its READONLY connection mode.

    store = open_store(SqliteLocation("runs/inference-optimizer/metadata.sqlite"))
    store.mlmd.get_contexts_by_type("pipeline_run")
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import socket
import sqlite3
import tempfile
import urllib.request
from collections.abc import Iterator
from typing import Any

from components.common.errors import UserInputError

# Where `inference-optimizer run` writes by default: ./runs/<pipeline name>/metadata.sqlite
# (pipelines.local_runner defines the same names; it imports TFX, so they are repeated).
DEFAULT_RUNS_DIR = "runs"
METADATA_FILENAME = "metadata.sqlite"
DEFAULT_PASSWORD_ENV = "MLMD_MYSQL_PASSWORD"
# Kubeflow Pipelines keeps MLMD in database `metadb` of its MySQL, as user root.
DEFAULT_MYSQL_DATABASE = "metadb"
DEFAULT_MYSQL_USER = "root"
DEFAULT_MYSQL_PORT = 3306
MYSQL_CONNECT_TIMEOUT_S = 10.0
# Tables every MLMD schema version since 0.x has; their absence means "not an MLMD store".
MLMD_TABLES = frozenset({"Type", "Artifact", "Execution", "Context", "Event", "MLMDEnv"})
_SQLITE_HEADER = b"SQLite format 3\x00"


@dataclasses.dataclass(frozen=True)
class SqliteLocation:
    """A local MLMD sqlite file (or a run directory holding `metadata.sqlite`)."""

    path: str

    def describe(self) -> str:
        return self.path


@dataclasses.dataclass(frozen=True)
class MySQLLocation:
    """An MLMD store in a MySQL/MariaDB database; the password comes from an env variable."""

    host: str
    port: int = DEFAULT_MYSQL_PORT
    database: str = DEFAULT_MYSQL_DATABASE
    user: str = DEFAULT_MYSQL_USER
    password_env: str = DEFAULT_PASSWORD_ENV

    def describe(self) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


StoreLocation = SqliteLocation | MySQLLocation


@dataclasses.dataclass
class LineageStore:
    """An open MLMD store and how to name it in messages."""

    mlmd: Any  # ml_metadata.metadata_store.MetadataStore
    description: str


def default_sqlite_path(runs_dir: str = DEFAULT_RUNS_DIR) -> str:
    """The newest `<runs_dir>/*/metadata.sqlite` by modification time: the latest local run."""
    candidates = glob.glob(os.path.join(runs_dir, "*", METADATA_FILENAME))
    if not candidates:
        raise UserInputError(
            f"No local run found: there is no {os.path.join(runs_dir, '*', METADATA_FILENAME)} "
            f"under {os.path.abspath(runs_dir)!r}. Run `inference-optimizer run` first, or pass "
            f"--metadata PATH (a metadata.sqlite or the --output directory of a run), or the "
            f"--mysql-* flags for a shared store."
        )
    return os.path.abspath(max(candidates, key=lambda p: (os.path.getmtime(p), p)))


def resolve_sqlite_path(path: str) -> str:
    """The sqlite file itself, or `metadata.sqlite` inside a run's output directory."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        inside = os.path.join(path, METADATA_FILENAME)
        if not os.path.isfile(inside):
            raise UserInputError(
                f"{path!r} is a directory without a {METADATA_FILENAME}. Pass --metadata the "
                f"MLMD sqlite file, or the --output directory of an `inference-optimizer run`."
            )
        return inside
    return path


def check_sqlite_store(path: str) -> None:
    """Raises UserInputError unless `path` is a sqlite file holding MLMD's tables.

    Reads through sqlite3 in read-only mode, so nothing is ever created in the file.
    """
    fix = (
        "Pass --metadata the metadata.sqlite of a run (written by `inference-optimizer run`"
        " under its --output directory), or omit it to use the latest local run."
    )
    if not os.path.exists(path):
        raise UserInputError(f"The metadata store {path!r} does not exist. {fix}")
    if not os.path.isfile(path):
        raise UserInputError(f"The metadata store {path!r} is not a regular file. {fix}")
    try:
        with open(path, "rb") as f:
            header = f.read(len(_SQLITE_HEADER))
    except OSError as error:
        raise UserInputError(
            f"Cannot read the metadata store {path!r}: {error.strerror}. {fix}"
        ) from error
    if not header:
        raise UserInputError(f"{path!r} is an empty file, not an ML Metadata store. {fix}")
    if header != _SQLITE_HEADER:
        raise UserInputError(
            f"{path!r} is not an ML Metadata store: it is not a SQLite database. {fix}"
        )
    try:
        tables = _sqlite_tables(path)
    except sqlite3.Error as error:
        raise UserInputError(
            f"{path!r} cannot be read as a SQLite database ({error}); it is not a usable "
            f"ML Metadata store. {fix}"
        ) from error
    missing = sorted(MLMD_TABLES - tables)
    if missing:
        raise UserInputError(
            f"{path!r} is a SQLite database but not an ML Metadata store: it lacks MLMD's "
            f"tables ({', '.join(missing)}). It was left untouched. {fix}"
        )


def _sqlite_tables(path: str) -> set[str]:
    uri = f"file:{urllib.request.pathname2url(path)}?mode=ro"
    connection = sqlite3.connect(uri, uri=True)
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}
    finally:
        connection.close()


def sqlite_connection_config(path: str) -> Any:
    """An MLMD ConnectionConfig that opens `path` read-only (never creates a schema)."""
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return config


def mysql_connection_config(
    location: MySQLLocation, password: str, create_database: bool = False
) -> Any:
    """An MLMD ConnectionConfig for MySQL/MariaDB.

    Readers leave `create_database` off so a mistyped database name is an error rather
    than a new empty database; a pipeline run writing its first record may turn it on.
    """
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.mysql.host = location.host
    config.mysql.port = location.port
    config.mysql.database = location.database
    config.mysql.user = location.user
    config.mysql.password = password
    config.mysql.skip_db_creation = not create_database
    return config


def open_store(location: StoreLocation) -> LineageStore:
    """Connects to the store at `location`; every failure is a UserInputError."""
    if isinstance(location, SqliteLocation):
        return _open_sqlite(location)
    return _open_mysql(location)


def _open_sqlite(location: SqliteLocation) -> LineageStore:
    from ml_metadata.metadata_store import metadata_store

    path = resolve_sqlite_path(location.path)
    check_sqlite_store(path)
    try:
        with _quiet_native_stderr():
            mlmd = metadata_store.MetadataStore(sqlite_connection_config(path))
    except Exception as error:  # MLMD raises RuntimeError or its own errors, by version.
        raise UserInputError(
            f"ML Metadata cannot open {path!r}: {_first_line(error)}. If it was written by "
            f"another ml-metadata version, read it with that version (this one is "
            f"{_mlmd_version()})."
        ) from error
    return LineageStore(mlmd, path)


def _open_mysql(location: MySQLLocation) -> LineageStore:
    from ml_metadata.metadata_store import metadata_store

    # MLMD's own message for a refused port and for a refused login is the same empty
    # "mysql_real_connect failed: errno: , error:"; a plain TCP probe tells them apart,
    # and bounds the wait for a host that never answers.
    try:
        socket.create_connection((location.host, location.port), MYSQL_CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise UserInputError(
            f"Cannot reach the MySQL server of {location.describe()}: "
            f"{error.strerror or error} (after at most {MYSQL_CONNECT_TIMEOUT_S:.0f}s). Check "
            f"that the server is running and listening on {location.host}:{location.port} "
            f"(--mysql-host, --mysql-port), or use a local store with --metadata."
        ) from error
    password = os.environ.get(location.password_env, "")
    config = mysql_connection_config(location, password)
    try:
        with _quiet_native_stderr():
            mlmd = metadata_store.MetadataStore(config)
    except Exception as error:  # RuntimeError("mysql_real_connect failed ...") and kin.
        password_state = "set" if location.password_env in os.environ else "not set"
        detail = _first_line(error).removesuffix("errno: , error:").rstrip(" :")
        raise UserInputError(
            f"The MySQL server at {location.host}:{location.port} answers, but ML Metadata "
            f"cannot open {location.describe()} ({detail or type(error).__name__}). Check "
            f"that database {location.database!r} exists (--mysql-database), that user "
            f"{location.user!r} may use it (--mysql-user), and that the password is in the "
            f"environment variable {location.password_env} (currently {password_state})."
        ) from error
    return LineageStore(mlmd, location.describe())


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silences MLMD's C++ log lines (glog writes to fd 2) while connecting.

    Its connection failures print a multi-line MySQL-8 hint even for a refused port;
    the UserInputError raised afterwards says what to check instead.
    """
    try:
        saved = os.dup(2)
    except OSError:  # No fd 2 (embedded interpreters): nothing to silence.
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].strip(" .") if text else ""


def _mlmd_version() -> str:
    try:
        from ml_metadata import version

        return version.__version__
    except ImportError:  # Very old wheels lack the module; the message stays useful.
        return "unknown"
