"""MLMD over MySQL for real: a MariaDB server in a temp dir, a pipeline run into it, read back.

Skips, with the reason in pytest's summary, when the server cannot start here (for
example MariaDB not installed: scripts/install-test-services.sh installs it).
"""

from __future__ import annotations

import os

import pytest

from tests.lineage import graph_syntax
from tests.lineage.mariadb_server import MariaDBServer, ServerUnavailable, start_mariadb
from tests.lineage.pipeline_runs import PIPELINE_NAME, run_pipeline_once

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


@pytest.fixture(scope="module")
def mariadb():
    try:
        server = start_mariadb()
    except ServerUnavailable as error:
        pytest.skip(f"MariaDB test server could not start: {error}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mysql_run(mariadb: MariaDBServer, embedded_default, tmp_path_factory) -> str:
    """One pipeline run whose MLMD lives in the MariaDB server; returns its output dir."""
    output = str(tmp_path_factory.mktemp("mysql_run"))
    run_pipeline_once(
        output,
        embedded_default.model_uri,
        embedded_default.examples_uri,
        metadata_connection_config=mariadb.connection_config(),
    )
    return output


def _flags(server: MariaDBServer, **overrides: str) -> list[str]:
    values = {
        "host": server.host,
        "port": str(server.port),
        "database": server.database,
        "user": server.user,
        **overrides,
    }
    return [item for key, value in values.items() for item in (f"--mysql-{key}", value)]


def test_lineage_reads_a_pipeline_run_back_from_mysql(
    lineage, mariadb, mysql_run, embedded_default, monkeypatch, tmp_path
):
    monkeypatch.setenv("MLMD_MYSQL_PASSWORD", mariadb.password)
    assert not os.path.exists(os.path.join(mysql_run, "metadata.sqlite"))  # All in MySQL.

    runs = lineage("runs", *_flags(mariadb), "--json")
    assert runs.code == 0, runs.err
    [run] = runs.json()["runs"]
    assert run["pipeline"] == PIPELINE_NAME and run["state"] == "COMPLETE"
    assert run["headline"]["baseline_p50_ms"] > 0
    assert runs.json()["store"] == (
        f"mysql://{mariadb.user}@{mariadb.host}:{mariadb.port}/{mariadb.database}"
    )

    trace = lineage("trace", "report", *_flags(mariadb), "--json")
    assert trace.code == 0, trace.err
    document = trace.json()
    artifacts = {a["id"]: a for a in document["graph"]["artifacts"]}
    origin_uris = {artifacts[i]["uri"] for i in document["origins"]}
    assert embedded_default.model_uri in origin_uris
    executions = {e["id"]: e["node_id"] for e in document["graph"]["executions"]}
    assert {executions[s["execution_id"]] for s in document["steps"]} >= {
        "Benchmarker",
        "Freezer",
        "model_importer",
    }

    page = tmp_path / "run.html"
    export = lineage("export", run["run_id"], "-o", str(page), *_flags(mariadb))
    assert export.code == 0, export.err
    graph_syntax.check_html(page.read_text(encoding="utf-8"))

    shown = lineage("show", "latest", *_flags(mariadb))
    assert shown.code == 0, shown.err
    assert "Benchmarker  COMPLETE" in shown.out


def test_wrong_mysql_password_names_the_variable_to_set(lineage, mariadb, monkeypatch):
    monkeypatch.setenv("MLMD_MYSQL_PASSWORD", "not-the-password")

    result = lineage("runs", *_flags(mariadb))

    assert result.code == 1 and "Traceback" not in result.err
    assert "MLMD_MYSQL_PASSWORD (currently set)" in result.err
    assert f"{mariadb.host}:{mariadb.port}" in result.err


def test_password_can_come_from_another_variable(lineage, mariadb, mysql_run, monkeypatch):
    monkeypatch.delenv("MLMD_MYSQL_PASSWORD", raising=False)
    monkeypatch.setenv("TEAM_STORE_PASSWORD", mariadb.password)

    result = lineage("runs", *_flags(mariadb, **{"password-env": "TEAM_STORE_PASSWORD"}))

    assert result.code == 0, result.err


def test_missing_mysql_database_is_a_clear_error_and_is_not_created(lineage, mariadb, monkeypatch):
    monkeypatch.setenv("MLMD_MYSQL_PASSWORD", mariadb.password)

    result = lineage("runs", *_flags(mariadb, database="no_such_db"))

    assert result.code == 1 and "Traceback" not in result.err
    assert "no_such_db" in result.err and "--mysql-database" in result.err


def test_run_command_records_into_mysql_when_asked(
    lineage, mariadb, embedded_default, monkeypatch, tmp_path, capsys
):
    from pipelines import cli

    monkeypatch.setenv("MLMD_MYSQL_PASSWORD", mariadb.password)
    database = mariadb.database
    code = cli.main(
        [
            "run",
            "--model",
            embedded_default.model_uri,
            "--examples",
            embedded_default.examples_uri,
            "--output",
            str(tmp_path),
            "--variants",
            "weights_int8_graph",
            "--time-budget",
            "2",
            "--pipeline-name",
            "cli-run",
            "--metadata-mysql-host",
            mariadb.host,
            "--metadata-mysql-port",
            str(mariadb.port),
            "--metadata-mysql-database",
            database,
            "--metadata-mysql-user",
            mariadb.user,
        ]
    )
    captured = capsys.readouterr()
    out = captured.out

    assert code == 0, captured.err
    assert f"mysql://{mariadb.user}@{mariadb.host}:{mariadb.port}/{database}" in out
    assert not os.path.exists(tmp_path / "metadata.sqlite")
    runs = lineage("runs", *_flags(mariadb), "--pipeline", "cli-run", "--json")
    assert runs.code == 0, runs.err
    [run] = runs.json()["runs"]
    assert run["state"] == "COMPLETE"
