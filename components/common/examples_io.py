"""Reading a TFX `Examples` artifact: its splits, its records, and which records calibrate.

Layout, as every TFX ExampleGen writes it::

    {uri}/
      Split-train/                     # optional; calibration reads it when present
        *.gz                           # GZIP-compressed TFRecord files of tf.train.Example
      Split-eval/                      # the split to evaluate on is a setting
        *.gz

The features are whatever the model needs: `components/common/feeds.py` maps them to the
model's inputs (same name, or `--feature-map`). The embedded default writes `image` (a
`float_list` of H*W*C pixels in [0, 1], row-major HWC) and `label` (one `int64`).

Calibration never sees the evaluation data (`resolve_calibration`): int8 calibrates on
`train` when the artifact has that split, or on the split a user names. When the only
split is the evaluation split, its records are divided by a hash of their bytes: SHA-256
bucket 0 of 4 calibrates and the other three evaluate, on every runner and every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping

import numpy as np

from components.common.errors import UserInputError

DEFAULT_IMAGE_FEATURE = "image"
DEFAULT_LABEL_FEATURE = "label"
DEFAULT_SPLIT = "eval"
TRAIN_SPLIT = "train"
# "auto": the train split when there is one, else a hashed slice of the evaluation split.
AUTO_CALIBRATION_SPLIT = "auto"
_HOLDOUT_BUCKETS = 4

PART_ALL = "all"
PART_CALIBRATION = "calibration"
PART_EVALUATION = "evaluation"


def split_dir(examples_uri: str, split: str = DEFAULT_SPLIT) -> str:
    return os.path.join(examples_uri, f"Split-{split}")


def split_files(examples_uri: str, split: str = DEFAULT_SPLIT) -> list[str]:
    """Lists the TFRecord files of one split, or raises UserInputError saying what is there."""
    import tensorflow as tf

    directory = split_dir(examples_uri, split)
    if not tf.io.gfile.isdir(directory):
        present = []
        if tf.io.gfile.isdir(examples_uri):
            present = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(examples_uri))
        raise UserInputError(
            f"Examples at {examples_uri!r} have no split folder 'Split-{split}' "
            f"(found: {', '.join(present) or 'nothing'}). Pass --examples a TFX Examples "
            f"artifact directory holding Split-{split}/ with GZIP TFRecords of tf.Example."
        )
    files = sorted(
        os.path.join(directory, name)
        for name in tf.io.gfile.listdir(directory)
        if not name.endswith("/")
    )
    if not files:
        raise UserInputError(f"The split folder {directory!r} is empty; it needs TFRecord files.")
    return files


def available_splits(examples_uri: str) -> list[str]:
    """The split names an Examples artifact holds (its `Split-*` folders)."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(examples_uri):
        return []
    return sorted(
        name.rstrip("/")[len("Split-") :]
        for name in tf.io.gfile.listdir(examples_uri)
        if name.startswith("Split-")
    )


def record_part(record: bytes) -> str:
    """Which slice of a single-split artifact a record belongs to (a hash of its bytes)."""
    bucket = hashlib.sha256(record).digest()[0] % _HOLDOUT_BUCKETS
    return PART_CALIBRATION if bucket == 0 else PART_EVALUATION


def read_records(
    examples_uri: str, split: str = DEFAULT_SPLIT, limit: int | None = None, part: str = PART_ALL
) -> list[bytes]:
    """Up to `limit` serialized records of one split (only `part` of it, see record_part)."""
    import tensorflow as tf

    files = split_files(examples_uri, split)
    records: list[bytes] = []
    try:
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            if limit is not None and len(records) >= limit:
                break
            value = record.numpy()
            if part == PART_ALL or record_part(value) == part:
                records.append(value)
    except tf.errors.DataLossError as error:
        raise UserInputError(
            f"Examples at {split_dir(examples_uri, split)!r} are not readable GZIP TFRecords "
            f"({str(error).splitlines()[0]}). Write them with GZIP compression, as TFX "
            f"ExampleGen does."
        ) from error
    if not records:
        raise UserInputError(
            f"Examples at {examples_uri!r} (split {split!r}"
            + (f", {part} slice" if part != PART_ALL else "")
            + ") hold no records."
        )
    return records


