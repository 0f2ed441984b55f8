"""The proof cases: real TFX pipelines with this tool's components after the Trainer.

Each case runs one TFX pipeline on BeamDagRunner (pipelines/examples/drop_in_after_trainer.py):
a real ExampleGen (and StatisticsGen, SchemaGen, Transform for the tabular cases) and
Trainer, then the Freezer, InferenceOptimizer, a Quantizer, an XlaCompiler and the
Benchmarker. The tests check what TFX made (the Examples layout, the Trainer's standard
serialized-Example `serving_default`) and what the tool made of it (the split, the table
with the task metric and faithfulness per variant, a blessed variant).

* (a) breast_cancer: CsvExampleGen, Transform (z-scores, a vocabulary), Trainer;
  serialized Examples in, a sigmoid out: binary.
* (b) diabetes: the same steps; serialized Examples in, one number out: regression.
* (c) digits_png: ImportExampleGen of PNG bytes, Trainer; uint8 images in, softmax out.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.report_checks import assert_blessed_unless_starved

pytestmark = pytest.mark.slow

EXAMPLE_SPLITS = ("Split-train", "Split-eval")


def _split_files(examples_uri: str, split_dir: str) -> list[str]:
    directory = os.path.join(examples_uri, split_dir)
    return sorted(os.path.join(directory, name) for name in os.listdir(directory))


def _check_examples_artifact(examples_uri: str, features: set[str]) -> list[bytes]:
    """Asserts the TFX Examples layout and returns the eval split's serialized records."""
    import tensorflow as tf

    present = set(os.listdir(examples_uri))
    assert set(EXAMPLE_SPLITS) <= present, present
    records: dict[str, list[bytes]] = {}
    for split_dir in EXAMPLE_SPLITS:
        files = _split_files(examples_uri, split_dir)
        assert files and all(f.endswith(".gz") for f in files), files
        # Reading with GZIP fails loudly on uncompressed TFRecords.
        dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
        records[split_dir] = [r.numpy() for r in dataset]
        assert records[split_dir], split_dir
    example = tf.train.Example.FromString(records["Split-eval"][0])
    assert set(example.features.feature) == features
    # ExampleGen's default hash split is train:eval = 2:1.
    n_train, n_eval = len(records["Split-train"]), len(records["Split-eval"])
    assert 1.5 < n_train / n_eval < 2.7, (n_train, n_eval)
    return records["Split-eval"]


def _label(record: bytes, label_feature: str) -> float:
    import tensorflow as tf

    feature = tf.train.Example.FromString(record).features.feature[label_feature]
    return (list(feature.int64_list.value) or list(feature.float_list.value))[0]


def _serving_signature(model_uri: str):
    import tensorflow as tf

    loaded = tf.saved_model.load(os.path.join(model_uri, "Format-Serving"))
    # Keep the loaded object alive with the concrete function.
    return loaded, loaded.signatures["serving_default"]


def _check_tabular_signature(serving) -> None:
    import tensorflow as tf

    args, kwargs = serving.structured_input_signature
    assert args == ()
    assert kwargs == {"examples": tf.TensorSpec([None], tf.string, name="examples")}
    assert set(serving.structured_outputs) == {"outputs"}


def _tabular_features(label: str, categorical: str, numeric: list[str]) -> set[str]:
    return {*numeric, categorical, label}


def _run(case: str, output_dir: str) -> tuple[dict, str, str]:
    """Runs a case's whole pipeline; returns (report, model URI, examples URI) from MLMD."""
    from components.benchmarker.report import read_report
    from pipelines.examples import upstream
    from pipelines.examples.drop_in_after_trainer import run_case
    from pipelines.lineage import queries
    from pipelines.lineage.store import SqliteLocation, open_store
    from pipelines.local_runner import metadata_path
    from tests.lineage.pipeline_runs import fast_settings

    settings = fast_settings(
        variants=("optimized_graph", "tflite_float16", "tflite_int8", "xla_jit")
    )
    name = run_case(case, output_dir, settings)
    store = open_store(SqliteLocation(metadata_path(output_dir)))
    run = queries.resolve_run(store, "latest", name)
    report_id = queries.resolve_artifact(store, "report", run_ref=run.run_id, pipeline=name)
    report = read_report(queries.run_graph(store, run).graph.artifacts[report_id].uri)
    model_uri = upstream.latest_output_uri(store.mlmd, name, upstream.TRAINER_ID, "Model")
    example_gen = upstream.EXAMPLE_GEN_IDS[case]
    examples_uri = upstream.latest_output_uri(store.mlmd, name, example_gen, "Examples")
    return report, model_uri, examples_uri


