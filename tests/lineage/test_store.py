"""Choosing and opening a store: the default, and clear errors for what is not one (fast)."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3

import pytest

from tests.lineage import synthetic_store


def _one_paragraph_error(result) -> str:
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err
    return result.err


def test_a_file_that_is_not_sqlite_is_refused(lineage, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n")

    err = _one_paragraph_error(lineage("runs", "--metadata", str(path)))

    assert str(path) in err and "not a SQLite database" in err


def test_a_sqlite_file_without_mlmd_tables_is_refused_and_left_untouched(lineage, tmp_path):
    path = tmp_path / "app.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE users (name TEXT)")
    connection.commit()
    connection.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()

    err = _one_paragraph_error(lineage("show", "--metadata", str(path)))

    assert "not an ML Metadata store" in err and "Artifact" in err
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    connection = sqlite3.connect(path)
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    connection.close()
    assert tables == {"users"}


def test_an_empty_file_is_refused_and_stays_empty(lineage, tmp_path):
    path = tmp_path / "metadata.sqlite"
    path.touch()

    err = _one_paragraph_error(lineage("runs", "--metadata", str(path)))

    assert "empty file" in err
    assert path.stat().st_size == 0


def test_a_missing_path_is_refused(lineage, tmp_path):
    err = _one_paragraph_error(lineage("runs", "--metadata", str(tmp_path / "nope.sqlite")))

    assert "does not exist" in err


def test_a_directory_without_a_store_is_refused(lineage, tmp_path):
    err = _one_paragraph_error(lineage("runs", "--metadata", str(tmp_path)))

    assert "directory without a metadata.sqlite" in err


def test_a_run_directory_stands_for_its_store(lineage, tmp_path):
    synthetic_store.add_run(synthetic_store.create_store(str(tmp_path / "metadata.sqlite")), "r1")

    result = lineage("runs", "--metadata", str(tmp_path), "--json")

    assert result.code == 0, result.err
    assert [r["run_id"] for r in result.json()["runs"]] == ["r1"]


def test_an_empty_store_says_it_has_no_runs(lineage, tmp_path):
    path = str(tmp_path / "metadata.sqlite")
    synthetic_store.create_store(path)

    for command in ("runs", "show", "diff"):
        err = _one_paragraph_error(lineage(command, "--metadata", path))
        assert "holds no pipeline runs" in err and "inference-optimizer run" in err


def test_default_store_is_the_newest_local_run(lineage, tmp_path, monkeypatch):
    for name, run_id, mtime in (("old", "old-run", 1_000_000), ("new", "new-run", 2_000_000)):
        path = tmp_path / "runs" / name / "metadata.sqlite"
        path.parent.mkdir(parents=True)
        synthetic_store.add_run(synthetic_store.create_store(str(path)), run_id)
        os.utime(path, (mtime, mtime))
    monkeypatch.chdir(tmp_path)

    result = lineage("runs", "--json")

    assert result.code == 0, result.err
    document = result.json()
    assert document["store"] == str(tmp_path / "runs" / "new" / "metadata.sqlite")
    assert [r["run_id"] for r in document["runs"]] == ["new-run"]


def test_no_local_run_and_no_flags_explains_what_to_pass(lineage, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    err = _one_paragraph_error(lineage("runs"))

    assert "No local run found" in err and "--metadata" in err


def test_unreachable_mysql_is_a_clear_error(lineage):
    with socket.socket() as probe:  # A port nothing listens on.
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    err = _one_paragraph_error(
        lineage("runs", "--mysql-host", "127.0.0.1", "--mysql-port", str(port))
    )

    assert f"127.0.0.1:{port}" in err and "Cannot reach the MySQL server" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--metadata", "x.sqlite", "--mysql-host", "db"], "not both"),
        (["--mysql-port", "3307"], "--mysql-port needs --mysql-host"),
    ],
)
def test_contradictory_store_flags_are_refused(lineage, flags, message):
    err = _one_paragraph_error(lineage("runs", *flags))

    assert message in err
