"""The report's accuracy-aware int8 section: what each search tried, and what it cost.

    report["accuracy_aware"] = read_searches(specs)     # in the Benchmarker's executor
    search_section_html(report), search_section_markdown(report)

For every accuracy-aware variant (its producer wrote common/int8_fallback's search
record beside the model):
- a line: the layers that fell back and the drop, or why the budget was not reachable;
- the step curve: metric drop against the search's own per-step latency, from naive
  int8 (step 0) to the chosen step, with the budget as a line;
- the steps, and the per-layer sensitivity table (most harmful first).

The search's latencies are rough per-step figures (a few dozen calls, batch 1) that the
search records; the variant's real figures are the table's.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

from components.common.int8_fallback import display_names, layers_in_float, read_search_record

SENSITIVITY_ROWS = 15  # The most harmful layers shown; the JSON has them all.


def read_searches(specs: Iterable[Any]) -> dict[str, Any]:
    """{variant name: search record} for the ok variants that carry one."""
    found = {}
    for spec in specs:
        if spec.status == "ok" and spec.properties.get("fallback_layer_count") is not None:
            record = read_search_record(spec.uri)
            if record is not None:
                found[spec.name] = record
    return found


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.2f} pt"


def search_section_html(report: Mapping[str, Any]) -> str:
    searches = report.get("accuracy_aware") or {}
    if not searches:
        return ""
    parts = ['<section id="accuracy-aware">', "<h2>Accuracy-aware int8</h2>"]
    for name, record in searches.items():
        search = record["search"]
        chosen = search["steps"][search["chosen_step"]]
        fell_back = set(chosen["excluded"])
        every = [layer["name"] for layer in record["sensitivity"]]
        names = _display_names(record)
        parts.append(f'<h3 id="search-{html.escape(name)}"><code>{html.escape(name)}</code></h3>')
        parts.append(f'<p class="reason">{html.escape(summary_line(record))}</p>')
        parts.append(_step_curve_svg(name, record))
        rows = [
            "<tr><th>step</th><th>layers in float</th><th>drop</th><th>metric</th>"
            "<th>search latency, ms</th><th>took, s</th><th class=text>what changed</th></tr>"
        ]
        changes = step_changes(search, names, every)
        for index, (step, change) in enumerate(zip(search["steps"], changes, strict=True)):
            chosen_class = ' class="winner"' if index == search["chosen_step"] else ""
            rows.append(
                f"<tr{chosen_class}><td>{index}</td><td>{_ranked_count(step, every)}</td>"
                f"<td>{_points(step['metric_drop'])}</td><td>{_fmt(step.get('metric'))}</td>"
                f"<td>{_fmt(step.get('latency_ms'))}</td><td>{step['seconds']:.2f}</td>"
                f"<td class=text>{html.escape(change)}</td></tr>"
            )
        parts.append(
            f'<div class="scroll"><table class="search-steps">{"".join(rows)}</table></div>'
        )
        layers = sorted(record["sensitivity"], key=lambda layer: -layer["error"])
        rows = [
            "<tr><th class=text>layer</th><th class=text>op</th>"
            f"<th>error ({html.escape(record.get('error_metric', 'error'))})</th>"
            "<th>MACs</th><th class=text>in float</th></tr>"
        ]
        for layer in layers[:SENSITIVITY_ROWS]:
            rows.append(
                f'<tr><td class=text title="{html.escape(layer["name"])}">'
                f"{html.escape(names[layer['name']])}</td><td class=text>"
                f"{html.escape(layer['op'])}</td><td>{layer['error']:.3g}</td>"
                f"<td>{layer['macs']:,}</td><td class=text>"
                f"{'yes' if layer['name'] in fell_back else ''}</td></tr>"
            )
        more = len(layers) - SENSITIVITY_ROWS
        parts.append(
            f'<div class="scroll"><table class="sensitivity">{"".join(rows)}</table></div>'
            + (f'<p class="note">{more} more layers in the search record.</p>' if more > 0 else "")
        )
    parts.append(
        '<p class="note">Each step leaves the listed layers in float, re-quantizes and scores '
        "the held-out examples; the error is each layer's own, from the runtime's debugger "
        "on calibration examples. Search latencies are rough (a few dozen batch-1 calls); "
        "the results table has the variant's measured figures.</p></section>"
    )
    return "".join(parts)


def _display_names(record: Mapping[str, Any]) -> dict[str, str]:
    """Short names for every layer and group member the record mentions."""
    every = [layer["name"] for layer in record["sensitivity"]]
    members = [n for layer in record["sensitivity"] for n in layer.get("group", ())]
    names = list(dict.fromkeys((*every, *members)))
    return dict(zip(names, display_names(names), strict=True))


def _ranked_count(step: Mapping[str, Any], ranked: Iterable[str]) -> int:
    """The ranked layers a step has in float (a group's MAC-free ops are not counted)."""
    ranked = set(ranked)
    return sum(1 for name in step["excluded"] if name in ranked)


def _listed(
    added: Iterable[str], names: Mapping[str, str], ranked: set[str], quote: str = ""
) -> str:
    """Ranked layers by name, the MAC-free ops that went with them as a count."""
    added = list(added)
    layers = [f"{quote}{names.get(n, n)}{quote}" for n in added if n in ranked or not ranked]
    others = len(added) - len(layers)
    return ", ".join(layers) + (f" (with {others} MAC-free ops)" if others else "")


def step_changes(
    search: Mapping[str, Any], names: Mapping[str, str], ranked: Iterable[str] = ()
) -> list[str]:
    """What each step did: the layers it put in float, or, when pruning, the ones it
    tried back in int8 (against the largest set so far)."""
    changes, largest = [], set()
    ranked = set(ranked)
    for index, step in enumerate(search["steps"]):
        now = set(step["excluded"])
        if index == 0:
            text = "naive int8" + (f", {len(now)} excluded by the user" if now else "")
        elif now >= largest:
            added = [n for n in step["excluded"] if n not in largest]
            text = "in float: " + _listed(added, names, ranked)
        else:
            text = "tried back in int8: " + _listed(sorted(largest - now), names, ranked)
        largest = now if now >= largest else largest
        changes.append(text)
    return changes


def summary_line(record: Mapping[str, Any]) -> str:
    search = record["search"]
    naive = search["steps"][0]["metric_drop"]
    examples = record.get("held_out_examples")
    where = f" on {examples} held-out examples" if examples else ""
    ranked = [layer["name"] for layer in record["sensitivity"]]
    chosen = search["steps"][search["chosen_step"]]
    trials = record.get("calibration_trials") or []
    calibration = (
        f"Calibration: {record['calibration_method']}, the best of "
        + ", ".join(f"{t['method']} {_points(t['metric_drop'])}" for t in trials)
        + ". "
        if len(trials) > 1
        else ""
    )
    return (
        f"Naive int8: {_points(naive)}. {calibration}"
        + (
            f"{layers_in_float(_ranked_count(chosen, ranked))}: drop "
            f"{_points(search['steps'][search['chosen_step']]['metric_drop'])}"
            if search["reachable"]
            else "Budget not reachable: smallest drop "
            f"{_points(search['steps'][search['chosen_step']]['metric_drop'])}"
        )
        + f" (budget {_points(record.get('max_drop'))}){where}; stopped: "
        f"{search['stop_reason']}; {len(search['steps'])} steps in {search['seconds']:.1f} s."
    )


def search_section_markdown(report: Mapping[str, Any]) -> str:
    searches = report.get("accuracy_aware") or {}
    if not searches:
        return ""
    lines = ["## Accuracy-aware int8", ""]
    for name, record in searches.items():
        search = record["search"]
        every = [layer["name"] for layer in record["sensitivity"]]
        lines += [f"### `{name}`", "", summary_line(record), ""]
        lines += [
            "| step | layers in float | drop | metric | search latency, ms |",
            "|---|---|---|---|---|",
        ]
        for index, step in enumerate(search["steps"]):
            mark = " (chosen)" if index == search["chosen_step"] else ""
            lines.append(
                f"| {index}{mark} | {_ranked_count(step, every)} | "
                f"{_points(step['metric_drop'])} | {_fmt(step.get('metric'))} | "
                f"{_fmt(step.get('latency_ms'))} |"
            )
        if search["fallback_layers"]:
            names = _display_names(record)
            shown = _listed(search["fallback_layers"], names, set(every), quote="`")
            lines += ["", "In float: " + shown]
        lines.append("")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _step_curve_svg(name: str, record: Mapping[str, Any]) -> str:
    """Drop (points) against the search's latency per step; the budget a dashed line."""
    steps = [s for s in record["search"]["steps"] if s.get("latency_ms") is not None]
    if not steps:
        return ""
    width, height, left, right, top, bottom = 560, 260, 60, 20, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    budget = 100 * float(record.get("max_drop") or 0.0)
    latencies = [s["latency_ms"] for s in steps]
    reference = record.get("float_latency_ms")
    x_values = latencies + ([reference] if reference else [])
    drops = [100 * s["metric_drop"] for s in steps] + [budget, 0.0]
    x_lo, x_hi = min(x_values) * 0.9, max(x_values) * 1.1 or 1.0
    y_lo, y_hi = min(drops), max(drops)
    pad = (y_hi - y_lo) * 0.08 or 1.0
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def x_of(value: float) -> float:
        return left + (value - x_lo) / (x_hi - x_lo) * plot_w

    def y_of(value: float) -> float:
        return top + plot_h - (value - y_lo) / (y_hi - y_lo) * plot_h

    chosen = record["search"]["chosen_step"]
    parts = [
        f'<svg class="step-curve" data-variant="{html.escape(name)}" '
        f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img"><title>{html.escape(name)}: metric drop '
        f"against latency per search step</title>",
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#444"/>',
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="#444"/>',
        f'<line class="budget" x1="{left}" x2="{left + plot_w}" y1="{y_of(budget):.1f}" '
        f'y2="{y_of(budget):.1f}" stroke="#2ca02c" stroke-dasharray="6,3"/>'
        f'<text x="{left + plot_w - 4}" y="{y_of(budget) - 4:.1f}" font-size="10" '
        f'text-anchor="end" fill="#2ca02c">budget {budget:.2f} pt</text>',
    ]
    if reference:
        parts.append(
            f'<line class="float-latency" x1="{x_of(reference):.1f}" x2="{x_of(reference):.1f}" '
            f'y1="{top}" y2="{top + plot_h}" stroke="#999" stroke-dasharray="2,3"/>'
            f'<text x="{x_of(reference) - 4:.1f}" y="{top + 10}" font-size="10" '
            f'text-anchor="end" fill="#777">float</text>'
        )
    points = " ".join(
        f"{x_of(s['latency_ms']):.1f},{y_of(100 * s['metric_drop']):.1f}" for s in steps
    )
    parts.append(f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    placed: list[tuple[float, float]] = []
    for index, step in enumerate(steps):
        x, y = x_of(step["latency_ms"]), y_of(100 * step["metric_drop"])
        radius = 6 if index == chosen else 4
        fill = "#d4a017" if index == chosen else "#1f77b4"
        label_x, label_y = x + 7, y - 5
        # Steps that measured alike sit on one spot: their labels go one under the other.
        while any(abs(label_x - px) < 14 and abs(label_y - py) < 11 for px, py in placed):
            label_y += 11
        placed.append((label_x, label_y))
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{fill}"><title>step {index}: '
            f"{len(step['excluded'])} in float, {100 * step['metric_drop']:+.2f} pt, "
            f"{step['latency_ms']:.4g} ms</title></circle>"
            f'<text x="{label_x:.1f}" y="{label_y:.1f}" font-size="10">{index}</text>'
        )
    for value in (x_lo + (x_hi - x_lo) * i / 4 for i in range(5)):
        parts.append(
            f'<text x="{x_of(value):.1f}" y="{top + plot_h + 14}" font-size="10" '
            f'text-anchor="middle">{value:.3g}</text>'
        )
    for value in (y_lo + (y_hi - y_lo) * i / 4 for i in range(5)):
        parts.append(
            f'<text x="{left - 5}" y="{y_of(value) + 3:.1f}" font-size="10" '
            f'text-anchor="end">{value:.3g}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="11" '
        f'text-anchor="middle">search latency per call, ms (batch 1)</text>'
        f'<text x="14" y="{top + plot_h / 2:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">metric drop, points</text></svg>'
    )
    return "".join(parts)
