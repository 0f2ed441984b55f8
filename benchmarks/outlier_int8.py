"""Accuracy-aware int8 against naive int8, per mode, on a model where naive int8 fails.

    .venv/bin/python -m benchmarks.outlier_int8 [--output DIR] [--time-budget 10]
    make benchmark-outlier

1. Builds the outlier digits CNN (pipelines/examples/outlier_digits.py): trained on
   scikit-learn's digits, then one channel of its first convolution scaled up 300x and
   its reader's weights scaled down (the same function in float, a per-tensor int8
   failure).
2. Runs `inference-optimizer run` once with every int8 mode and its accuracy-aware kind
   this machine can run (TFLite, ONNX Runtime, OpenVINO; oneDNN where the CPU has
   AVX-512), so that every
   latency below comes from one run on one machine.
3. Prints and writes `<output>/outlier_int8.json` and `.txt`, per mode: naive int8's
   top-1 drop and speedup, the accuracy-aware variant's drop, speedup and layers in
   float, and how long its search took.

The speed targets live here, not in the tests: the accuracy-aware variant must stay
faster than the fp32 baseline (`faster_than_baseline`), and its drop must be within the
1-point budget. The exit code is 1 when a mode misses either.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

_REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = (
    ("tflite_int8", "tflite_int8_aa"),
    ("onednn_int8", "onednn_int8_aa"),
    ("onnx_int8", "onnx_int8_aa"),
    ("openvino_int8", "openvino_int8_aa"),
)
BUDGET = 0.01


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=os.path.join("runs", "benchmark-outlier-int8"))
    parser.add_argument("--time-budget", type=float, default=10.0, help="per timing scenario")
    args = parser.parse_args(argv)
    output = os.path.abspath(args.output)
    from components.common.cpu_facts import host_cpu
    from components.variant_kinds import get_kind
    from pipelines.examples.outlier_digits import write_outlier_digits

    cpu = host_cpu()
    kinds = [k for pair in MODES for k in pair if not get_kind(k).unavailable_reason(cpu)]
    written = write_outlier_digits(os.path.join(output, "inputs"))
    command = [
        sys.executable,
        "-m",
        "pipelines",
        "run",
        "--model",
        written.model_uri,
        "--examples",
        written.examples_uri,
        "--output",
        os.path.join(output, "run"),
        "--variants",
        ",".join(kinds),
        "--time-budget",
        str(args.time_budget),
        "--max-accuracy-drop",
        str(BUDGET),
        "--no-cache",
    ]
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    started = time.monotonic()
    code = subprocess.call(command, cwd=_REPOSITORY)
    wall = time.monotonic() - started
    if code != 0:
        print(f"the run exited {code}", file=sys.stderr)
        return 2
    report = _read_report(os.path.join(output, "run"))
    rows = {row["name"]: row for row in report["variants"]}
    baseline = rows["baseline"]["metrics"]["top1"]
    results = []
    for naive, aware in MODES:
        if naive not in rows or aware not in rows or rows[aware]["status"] != "ok":
            continue
        record = (report.get("accuracy_aware") or {}).get(aware) or {}
        search = record.get("search") or {}
        ranked = {layer["name"] for layer in record.get("sensitivity", [])}
        results.append(
            {
                "mode": naive,
                "naive_drop": baseline - rows[naive]["metrics"]["top1"],
                "naive_speedup": rows[naive].get("speedup_vs_baseline_p50"),
                "aware_drop": baseline - rows[aware]["metrics"]["top1"],
                "aware_speedup": rows[aware].get("speedup_vs_baseline_p50"),
                "aware_p50_ms": rows[aware]["latency"]["summary"]["p50_ms"],
                # The ranked layers; a group's MAC-free ops (ORT's segments) go with them.
                "layers_in_float": [n for n in search.get("fallback_layers", []) if n in ranked],
                "calibration_method": record.get("calibration_method", "minmax"),
                "search_steps": len(search.get("steps", [])),
                "search_seconds": search.get("seconds"),
                "stop_reason": search.get("stop_reason"),
            }
        )
    facts = {
        "cpu": report["fingerprint"].get("cpu_model"),
        "baseline_top1": baseline,
        "baseline_p50_ms": rows["baseline"]["latency"]["summary"]["p50_ms"],
        "frozen_graph_p50_ms": rows["frozen_graph"]["latency"]["summary"]["p50_ms"],
        "float_model_top1_at_build": written.eval_accuracy,
        "run_wall_s": round(wall, 1),
        "blessed": report["selection"].get("winner"),
        "modes": results,
    }
    text = _table(facts)
    print(text)
    with open(os.path.join(output, "outlier_int8.json"), "w", encoding="utf-8") as f:
        json.dump(facts, f, indent=2)
    with open(os.path.join(output, "outlier_int8.txt"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    missed = [
        r["mode"]
        for r in results
        if r["aware_drop"] > BUDGET or not (r["aware_speedup"] or 0) > 1.0
    ]
    return 1 if missed or not results else 0


def _read_report(run_dir: str) -> dict:
    for directory, _, files in os.walk(run_dir):
        if "report.json" in files and "Benchmarker" in directory:
            with open(os.path.join(directory, "report.json"), encoding="utf-8") as f:
                return json.load(f)
    raise FileNotFoundError(f"no Benchmarker report.json under {run_dir}")


def _short(name: str) -> str:
    parts = name.split(";")[0].split("/")
    return parts[2] if len(parts) > 2 else parts[-1]


def _table(facts: dict) -> str:
    lines = [
        f"Outlier digits CNN on {facts['cpu']}: baseline top-1 {facts['baseline_top1']:.4f}, "
        f"p50 {facts['baseline_p50_ms']:.4g} ms (frozen graph {facts['frozen_graph_p50_ms']:.4g} "
        f"ms); one run, {facts['run_wall_s']} s; blessed "
        f"{facts['blessed']}",
        "",
        "| mode | naive int8 drop | naive speedup | accuracy-aware drop | accuracy-aware "
        "speedup | layers in float | calibration | search |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in facts["modes"]:
        layers = ", ".join(_short(n) for n in r["layers_in_float"]) or "none"
        lines.append(
            f"| {r['mode']} | {100 * r['naive_drop']:+.1f} pt | {_x(r['naive_speedup'])} | "
            f"{100 * r['aware_drop']:+.1f} pt | {_x(r['aware_speedup'])} | "
            f"{len(r['layers_in_float'])}: {layers} | {r['calibration_method']} | "
            f"{r['search_steps']} steps, "
            f"{r['search_seconds']:.1f} s ({r['stop_reason']}) |"
        )
    return "\n".join(lines)


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


if __name__ == "__main__":
    sys.exit(main())
