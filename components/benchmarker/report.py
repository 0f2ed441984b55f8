"""The benchmark report: report.json (versioned schema), report.md, report.html, a CLI table.

    >>> report = build_report(variants, selection, fingerprint, settings, started_at)
    >>> print(render_text_table(report))
    >>> write_report(report, "/runs/benchmark/42")  # report.json, report.md, report.html

The schema of report.json is documented field by field in `report_schema.md` beside
this module. The renderers read only that dict, so a report.json written yesterday
renders the same today. The HTML page is self-contained: inline CSS and inline SVG
charts, no scripts, no external assets.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import os
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from components.benchmarker.fingerprint import HardwareFingerprint
from components.benchmarker.report_int8_search import (
    search_section_html,
    search_section_markdown,
)
from components.benchmarker.selection import FRACTION_METRICS, Selection, VariantResult
from components.common.errors import UserInputError
from components.common.sizes import format_bytes

REPORT_SCHEMA_VERSION = "2.2"
# The null backend's row measures the harness itself; it is no candidate and has no speedup.
NULL_FORMAT = "null"
# The row timing a split signature's preprocessing alone; it is no candidate either.
PREPROCESSING_FORMAT = "preprocessing"
# What a row's latency covers.
COVERS_END_TO_END = "end to end"
COVERS_CORE = "model core"
COVERS_PREPROCESSING = "preprocessing"
COVERS_HARNESS = "harness"
# Faithfulness fields of a row, beside its task metrics.
FAITHFULNESS_FIELDS = ("agreement", "relative_error")
# The harness's own cost must stay below this fraction of the fastest real p50.
MAX_HARNESS_OVERHEAD_FRACTION = 0.02
REPORT_JSON = "report.json"
REPORT_MARKDOWN = "report.md"
REPORT_HTML = "report.html"
REPORT_CSV = "report.csv"

# Matplotlib's tab10: distinct, colour-blind-tolerant, and prints well.
_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def build_report(
    variants: Sequence[VariantResult],
    selection: Selection,
    fingerprint: HardwareFingerprint,
    settings: Mapping[str, Any],
    started_at: datetime.datetime | str,
    finished_at: datetime.datetime | str | None = None,
    warnings: Iterable[str] = (),
    inputs: Mapping[str, Any] | None = None,
    tool_version: str | None = None,
    include_samples: bool = True,
    evaluation: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    core_reference: str | None = None,
    accuracy_aware: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assembles the report.json content (schema: report_schema.md).

    Adds derived fields (what each row's latency covers, the end-to-end p50 and
    speedup against the baseline, the Pareto front) and warnings for every unsettled
    measurement to the given `warnings`. `inputs` holds what was benchmarked
    (model/examples URIs, eval example count); `settings` every knob of the run;
    `evaluation` the task, metrics and gate; `data` what each input was fed. When the
    signature was split, `core_reference` names the row whose core latency the core
    speedups are against (the frozen core). `accuracy_aware` holds the accuracy-aware
    int8 variants' search records (report_int8_search.py). All must be JSON-serializable.
    """
    names = [variant.name for variant in variants]
    if selection.baseline_name not in names:
        raise ValueError(f"Baseline {selection.baseline_name!r} is not among the variants.")
    baseline = variants[names.index(selection.baseline_name)]
    baseline_p50 = _variant_p50(baseline)
    preprocessing = next((v for v in variants if v.format == PREPROCESSING_FORMAT), None)
    preprocessing_p50 = _variant_p50(preprocessing) if preprocessing else None
    reference = variants[names.index(core_reference)] if core_reference in names else None
    reference_p50 = _variant_p50(reference) if reference else None

    rows = []
    for variant in variants:
        row = variant.to_json(include_samples=include_samples)
        covers = _covers(variant, baseline.name, preprocessing is not None)
        p50 = _variant_p50(variant)
        end_to_end = None
        if p50 is not None and covers == COVERS_END_TO_END:
            end_to_end = p50
        elif p50 is not None and covers == COVERS_CORE and preprocessing_p50 is not None:
            end_to_end = p50 + preprocessing_p50
        row["covers"] = covers
        row["end_to_end_p50_ms"] = end_to_end
        row["end_to_end_estimated"] = covers == COVERS_CORE
        row["speedup_vs_baseline_p50"] = (
            baseline_p50 / end_to_end if baseline_p50 is not None and end_to_end else None
        )
        row["core_speedup_p50"] = (
            reference_p50 / p50 if covers == COVERS_CORE and reference_p50 and p50 else None
        )
        row["latency_ci"] = latency_confidence_intervals(variant)
        rows.append(row)
    overhead_warnings = _harness_overhead_warnings(variants)
    evaluation = dict(evaluation or {})
    metric, higher = pareto_metric(evaluation, baseline)
    started = _iso(started_at)
    finished = _iso(finished_at) if finished_at is not None else None
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "tool_version": tool_version,
        "started_at": started,
        "finished_at": finished,
        "duration_s": _duration_s(started, finished),
        "inputs": dict(inputs or {}),
        "settings": dict(settings),
        "evaluation": evaluation,
        "data": dict(data or {}),
        "fingerprint": fingerprint.to_json(),
        "baseline_name": selection.baseline_name,
        "split": preprocessing is not None,
        "batch_sizes": sorted({b for v in variants for b in v.throughput_images_per_s}),
        "pareto_accuracy_metric": metric,
        "pareto_higher_is_better": higher,
        "pareto_front": pareto_front(variants, metric, higher),
        "selection": selection.to_json(),
        "variants": rows,
        "harness_overhead_p50_ms": _harness_overhead_p50(variants),
        "accuracy_aware": dict(accuracy_aware or {}),
        "warnings": _dedupe([*warnings, *_measurement_warnings(variants), *overhead_warnings]),
    }
    return _json_safe(report)


def latency_confidence_intervals(variant: VariantResult) -> dict[str, Any] | None:
    """95% bootstrap intervals of p50 and p99 over the calls the summary covers (the
    last `count` timed calls), resampled in blocks of one timing window."""
    from components.benchmarker import stats

    latency = variant.latency
    if latency is None or not latency.samples_ms:
        return None
    calls = latency.samples_ms[-latency.summary.count :]
    block = max(1, min(latency.window_size, len(calls)))
    if len(calls) < stats.MIN_BOOTSTRAP_BLOCKS * block:
        return None  # Too few windows to resample: an interval would claim false certainty.
    intervals = stats.bootstrap_percentile_ci(calls, (50, 99), block_calls=block)
    return {
        "p50_ms": list(intervals[50]),
        "p99_ms": list(intervals[99]),
        "confidence": stats.BOOTSTRAP_CONFIDENCE,
        "resamples": stats.BOOTSTRAP_RESAMPLES,
        "block_calls": block,
        "calls": len(calls),
    }


def _variant_p50(variant: VariantResult) -> float | None:
    return variant.summary.p50_ms if variant.ok and variant.summary else None


def _covers(variant: VariantResult, baseline_name: str, split: bool) -> str:
    if variant.format == NULL_FORMAT:
        return COVERS_HARNESS
    if variant.format == PREPROCESSING_FORMAT:
        return COVERS_PREPROCESSING
    if split and variant.name != baseline_name:
        return COVERS_CORE
    return COVERS_END_TO_END


