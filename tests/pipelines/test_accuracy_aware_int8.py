"""`run --variants tflite_int8,tflite_int8_aa,onnx_int8_aa,openvino_int8_aa` on the
outlier digits CNN, end to end.

The model (pipelines/examples/outlier_digits.py) is trained for real and then given one
outlier channel that leaves its float function unchanged, so naive per-tensor int8
loses far more than the budget. The whole pipeline runs (BeamDagRunner, MLMD in
sqlite); the Benchmarker's own accuracy pass, on the whole eval split, judges both
int8 variants.
"""

from __future__ import annotations

import json
import os

import pytest

from components.common.int8_fallback import SEARCH_FILENAME
from pipelines import cli
from pipelines.lineage.store import SqliteLocation, open_store
from pipelines.local_runner import metadata_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outlier_run(tmp_path_factory):
    from pipelines.examples.outlier_digits import write_outlier_digits

    root = tmp_path_factory.mktemp("outlier_run")
    written = write_outlier_digits(str(root / "inputs"))
    output = str(root / "out")
    code = cli.main(
        [
            "run",
            "--model",
            written.model_uri,
            "--examples",
            written.examples_uri,
            "--output",
            output,
            "--variants",
            "tflite_int8,tflite_int8_aa,onnx_int8_aa,openvino_int8_aa",
            "--time-budget",
            "2",
            "--max-accuracy-drop",
            "0.01",
        ]
    )
    assert code == 0
    [report_path] = [
        os.path.join(d, "report.json")
        for d, _, files in os.walk(output)
        if "report.json" in files and "Benchmarker" in d
    ]
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    report["_path"] = report_path
    return output, report, written


def _row(report, name):
    return next(r for r in report["variants"] if r["name"] == name)


def test_naive_int8_fails_the_budget_and_the_accuracy_aware_variant_meets_it(outlier_run):
    output, report, written = outlier_run
    baseline = _row(report, "baseline")["metrics"]["top1"]
    naive = _row(report, "tflite_int8")["metrics"]["top1"]
    aware = _row(report, "tflite_int8_aa")
    assert baseline > 0.9
    assert baseline - naive > 0.02, (baseline, naive)
    assert baseline - aware["metrics"]["top1"] <= 0.01, (baseline, aware["metrics"])
    # The Benchmarker's figure agrees with the search's own (same records, same task).
    record = report["accuracy_aware"]["tflite_int8_aa"]
    search = record["search"]
    assert search["reachable"] and search["stop_reason"] == "within_budget"
    assert search["steps"][0]["excluded"] == [] and search["steps"][0]["metric_drop"] > 0.02
    assert 1 <= len(search["fallback_layers"]) <= 4
    assert any("conv_outlier" in name for name in search["fallback_layers"])
    assert record["held_out_examples"] > 100


@pytest.mark.parametrize("kind", ["onnx_int8_aa", "openvino_int8_aa"])
def test_the_runtime_converter_s_accuracy_aware_kinds_meet_the_budget_too(outlier_run, kind):
    # The RuntimeConverter gets the held-out examples and the search settings as the
    # Quantizer does; the Benchmarker's accuracy pass on the whole eval split judges it.
    output, report, _ = outlier_run
    baseline = _row(report, "baseline")["metrics"]["top1"]
    row = _row(report, kind)
    assert row["status"] == "ok", row
    assert baseline - row["metrics"]["top1"] <= 0.01, (baseline, row["metrics"])
    search = report["accuracy_aware"][kind]["search"]
    assert search["reachable"] and search["steps"][0]["metric_drop"] > 0.02


def test_the_fallback_is_recorded_in_mlmd_and_the_report(outlier_run):
    output, report, _ = outlier_run
    store = open_store(SqliteLocation(metadata_path(output))).mlmd
    [artifact] = [
        a
        for a in store.get_artifacts_by_type("components.QuantizedModel")
        if a.custom_properties["variant_name"].string_value == "tflite_int8_aa"
    ]
    properties = artifact.custom_properties
    record = report["accuracy_aware"]["tflite_int8_aa"]
    ranked = {layer["name"] for layer in record["sensitivity"]}
    assert properties["fallback_layer_count"].int_value == len(
        [name for name in record["search"]["fallback_layers"] if name in ranked]
    )
    chosen = record["search"]["steps"][record["search"]["chosen_step"]]
    assert properties["int8_search_drop"].double_value == pytest.approx(
        chosen["metric_drop"], abs=1e-5
    )
    assert properties["naive_int8_drop"].double_value > 0.02
    assert "search_data" in properties  # Which records the search scored on.
    assert os.path.exists(os.path.join(artifact.uri, SEARCH_FILENAME))
    html_path = os.path.join(os.path.dirname(report["_path"]), "report.html")
    with open(html_path, encoding="utf-8") as f:
        page = f.read()
    assert 'id="accuracy-aware"' in page and 'class="step-curve"' in page
    assert "conv_outlier" in page  # The sensitivity table names the layers.
    reason = report["selection"]["reason"]
    if report["selection"].get("winner") == "tflite_int8_aa":
        assert "Accuracy-aware int8:" in reason and "layers in float" in reason
