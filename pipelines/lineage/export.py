"""A run's lineage graph as DOT, Mermaid, JSON or a self-contained HTML page.

Executions are boxes coloured by state, artifacts are notes; an edge runs from an input
artifact into an execution and from an execution to each output, labelled with its key.
The HTML page draws the graph as inline SVG (laid out here in layers, left to right) and
lists every node's properties below it; it loads nothing from anywhere.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Callable
from typing import Any

from components.common.sizes import format_bytes
from pipelines.lineage.queries import ArtifactNode, ExecutionNode, LineageGraph, RunGraph
from pipelines.lineage.render import (
    format_duration,
    format_number,
    format_value,
    run_state_text,
    to_json_text,
)

FORMATS = ("dot", "mermaid", "json", "html")
# File extensions that choose the format when --format is not given.
EXTENSIONS = {
    ".dot": "dot",
    ".gv": "dot",
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".json": "json",
    ".html": "html",
    ".htm": "html",
}
STATE_COLORS = {  # fill, stroke
    "COMPLETE": ("#d8f0dc", "#2e7d32"),
    "CACHED": ("#e8eaed", "#5f6368"),
    "FAILED": ("#fbd9d7", "#c62828"),
    "RUNNING": ("#fff1c7", "#b26a00"),
    "NEW": ("#fff1c7", "#b26a00"),
    "CANCELED": ("#f3e5f5", "#6a1b9a"),
}
ARTIFACT_COLORS = ("#e6f0fb", "#1f5fa8")
DEFAULT_COLORS = ("#ffffff", "#444444")
MAX_LABEL_CHARS = 30


def export_run(run_graph: RunGraph, fmt: str, store: str) -> str:
    """The run's graph in `fmt` (one of FORMATS)."""
    exporters: dict[str, Callable[[RunGraph, str], str]] = {
        "dot": to_dot,
        "mermaid": to_mermaid,
        "json": lambda g, s: to_json_text({"store": s, **g.to_json()}),
        "html": to_html,
    }
    return exporters[fmt](run_graph, store)


# ---------------------------------------------------------------------------------- DOT


