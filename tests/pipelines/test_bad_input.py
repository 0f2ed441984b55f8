"""Examples that do not fit the model: refused in seconds by the CLI, FAILED with a reason
in MLMD when the pipeline runs without the CLI (as on Kubeflow), nothing published.

| case | model | what is wrong |
|---|---|---|
| missing_feature | floats + int ids | no `token_ids` feature |
| dtype_mismatch | floats + int ids | `token_ids` holds floats |
| ragged_feature | floats + int ids | `token_ids` has 2 or 4 values |
| not_an_example_input | takes raw text | the Examples have no `text` bytes feature |
| float_labels | 3-class classifier | `label` holds floats |
| undecodable_image | takes uint8 images | `image` bytes are no PNG |
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.examples_io import write_examples

CASES = {
    "missing_feature": "no such feature (present: features (float_list), label",
    "dtype_mismatch": "float values cannot feed it",
    "ragged_feature": "variable-length: its records hold 2, 4 values",
    "not_an_example_input": "feeds no ParseExample op",
    "float_labels": "holds float values, but the task is multiclass",
    "undecodable_image": "do not decode as a PNG",
}


def _save(module, directory: str) -> str:
    import tensorflow as tf

    tf.saved_model.save(module, directory, signatures={"serving_default": module.serve})
    return directory


def _mixed_input_model(directory: str) -> str:
    import tensorflow as tf

    class MixedInputs(tf.Module):
        def __init__(self) -> None:
            self.weights = tf.Variable(np.eye(6, 3, dtype=np.float32))

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 6], tf.float32, "features"),
                tf.TensorSpec([None, 4], tf.int64, "token_ids"),
            ]
        )
        def serve(self, features, token_ids):
            ids = tf.cast(tf.reduce_sum(token_ids, 1, keepdims=True), tf.float32)
            return {"probabilities": tf.nn.softmax(tf.matmul(features, self.weights) + ids)}

    return _save(MixedInputs(), directory)


def _text_model(directory: str) -> str:
    import tensorflow as tf

    class Text(tf.Module):
        def __init__(self) -> None:
            self.scale = tf.Variable(0.1)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, "text")])
        def serve(self, text):
            length = tf.cast(tf.strings.length(text), tf.float32)[:, None]
            return {"score": tf.sigmoid(self.scale * length)}

    return _save(Text(), directory)


def _image_model(directory: str) -> str:
    import tensorflow as tf

    class Image(tf.Module):
        def __init__(self) -> None:
            self.weights = tf.Variable(np.full((16, 3), 0.01, np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 1], tf.uint8, "image")])
        def serve(self, image):
            flat = tf.reshape(tf.cast(image, tf.float32) / 255.0, [-1, 16])
            return {"probabilities": tf.nn.softmax(tf.matmul(flat, self.weights))}

    return _save(Image(), directory)


def _case_inputs(case: str, root: str) -> tuple[str, str]:
    """(model, examples) for one case, written under `root`."""
    rng = np.random.default_rng(0)
    rows = 40
    features = rng.normal(size=(rows, 6)).astype(np.float32)
    labels = rng.integers(0, 3, rows)
    columns: dict[str, np.ndarray] = {"features": features, "label": labels}
    if case in ("missing_feature", "dtype_mismatch", "ragged_feature", "float_labels"):
        model = _mixed_input_model(os.path.join(root, "model"))
        columns["token_ids"] = rng.integers(0, 5, (rows, 4))
        if case == "missing_feature":
            del columns["token_ids"]
        elif case == "dtype_mismatch":
            columns["token_ids"] = columns["token_ids"].astype(np.float32)
        elif case == "float_labels":
            columns["label"] = labels.astype(np.float32) + 0.5
    elif case == "not_an_example_input":
        model = _text_model(os.path.join(root, "model"))
    else:
        model = _image_model(os.path.join(root, "model"))
        columns = {"image": np.array([b"\x89PNG garbage"] * rows, dtype=object), "label": labels}
    examples = os.path.join(root, "examples")
    if case == "ragged_feature":
        # Every other example has 2 token ids instead of 4: written record by record.
        _write_ragged(examples, features, labels)
    else:
        for split in ("train", "eval"):
            write_examples(examples, columns, split)
    return model, examples


def _write_ragged(examples: str, features: np.ndarray, labels: np.ndarray) -> None:
    import tensorflow as tf

    for split in ("train", "eval"):
        directory = os.path.join(examples, f"Split-{split}")
        os.makedirs(directory, exist_ok=True)
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        with tf.io.TFRecordWriter(os.path.join(directory, "data.gz"), options) as writer:
            for index, (row, label) in enumerate(zip(features, labels, strict=True)):
                ids = [1, 2, 3, 4] if index % 2 else [1, 2]
                feature = {
                    "features": tf.train.Feature(float_list=tf.train.FloatList(value=row)),
                    "token_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=ids)),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                }
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                writer.write(example.SerializeToString())


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_cli_preflight_refuses_examples_that_do_not_fit_in_seconds(case, tmp_path):
    import time

    from pipelines.pipeline import PipelineSettings
    from pipelines.preflight import check_run_inputs

    model, examples = _case_inputs(case, str(tmp_path))
    started = time.monotonic()

    with pytest.raises(UserInputError, match=re.escape(CASES[case])) as raised:
        check_run_inputs(model, examples, PipelineSettings(variants=("tflite_int8",)))

    assert time.monotonic() - started < 20  # Seconds, not the 30-40 s of running components.
    message = str(raised.value)
    assert "\n" not in message  # One paragraph: the input, what was found, the fix.
    assert any(fix in message.lower() for fix in ("pass ", "map ", "pad ")), message


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_pipeline_run_without_the_cli_fails_with_the_reason_in_mlmd(case, tmp_path, capsys):
    from ml_metadata.proto import metadata_store_pb2

    from pipelines import cli
    from pipelines.lineage.store import SqliteLocation, open_store
    from pipelines.local_runner import (
        PIPELINE_ROOT_DIRNAME,
        metadata_path,
        run_pipeline,
        sqlite_connection_config,
    )
    from pipelines.pipeline import create_pipeline
    from tests.lineage.pipeline_runs import PIPELINE_NAME, fast_settings

    model, examples = _case_inputs(case, str(tmp_path / "inputs"))
    output = str(tmp_path / "run")
    pipeline = create_pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=os.path.join(output, PIPELINE_ROOT_DIRNAME),
        model_uri=model,
        examples_uri=examples,
        metadata_connection_config=sqlite_connection_config(output),
        # int8 calibration reads the Examples first; the Benchmarker judges the labels.
        settings=fast_settings(variants=("tflite_int8",)),
    )

    with pytest.raises(Exception) as raised:
        run_pipeline(pipeline, progress_stream=io.StringIO())

    from components.common.errors import find_user_error

    assert CASES[case] in str(find_user_error(raised.value))
    mlmd = open_store(SqliteLocation(metadata_path(output))).mlmd
    failed = [
        e
        for e in mlmd.get_executions()
        if e.last_known_state == metadata_store_pb2.Execution.FAILED
    ]
    assert len(failed) == 1
    # Nothing the failed execution would have written is published.
    events = mlmd.get_events_by_execution_ids([failed[0].id])
    assert not [e for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
    capsys.readouterr()
    assert cli.main(["lineage", "show", "latest", "--metadata", metadata_path(output)]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "FAILED" in shown and "failed because:" in shown
    assert " ".join(CASES[case].split()) in shown
