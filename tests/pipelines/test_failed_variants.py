"""A model some transforms cannot handle: those variants fail, the pipeline does not."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from pipelines import cli
from pipelines.lineage.store import SqliteLocation
from pipelines.lineage.store import open_store as open_lineage_store
from pipelines.local_runner import metadata_path

pytestmark = pytest.mark.slow


def open_store(path: str):
    """The raw MLMD store of a local run (the same reader `inference-optimizer lineage` uses)."""
    return open_lineage_store(SqliteLocation(path)).mlmd


def _export_model_with_string_ops(directory: str) -> str:
    """A linear classifier whose graph round-trips a value through a string.

    Numerically the string detour adds zero, but neither XLA nor TFLite's builtin
    ops can run `AsString`/`StringToNumber`, so those variants must fail cleanly.
    """
    import tensorflow as tf

    class StringDetourClassifier(tf.Module):
        def __init__(self) -> None:
            weights = np.random.default_rng(0).normal(size=(1024, 10)) * 0.05
            self.weights = tf.Variable(weights.astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32, "image")])
        def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            flat = tf.reshape(image, [-1, 1024])
            zero = tf.strings.to_number(tf.strings.as_string(tf.reduce_sum(flat, 1) * 0.0))
            return {"output_0": tf.nn.softmax(tf.matmul(flat, self.weights) + zero[:, None])}

    module = StringDetourClassifier()
    tf.saved_model.save(module, directory, signatures={"serving_default": module.serve})
    return directory


def test_unsupported_ops_give_failed_variants_and_the_pipeline_goes_on(
    tmp_path, embedded_default, capsys
):
    model = _export_model_with_string_ops(str(tmp_path / "model"))
    output = str(tmp_path / "out")

    code = cli.main(
        [
            "run",
            "--model",
            model,
            "--examples",
            embedded_default.examples_uri,
            "--output",
            output,
            "--time-budget",
            "3",
            "--variants",
            "optimized_graph,tflite_float16,weights_int8_graph,xla_jit,xla_aot,"
            "openvino_fp32,onnx_fp32",
        ]
    )
    out = capsys.readouterr().out

    assert code == 0
    store = open_store(metadata_path(output))
    [report_artifact] = store.get_artifacts_by_type("components.BenchmarkReport")
    with open(os.path.join(report_artifact.uri, "report.json")) as f:
        rows = {v["name"]: v for v in json.load(f)["variants"]}
    for failed in ("tflite_float16", "xla_jit", "xla_aot"):
        assert rows[failed]["status"] == "failed", failed
        assert "AsString" in rows[failed]["failure_reason"], failed
        assert f"{failed} failed:" in out  # The table explains each failed row.
    # OpenVINO has no conversion for the string ops: a failed row with its own words.
    assert rows["openvino_fp32"]["status"] == "failed"
    assert "AsString" in rows["openvino_fp32"]["failure_reason"]
    # tf2onnx turns the AsString/StringToNumber round trip into Casts that ONNX Runtime
    # runs (tests/runtime_converter/test_onnx_model.py fails it with Substr instead).
    ok_rows = ("baseline", "frozen_graph", "optimized_graph", "weights_int8_graph", "onnx_fp32")
    for ok in ok_rows:
        assert rows[ok]["status"] == "ok", ok
    variants = store.get_artifacts_by_type("components.XlaCompiledModel")
    assert {a.custom_properties["status"].string_value for a in variants} == {"failed"}
    for artifact in variants:  # Nothing half-written: only the reason is left.
        assert os.listdir(artifact.uri) == ["FAILED.txt"]
