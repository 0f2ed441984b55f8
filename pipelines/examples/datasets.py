"""Raw input data of the upstream cases, written from scikit-learn's bundled datasets.

Each writer fills one directory that is then an ExampleGen's `input_base`, so it holds the
data file and nothing else (ExampleGen's default input pattern `*` reads every file):

* `breast_cancer.csv` (CsvExampleGen): the 30 numeric features of
  `load_breast_cancer`, named as plain identifiers (`mean radius` -> `mean_radius`), one
  string column `radius_size` and the int label `label` (sklearn's target: 0 malignant,
  1 benign).
* `diabetes.csv` (CsvExampleGen): the 10 *unscaled* features of `load_diabetes` (so
  that Transform's z-scoring does real work), one string column `bmi_category` and the
  float label `target`.
* `digits.tfrecord.gz` (ImportExampleGen): GZIP TFRecords of `tf.train.Example` with
  `image` (bytes_list: one PNG, 32x32x1 uint8) and `label` (int64_list: the digit).

The string columns are written into the CSV rather than derived inside `preprocessing_fn`
so that the raw data carries a categorical feature, as real tables do: the serving
signature then parses a string feature and the Transform graph holds a vocabulary lookup
(string ops a graph optimizer or compiler has to cope with).

Numbers are written with `repr(float(...))` ("0.0", never "0") so that CsvExampleGen
infers every feature column as a float, whatever its values happen to be.
"""

from __future__ import annotations

import csv
import os
import re

import numpy as np

BREAST_CANCER_CSV = "breast_cancer.csv"
BREAST_CANCER_LABEL = "label"
BREAST_CANCER_CATEGORICAL = "radius_size"
# `mean radius` spans 7..28 (mm); these cut it into thirds of roughly equal meaning.
RADIUS_SIZE_BOUNDS = ((12.0, "small"), (16.0, "medium"), (float("inf"), "large"))

DIABETES_CSV = "diabetes.csv"
DIABETES_LABEL = "target"
DIABETES_CATEGORICAL = "bmi_category"
# The WHO body-mass-index categories.
BMI_CATEGORY_BOUNDS = (
    (18.5, "underweight"),
    (25.0, "normal"),
    (30.0, "overweight"),
    (float("inf"), "obese"),
)

DIGITS_TFRECORD = "digits.tfrecord.gz"
DIGITS_IMAGE_FEATURE = "image"
DIGITS_LABEL = "label"
# 8x8 digits upsampled 4x (nearest neighbour), the embedded default's resolution, so that
# convolutions and pooling have a real spatial extent to work on.
DIGITS_IMAGE_SIZE = 32
DIGITS_NUM_CLASSES = 10


def identifier(name: str) -> str:
    """`"mean radius"` -> `"mean_radius"`: feature names must be plain identifiers."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", name.strip()).strip("_").lower()


def _bucket(value: float, bounds: tuple[tuple[float, str], ...]) -> str:
    """The name of the first bucket whose upper bound (exclusive) is above `value`."""
    for upper, name in bounds:
        if value < upper:
            return name
    raise ValueError(f"{value} is above every bucket bound")


def _write_csv(path: str, header: list[str], rows: list[list[str]]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_breast_cancer(directory: str) -> str:
    """Writes `breast_cancer.csv` into `directory` and returns `directory` (the input_base)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [identifier(n) for n in data.feature_names]
    radius = data.data[:, names.index("mean_radius")]
    rows = [
        [*(repr(float(v)) for v in features), _bucket(float(r), RADIUS_SIZE_BOUNDS), str(int(y))]
        for features, r, y in zip(data.data, radius, data.target, strict=True)
    ]
    _write_csv(
        os.path.join(directory, BREAST_CANCER_CSV),
        [*names, BREAST_CANCER_CATEGORICAL, BREAST_CANCER_LABEL],
        rows,
    )
    return directory


def write_diabetes(directory: str) -> str:
    """Writes `diabetes.csv` into `directory` and returns `directory` (the input_base)."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes(scaled=False)
    names = [identifier(n) for n in data.feature_names]
    bmi = data.data[:, names.index("bmi")]
    rows = [
        [
            *(repr(float(v)) for v in features),
            _bucket(float(b), BMI_CATEGORY_BOUNDS),
            repr(float(y)),
        ]
        for features, b, y in zip(data.data, bmi, data.target, strict=True)
    ]
    _write_csv(
        os.path.join(directory, DIABETES_CSV),
        [*names, DIABETES_CATEGORICAL, DIABETES_LABEL],
        rows,
    )
    return directory


def digit_images_uint8() -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits as uint8 (N, 32, 32, 1) images in 0..255 and int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    scale = DIGITS_IMAGE_SIZE // digits.images.shape[1]
    # Pixel values are 0..16; stretch them to the full uint8 range a PNG carries.
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    return images[..., np.newaxis], digits.target.astype(np.int64)


def write_digits_png(directory: str) -> str:
    """Writes `digits.tfrecord.gz` into `directory` and returns `directory` (the input_base).

    The `.gz` suffix matters: ImportExampleGen reads with Beam's AUTO compression, which
    picks GZIP from the file name.
    """
    import tensorflow as tf

    images, labels = digit_images_uint8()
    os.makedirs(directory, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(os.path.join(directory, DIGITS_TFRECORD), options) as writer:
        for image, label in zip(images, labels, strict=True):
            png = tf.io.encode_png(image).numpy()
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        DIGITS_IMAGE_FEATURE: tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[png])
                        ),
                        DIGITS_LABEL: tf.train.Feature(
                            int64_list=tf.train.Int64List(value=[int(label)])
                        ),
                    }
                )
            )
            # Deterministic: protobuf map order otherwise varies between processes, so
            # the same data would give different bytes (and ExampleGen fingerprints).
            writer.write(example.SerializeToString(deterministic=True))
    return directory


WRITERS = {
    "breast_cancer": write_breast_cancer,
    "diabetes": write_diabetes,
    "digits_png": write_digits_png,
}


def write_case_data(case: str, directory: str) -> str:
    """Writes `case`'s raw data into `directory` and returns it (the ExampleGen input_base)."""
    try:
        writer = WRITERS[case]
    except KeyError:
        raise ValueError(f"Unknown case {case!r}; choose one of {', '.join(WRITERS)}.") from None
    return writer(directory)
