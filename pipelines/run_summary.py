"""What `run` says when it ends: the `--json` document and the `--require-speedup` gate.

Plain functions of a report.json (components/benchmarker/report_schema.md), so that a CI
script and a test read the same facts the results table shows.

`run --json` prints one JSON object on stdout (progress stays on stderr):

    {
      "pipeline": "inference-optimizer", "run_id": "...", "output_dir": "/abs/runs/...",
      "report": {"uri": ..., "html": ..., "json": ...}, "metadata": "DIR/metadata.sqlite",
      "served_from_cache": ["Freezer", ...],
      "inputs": {"model_uri": ..., "examples_uri": ...},
      "machine": {"cpu_model": ..., "usable_cores": 2, "cpu_flags": [...], "gpu_model": null},
      "objective": "p50", "baseline": "baseline",
      "blessed": true, "winner": "onnx_int8", "winner_speedup": 2.41,
      "selection_state": "blessed", "reason": "...",
      "variants": [{"name", "status", "failure_reason", "p50_ms", "p99_ms",
                    "speedup_p50", "primary_metric", "metric", "accuracy_drop",
                    "agreement", "size_bytes"}, ...],
      "require_speedup": {"required": 1.5, "met": true} or null,
      "exit_code": 0
    }

`winner_speedup` is on the run's objective: the baseline's p50 over the winner's, or the
winner's throughput over the baseline's. Without a blessing it is null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

EXIT_SPEEDUP_NOT_MET = 3  # Distinct from a failure (1) and Ctrl-C (130): for CI gates.


def winner_speedup(report: Mapping[str, Any]) -> float | None:
    """The blessed variant's speedup over the baseline on the run's objective; None if
    nothing was blessed or either side has no figure."""
    selection = report.get("selection") or {}
    winner, baseline = selection.get("winner"), report.get("baseline_name")
    if not selection.get("blessed") or not winner:
        return None
    values = {v["name"]: v.get("objective_value") for v in selection.get("verdicts") or []}
    ours, theirs = values.get(winner), values.get(baseline)
    if not ours or not theirs:
        return None
    if selection.get("objective") == "throughput":
        return ours / theirs  # Images per second: higher is better.
    return theirs / ours  # Latency: lower is better.


def speedup_gate(report: Mapping[str, Any], required: float) -> tuple[bool, str]:
    """Whether the blessed variant is at least `required` times the baseline; and one line."""
    speedup = winner_speedup(report)
    objective = (report.get("selection") or {}).get("objective", "p50")
    if speedup is None:
        state = (report.get("selection") or {}).get("state", "?")
        return False, (
            f"--require-speedup {required:g}: NOT MET, nothing was blessed ({state}); "
            "see the report's selection reason."
        )
    met = speedup >= required
    winner = report["selection"]["winner"]
    return met, (
        f"--require-speedup {required:g}: {'met' if met else 'NOT MET'}, the blessed "
        f"{winner} is {speedup:.2f}x the baseline on {objective}."
    )


def run_document(
    report: Mapping[str, Any],
    *,
    pipeline: str,
    run_id: str,
    output_dir: str,
    report_uri: str,
    metadata: str,
    served_from_cache: Sequence[str],
    required_speedup: float | None,
    exit_code: int,
) -> dict[str, Any]:
    """The `run --json` document (the module doc gives its shape)."""
    import os

    selection = report.get("selection") or {}
    verdicts = {v["name"]: v for v in selection.get("verdicts") or []}
    primary = (report.get("evaluation") or {}).get("primary_metric")
    fingerprint = report.get("fingerprint") or {}
    gate = None
    if required_speedup is not None:
        gate = {"required": required_speedup, "met": speedup_gate(report, required_speedup)[0]}
    return {
        "pipeline": pipeline,
        "run_id": run_id,
        "output_dir": output_dir,
        "report": {
            "uri": report_uri,
            "html": os.path.join(report_uri, "report.html"),
            "json": os.path.join(report_uri, "report.json"),
        },
        "metadata": metadata,
        "served_from_cache": list(served_from_cache),
        "inputs": dict(report.get("inputs") or {}),
        "machine": {
            key: fingerprint.get(key)
            for key in ("cpu_model", "usable_cores", "cpu_flags", "gpu_model", "gpu_count")
        },
        "objective": selection.get("objective"),
        "baseline": report.get("baseline_name"),
        "blessed": bool(selection.get("blessed")),
        "winner": selection.get("winner"),
        "winner_speedup": winner_speedup(report),
        "selection_state": selection.get("state"),
        "reason": selection.get("reason"),
        "variants": [
            _variant(row, verdicts.get(row["name"]) or {}, primary) for row in report["variants"]
        ],
        "require_speedup": gate,
        "exit_code": exit_code,
    }


def _variant(row: Mapping[str, Any], verdict: Mapping[str, Any], primary: str | None) -> dict:
    summary = (row.get("latency") or {}).get("summary") or {}
    return {
        "name": row["name"],
        "status": row["status"],
        "failure_reason": row.get("failure_reason"),
        "p50_ms": summary.get("p50_ms"),
        "p99_ms": summary.get("p99_ms"),
        "speedup_p50": row.get("speedup_vs_baseline_p50"),
        "primary_metric": primary,
        "metric": (row.get("metrics") or {}).get(primary) if primary else None,
        "accuracy_drop": verdict.get("accuracy_drop"),
        "agreement": row.get("agreement"),
        "size_bytes": row.get("size_bytes"),
    }
