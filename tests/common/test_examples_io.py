"""Examples on disk: splits, the calibration/evaluation division, and the writer."""

from __future__ import annotations

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.examples_io import (
    PART_CALIBRATION,
    PART_EVALUATION,
    available_splits,
    read_records,
    record_part,
    resolve_calibration,
    write_examples,
)


@pytest.fixture
def examples_dir(tmp_path):
    rng = np.random.default_rng(0)
    for split, rows in (("train", 40), ("eval", 200)):
        write_examples(
            str(tmp_path),
            {"x": rng.normal(size=(rows, 3)).astype(np.float32), "label": np.arange(rows)},
            split,
        )
    return str(tmp_path)


def test_calibration_reads_train_when_the_examples_have_it(examples_dir):
    plan = resolve_calibration(examples_dir, "eval")

    assert (plan.split, plan.holdout) == ("train", False)
    assert plan.evaluation_part == "all"
    assert plan.describe() == {"calibration": "split 'train'", "evaluation": "split 'eval'"}


def test_a_single_split_is_divided_so_calibration_never_sees_evaluation_records(tmp_path):
    write_examples(str(tmp_path), {"x": np.arange(400, dtype=np.float32)}, "eval")

    plan = resolve_calibration(str(tmp_path), "eval")
    calibration = read_records(str(tmp_path), "eval", part=plan.calibration_part)
    evaluation = read_records(str(tmp_path), "eval", part=plan.evaluation_part)
    everything = read_records(str(tmp_path), "eval")

    assert plan.holdout and plan.split == "eval"
    assert not set(calibration) & set(evaluation)
    assert sorted(calibration + evaluation) == sorted(everything)
    assert 60 < len(calibration) < 140  # About a quarter of 400.
    assert "bucket 0 of 4" in plan.describe()["calibration"]


def test_record_part_is_a_property_of_the_bytes_alone():
    record = b"\x0a\x03abc"

    assert record_part(record) == record_part(bytes(record))
    assert {record_part(bytes([i, i])) for i in range(64)} == {PART_CALIBRATION, PART_EVALUATION}


def test_an_explicit_calibration_split_must_exist(examples_dir):
    assert resolve_calibration(examples_dir, "eval", "eval").holdout
    with pytest.raises(UserInputError, match=r"split .tune. .* \(splits: eval, train\)"):
        resolve_calibration(examples_dir, "eval", "tune")
    assert available_splits(examples_dir) == ["eval", "train"]


def test_read_records_stops_at_the_limit_and_refuses_an_empty_slice(tmp_path):
    write_examples(str(tmp_path), {"x": np.arange(3, dtype=np.float32)}, "eval")

    assert len(read_records(str(tmp_path), "eval", limit=2)) == 2
    parts = {record_part(r) for r in read_records(str(tmp_path), "eval")}
    missing = ({PART_CALIBRATION, PART_EVALUATION} - parts) or {None}
    if missing != {None}:  # Three records may all hash into one slice.
        with pytest.raises(UserInputError, match="hold no records"):
            read_records(str(tmp_path), "eval", part=missing.pop())