def _rows(report: dict) -> dict[str, dict]:
    return {row["name"]: row for row in report["variants"]}


def _check_split_case(report: dict) -> dict[str, dict]:
    """What every serialized-Example case shows: the split, e2e and core figures."""
    rows = _rows(report)
    assert report["split"] is True
    assert rows["baseline"]["covers"] == "end to end"
    assert rows["preprocessing"]["covers"] == "preprocessing"
    assert rows["preprocessing"]["status"] == "ok", rows["preprocessing"]["failure_reason"]
    frozen = rows["frozen_graph"]
    assert frozen["covers"] == "model core" and frozen["end_to_end_estimated"]
    preprocessing_p50 = rows["preprocessing"]["latency"]["summary"]["p50_ms"]
    core_p50 = frozen["latency"]["summary"]["p50_ms"]
    assert frozen["end_to_end_p50_ms"] == pytest.approx(preprocessing_p50 + core_p50)
    assert frozen["max_abs_diff"] < 1e-4  # Preprocessing + core = the original signature.
    fed = {entry["input"]: entry["kind"] for entry in report["data"]["inputs"]}
    assert fed["examples"] == "tf_example"
    assert "preprocessed" in fed.values()
    tables = report["data"]["preprocessing"]["tables"]
    assert tables and all(t["key_dtype"] == "string" for t in tables)  # The vocabulary.
    assert_blessed_unless_starved(report)
    return rows


def test_breast_cancer_binary_classifier_after_csv_example_gen_transform_and_trainer(tmp_path):
    from sklearn.datasets import load_breast_cancer

    from pipelines.examples import datasets

    report, model_uri, examples_uri = _run("breast_cancer", str(tmp_path))

    numeric = [datasets.identifier(n) for n in load_breast_cancer().feature_names]
    _check_examples_artifact(
        examples_uri,
        _tabular_features(
            datasets.BREAST_CANCER_LABEL, datasets.BREAST_CANCER_CATEGORICAL, numeric
        ),
    )
    _loaded, serving = _serving_signature(model_uri)
    _check_tabular_signature(serving)
    rows = _check_split_case(report)
    assert report["evaluation"]["task"] == "binary"
    assert report["evaluation"]["labels"] == datasets.BREAST_CANCER_LABEL
    assert rows["baseline"]["metrics"]["accuracy"] > 0.9
    assert rows["baseline"]["metrics"]["auc"] > 0.95
    assert rows["frozen_graph"]["agreement"] == 1.0


def test_diabetes_regression_after_csv_example_gen_transform_and_trainer(tmp_path):
    from pipelines.examples import datasets

    report, model_uri, examples_uri = _run("diabetes", str(tmp_path))

    _loaded, serving = _serving_signature(model_uri)
    _check_tabular_signature(serving)
    rows = _check_split_case(report)
    assert report["evaluation"]["task"] == "regression"
    assert report["evaluation"]["labels"] == datasets.DIABETES_LABEL
    assert report["evaluation"]["gate"]["relative"]  # 1% of the baseline's MAE.
    assert 20 < rows["baseline"]["metrics"]["mae"] < 70  # The target spans ~25..346.
    assert rows["frozen_graph"]["relative_error"] < 1e-5


def test_digits_png_classifier_after_import_example_gen_and_trainer(tmp_path):
    from pipelines.examples import datasets

    report, model_uri, examples_uri = _run("digits_png", str(tmp_path))

    _check_examples_artifact(examples_uri, {datasets.DIGITS_IMAGE_FEATURE, datasets.DIGITS_LABEL})
    rows = _rows(report)
    assert report["split"] is False  # A raw-tensor signature: uint8 images in.
    fed = {entry["input"]: entry for entry in report["data"]["inputs"]}
    size = datasets.DIGITS_IMAGE_SIZE
    assert fed["image"]["kind"] == "image"
    assert fed["image"]["image"] == {
        "resize_method": "bilinear",
        "size": [size, size],
        "scaling": "none",
    }
    assert report["evaluation"]["task"] == "multiclass"
    assert rows["baseline"]["metrics"]["top1"] > 0.85
    for name in ("frozen_graph", "tflite_float16", "tflite_int8"):
        assert rows[name]["status"] == "ok", (name, rows[name]["failure_reason"])
        assert rows[name]["agreement"] > 0.97, name
    assert_blessed_unless_starved(report)
    assert np.isfinite(rows["tflite_int8"]["speedup_vs_baseline_p50"])
