"""Terminal text and JSON for the lineage answers (runs, a run's DAG, a trace, a diff)."""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Sequence
from typing import Any

from components.benchmarker.fingerprint import machine_text
from components.common.sizes import format_bytes
from pipelines.execution_owner import ABANDONED, describe_owner
from pipelines.lineage.queries import (
    ArtifactNode,
    ExecutionNode,
    InputComparison,
    LineageGraph,
    RunDiff,
    RunGraph,
    RunInfo,
    Trace,
    flatten_parameters,
)

WIDTH = 100
# Every TFX artifact carries these; they say nothing about this one (JSON keeps them).
HIDDEN_PROPERTIES = frozenset({"tfx_version", "is_external"})
# A report's hardware facts and runtime versions: shown on a "machine:" line of their own.
_MACHINE_PREFIXES = ("hardware_", "version_")
MAX_VALUE_CHARS = 72


def to_json_text(document: Any) -> str:
    """Indented JSON; non-finite floats become null so any JSON parser reads it."""
    return json.dumps(_finite(document), indent=2, allow_nan=False) + "\n"


# --------------------------------------------------------------------------------- runs


def render_runs(runs: Sequence[RunInfo], store: str) -> str:
    """`lineage runs`: one line per run, oldest first, with its headline result."""
    pipelines = sorted({run.pipeline for run in runs})
    several = len(pipelines) > 1
    header = ["#", "run id", *(["pipeline"] if several else []), "started (UTC)", "took"]
    header += ["state", "executions", "winner", "p50 ms", "speedup"]
    rows = []
    for run in runs:
        headline = run.headline
        winner = p50 = speedup = ""
        if headline is not None:
            winner = headline.winner if headline.blessed else "(none blessed)"
            winner += " (cached)" if headline.from_cache else ""
            p50 = format_number(headline.winner_p50_ms)
            speedup = "" if headline.winner_speedup is None else f"{headline.winner_speedup:.2f}x"
        executions = str(run.execution_count)
        if run.cached_count:
            executions += f" ({run.cached_count} cached)"
        rows.append(
            [
                str(run.index),
                run.run_id,
                *([run.pipeline] if several else []),
                _clock(run.created),
                format_duration(run.duration_s),
                run_state_text(run),
                executions,
                winner,
                p50,
                speedup,
            ]
        )
    right = {header.index(name) for name in ("#", "took", "p50 ms", "speedup")}
    title = f"Store: {store}" + ("" if several else f"  (pipeline {pipelines[0] or '?'})")
    lines = [title, "", *_table(header, rows, right=right)]
    lines += [
        "",
        "RUN arguments: a run id (or a unique prefix), `latest`, or the number in the first "
        "column (-1 = latest).",
    ]
    return "\n".join(lines) + "\n"


def run_state_text(run: RunInfo) -> str:
    if run.state == "FAILED" and run.failed_nodes:
        return f"FAILED at {', '.join(run.failed_nodes)}"
    if run.state == "CANCELED" and run.stopped_nodes:
        return f"CANCELED at {', '.join(run.stopped_nodes)} (interrupted)"
    if run.state == ABANDONED and run.stopped_nodes:
        return f"ABANDONED at {', '.join(run.stopped_nodes)} (its process is gone)"
    return run.state


def execution_state_text(execution: ExecutionNode) -> str:
    """The state, with why it stopped or which process runs it, where MLMD says so."""
    owner = describe_owner(execution.owner)
    if execution.state == ABANDONED:
        return (
            f"ABANDONED (MLMD still says {execution.recorded_state}, but "
            f"{owner or 'its process'} is gone; nothing of it was published)"
        )
    if execution.state == "CANCELED":
        return f"CANCELED ({execution.stop_reason or 'stopped'}; nothing of it was published)"
    if execution.state in ("NEW", "RUNNING") and owner:
        return f"{execution.state} ({owner})"
    return execution.state