def pareto_metric(evaluation: Mapping[str, Any], baseline: VariantResult) -> tuple[str, bool]:
    """The metric the Pareto plot trades against latency, and whether higher is better.

    The primary task metric when there are labels; else the faithfulness measure.
    """
    metric = evaluation.get("primary_metric")
    if metric and baseline.metric(metric) is not None:
        return metric, bool((evaluation.get("higher_is_better") or {}).get(metric, True))
    if evaluation.get("task") == "regression":
        return "relative_error", False
    return "agreement", True


def row_metric(row: Mapping[str, Any], metric: str) -> float | None:
    """A metric of a report row: a faithfulness field or one of its task metrics."""
    if metric in FAITHFULNESS_FIELDS:
        return row.get(metric)
    return (row.get("metrics") or {}).get(metric)


def pareto_front(
    variants: Sequence[VariantResult], metric: str = "top1", higher_is_better: bool = True
) -> list[str]:
    """Names of the ok variants no other beats on both p50 (lower) and `metric`.

    Sorted by p50. Variants missing either number, and the harness and preprocessing
    rows, are left out.
    """
    points = []
    sign = -1.0 if higher_is_better else 1.0
    for variant in variants:
        if variant.format in (NULL_FORMAT, PREPROCESSING_FORMAT):
            continue
        value = (
            getattr(variant, metric) if metric in FAITHFULNESS_FIELDS else variant.metric(metric)
        )
        if variant.ok and variant.summary is not None and value is not None:
            points.append((variant.summary.p50_ms, sign * float(value), variant.name))
    front = []
    for latency, worse, name in points:
        dominated = any(
            other_latency <= latency
            and other_worse <= worse
            and (other_latency < latency or other_worse < worse)
            for other_latency, other_worse, _ in points
        )
        if not dominated:
            front.append((latency, worse, name))
    return [name for _, _, name in sorted(front)]


def report_custom_properties(report: Mapping[str, Any]) -> dict[str, Any]:
    """The BenchmarkReport artifact's custom properties (see components/artifacts.py)."""
    selection = report["selection"]
    properties: dict[str, Any] = {
        "schema_version": report["schema_version"],
        "winner": selection.get("winner") or "",
        "blessed": int(bool(selection.get("blessed"))),
        "selection_state": selection.get("state", ""),
    }
    for row in report["variants"]:
        p50 = _p50(row)
        if row["name"] == report["baseline_name"] and p50 is not None:
            properties["baseline_p50_ms"] = p50
        if p50 is not None:
            properties[f"{row['name']}.p50_ms"] = p50
        for metric, value in (row.get("metrics") or {}).items():
            if value is not None and "/" not in metric:
                properties[f"{row['name']}.{metric}"] = value
        if row.get("agreement") is not None:
            properties[f"{row['name']}.agreement"] = row["agreement"]
        if row.get("speedup_vs_baseline_p50") is not None:
            properties[f"{row['name']}.speedup_p50"] = row["speedup_vs_baseline_p50"]
    properties.update(hardware_properties(report.get("fingerprint") or {}))
    return properties


