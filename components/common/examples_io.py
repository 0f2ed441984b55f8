"""Reading labelled images from a TFX `Examples` artifact.

Expected layout and feature format (what users bring must match)::

    {uri}/
      Split-eval/                      # the split name is configurable
        *.gz                           # GZIP-compressed TFRecord files of tf.train.Example
      (other Split-*/ folders are ignored)

Each `tf.train.Example` holds:
  * `image`: a `float_list` with H*W*C values, row-major (HWC), already scaled the
    way the model expects (the embedded default uses [0, 1]). Its length must equal
    the product of the model input's non-batch dimensions.
  * `label`: an `int64_list` with one value, the class index.

Both feature names are settings (`image_feature`, `label_feature`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from components.common.errors import UserInputError
from components.common.signature import TensorDescription

DEFAULT_IMAGE_FEATURE = "image"
DEFAULT_LABEL_FEATURE = "label"
DEFAULT_SPLIT = "eval"


@dataclasses.dataclass
class LabelledImages:
    """Images shaped for the model (N, ...) and integer labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


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


def read_labelled_images(
    examples_uri: str,
    model_input: TensorDescription,
    split: str = DEFAULT_SPLIT,
    image_feature: str = DEFAULT_IMAGE_FEATURE,
    label_feature: str = DEFAULT_LABEL_FEATURE,
    limit: int | None = None,
) -> LabelledImages:
    """Decodes up to `limit` examples into arrays shaped for `model_input`.

    Raises UserInputError when a feature is missing or its size does not fit the
    model input, naming the feature, the sizes and the path.
    """
    import tensorflow as tf

    files = split_files(examples_uri, split)
    item_shape = tuple(model_input.shape[1:])
    if any(d is None for d in item_shape):
        raise UserInputError(
            f"The model input {model_input.name!r} has an unknown non-batch dimension "
            f"{list(model_input.shape)}; export the model with a fixed image shape."
        )
    expected_size = int(np.prod(item_shape))
    images: list[np.ndarray] = []
    labels: list[int] = []
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    try:
        for record in dataset:
            if limit is not None and len(labels) >= limit:
                break
            example = tf.train.Example.FromString(record.numpy())
            features = example.features.feature
            for name in (image_feature, label_feature):
                if name not in features:
                    raise UserInputError(
                        f"Examples at {examples_uri!r} lack the feature {name!r} "
                        f"(present: {', '.join(sorted(features))}). Set --image-feature / "
                        f"--label-feature, or write examples in the documented format."
                    )
            values = features[image_feature].float_list.value
            if len(values) != expected_size:
                raise UserInputError(
                    f"Examples at {examples_uri!r} do not match the model input: feature "
                    f"{image_feature!r} has {len(values)} float values, but input "
                    f"{model_input.name!r} with shape {list(model_input.shape)} needs "
                    f"{expected_size}. Use examples made for this model."
                )
            images.append(np.asarray(values, dtype=np.float32).reshape(item_shape))
            labels.append(int(features[label_feature].int64_list.value[0]))
    except tf.errors.DataLossError as error:
        raise UserInputError(
            f"Examples at {split_dir(examples_uri, split)!r} are not readable GZIP TFRecords "
            f"({str(error).splitlines()[0]}). Write them with GZIP compression."
        ) from error
    if not labels:
        raise UserInputError(f"Examples at {examples_uri!r} (split {split!r}) hold no records.")
    return LabelledImages(
        images=np.stack(images).astype(model_input.dtype), labels=np.asarray(labels, np.int64)
    )


def write_labelled_images(
    examples_uri: str,
    images: np.ndarray,
    labels: np.ndarray,
    split: str = DEFAULT_SPLIT,
    image_feature: str = DEFAULT_IMAGE_FEATURE,
    label_feature: str = DEFAULT_LABEL_FEATURE,
) -> str:
    """Writes arrays as a TFX `Examples` split in the documented format; returns the file."""
    import tensorflow as tf

    directory = split_dir(examples_uri, split)
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, "data_tfrecord-00000-of-00001.gz")
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(path, options) as writer:
        for image, label in zip(images, labels, strict=True):
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        image_feature: tf.train.Feature(
                            float_list=tf.train.FloatList(value=image.reshape(-1).tolist())
                        ),
                        label_feature: tf.train.Feature(
                            int64_list=tf.train.Int64List(value=[int(label)])
                        ),
                    }
                )
            )
            writer.write(example.SerializeToString())
    return path