# --------------------------------------------------------------------------------- show


def render_run_graph(run_graph: RunGraph, store: str) -> str:
    """`lineage show`: each execution in dependency order with its artifacts."""
    run, graph = run_graph.run, run_graph.graph
    lines = [_run_title(run), f"Store: {store}", ""]
    if run.headline is not None:
        headline = run.headline
        verdict = headline.winner if headline.blessed else "no variant blessed"
        lines.append(
            f"Result: {verdict}"
            + (f", p50 {format_number(headline.winner_p50_ms)} ms" if headline.blessed else "")
            + (
                f", {headline.winner_speedup:.2f}x the baseline"
                if headline.winner_speedup is not None and headline.blessed
                else ""
            )
            + f" (report artifact {headline.report_artifact_id})"
        )
        lines.append("")
    for execution in graph.ordered_executions():
        lines += _execution_block(execution, graph, run_graph.cached_from.get(execution.id))
        lines.append("")
    lines.append(
        "Artifact ids are in brackets: `inference-optimizer lineage trace ID` walks upstream "
        "from one."
    )
    return "\n".join(lines) + "\n"


def _run_title(run: RunInfo) -> str:
    took = format_duration(run.duration_s)
    return (
        f"Run {run.run_id} (#{run.index}) of pipeline {run.pipeline or '?'}: "
        f"{run_state_text(run)}, started {_clock(run.created)} UTC"
        + (f", took {took}" if took else "")
    )


def _execution_block(
    execution: ExecutionNode, graph: LineageGraph, cached_from: int | None
) -> list[str]:
    state = execution_state_text(execution)
    if cached_from is not None:
        state += f" (reused the outputs of execution {cached_from})"
    lines = [
        f"{execution.node_id}  {state}  {format_duration(execution.duration_s)}  "
        f"execution {execution.id} ({execution.type.rsplit('.', 1)[-1]})"
    ]
    if execution.failure_reason:
        prefix = "  failed because: "
        wrapped = textwrap.wrap(execution.failure_reason, WIDTH - len(prefix)) or [""]
        lines.append(prefix + wrapped[0])
        lines += [" " * len(prefix) + line for line in wrapped[1:]]
    if execution.facts:
        lines += _wrapped("  recorded   ", [f"{k}={v}" for k, v in execution.facts.items()])
    if execution.parameters:
        lines += _wrapped("  parameters ", _parameter_items(execution))
    for edge in graph.inputs_of(execution.id):
        artifact = graph.artifacts[edge.artifact_id]
        lines.append(f"  in   {edge.key:<16} <- {_artifact_title(artifact)}")
    for edge in graph.outputs_of(execution.id):
        artifact = graph.artifacts[edge.artifact_id]
        lines.append(f"  out  {edge.key:<16} -> {_artifact_title(artifact)}")
        lines.append(f"{'':23}{artifact.uri}")
        shown = key_properties(artifact)
        if shown:
            lines += _wrapped(" " * 23, _key_values(shown))
        machine = machine_text(artifact.properties)
        if machine:
            lines += _wrapped(f"{'':23}machine: ", machine.split("; "))
    return lines


def _artifact_title(artifact: ArtifactNode) -> str:
    state = "" if artifact.state == "LIVE" else f" ({artifact.state})"
    return f"[{artifact.id}] {artifact.type}{state}"


def key_properties(artifact: ArtifactNode) -> dict[str, Any]:
    """The properties worth a line in the terminal.

    A report's per-variant metrics are reduced to the winner's (`lineage diff` and
    --json show them all).
    """
    winner = artifact.properties.get("winner")
    shown = {}
    for key, value in artifact.properties.items():
        if key in HIDDEN_PROPERTIES or key.startswith(_MACHINE_PREFIXES):
            continue  # The machine's facts have a line of their own (machine_text).
        per_variant = "." in key and artifact.type.endswith("BenchmarkReport")
        if per_variant and (not winner or key.rsplit(".", 1)[0] != winner):
            continue
        shown[key] = value
    return shown


