"""Fixtures for the lineage tests: small MLMD stores and a CLI runner."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import pytest

from tests.lineage import synthetic_store


@dataclasses.dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def lineage(capsys: pytest.CaptureFixture[str]):
    """Runs `inference-optimizer lineage ARGS...` in-process; returns code, stdout, stderr."""
    from pipelines import cli

    def run(*args: str) -> CliResult:
        capsys.readouterr()  # Drop anything printed before.
        code = cli.main(["lineage", *args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@dataclasses.dataclass
class SyntheticStore:
    path: str
    runs: list[synthetic_store.SyntheticRun]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStore:
    """Three runs of `digits`: a baseline, a rerun with another accuracy budget, a failure."""
    path = str(tmp_path_factory.mktemp("synthetic") / "metadata.sqlite")
    store = synthetic_store.create_store(path)
    runs = [
        synthetic_store.add_run(store, "20260101-100000.000001"),
        synthetic_store.add_run(
            store, "20260101-110000.000002", max_accuracy_drop=0.02, p50_ms=(0.62, 0.5)
        ),
        synthetic_store.add_run(store, "20260102-090000.000003", freezer_fails=True),
    ]
    del store  # MLMD closes the sqlite connection with the object.
    assert os.path.exists(path)
    return SyntheticStore(path, runs)