def to_dot(run_graph: RunGraph, store: str = "") -> str:
    """Graphviz DOT: `dot -Tsvg run.dot -o run.svg` draws it."""
    graph = run_graph.graph
    title = f"run {run_graph.run.run_id} ({run_state_text(run_graph.run)})"
    lines = [
        "digraph lineage {",
        f"  graph [rankdir=LR, labelloc=t, fontname=Helvetica, label={_dot_quote(title)}];",
        "  node [fontname=Helvetica, fontsize=10];",
        '  edge [fontname=Helvetica, fontsize=9, color="#666666"];',
    ]
    for execution in graph.ordered_executions():
        fill, stroke = STATE_COLORS.get(execution.state, DEFAULT_COLORS)
        lines.append(
            f'  {_node_key("e", execution.id)} [shape=box, style="rounded,filled", '
            f'fillcolor="{fill}", color="{stroke}", '
            f"label={_dot_quote(chr(10).join(execution_label(execution)))}];"
        )
    for artifact in _artifacts_in_order(graph):
        fill, stroke = ARTIFACT_COLORS
        lines.append(
            f"  {_node_key('a', artifact.id)} [shape=note, style=filled, "
            f'fillcolor="{fill}", color="{stroke}", '
            f"label={_dot_quote(chr(10).join(artifact_label(artifact, graph)))}];"
        )
    for source, target, label in _directed_edges(graph):
        lines.append(f"  {source} -> {target} [label={_dot_quote(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# ------------------------------------------------------------------------------ Mermaid


def to_mermaid(run_graph: RunGraph, store: str = "") -> str:
    """A Mermaid flowchart (paste into a Markdown ```mermaid block)."""
    graph = run_graph.graph
    lines = ["flowchart LR"]
    classes: dict[str, list[str]] = {}
    for execution in graph.ordered_executions():
        key = _node_key("e", execution.id)
        lines.append(f'  {key}["{_mermaid_text(execution_label(execution))}"]')
        classes.setdefault(execution.state.lower(), []).append(key)
    for artifact in _artifacts_in_order(graph):
        key = _node_key("a", artifact.id)
        lines.append(f'  {key}[/"{_mermaid_text(artifact_label(artifact, graph))}"/]')
        classes.setdefault("artifact", []).append(key)
    for source, target, label in _directed_edges(graph):
        lines.append(f"  {source} -->|{_mermaid_edge_label(label)}| {target}")
    for name, (fill, stroke) in [*STATE_COLORS.items(), ("ARTIFACT", ARTIFACT_COLORS)]:
        if name.lower() in classes:
            lines.append(f"  classDef {name.lower()} fill:{fill},stroke:{stroke}")
    for name, keys in classes.items():
        if name in {s.lower() for s in STATE_COLORS} | {"artifact"}:
            lines.append(f"  class {','.join(keys)} {name}")
    return "\n".join(lines) + "\n"


def _mermaid_text(lines: list[str]) -> str:
    """Label text for a quoted Mermaid label: entities for quotes and angle brackets."""
    escaped = [
        line.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
        for line in lines
    ]
    return "<br/>".join(escaped)


def _mermaid_edge_label(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", label) or "_"


# --------------------------------------------------------------------------------- HTML

NODE_WIDTH = 210
LINE_HEIGHT = 15
NODE_PADDING = 10
GAP_X = 110
DUMMY_HEIGHT = 14
LABEL_POSITION = 0.3  # Along an edge's last curve, from its source side.
GAP_Y = 22
MARGIN = 20


def to_html(run_graph: RunGraph, store: str = "") -> str:
    """A self-contained page: the graph as inline SVG, then each node's properties."""
    run, graph = run_graph.run, run_graph.graph
    title = f"Lineage of run {run.run_id}"
    svg = _svg(graph)
    headline = ""
    if run.headline is not None:
        h = run.headline
        result = h.winner if h.blessed else "no variant blessed"
        if h.blessed and h.winner_p50_ms is not None:
            result += f", p50 {format_number(h.winner_p50_ms)} ms"
        if h.blessed and h.winner_speedup is not None:
            result += f", {h.winner_speedup:.2f}x the baseline"
        headline = f"<p><b>Result:</b> {_e(result)}</p>"
    sections = [_execution_section(e, run_graph) for e in graph.ordered_executions()]
    sections += [_artifact_section(a, graph) for a in _artifacts_in_order(graph)]
    took = format_duration(run.duration_s)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{_e(title)}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px;
  color: #222; }}
h1 {{ font-size: 20px; margin-bottom: 4px; }}
h2 {{ font-size: 16px; margin-top: 28px; }}
h3 {{ font-size: 14px; margin: 0 0 6px 0; }}
.meta {{ color: #555; font-size: 13px; }}
.graph {{ overflow-x: auto; border: 1px solid #ddd; border-radius: 6px; padding: 8px;
  background: #fcfcfc; }}
svg text {{ font-family: inherit; }}
svg a:hover rect {{ stroke-width: 2.5; }}
section {{ border: 1px solid #e0e0e0; border-radius: 6px; padding: 10px 14px; margin: 10px 0;
  max-width: 1100px; }}
section:target {{ outline: 3px solid #f0b400; }}
table {{ border-collapse: collapse; font-size: 12.5px; }}
td {{ border-top: 1px solid #eee; padding: 3px 10px 3px 0; vertical-align: top; }}
td.key {{ color: #555; white-space: nowrap; }}
td.value {{ font-family: ui-monospace, Menlo, Consolas, monospace; word-break: break-all; }}
.badge {{ display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 12px;
  border: 1px solid; }}
</style>
</head>
<body>
<h1>{_e(title)}</h1>
<p class="meta">Pipeline {_e(run.pipeline or "?")} &middot; {_e(run_state_text(run))} &middot;
started {_e(run.created)}{" &middot; took " + _e(took) if took else ""} &middot; store
{_e(store)}</p>
{headline}
<div class="graph">
{svg}
</div>
<p class="meta">Click a node for its properties. Boxes are executions (green complete, grey
cached, red failed); notes are artifacts; edges are labelled with the input or output key.</p>
<h2>Executions and artifacts</h2>
{"".join(sections)}
</body>
</html>
"""


def _execution_section(execution: ExecutionNode, run_graph: RunGraph) -> str:
    graph = run_graph.graph
    fill, stroke = STATE_COLORS.get(execution.state, DEFAULT_COLORS)
    rows = [
        ("execution id", str(execution.id)),
        ("type", execution.type),
        ("state", execution.state),
        ("started", execution.started),
        ("finished", execution.finished),
        ("duration", format_duration(execution.duration_s)),
        ("run", execution.run_id or ""),
    ]
    cached_from = run_graph.cached_from.get(execution.id)
    if cached_from is not None:
        rows.append(("reused outputs of", f"execution {cached_from}"))
    rows += [
        (f"parameter {k}", format_value(v, limit=2000)) for k, v in execution.parameters.items()
    ]
    links = [
        (f"in {edge.key}", _link("a", edge.artifact_id, graph.artifacts[edge.artifact_id]))
        for edge in graph.inputs_of(execution.id)
    ] + [
        (f"out {edge.key}", _link("a", edge.artifact_id, graph.artifacts[edge.artifact_id]))
        for edge in graph.outputs_of(execution.id)
    ]
    return (
        f'<section id="{_node_key("e", execution.id)}"><h3>{_e(execution.node_id)} '
        f'<span class="badge" style="background:{fill};border-color:{stroke}">'
        f"{_e(execution.state)}</span></h3>{_table(rows, links)}</section>\n"
    )


def _artifact_section(artifact: ArtifactNode, graph: LineageGraph) -> str:
    rows = [
        ("artifact id", str(artifact.id)),
        ("type", artifact.type),
        ("uri", artifact.uri),
        ("state", artifact.state),
        ("created", artifact.created),
    ]
    rows += [(k, format_value(v, limit=2000)) for k, v in artifact.properties.items()]
    links = [
        (f"from {e.node_id}", _link("e", e.id, e.node_id)) for e in graph.producers_of(artifact.id)
    ] + [
        (f"into {e.node_id}", _link("e", e.id, e.node_id)) for e in graph.consumers_of(artifact.id)
    ]
    return (
        f'<section id="{_node_key("a", artifact.id)}"><h3>[{artifact.id}] '
        f"{_e(artifact.type)}</h3>{_table(rows, links)}</section>\n"
    )


def _link(prefix: str, node_id: int, target: Any) -> str:
    text = f"[{target.id}] {target.short_type}" if isinstance(target, ArtifactNode) else str(target)
    return f'<a href="#{_node_key(prefix, node_id)}">{_e(text)}</a>'


def _table(rows: list[tuple[str, str]], links: list[tuple[str, str]]) -> str:
    cells = [
        f'<tr><td class="key">{_e(key)}</td><td class="value">{_e(value)}</td></tr>'
        for key, value in rows
    ]
    cells += [f'<tr><td class="key">{_e(key)}</td><td>{link}</td></tr>' for key, link in links]
    return f"<table>{''.join(cells)}</table>"


def _svg(graph: LineageGraph) -> str:
    """The graph drawn in layers: each node one column right of everything it depends on."""
    layout = _layout(graph)
    nodes = layout.nodes
    if not nodes:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="40">'
            '<text x="10" y="25">This run has no executions.</text></svg>'
        )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{layout.width}" '
        f'height="{layout.height}" viewBox="0 0 {layout.width} {layout.height}" role="img" '
        'aria-label="lineage graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#777"/></marker></defs>',
    ]
    for route in layout.routes:
        parts.append(
            f'<path d="{_route_path(route.points)}" fill="none" stroke="#888" '
            f'stroke-width="1.2" marker-end="url(#arrow)"/>'
        )
        label_x, label_y = _label_point(route.points[-2], route.points[-1])
        parts.append(
            f'<text x="{label_x:.1f}" y="{label_y - 4:.1f}" font-size="10" '
            f'fill="#555" text-anchor="middle">{_e(route.label)}</text>'
        )
    for key, node in nodes.items():
        fill, stroke = node.colors
        radius = 8 if key.startswith("e") else 2
        parts.append(
            f'<a href="#{key}"><title>{_e(chr(10).join(node.lines))}</title>'
            f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{NODE_WIDTH}" '
            f'height="{node.height}" rx="{radius}" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="1.5"/>'
        )
        for i, line in enumerate(node.lines):
            weight = ' font-weight="bold"' if i == 0 else ""
            parts.append(
                f'<text x="{node.x + NODE_PADDING:.1f}" '
                f'y="{node.y + NODE_PADDING + LINE_HEIGHT * (i + 1) - 4:.1f}" font-size="12"'
                f'{weight} fill="#222">{_e(line)}</text>'
            )
        parts.append("</a>")
    parts.append("</svg>")
    return "\n".join(parts)


def _label_point(start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    """A point a quarter along the last curve: labels of edges converging on one node
    stay near their own sources instead of piling up in front of the target."""
    (x1, y1), (x2, y2) = start, end
    t = LABEL_POSITION
    # The curve is a cubic Bezier with horizontal tangents (see _route_path).
    x = x1 + (x2 - x1) * (1.5 * t * (1 - t) + t**3)
    y = y1 + (y2 - y1) * (3 * t**2 - 2 * t**3)
    return x, y


def _barycentre(positions: list[int], fallback: int) -> float:
    return sum(positions) / len(positions) if positions else float(fallback)


def _route_path(points: list[tuple[float, float]]) -> str:
    """Horizontal tangents at every point, so routes through dummy slots read as one curve."""
    (x, y), rest = points[0], points[1:]
    commands = [f"M {x:.1f} {y:.1f}"]
    for next_x, next_y in rest:
        if next_y == y:
            commands.append(f"L {next_x:.1f} {next_y:.1f}")
        else:
            bend = (next_x - x) / 2
            commands.append(
                f"C {x + bend:.1f} {y:.1f}, {next_x - bend:.1f} {next_y:.1f}, "
                f"{next_x:.1f} {next_y:.1f}"
            )
        x, y = next_x, next_y
    return " ".join(commands)


@dataclasses.dataclass
class _Box:
    """A node or, for an edge spanning several layers, a dummy slot it passes through."""

    lines: list[str]
    colors: tuple[str, str]
    dummy: bool = False
    layer: int = 0
    x: float = 0.0
    y: float = 0.0

    @property
    def height(self) -> int:
        return DUMMY_HEIGHT if self.dummy else NODE_PADDING * 2 + LINE_HEIGHT * len(self.lines)


@dataclasses.dataclass
class _Route:
    points: list[tuple[float, float]]
    label: str


@dataclasses.dataclass
class _Layout:
    nodes: dict[str, _Box]  # Real nodes only.
    routes: list[_Route]
    width: float
    height: float


def _layout(graph: LineageGraph) -> _Layout:
    """A layered (Sugiyama-style) drawing, left to right.

    Layers are longest paths from the sources. An edge that skips layers passes through
    a dummy slot in each layer between, so it never crosses a node. Rows are ordered by
    the barycentre of neighbours in sweeps down and up the layers.
    """
    boxes: dict[str, _Box] = {}
    for execution in graph.ordered_executions():
        boxes[_node_key("e", execution.id)] = _Box(
            execution_label(execution), STATE_COLORS.get(execution.state, DEFAULT_COLORS)
        )
    for artifact in _artifacts_in_order(graph):
        boxes[_node_key("a", artifact.id)] = _Box(artifact_label(artifact, graph), ARTIFACT_COLORS)
    edges = _directed_edges(graph)
    predecessors: dict[str, list[str]] = {key: [] for key in boxes}
    for source, target, _ in edges:
        predecessors[target].append(source)

    def layer_of(key: str, visiting: frozenset[str]) -> int:
        box = boxes[key]
        if key not in placed:
            parents = [p for p in predecessors[key] if p not in visiting]
            box.layer = 1 + max((layer_of(p, visiting | {key}) for p in parents), default=-1)
            placed.add(key)
        return box.layer

    placed: set[str] = set()
    for key in list(boxes):
        layer_of(key, frozenset())
    chains: list[tuple[list[str], str]] = []
    for number, (source, target, label) in enumerate(edges):
        chain = [source]
        for layer in range(boxes[source].layer + 1, boxes[target].layer):
            dummy = f"d{number}_{layer}"
            boxes[dummy] = _Box([], DEFAULT_COLORS, dummy=True, layer=layer)
            chain.append(dummy)
        chain.append(target)
        chains.append((chain, label))
    up: dict[str, list[str]] = {key: [] for key in boxes}
    down: dict[str, list[str]] = {key: [] for key in boxes}
    for chain, _ in chains:
        for a, b in zip(chain, chain[1:], strict=False):
            down[a].append(b)
            up[b].append(a)
    columns: dict[int, list[str]] = {}
    for key, box in boxes.items():
        columns.setdefault(box.layer, []).append(key)
    layers = sorted(columns)
    for sweep in range(4):
        order = layers if sweep % 2 == 0 else layers[::-1]
        neighbours = up if sweep % 2 == 0 else down
        for layer in order[1:]:
            position = {k: i for column in columns.values() for i, k in enumerate(column)}
            column = columns[layer]
            keyed = {
                key: (_barycentre([position[n] for n in neighbours[key]], index), index)
                for index, key in enumerate(column)
            }
            column.sort(key=lambda k: keyed[k])
    tallest = max(
        (sum(boxes[k].height + GAP_Y for k in column) for column in columns.values()), default=0
    )
    for layer, column in columns.items():
        y = MARGIN + (tallest - sum(boxes[k].height + GAP_Y for k in column)) / 2
        for key in column:
            box = boxes[key]
            box.x = MARGIN + layer * (NODE_WIDTH + GAP_X)
            box.y = round(y, 1)
            y += box.height + GAP_Y
    routes = []
    for chain, label in chains:
        points = []
        for index, key in enumerate(chain):
            box = boxes[key]
            middle = box.y + box.height / 2
            if box.dummy:
                points += [(box.x, middle), (box.x + NODE_WIDTH, middle)]
            elif index == 0:
                points.append((box.x + NODE_WIDTH, middle))
            else:
                points.append((box.x, middle))
        routes.append(_Route(points, label))
    real = {k: b for k, b in boxes.items() if not b.dummy}
    if not real:
        return _Layout({}, [], 0, 0)
    width = max(b.x + NODE_WIDTH for b in real.values()) + MARGIN
    height = max(b.y + b.height for b in boxes.values()) + MARGIN
    return _Layout(real, routes, width, height)


# ---------------------------------------------------------------------- shared labelling


def execution_label(execution: ExecutionNode) -> list[str]:
    """Two short lines: the node id, then state, duration and execution id."""
    return [
        _clip(execution.node_id),
        _clip(f"{execution.state} {format_duration(execution.duration_s)} #{execution.id}"),
    ]


def artifact_label(artifact: ArtifactNode, graph: LineageGraph) -> list[str]:
    """The id and type, the variant or output name, and one telling fact."""
    keys = [e.key for e in graph.edges if e.artifact_id == artifact.id and e.kind == "output"]
    name = artifact.properties.get("variant_name") or (keys[0] if keys else "")
    lines = [_clip(f"[{artifact.id}] {artifact.short_type}")]
    if name:
        lines.append(_clip(str(name)))
    fact = _artifact_fact(artifact)
    if fact:
        lines.append(_clip(fact))
    return lines


def _artifact_fact(artifact: ArtifactNode) -> str:
    properties = artifact.properties
    if "winner" in properties and artifact.type.endswith("BenchmarkReport"):
        return f"winner {properties['winner']}" if properties["winner"] else "no winner"
    if "blessed" in properties:
        return "BLESSED" if properties["blessed"] else "NOT BLESSED"
    if "status" in properties:
        size = properties.get("size_bytes")
        size_text = f", {format_bytes(size)}" if isinstance(size, int) else ""
        return f"{properties['status']}{size_text}"
    return artifact.uri.rstrip("/").rsplit("/", 1)[-1]


def _artifacts_in_order(graph: LineageGraph) -> list[ArtifactNode]:
    return [graph.artifacts[i] for i in sorted(graph.artifacts)]


def _directed_edges(graph: LineageGraph) -> list[tuple[str, str, str]]:
    """(source, target, key): artifact -> execution for inputs, execution -> artifact else."""
    result = []
    for edge in graph.edges:
        execution, artifact = _node_key("e", edge.execution_id), _node_key("a", edge.artifact_id)
        if edge.kind == "input":
            result.append((artifact, execution, edge.key))
        else:
            result.append((execution, artifact, edge.key))
    return result


def _node_key(prefix: str, node_id: int) -> str:
    return f"{prefix}{node_id}"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
