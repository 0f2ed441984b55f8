"""Input fingerprints: any change to a file under the URI is a new fingerprint."""

from __future__ import annotations

import os

import pytest

from pipelines import input_fingerprint
from pipelines.input_fingerprint import cache_path_for, fingerprint_input


@pytest.fixture
def model_dir(tmp_path):
    root = tmp_path / "model"
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"graph v1")
    (root / "variables" / "variables.data-00000-of-00001").write_bytes(b"\0" * 3_000_000)
    return str(root)


def _set_mtime(path: str, ns: int) -> None:
    os.utime(path, ns=(ns, ns))


def test_the_fingerprint_has_exampleGens_fields_and_a_sha256(model_dir):
    described = fingerprint_input(model_dir).describe()
    fields = dict(item.split(":", 1) for item in described.split(","))
    assert list(fields) == ["num_files", "total_bytes", "xor_checksum", "sum_checksum", "sha256"]
    assert fields["num_files"] == "2" and fields["total_bytes"] == str(3_000_000 + 8)
    assert len(fields["sha256"]) == 64


def test_same_size_same_mtime_different_bytes_is_a_different_fingerprint(model_dir):
    graph = os.path.join(model_dir, "saved_model.pb")
    _set_mtime(graph, 1_700_000_000_000_000_000)
    before = fingerprint_input(model_dir)
    with open(graph, "wb") as f:
        f.write(b"graph v2")  # Same size.
    _set_mtime(graph, 1_700_000_000_000_000_000)  # Same mtime too: only the bytes tell.
    after = fingerprint_input(model_dir)
    assert before.sha256 != after.sha256 and before.content_sha256 != after.content_sha256
    assert (before.num_files, before.total_bytes) == (after.num_files, after.total_bytes)


def test_touching_a_file_changes_the_fingerprint_but_not_the_content_digest(model_dir):
    before = fingerprint_input(model_dir)
    _set_mtime(os.path.join(model_dir, "saved_model.pb"), 1_600_000_000_000_000_000)
    after = fingerprint_input(model_dir)
    assert before.describe() != after.describe()
    assert before.content_sha256 == after.content_sha256


def test_a_renamed_file_is_a_different_fingerprint(model_dir):
    before = fingerprint_input(model_dir)
    os.rename(
        os.path.join(model_dir, "saved_model.pb"), os.path.join(model_dir, "saved_model.pbtxt")
    )
    assert fingerprint_input(model_dir).content_sha256 != before.content_sha256


def test_the_cache_spares_rereading_unchanged_files_and_notices_changed_ones(
    model_dir, tmp_path, monkeypatch
):
    cache = cache_path_for(str(tmp_path))
    first = fingerprint_input(model_dir, cache)
    read = []
    original = input_fingerprint._content_sha256
    monkeypatch.setattr(
        input_fingerprint, "_content_sha256", lambda path: read.append(path) or original(path)
    )
    assert fingerprint_input(model_dir, cache) == first
    assert read == []  # Nothing was read again.
    graph = os.path.join(model_dir, "saved_model.pb")
    with open(graph, "wb") as f:
        f.write(b"graph version 3")
    changed = fingerprint_input(model_dir, cache)
    assert read == [graph]  # Only the changed file.
    assert changed.sha256 != first.sha256
    assert changed == fingerprint_input(model_dir)  # The cache gives what a full read gives.


def test_a_single_file_and_a_missing_path_can_be_fingerprinted(tmp_path):
    keras_file = tmp_path / "model.keras"
    keras_file.write_bytes(b"zip")
    assert fingerprint_input(str(keras_file)).num_files == 1
    assert fingerprint_input(str(tmp_path / "missing")).num_files == 0  # The Freezer says why.


def test_the_importers_get_the_fingerprints_as_custom_properties(model_dir, tmp_path):
    from pipelines.pipeline import create_pipeline

    examples = tmp_path / "examples" / "Split-eval"
    examples.mkdir(parents=True)
    (examples / "data.gz").write_bytes(b"records")
    pipeline = create_pipeline("p", str(tmp_path / "root"), model_dir, str(examples.parent))
    importers = {c.id: c for c in pipeline.components if c.id.endswith("_importer")}

    def custom_properties(importer) -> dict:
        return importer.outputs["result"].additional_custom_properties

    assert custom_properties(importers["model_importer"]) == (
        fingerprint_input(model_dir).custom_properties()
    )
    assert "input_fingerprint" in custom_properties(importers["examples_importer"])