def hardware_properties(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The machine's key facts as custom properties, so that MLMD (the Kubeflow UI,
    `lineage show`) says which hardware a figure came from, not only report.json.

    `hardware_<flag>` is 1 or 0 for each CPU flag the kinds depend on (AVX-512, VNNI,
    bf16, AMX); unknown values are left out rather than recorded as empty.
    """
    from components.common.cpu_facts import CPU_FLAGS_OF_INTEREST

    flags = set(fingerprint.get("cpu_flags") or ())
    properties: dict[str, Any] = {
        f"hardware_{flag}": int(flag in flags) for flag in CPU_FLAGS_OF_INTEREST
    }
    facts = {
        "hardware_cpu_model": fingerprint.get("cpu_model"),
        "hardware_logical_cores": fingerprint.get("logical_cores"),
        "hardware_usable_cores": fingerprint.get("usable_cores"),
        "hardware_gpu_model": fingerprint.get("gpu_model"),
        "hardware_gpu_count": fingerprint.get("gpu_count"),
        "hardware_gpu_memory_mib": fingerprint.get("gpu_memory_mib"),
        "version_tensorflow": fingerprint.get("tensorflow_version"),
        "version_tflite": fingerprint.get("tflite_version"),
        **{
            f"version_{name}": version
            for name, version in (fingerprint.get("runtime_versions") or {}).items()
        },
    }
    properties.update({key: value for key, value in facts.items() if value is not None})
    return properties


# ----------------------------------------------------------------------------- writing


def write_report(report: Mapping[str, Any], directory: str) -> dict[str, str]:
    """Writes report.json, report.md and report.html into `directory`; returns their paths.

    Remote URIs (gs://, s3://, ...) go through tf.io.gfile, imported only then.
    """
    contents = {
        REPORT_JSON: json.dumps(report, indent=2, allow_nan=False) + "\n",
        REPORT_MARKDOWN: render_markdown(report),
        REPORT_HTML: render_html(report),
        REPORT_CSV: render_csv(report),
    }
    paths = {}
    if "://" in directory:
        import tensorflow as tf

        tf.io.gfile.makedirs(directory)
        for filename, text in contents.items():
            path = os.path.join(directory, filename)
            with tf.io.gfile.GFile(path, "w") as f:
                f.write(text)
            paths[filename] = path
        return paths
    os.makedirs(directory, exist_ok=True)
    for filename, text in contents.items():
        path = os.path.join(directory, filename)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        paths[filename] = path
    return paths


def read_report(path: str) -> dict[str, Any]:
    """Reads a report.json (or the one inside a directory); refuses unknown major versions."""
    if "://" in path:
        import tensorflow as tf

        if tf.io.gfile.isdir(path):
            path = os.path.join(path, REPORT_JSON)
        with tf.io.gfile.GFile(path, "r") as f:
            text = f.read()
    else:
        if os.path.isdir(path):
            path = os.path.join(path, REPORT_JSON)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as error:
            raise UserInputError(
                f"Cannot read the benchmark report {path!r}: {error.strerror}. Pass a "
                f"report.json or the directory holding it."
            ) from error
    report = json.loads(text)
    version = str(report.get("schema_version", ""))
    if version.split(".")[0] != REPORT_SCHEMA_VERSION.split(".")[0]:
        raise UserInputError(
            f"{path!r} has report schema version {version or 'none'}; this tool reads "
            f"{REPORT_SCHEMA_VERSION.split('.')[0]}.x. Re-run the benchmark with this version."
        )
    return report


# ------------------------------------------------------------------------- text table


def render_text_table(report: Mapping[str, Any]) -> str:
    """A fixed-width results table for a terminal, winner marked with `*`, then the verdict."""
    headers, rows = _results_table(report, detailed=False)
    winner = report["selection"].get("winner")
    headers = ["", *headers]
    rows = [
        ["*" if row["name"] == winner else "", *cells]
        for row, cells in zip(report["variants"], rows, strict=True)
    ]
    left_aligned = {
        headers.index(h)
        for h in ("variant", "covers", "status", "stable", "format")
        if h in headers
    }
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i in left_aligned or i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(cells) for cells in rows]
    out.append("")
    for row in report["variants"]:
        if row["status"] != "ok":
            out.append(
                f"{row['name']} {row['status']}: {row.get('failure_reason') or 'no reason given'}"
            )
    out += _explanations(report)
    out.append(_verdict_line(report))
    for warning in report.get("warnings") or ():
        out.append(f"warning: {warning}")
    return "\n".join(out) + "\n"


def _explanations(report: Mapping[str, Any]) -> list[str]:
    """What the columns mean, in the words a reader needs to not misread them."""
    lines = [f"baseline: {report['baseline_name']}"]
    evaluation = report.get("evaluation") or {}
    if report.get("split"):
        lines.append(
            "The signature takes serialized tf.Examples; it was split into preprocessing "
            "(parsing, Transform) and a model core. The baseline row is measured end to end; "
            "'model core' rows cover the core only. speedup = baseline p50 / (preprocessing "
            "p50 + core p50), an end-to-end estimate (marked ~); core speedup = frozen core "
            "p50 / variant p50, NOT an end-to-end figure."
        )
    else:
        lines.append("speedup = baseline p50 / variant p50")
    if evaluation:
        labels = evaluation.get("labels")
        task = evaluation.get("task")
        gate = ((report.get("selection") or {}).get("settings") or {}).get("gate") or {}
        what = f"label feature {labels!r}" if labels else "no labels: faithfulness only"
        lines.append(
            f"task: {task} on output {evaluation.get('primary_output')!r} ({what}); "
            + (
                "agree = share of examples whose decision matches the baseline's"
                if gate.get("faithfulness", "agreement") == "agreement"
                else "rel.err = ||variant - baseline|| / ||baseline|| over the outputs"
            )
        )
    return lines


def _as_sentences(lines: list[str]) -> str:
    """The explanations run together as prose: each one ends with a full stop."""
    return " ".join(line if line.endswith(".") else line + "." for line in lines)


# --------------------------------------------------------------------------- markdown


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: verdict, results table, per-variant verdicts, machine."""
    selection = report["selection"]
    out = [
        "# Inference benchmark report",
        "",
        f"Schema {report['schema_version']} · started {report.get('started_at')} · "
        f"baseline `{report['baseline_name']}` · objective {selection.get('objective')}",
        "",
        "## Selection",
        "",
        f"**{_verdict_line(report)}**",
        "",
        _md_escape(selection.get("reason") or ""),
        "",
        "## Results",
        "",
    ]
    headers, rows = _results_table(report)
    out.append("| " + " | ".join(headers) + " |")
    out.append("|" + "|".join("---" for _ in headers) + "|")
    out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    out += [
        "",
        _as_sentences(_explanations(report)),
        "",
        "Latencies are per call at the latency batch size; throughput is examples/s at "
        "each batch size.",
        "",
        "## Verdicts",
        "",
    ]
    for verdict in selection.get("verdicts") or ():
        state = "eligible" if verdict["eligible"] else "excluded: " + "; ".join(verdict["reasons"])
        out.append(f"- `{verdict['name']}`: {_md_escape(state)}")
    data_lines = _data_lines(report)
    if data_lines:
        out += ["", "## What was fed and scored", ""] + [f"- {_md_escape(d)}" for d in data_lines]
    warnings = report.get("warnings") or []
    if warnings:
        out += ["", "## Warnings", ""] + [f"- {_md_escape(w)}" for w in warnings]
    searches = search_section_markdown(report)
    if searches:
        out += ["", searches]
    out += ["", "## Machine", "", "| Field | Value |", "|---|---|"]
    out += [f"| {k} | {_md_escape(v)} |" for k, v in _fingerprint_rows(report)]
    out += ["", "## Settings", "", "```json", json.dumps(report.get("settings"), indent=2)]
    out += ["```", ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------- html


def render_html(report: Mapping[str, Any]) -> str:
    """A self-contained HTML page: table, distributions, throughput, Pareto, machine."""
    selection = report["selection"]
    colors = {row["name"]: _PALETTE[i % len(_PALETTE)] for i, row in enumerate(report["variants"])}
    headers, rows = _results_table(report)
    winner = selection.get("winner")
    text_columns = [h in _TEXT_COLUMNS for h in headers]
    # A failed row's reason is a paragraph: the table says "failed", the list below why.
    status_column = headers.index("status")
    reasons = []
    for row, cells in zip(report["variants"], rows, strict=True):
        if row["status"] != "ok":
            cells[status_column] = row["status"]
            reasons.append(
                f"<li><code>{html.escape(row['name'])}</code> {html.escape(row['status'])}: "
                f"{html.escape(row.get('failure_reason') or 'no reason given')}</li>"
            )
    table = ['<div class="scroll"><table id="results"><thead><tr>']
    table += [
        f"<th{' class=text' if text else ''}>{html.escape(h)}</th>"
        for h, text in zip(headers, text_columns, strict=True)
    ]
    table.append("</tr></thead><tbody>")
    for row, cells in zip(report["variants"], rows, strict=True):
        classes = [row["status"]] + (["winner"] if row["name"] == winner else [])
        table.append(f'<tr class="{" ".join(classes)}" data-variant="{html.escape(row["name"])}">')
        table += [
            f"<td{' class=text' if text else ''}>{html.escape(c)}</td>"
            for c, text in zip(cells, text_columns, strict=True)
        ]
        table.append("</tr>")
    table.append("</tbody></table></div>")
    answer = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(text)}</td></tr>"
        for label, text in answer_lines(report).items()
    )
    csv_link = "data:text/csv;charset=utf-8," + urllib.parse.quote(render_csv(report))

    distributions = [
        _distribution_svg(row, colors[row["name"]])
        for row in report["variants"]
        if row["status"] == "ok" and _summary(row)
    ]
    verdict_items = []
    for verdict in selection.get("verdicts") or ():
        text = "eligible" if verdict["eligible"] else "excluded: " + "; ".join(verdict["reasons"])
        verdict_items.append(
            f"<li><code>{html.escape(verdict['name'])}</code>: {html.escape(text)}</li>"
        )
    warnings = report.get("warnings") or []
    warning_items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings) or "<li>none</li>"
    data_items = (
        "".join(f"<li>{html.escape(d)}</li>" for d in _data_lines(report)) or "<li>n/a</li>"
    )
    fingerprint_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in _fingerprint_rows(report)
    )
    state_class = "blessed" if selection.get("blessed") else "not-blessed"
    title = f"Inference benchmark: {report['baseline_name']} and variants"
    body = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Inference benchmark report</h1>