@dataclasses.dataclass(frozen=True)
class CalibrationPlan:
    """Where calibration reads from, and which records evaluation may use."""

    split: str
    # True: calibration and evaluation share one split, divided by record_part.
    holdout: bool
    eval_split: str

    @property
    def calibration_part(self) -> str:
        return PART_CALIBRATION if self.holdout else PART_ALL

    @property
    def evaluation_part(self) -> str:
        return PART_EVALUATION if self.holdout else PART_ALL

    def describe(self) -> dict[str, str]:
        """What was used for what, for artifacts and the report."""
        if self.holdout:
            slice_rule = f"SHA-256 of the record bytes, bucket 0 of {_HOLDOUT_BUCKETS}"
            return {
                "calibration": f"split {self.split!r}, records in {slice_rule}",
                "evaluation": f"split {self.eval_split!r}, the other {_HOLDOUT_BUCKETS - 1} "
                f"buckets",
            }
        return {
            "calibration": f"split {self.split!r}",
            "evaluation": f"split {self.eval_split!r}",
        }


def resolve_calibration(
    examples_uri: str, eval_split: str, calibration_split: str = AUTO_CALIBRATION_SPLIT
) -> CalibrationPlan:
    """Picks the calibration split so that calibration never sees evaluation records."""
    splits = available_splits(examples_uri)
    if calibration_split != AUTO_CALIBRATION_SPLIT:
        if calibration_split not in splits:
            raise UserInputError(
                f"The calibration split {calibration_split!r} is not in the Examples at "
                f"{examples_uri!r} (splits: {', '.join(splits) or 'none'}). Pass "
                f"--calibration-split one of those, or 'auto'."
            )
        return CalibrationPlan(calibration_split, calibration_split == eval_split, eval_split)
    if TRAIN_SPLIT in splits and eval_split != TRAIN_SPLIT:
        return CalibrationPlan(TRAIN_SPLIT, False, eval_split)
    return CalibrationPlan(eval_split, True, eval_split)


def write_examples(
    examples_uri: str, columns: Mapping[str, np.ndarray], split: str = DEFAULT_SPLIT
) -> str:
    """Writes one split of tf.Examples, one feature per column; returns the file written.

    Float columns become `float_list`, integer and bool columns `int64_list`, bytes
    (dtype object or S) `bytes_list`; each row is flattened into its feature.
    """
    import tensorflow as tf

    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"columns differ in length: {lengths}")
    directory = split_dir(examples_uri, split)
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, "data_tfrecord-00000-of-00001.gz")
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(path, options) as writer:
        for row in range(next(iter(lengths.values()))):
            feature = {name: _feature(column[row]) for name, column in columns.items()}
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    return path


def _feature(value: np.ndarray):  # -> tf.train.Feature
    import tensorflow as tf

    array = np.asarray(value)
    flat = array.reshape(-1)
    if array.dtype.kind == "f":
        return tf.train.Feature(float_list=tf.train.FloatList(value=flat.tolist()))
    if array.dtype.kind in "iub":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in flat]))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[bytes(v) for v in flat]))


def write_labelled_images(
    examples_uri: str,
    images: np.ndarray,
    labels: np.ndarray,
    split: str = DEFAULT_SPLIT,
    image_feature: str = DEFAULT_IMAGE_FEATURE,
    label_feature: str = DEFAULT_LABEL_FEATURE,
) -> str:
    """Writes images (float_list) and labels (int64) as one split; returns the file."""
    return write_examples(
        examples_uri,
        {image_feature: images.astype(np.float32), label_feature: labels.astype(np.int64)},
        split,
    )
