"""`run --json` and `--require-speedup`: read from a report.json's selection."""

from __future__ import annotations

import json

from pipelines.run_summary import run_document, speedup_gate, winner_speedup


def _report(objective: str = "p50", blessed: bool = True) -> dict:
    latency = {"baseline": 10.0, "tflite_int8": 2.5}
    throughput = {"baseline": 100.0, "tflite_int8": 300.0}
    values = latency if objective == "p50" else throughput
    return {
        "baseline_name": "baseline",
        "inputs": {"model_uri": "/m", "examples_uri": "/e"},
        "evaluation": {"primary_metric": "top1"},
        "fingerprint": {"cpu_model": "AMD EPYC", "usable_cores": 2, "cpu_flags": ["avx2"]},
        "selection": {
            "state": "blessed" if blessed else "accuracy_budget_exceeded",
            "blessed": blessed,
            "winner": "tflite_int8" if blessed else None,
            "objective": objective,
            "reason": "why",
            "verdicts": [
                {"name": name, "objective_value": value, "accuracy_drop": 0.004}
                for name, value in values.items()
            ],
        },
        "variants": [
            {
                "name": name,
                "status": "ok",
                "latency": {"summary": {"p50_ms": p50, "p99_ms": p50 * 2}},
                "metrics": {"top1": 0.95},
                "agreement": 1.0,
                "speedup_vs_baseline_p50": 10.0 / p50,
                "size_bytes": 1000,
            }
            for name, p50 in latency.items()
        ]
        + [{"name": "xla_aot", "status": "failed", "failure_reason": "MemoryBudgetExceeded"}],
    }


def test_the_speedup_is_on_the_objective():
    assert winner_speedup(_report("p50")) == 4.0  # 10 ms / 2.5 ms
    assert winner_speedup(_report("throughput")) == 3.0  # 300 / 100 images/s
    assert winner_speedup(_report(blessed=False)) is None


def test_the_gate_passes_at_the_speedup_and_fails_above_it_or_without_a_blessing():
    assert speedup_gate(_report(), 4.0) == (
        True,
        "--require-speedup 4: met, the blessed tflite_int8 is 4.00x the baseline on p50.",
    )
    met, line = speedup_gate(_report(), 4.5)
    assert not met and "NOT MET" in line
    met, line = speedup_gate(_report(blessed=False), 1.01)
    assert not met and "nothing was blessed (accuracy_budget_exceeded)" in line


def test_the_json_document_has_the_documented_shape():
    document = run_document(
        _report(),
        pipeline="p",
        run_id="r",
        output_dir="/out",
        report_uri="/out/report",
        metadata="/out/metadata.sqlite",
        served_from_cache=["Freezer"],
        required_speedup=5.0,
        exit_code=3,
    )
    json.dumps(document, allow_nan=False)  # Strict JSON.
    assert document["winner"] == "tflite_int8" and document["winner_speedup"] == 4.0
    assert document["require_speedup"] == {"required": 5.0, "met": False}
    assert document["report"]["html"] == "/out/report/report.html"
    assert document["machine"]["cpu_model"] == "AMD EPYC"
    rows = {row["name"]: row for row in document["variants"]}
    assert rows["tflite_int8"]["p50_ms"] == 2.5 and rows["tflite_int8"]["accuracy_drop"] == 0.004
    assert rows["tflite_int8"]["metric"] == 0.95 and rows["tflite_int8"]["primary_metric"] == "top1"
    assert rows["xla_aot"]["status"] == "failed" and rows["xla_aot"]["p50_ms"] is None