<section id="answer" class="{state_class}">
<table id="answer-table">{answer}</table>
</section>
<p class="meta">Schema {html.escape(str(report["schema_version"]))} · started
{html.escape(str(report.get("started_at")))} · baseline
<code>{html.escape(report["baseline_name"])}</code> · objective
{html.escape(str(selection.get("objective")))} ·
<a id="csv" download="report.csv" href="{html.escape(csv_link)}">every figure as CSV</a></p>
<section id="results-section">
<h2>Results</h2>
{"".join(table)}
{f'<ul id="not-measured">{"".join(reasons)}</ul>' if reasons else ""}
<p class="note">{html.escape(_as_sentences(_explanations(report)))} Latencies are per call at
the latency batch size (ms); &gt;1 is faster; throughput is examples/s; metrics and agreement
are fractions of the eval examples (MAE/RMSE in the label's units); max |diff| and relative
error are against the baseline's outputs. The 95% intervals of p50 and p99 are a
moving-block bootstrap over the summarized calls, in blocks of one timing window.</p>
</section>
<section id="selection" class="{state_class}">
<h2>Selection</h2>
<p class="verdict">{html.escape(_verdict_line(report))}</p>
<p class="reason">{html.escape(selection.get("reason") or "")}</p>
<ul class="verdicts">{"".join(verdict_items)}</ul>
</section>
<section id="data">
<h2>What was fed and scored</h2>
<ul>{data_items}</ul>
</section>
<section id="warnings">
<h2>Warnings</h2>
<ul>{warning_items}</ul>
</section>
<section id="distributions">
<h2>Latency distributions</h2>
<p class="note">Histogram of the timed calls behind each summary; lines mark p50 (solid),
p90 (dashed) and p99 (dotted). Each chart has its own axis.</p>
<div class="grid">{"".join(distributions) or "<p>No latency measured.</p>"}</div>
</section>
<section id="throughput">
<h2>Throughput against batch size</h2>
{_throughput_svg(report, colors)}
</section>
<section id="pareto">
<h2>Accuracy against latency</h2>
{_pareto_svg(report, colors)}
</section>
{search_section_html(report)}
<section id="machine">
<h2>Machine</h2>
<table id="fingerprint">{fingerprint_rows}</table>
</section>
<section id="settings">
<h2>Settings</h2>
<pre>{html.escape(json.dumps(report.get("settings"), indent=2))}</pre>
</section>
</body>
</html>
"""
    return body


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;
max-width:1400px}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}
th.text,td.text,#fingerprint td,#fingerprint th,#answer-table td,#answer-table th{text-align:left}
#not-measured{font-size:13px;color:#555}
.scroll{overflow-x:auto}
#answer-table{font-size:15px}
#answer-table td{white-space:normal}
#answer-table th{background:none;border:none;padding-right:1em}
#answer-table td{border:none}
tr.failed td{color:#999}
tr.winner td{background:#fff6d5;font-weight:600}
#selection.blessed,#answer.blessed{border-left:6px solid #2ca02c;padding-left:1em}
#selection.not-blessed,#answer.not-blessed{border-left:6px solid #d62728;padding-left:1em}
.verdict{font-weight:700;font-size:1.1em}
.note,.meta{color:#555;font-size:13px}
.grid{display:flex;flex-wrap:wrap;gap:12px}
svg text{font-family:inherit}
pre{background:#f6f6f6;padding:1em;overflow:auto}
"""


def answer_lines(report: Mapping[str, Any]) -> dict[str, str]:
    """The first screen: the blessed variant and its speedup, its metric drop against the
    budget, the model and examples, and the machine. {label: text}, in display order."""
    from components.benchmarker.fingerprint import machine_text

    selection = report["selection"]
    rows = {row["name"]: row for row in report["variants"]}
    baseline = rows.get(report["baseline_name"], {})
    baseline_p50 = _p50(baseline)
    winner = rows.get(selection.get("winner") or "")
    lines: dict[str, str] = {}
    if selection.get("blessed") and winner is not None:
        p50 = _p50(winner)
        interval = (winner.get("latency_ci") or {}).get("p50_ms")
        speed = (
            "it is the baseline"
            if selection.get("winner_is_baseline")
            else f"{_fmt_ratio(winner.get('speedup_vs_baseline_p50'))} the baseline's speed"
        )
        lines["Blessed"] = (
            f"{winner['name']}: {speed}; p50 {_fmt(p50)} ms"
            + (f" (95% CI {_fmt_interval(interval)})" if interval else "")
            + f" against {_fmt(baseline_p50)} ms"
        )
    else:
        lines["Not blessed"] = (
            f"{selection.get('state')}: {selection.get('reason') or ''}".strip()
            + f" The baseline's p50 is {_fmt(baseline_p50)} ms."
        )
    gate = (selection.get("settings") or {}).get("gate") or (
        (report.get("evaluation") or {}).get("gate") or {}
    )
    metric = gate.get("metric")
    verdict = next(
        (v for v in selection.get("verdicts") or () if winner and v["name"] == winner["name"]),
        None,
    )
    if metric and winner is not None and verdict is not None:
        drop = verdict.get("accuracy_drop")
        value, base = row_metric(winner, metric), row_metric(baseline, metric)
        if drop is not None and value is not None and base is not None:
            points = metric in FRACTION_METRICS
            size = f"{100 * abs(drop):.2f} points" if points else f"{abs(drop):.4g}"
            change = f"a drop of {size}" if drop > 0 else f"a gain of {size}" if drop else "no drop"
            lines["Metric"] = (
                f"{metric} {_fmt_metric(metric, value)} against the baseline's "
                f"{_fmt_metric(metric, base)}: {change} ({_gate_text(gate)})"
            )
    elif not metric:
        lines["Metric"] = "no labels: judged on faithfulness to the baseline only"
    inputs = report.get("inputs") or {}
    lines["Model"] = str(inputs.get("model_uri") or "n/a")
    lines["Examples"] = str(inputs.get("examples_uri") or "n/a") + (
        f" ({inputs['eval_examples']} scored)" if inputs.get("eval_examples") else ""
    )
    lines["Machine"] = (
        machine_text(hardware_properties(report.get("fingerprint") or {})) or "not recorded"
    )
    return lines


def render_csv(report: Mapping[str, Any]) -> str:
    """Every variant's figures as CSV, raw numbers (ms, images/s, fractions, bytes)."""
    import csv
    import io

    evaluation = report.get("evaluation") or {}
    metrics = list(evaluation.get("metrics") or []) if evaluation.get("labels") else []
    batch_sizes = list(report.get("batch_sizes") or [])
    columns = [
        "variant", "baseline", "blessed", "status", "failure_reason", "format", "covers",
        "speedup_vs_baseline_p50", "core_speedup_p50",
        "p50_ms", "p50_ci_low_ms", "p50_ci_high_ms", "p90_ms",
        "p99_ms", "p99_ci_low_ms", "p99_ci_high_ms", "mean_ms", "stdev_ms", "calls",
        "latency_stable", "latency_cv",
        *(f"images_per_s_batch_{b}" for b in batch_sizes),
        *metrics, "agreement", "relative_error", "max_abs_diff",
        "size_bytes", "rss_growth_bytes", "load_s", "first_call_s", "uri",
    ]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    winner = report["selection"].get("winner")
    for row in report["variants"]:
        summary = _summary(row) or {}
        intervals = row.get("latency_ci") or {}
        latency = row.get("latency") or {}
        throughput = row.get("throughput_images_per_s") or {}
        values: dict[str, Any] = {
            "variant": row["name"],
            "baseline": row["name"] == report["baseline_name"],
            "blessed": row["name"] == winner and bool(report["selection"].get("blessed")),
            "status": row["status"],
            "failure_reason": row.get("failure_reason") or "",
            "format": row.get("format"),
            "covers": row.get("covers"),
            "speedup_vs_baseline_p50": row.get("speedup_vs_baseline_p50"),
            "core_speedup_p50": row.get("core_speedup_p50"),
            "p50_ms": summary.get("p50_ms"),
            "p90_ms": summary.get("p90_ms"),
            "p99_ms": summary.get("p99_ms"),
            "mean_ms": summary.get("mean_ms"),
            "stdev_ms": summary.get("stdev_ms"),
            "calls": summary.get("count"),
            "latency_stable": latency.get("stable"),
            "latency_cv": latency.get("cv"),
            "agreement": row.get("agreement"),
            "relative_error": row.get("relative_error"),
            "max_abs_diff": row.get("max_abs_diff"),
            "size_bytes": row.get("size_bytes"),
            "rss_growth_bytes": row.get("rss_growth_bytes"),
            "load_s": row.get("load_s"),
            "first_call_s": row.get("first_call_s"),
            "uri": row.get("uri"),
        }
        for key in ("p50", "p99"):
            low, high = intervals.get(f"{key}_ms") or (None, None)
            values[f"{key}_ci_low_ms"], values[f"{key}_ci_high_ms"] = low, high
        for batch in batch_sizes:
            values[f"images_per_s_batch_{batch}"] = throughput.get(str(batch))
        for metric in metrics:
            values[metric] = row_metric(row, metric)
        writer.writerow({k: "" if v is None else v for k, v in values.items()})
    return buffer.getvalue()


def _verdict_line(report: Mapping[str, Any]) -> str:
    selection = report["selection"]
    if selection.get("blessed"):
        suffix = " (the baseline)" if selection.get("winner_is_baseline") else ""
        return f"Blessed: {selection['winner']}{suffix}"
    return f"Not blessed ({selection.get('state')})"


# Columns that hold words rather than figures: left-aligned in the HTML table.
_TEXT_COLUMNS = ("variant", "status", "covers", "stable", "format")


def _results_table(
    report: Mapping[str, Any], detailed: bool = True
) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the text, Markdown and HTML tables.

    The answer comes first: the variant, its speedup, p50 and p99 (with their bootstrap
    intervals when `detailed`), throughput, the task metrics and faithfulness. Then the
    status (a failed row's reason), what the latency covers, p90, stability, max|diff|,
    the format and size, and the load figures.
    """
    batch_sizes = list(report.get("batch_sizes") or [])
    split = bool(report.get("split"))
    evaluation = report.get("evaluation") or {}
    metrics = list(evaluation.get("metrics") or []) if evaluation.get("labels") else []
    faithfulness = "relative_error" if evaluation.get("task") == "regression" else "agreement"
    headers = ["variant"]
    headers += ["speedup", "core speedup"] if split else ["speedup"]
    headers += ["p50 ms"] + (["p50 95% CI"] if detailed else [])
    headers += ["p99 ms"] + (["p99 95% CI"] if detailed else [])
    headers += [f"img/s@{b}" for b in batch_sizes]
    headers += metrics or ["metrics"]
    headers += ["agree" if faithfulness == "agreement" else "rel.err"]
    headers += ["status"] + (["covers"] if split else []) + ["p90 ms", "stable", "max|diff|"]
    headers += ["format", "size"]
    if detailed:
        headers += ["RSS growth (shared)", "load s", "first call s"]
    rows = []
    for row in report["variants"]:
        summary = _summary(row)
        status = row["status"]
        if status != "ok" and detailed:
            status = f"{status}: {row.get('failure_reason') or 'no reason given'}"
        name = row["name"] + (" (baseline)" if row["name"] == report["baseline_name"] else "")
        candidate = row.get("covers") not in (COVERS_HARNESS, COVERS_PREPROCESSING)
        intervals = row.get("latency_ci") or {}
        cells = [name if detailed else row["name"]]
        speedup = _fmt_ratio(row.get("speedup_vs_baseline_p50"))
        if speedup and row.get("end_to_end_estimated"):
            speedup = "~" + speedup
        cells.append(speedup)
        if split:
            cells.append(_fmt_ratio(row.get("core_speedup_p50")))
        for key in ("p50_ms", "p99_ms"):
            cells.append(_fmt(summary and summary[key]))
            if detailed:
                cells.append(_fmt_interval(intervals.get(key)))
        throughput = row.get("throughput_images_per_s") or {}
        stable = row.get("throughput_stable") or {}
        starved = row.get("throughput_contaminated") or {}
        for batch in batch_sizes:
            text = _fmt(throughput.get(str(batch)))
            if starved.get(str(batch)):
                text += " (starved)" if detailed else "!"
            elif stable.get(str(batch)) is False:
                text += " (unstable)" if detailed else "?"
            cells.append(text)
        if metrics:
            cells += [_fmt_metric(m, row_metric(row, m)) if candidate else "" for m in metrics]
        else:
            cells.append("no labels" if candidate and row["status"] == "ok" else "")
        value = row.get(faithfulness)
        cells.append(_fmt_fraction(value) if faithfulness == "agreement" else _fmt_sci(value))
        cells.append(status)
        if split:
            cells.append(row.get("covers") or "")
        cells += [
            _fmt(summary and summary["p90_ms"]),
            _stable_text(row),
            _fmt_sci(row.get("max_abs_diff")),
            row.get("format") or "",
            format_bytes(row.get("size_bytes")),
        ]
        if detailed:
            cells += [
                format_bytes(row.get("rss_growth_bytes")),
                _fmt(row.get("load_s")),
                _fmt(row.get("first_call_s")),
            ]
        rows.append(cells)
    return headers, rows


def _fmt_interval(interval: Sequence[float] | None) -> str:
    if not interval:
        return ""
    return f"{_fmt(interval[0])}-{_fmt(interval[1])}"


def _fmt_metric(metric: str, value: float | None) -> str:
    from components.benchmarker.selection import FRACTION_METRICS

    if value is None:
        return ""
    return _fmt_fraction(value) if metric in FRACTION_METRICS else f"{value:.4g}"


def _data_lines(report: Mapping[str, Any]) -> list[str]:
    """What every input was fed, which records were used for what, and what was scored."""
    data = report.get("data") or {}
    lines = []
    for entry in data.get("inputs") or ():
        line = (
            f"input {entry['input']} ({entry['dtype']} {entry['shape']}): {entry['kind']} "
            f"from {entry['feature']}"
        )
        image = entry.get("image")
        if image:
            height, width = image["size"]
            line += (
                f", decoded and resized to {height}x{width} ({image['resize_method']}), "
                f"scaling {image['scaling']}"
            )
        lines.append(line)
    for role in ("calibration", "evaluation"):
        if data.get(role):
            lines.append(f"{role}: {data[role]}")
    evaluation = report.get("evaluation") or {}
    if evaluation:
        gate = evaluation.get("gate") or {}
        labels = evaluation.get("labels")
        lines.append(
            f"task: {evaluation.get('task')} on output {evaluation.get('primary_output')}, "
            + (f"labels from {labels}" if labels else "no labels (faithfulness only)")
            + (f"; gate: {_gate_text(gate)}" if gate else "")
        )
    return lines


def _gate_text(gate: Mapping[str, Any]) -> str:
    from components.benchmarker.selection import Gate

    return Gate(**gate).budget_text()


def _fingerprint_rows(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in (report.get("fingerprint") or {}).items():
        if isinstance(value, list):
            text = " ".join(str(v) for v in value) or "none"
        elif isinstance(value, Mapping):  # runtime_versions
            text = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
        else:
            text = "n/a" if value is None else str(value)
        rows.append((key, text))
    return rows


# ------------------------------------------------------------------------------- svg


_LABEL_WIDTH = 24  # px a "p50" label needs at font-size 10


def histogram_bins(samples: np.ndarray, span: float) -> int:
    """Bins for one variant's histogram: the Freedman-Diaconis width (2 IQR / n^(1/3)),
    which follows the variant's own spread, so a 0.04 ms variant gets as real a
    distribution as a 40 ms one; 8 to 60 bins."""
    if samples.size < 2 or span <= 0:
        return 8
    q75, q25 = np.percentile(samples, [75, 25])
    width = 2 * (q75 - q25) / samples.size ** (1 / 3)
    if width <= 0:  # Most calls took the same time (a coarse clock): sqrt(n) bins.
        return int(min(60, max(8, math.sqrt(samples.size))))
    return int(min(60, max(8, math.ceil(span / width))))


def _distribution_svg(row: Mapping[str, Any], color: str) -> str:
    """A histogram of one variant's samples with p50/p90/p99 lines (summary-only: markers)."""
    summary = _summary(row)
    assert summary is not None
    samples = np.asarray((row.get("latency") or {}).get("samples_ms") or [], dtype=np.float64)
    width, height = 380, 208
    left, right, top, bottom = 40, 12, 50, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    low = float(samples.min()) if samples.size else summary["min_ms"]
    # Clip the long tail so one stall does not squash the histogram into one bar: the
    # axis ends at p99.5, or sooner, one p50-to-p99 distance past p99 (a 0.2 ms call
    # with a 5 ms stall keeps its own shape); the rest go in the last bin, counted.
    high = float(np.percentile(samples, 99.5)) if samples.size else summary["max_ms"]
    high = min(high, summary["p99_ms"] + (summary["p99_ms"] - summary["p50_ms"]))
    high = max(high, summary["p99_ms"], low + 1e-9)
    span = high - low
    low, high = low - 0.02 * span, high + 0.02 * span

    def x_of(value: float) -> float:
        return left + (min(max(value, low), high) - low) / (high - low) * plot_w

    name = row["name"]
    parts = [
        f'<svg class="latency-distribution" data-variant="{html.escape(name)}" '
        f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f"<title>Latency distribution of {html.escape(name)}</title>",
        f'<text x="4" y="14" font-size="13" font-weight="600">{html.escape(name)}</text>',
    ]
    clipped = 0
    if samples.size:
        bins = histogram_bins(samples[samples <= high], high - low)
        clipped = int(np.sum(samples > high))
        counts, edges = np.histogram(np.clip(samples, low, high), bins=bins, range=(low, high))
        peak = max(int(counts.max()), 1)
        for count, start, end in zip(counts, edges[:-1], edges[1:], strict=True):
            if count == 0:
                continue
            bar_h = count / peak * plot_h
            parts.append(
                f'<rect x="{x_of(start):.1f}" y="{top + plot_h - bar_h:.1f}" '
                f'width="{max(x_of(end) - x_of(start) - 1, 1):.1f}" height="{bar_h:.1f}" '
                f'fill="{color}" fill-opacity="0.55"><title>{int(count)} calls in '
                f"{start:.4g}-{end:.4g} ms</title></rect>"
            )
        parts.append(
            f'<text x="{left - 4}" y="{top + 8}" font-size="10" text-anchor="end">{peak}</text>'
        )
    placed: list[tuple[float, int]] = []  # (x, level) of the labels so far
    for key, dash in (("p50_ms", ""), ("p90_ms", "5,3"), ("p99_ms", "2,2")):
        x = x_of(summary[key])
        parts.append(
            f'<line class="{key[:3]}" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" '
            f'stroke="#222" stroke-width="1.3" stroke-dasharray="{dash}"/>'
        )
        # Close percentiles would print their labels on top of each other: each goes on
        # the lowest of three rows where no earlier label is within a label's width.
        level = next(
            (
                n
                for n in range(3)
                if all(abs(x - other) >= _LABEL_WIDTH or lv != n for other, lv in placed)
            ),
            2,
        )
        placed.append((x, level))
        parts.append(
            f'<text class="label-{key[:3]}" x="{x:.1f}" y="{top - 3 - 11 * level}" '
            f'font-size="10" text-anchor="middle">{key[:3]}</text>'
        )
    axis_y = top + plot_h
    parts.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{axis_y}" y2="{axis_y}" stroke="#444"/>'
    )
    for tick in _nice_ticks(low, high, 5):
        x = x_of(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axis_y}" y2="{axis_y + 4}" stroke="#444"/>'
            f'<text x="{x:.1f}" y="{axis_y + 15}" font-size="10" text-anchor="middle">'
            f"{_fmt_tick(tick)}</text>"
        )
    # Two short lines (at most about 50 characters at 10 px: the chart is 380 px wide),
    # so that no caption runs past the chart's edge.
    unit = "ms per call" + (f"; {clipped} slowest in the last bin" if clipped else "")
    details = f"n={summary['count']}"
    if samples.size and samples.size != summary["count"]:
        details = f"{samples.size} timed calls; p50/p90/p99 over the last {summary['count']}"
    if not samples.size:
        details += " (summary only)"
    for line, text in enumerate((unit, details)):
        parts.append(
            f'<text class="caption" x="{left + plot_w / 2:.1f}" y="{height - 16 + 12 * line}" '
            f'font-size="10" text-anchor="middle">{html.escape(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _throughput_svg(report: Mapping[str, Any], colors: Mapping[str, str]) -> str:
    """Images/s against batch size, one line per ok variant (log2 x axis).

    The y axis turns logarithmic when the fastest and slowest points are more than 30x
    apart, so a slow baseline does not flatten onto the x axis.
    """
    batch_sizes = [int(b) for b in report.get("batch_sizes") or []]
    series = []
    for row in report["variants"]:
        throughput = row.get("throughput_images_per_s") or {}
        points = [(b, throughput[str(b)]) for b in batch_sizes if throughput.get(str(b))]
        # The null backend's millions of "images/s" would squash every real line.
        if row["status"] == "ok" and points and row.get("format") != NULL_FORMAT:
            series.append((row["name"], points))
    if not series:
        return '<p id="throughput-chart">No throughput measured.</p>'
    width, height = 660, 320
    left, right, top, bottom = 76, 170, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    log_min, log_max = math.log2(min(batch_sizes)), math.log2(max(batch_sizes))
    values = [v for _, points in series for _, v in points]
    use_log = min(values) > 0 and max(values) / min(values) > 30
    if use_log:
        y_lo = math.floor(math.log10(min(values)))
        y_hi = math.ceil(math.log10(max(values)))
        ticks = [float(10**e) for e in range(y_lo, y_hi + 1)]
    else:
        y_lo, y_hi = 0.0, max(values) * 1.1
        ticks = _nice_ticks(0.0, y_hi, 5)
        y_hi = max(y_hi, ticks[-1])

    def x_of(batch: int) -> float:
        if log_max == log_min:
            return left + plot_w / 2
        return left + (math.log2(batch) - log_min) / (log_max - log_min) * plot_w

    def y_of(value: float) -> float:
        position = math.log10(value) if use_log else value
        return top + plot_h - (position - y_lo) / (y_hi - y_lo) * plot_h

    y_label = "images/s (log scale)" if use_log else "images/s"
    parts = [
        f'<svg id="throughput-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
        "<title>Throughput (images/s) against batch size</title>",
    ]
    parts += _axes(left, top, plot_w, plot_h)
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 5}" y="{y + 3:.1f}" font-size="10" text-anchor="end">'
            f"{_fmt_tick(tick)}</text>"
        )
    for batch in batch_sizes:
        x = x_of(batch)
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 15}" font-size="10" '
            f'text-anchor="middle">{batch}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="11" '
        f'text-anchor="middle">batch size</text>'
        f'<text x="14" y="{top + plot_h / 2:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">{y_label}</text>'
    )
    for index, (name, points) in enumerate(series):
        color = colors[name]
        coordinates = " ".join(f"{x_of(b):.1f},{y_of(v):.1f}" for b, v in points)
        parts.append(
            f'<polyline class="throughput-line" data-variant="{html.escape(name)}" '
            f'points="{coordinates}" fill="none" stroke="{color}" stroke-width="2"/>'
        )
        for batch, value in points:
            parts.append(
                f'<circle cx="{x_of(batch):.1f}" cy="{y_of(value):.1f}" r="3" fill="{color}">'
                f"<title>{html.escape(name)}: {_fmt(value)} images/s at batch {batch}</title>"
                "</circle>"
            )
        legend_y = top + 10 + index * 16
        parts.append(
            f'<rect x="{left + plot_w + 12}" y="{legend_y - 8}" width="10" height="10" '
            f'fill="{color}"/><text x="{left + plot_w + 26}" y="{legend_y + 1}" '
            f'font-size="11">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _pareto_svg(report: Mapping[str, Any], colors: Mapping[str, str]) -> str:
    """Accuracy against p50 latency per ok variant; the Pareto front drawn, the winner ringed."""
    metric = report.get("pareto_accuracy_metric") or "top1"
    higher = report.get("pareto_higher_is_better", True)
    points = []
    for row in report["variants"]:
        summary = _summary(row)
        value = row_metric(row, metric)
        if row["status"] == "ok" and summary and value is not None:
            if row.get("covers") in (COVERS_HARNESS, COVERS_PREPROCESSING):
                continue
            points.append((row["name"], summary["p50_ms"], float(value)))
    if not points:
        return '<p id="pareto-plot">No variant has both a latency and an accuracy.</p>'
    winner = report["selection"].get("winner")
    front = set(report.get("pareto_front") or ())
    eligible = {v["name"] for v in report["selection"].get("verdicts") or () if v["eligible"]}
    width, height = 640, 340
    left, right, top, bottom = 60, 170, 20, 42
    plot_w, plot_h = width - left - right, height - top - bottom
    latencies = [p for _, p, _ in points]
    lat_lo, lat_hi = min(latencies), max(latencies)
    use_log = lat_lo > 0 and lat_hi / lat_lo > 20
    if use_log:
        x_lo, x_hi = math.log10(lat_lo) - 0.1, math.log10(lat_hi) + 0.1
    else:
        pad = (lat_hi - lat_lo) * 0.08 or lat_hi * 0.1 or 1.0
        x_lo, x_hi = max(0.0, lat_lo - pad), lat_hi + pad
    accuracies = [a for _, _, a in points]
    from components.benchmarker.selection import FRACTION_METRICS

    fraction = metric in FRACTION_METRICS or metric == "agreement"
    spread = max(accuracies) - min(accuracies)
    acc_pad = max(spread * 0.1, 0.005 if fraction else 0.05 * abs(max(accuracies)) or 1e-6)
    y_lo, y_hi = min(accuracies) - acc_pad, max(accuracies) + acc_pad
    if fraction:
        y_lo, y_hi = max(0.0, y_lo), min(1.0, y_hi)
    if y_hi <= y_lo:
        y_lo, y_hi = y_hi - 0.01, y_hi

    def x_of(latency: float) -> float:
        value = math.log10(latency) if use_log else latency
        return left + (value - x_lo) / (x_hi - x_lo) * plot_w

    def y_of(accuracy: float) -> float:
        return top + plot_h - (accuracy - y_lo) / (y_hi - y_lo) * plot_h

    parts = [
        f'<svg id="pareto-plot" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f"<title>{html.escape(metric)} against p50 latency, Pareto front and winner</title>",
    ]
    parts += _axes(left, top, plot_w, plot_h)
    x_ticks = (
        [10**e for e in range(math.floor(x_lo), math.ceil(x_hi) + 1)]
        if use_log
        else _nice_ticks(x_lo, x_hi, 5)
    )
    for tick in x_ticks:
        x = x_of(tick)
        if left - 0.5 <= x <= left + plot_w + 0.5:
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#eee"/>'
                f'<text x="{x:.1f}" y="{top + plot_h + 15}" font-size="10" '
                f'text-anchor="middle">{_fmt_tick(tick)}</text>'
            )
    for tick in _nice_ticks(y_lo, y_hi, 5):
        y = y_of(tick)
        if top - 0.5 <= y <= top + plot_h + 0.5:
            parts.append(
                f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="#eee"/><text x="{left - 5}" y="{y + 3:.1f}" font-size="10" '
                f'text-anchor="end">{tick:.3g}</text>'
            )
    scale = " (log scale)" if use_log else ""
    axis_label = f"{metric} ({'higher' if higher else 'lower'} is better)"
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="11" '
        f'text-anchor="middle">p50 latency, ms{scale} (left is faster)</text>'
        f'<text x="14" y="{top + plot_h / 2:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">{html.escape(axis_label)}</text>'
    )
    front_points = sorted((p, a) for name, p, a in points if name in front)
    if front_points:
        # A step line: each front point holds its metric until the next, faster one.
        coordinates = []
        for index, (latency, accuracy) in enumerate(front_points):
            if index:
                coordinates.append(f"{x_of(latency):.1f},{y_of(front_points[index - 1][1]):.1f}")
            coordinates.append(f"{x_of(latency):.1f},{y_of(accuracy):.1f}")
        parts.append(
            f'<polyline class="pareto-front" points="{" ".join(coordinates)}" fill="none" '
            f'stroke="#555" stroke-width="1.5" stroke-dasharray="6,3"/>'
        )
    for index, (name, latency, accuracy) in enumerate(points):
        x, y = x_of(latency), y_of(accuracy)
        classes = "pareto-point" + (" on-front" if name in front else "")
        if name in eligible:
            paint = f'fill="{colors[name]}"'
        else:
            classes += " excluded"
            paint = f'fill="white" stroke="{colors[name]}" stroke-width="2"'
        parts.append(
            f'<circle class="{classes}" data-variant="{html.escape(name)}" cx="{x:.1f}" '
            f'cy="{y:.1f}" r="5" {paint}><title>{html.escape(name)}: p50 '
            f"{_fmt(latency)} ms, {html.escape(metric)} {accuracy:.4g}</title></circle>"
        )
        legend_y = top + 10 + index * 16
        parts.append(
            f'<circle cx="{left + plot_w + 17}" cy="{legend_y - 3}" r="5" '
            f'{paint}/><text x="{left + plot_w + 26}" y="{legend_y + 1}" '
            f'font-size="11">{html.escape(name)}</text>'
        )
        if name == winner:
            parts.append(
                f'<circle class="winner" data-variant="{html.escape(name)}" cx="{x:.1f}" '
                f'cy="{y:.1f}" r="10" fill="none" stroke="#d4a017" stroke-width="3"/>'
                f'<text class="winner-label" x="{x + 13:.1f}" y="{y - 8:.1f}" font-size="11" '
                f'font-weight="700">winner: {html.escape(name)}</text>'
            )
    parts.append(
        f'<text x="{left + plot_w + 12}" y="{top + 18 + len(points) * 16}" font-size="10" '
        f'fill="#555">dashed: Pareto front</text>'
        f'<text x="{left + plot_w + 12}" y="{top + 32 + len(points) * 16}" font-size="10" '
        f'fill="#555">hollow: excluded</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _axes(left: float, top: float, plot_w: float, plot_h: float) -> list[str]:
    return [
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#444"/>',
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="#444"/>',
    ]


def _nice_ticks(low: float, high: float, count: int) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [low, high]."""
    if not high > low:
        return [low]
    raw_step = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw_step)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


# ------------------------------------------------------------------------- formatting


def _summary(row: Mapping[str, Any]) -> dict[str, Any] | None:
    latency = row.get("latency")
    if not latency:
        return None
    return latency.get("summary")


def _p50(row: Mapping[str, Any]) -> float | None:
    summary = _summary(row)
    return summary["p50_ms"] if summary and row.get("status") == "ok" else None


def _stable_text(row: Mapping[str, Any]) -> str:
    latency = row.get("latency")
    if not latency:
        return ""
    if latency.get("contaminated"):
        return "NO (starved)"
    retried = latency.get("contaminated_windows") or 0
    if latency.get("stable"):
        return f"yes ({retried} retried)" if retried else "yes"
    cv = latency.get("cv")
    return f"NO (cv {cv:.3f})" if cv is not None else "NO"


def _fmt(value: float | None) -> str:
    """Numbers with about 4 significant digits, no exponent for everyday magnitudes."""
    if value is None:
        return ""
    value = float(value)
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude == 0:
        return "0"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _fmt_tick(value: float) -> str:
    """Axis labels: whole numbers without decimals, others as short as exact."""
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _fmt_ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _fmt_fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _fmt_sci(value: float | None) -> str:
    return "" if value is None else f"{value:.2e}"


def _md_escape(value: Any) -> str:
    """Cell-safe text: pipes escaped, `<` as an entity so `<Einsum>` is not read as HTML."""
    return str(value).replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


# ------------------------------------------------------------------------------ misc


def _measurement_warnings(variants: Sequence[VariantResult]) -> list[str]:
    warnings = []
    starved = [v for v in variants if v.ok and v.latency is not None and v.latency.contaminated]
    if starved:
        worst = max(
            starved, key=lambda v: v.latency.contention.get("worst", {}).get("others_cores", 0)
        )
        warnings.append(
            f"the latency of {len(starved)} variant(s) ({', '.join(v.name for v in starved)}) "
            f"was timed while other load starved the benchmark of CPU, in every window "
            f"the time budget allowed (worst: {worst.latency.contention['worst']['reason']}); "
            f"they cannot be blessed: rerun on a quiet machine or a node of its own"
        )
    for variant in variants:
        if not variant.ok:
            continue
        if (
            variant.latency is not None
            and not variant.latency.stable
            and not variant.latency.contaminated
        ):
            cv = variant.latency.cv
            cv_text = f"{cv:.3f}" if math.isfinite(cv) else "unknown"
            warnings.append(
                f"latency of {variant.name} never settled (CV {cv_text} after "
                f"{variant.latency.windows} windows, stopped by {variant.latency.stop_reason}); "
                f"its numbers are shown but it cannot be blessed"
            )
        starved_batches = sorted(b for b, bad in variant.throughput_contaminated.items() if bad)
        if starved_batches:
            warnings.append(
                f"throughput of {variant.name} was starved of CPU by other load at batch "
                f"sizes {', '.join(map(str, starved_batches))}"
            )
        unstable = sorted(
            b
            for b, stable in variant.throughput_stable.items()
            if not stable and not variant.throughput_contaminated.get(b)
        )
        if unstable:
            warnings.append(
                f"throughput of {variant.name} never settled at batch sizes "
                f"{', '.join(map(str, unstable))}"
            )
    return warnings


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _iso(value: datetime.datetime | str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")


def _duration_s(started: str, finished: str | None) -> float | None:
    if finished is None:
        return None
    try:
        start = datetime.datetime.fromisoformat(started)
        end = datetime.datetime.fromisoformat(finished)
        return (end - start).total_seconds()
    except (ValueError, TypeError):  # Free-form timestamps are kept, just not subtracted.
        return None


def _json_safe(value: Any) -> Any:
    """Converts numpy scalars, tuples and sets; non-finite floats become None."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [_json_safe(v) for v in items]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    raise TypeError(
        f"Report values must be JSON-serializable; got {type(value).__name__}: {value!r}."
    )


def _harness_overhead_p50(variants: Sequence[VariantResult]) -> float | None:
    for variant in variants:
        if variant.format == NULL_FORMAT and variant.ok and variant.summary:
            return variant.summary.p50_ms
    return None


def _harness_overhead_warnings(variants: Sequence[VariantResult]) -> list[str]:
    """A warning when the harness's own p50 is a noticeable share of a real variant's."""
    overhead = _harness_overhead_p50(variants)
    real = [
        v.summary.p50_ms
        for v in variants
        if v.format != NULL_FORMAT and v.ok and v.summary and v.summary.p50_ms > 0
    ]
    if overhead is None or not real or overhead <= MAX_HARNESS_OVERHEAD_FRACTION * min(real):
        return []
    return [
        f"harness overhead p50 {overhead:.4g} ms is more than "
        f"{MAX_HARNESS_OVERHEAD_FRACTION:.0%} of the fastest variant's p50 {min(real):.4g} ms; "
        f"latencies that small are dominated by measurement cost"
    ]