# -------------------------------------------------------------------------------- trace


def render_trace(trace: Trace, store: str) -> str:
    """`lineage trace`: the executions from the artifact up to the imported inputs."""
    graph = trace.graph
    start = graph.artifacts[trace.artifact_id]
    lines = [
        f"Trace of artifact {start.id} ({start.type}) up to the original model and data",
        f"Store: {store}",
        f"  uri: {start.uri}",
    ]
    shown = key_properties(start)
    if shown:
        lines += _wrapped("  ", _key_values(shown))
    lines.append("")
    for number, step in enumerate(trace.steps, start=1):
        execution = graph.executions[step.execution_id]
        where = f"run {execution.run_id}" if execution.run_id else "no run recorded"
        lines.append(
            f"{number}. {execution.node_id}  {execution_state_text(execution)}  "
            f"{format_duration(execution.duration_s)}  execution {execution.id} ({where})"
        )
        if step.reused_by:
            reuses = ", ".join(
                f"{i} (run {graph.executions[i].run_id})" if graph.executions[i].run_id else str(i)
                for i in step.reused_by
            )
            lines.append(f"   reused from cache by execution {reuses}")
        if execution.parameters:
            lines += _wrapped("   parameters ", _parameter_items(execution))
        for edge in step.inputs:
            artifact = graph.artifacts[edge.artifact_id]
            lines.append(f"   in   {edge.key:<16} <- {_artifact_title(artifact)}")
        for edge in step.outputs:
            artifact = graph.artifacts[edge.artifact_id]
            lines.append(f"   out  {edge.key:<16} -> {_artifact_title(artifact)}")
        lines.append("")
    lines.append("Original inputs:")
    for artifact_id in trace.origins:
        artifact = graph.artifacts[artifact_id]
        importers = [e.node_id for e in graph.producers_of(artifact_id)]
        via = f" (imported by {', '.join(dict.fromkeys(importers))})" if importers else ""
        lines.append(f"  {_artifact_title(artifact)}{via}")
        lines.append(f"      {artifact.uri}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- diff


def render_diff(diff: RunDiff, store: str) -> str:
    """`lineage diff`: changed parameters, then every variant's metrics in A and B."""
    a, b = diff.run_a, diff.run_b
    lines = [
        f"A: run {a.run_id} (#{a.index}), {run_state_text(a)}, started {_clock(a.created)} UTC",
        f"B: run {b.run_id} (#{b.index}), {run_state_text(b)}, started {_clock(b.created)} UTC",
        f"Store: {store}",
        "",
    ]
    if diff.parameter_changes:
        lines.append(f"Parameters that changed ({len(diff.parameter_changes)}):")
        rows = [
            [c.node_id, c.parameter, format_value(c.a), format_value(c.b)]
            for c in diff.parameter_changes
        ]
        lines += ["  " + line for line in _table(["node", "parameter", "A", "B"], rows)]
    else:
        lines.append("Parameters: no node's parameters changed.")
    for missing_in, nodes in (("B", diff.nodes_only_in_a), ("A", diff.nodes_only_in_b)):
        if nodes:
            lines.append(f"Nodes with no execution in {missing_in}: {', '.join(nodes)}")
    lines += _input_lines(diff.inputs)
    lines.append("")
    lines += _headline_comparison(a, b)
    lines.append("")
    if not diff.variants:
        lines.append("Variants: neither run has a benchmark report or variant artifacts.")
        return "\n".join(lines) + "\n"
    rows = []
    for variant in diff.variants:
        first = True
        for metric in diff.metrics:
            value_a, value_b = variant.a.get(metric), variant.b.get(metric)
            if value_a is None and value_b is None:
                continue
            rows.append(
                [
                    variant.variant if first else "",
                    metric,
                    _metric_text(metric, value_a),
                    _metric_text(metric, value_b),
                    _ratio(value_a, value_b) if metric in RATIO_METRICS else "",
                ]
            )
            first = False
    lines.append("Variants (B/A: run B's value over run A's):")
    table = _table(["variant", "metric", "A", "B", "B/A"], rows, right={2, 3, 4})
    lines += ["  " + line for line in table]
    return "\n".join(lines) + "\n"


RATIO_METRICS = frozenset({"p50_ms"})


def _input_lines(inputs: Sequence[InputComparison]) -> list[str]:
    """Which imported inputs changed: path, or contents at the same path (fingerprints)."""
    changed = [i for i in inputs if i.changed]
    if not inputs:
        return []
    if not changed:
        return ["Inputs: the same paths and content fingerprints in both runs."]
    lines = ["Inputs that changed:"]
    for item in changed:
        if not item.same_path:
            lines.append(f"  {item.name}: path A {item.uri_a or '-'}, B {item.uri_b or '-'}")
            continue
        if item.same_bytes:
            what = "same path, same bytes, different modification times"
        else:
            what = "same path, DIFFERENT CONTENTS (re-exported in place?)"
        lines.append(f"  {item.name}: {item.uri_a}: {what}")
        lines.append(f"    A fingerprint {item.fingerprint_a or '(none recorded)'}")
        lines.append(f"    B fingerprint {item.fingerprint_b or '(none recorded)'}")
    return lines


def _headline_comparison(a: RunInfo, b: RunInfo) -> list[str]:
    def winner(run: RunInfo) -> str:
        if run.headline is None:
            return "(no report)"
        return run.headline.winner if run.headline.blessed else "(none blessed)"

    return [
        f"Winner: A {winner(a)}, B {winner(b)}"
        + ("" if winner(a) != winner(b) else " (unchanged)"),
    ]


def _metric_text(metric: str, value: Any) -> str:
    if value is None:
        return "-"
    if metric == "size_bytes" and isinstance(value, int):
        return format_bytes(value)
    if metric.startswith("speedup") and isinstance(value, float):
        return f"{value:.2f}x"
    if metric.startswith("top") and isinstance(value, float):
        return f"{value:.4f}"  # Accuracy budgets are fractions of a point.
    return format_value(value)


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or a == 0:
        return ""
    return f"{b / a:.2f}x"


# ------------------------------------------------------------------------------ helpers


def format_number(value: float | None) -> str:
    """About 4 significant digits, no exponent for everyday magnitudes."""
    if value is None:
        return ""
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.3g}" if magnitude < 10 else f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3g}"


def format_value(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """A property value on one line: numbers short, containers as compact JSON, truncated."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = format_number(value) if abs(value) >= 1e-3 or value == 0 else f"{value:.3g}"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _clock(iso: str) -> str:
    """`2026-11-22T04:46:01+00:00` -> `2026-11-22 04:46:01`."""
    return iso.replace("T", " ").split("+", 1)[0]


def _parameter_items(execution: ExecutionNode) -> list[str]:
    """Parameters as `key=value`, JSON settings spread out (`benchmark_settings.split=eval`)."""
    return _key_values(flatten_parameters(execution.parameters))


def _key_values(properties: dict[str, Any]) -> list[str]:
    return [f"{key}={format_value(value)}" for key, value in properties.items()]


def _wrapped(prefix: str, items: list[str]) -> list[str]:
    """`key=value` items packed into lines of WIDTH, breaking only between items."""
    indent = " " * len(prefix)
    lines: list[str] = []
    current, filled = prefix, False
    for item in items:
        if filled and len(current) + 2 + len(item) > WIDTH:
            lines.append(current)
            current, filled = indent, False
        current += ("  " if filled else "") + item
        filled = True
    if filled:
        lines.append(current)
    return lines


def _table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> list[str]:
    right = right or set()
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
