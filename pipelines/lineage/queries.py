"""Questions asked of an ML Metadata store: its runs, a run's DAG, a trace, two runs compared.

Every answer comes from MLMD's own API: `pipeline_run` contexts and their executions,
events, and `get_lineage_subgraph` for the graphs. The results are plain dataclasses that
`render` prints and `export` draws, and that `to_json()` turns into JSON-able dicts.

    store = open_store(SqliteLocation("runs/inference-optimizer/metadata.sqlite"))
    run = resolve_run(store, "latest")
    graph = run_graph(store, run)
    trace = trace_artifact(store, resolve_artifact(store, "report"))
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
from collections.abc import Iterable, Sequence
from typing import Any

from components.common.errors import UserInputError
from pipelines import execution_owner
from pipelines.lineage.store import LineageStore

# TFX's BeamDagRunner/LocalDagRunner write `pipeline_run`; KFP v2's own launcher writes
# `system.PipelineRun`. Both are read so a Kubeflow store lists its runs too.
RUN_CONTEXT_TYPES = ("pipeline_run", "system.PipelineRun")
PIPELINE_CONTEXT_TYPES = ("pipeline", "system.Pipeline")
NODE_CONTEXT_TYPE = "node"
# components.artifacts defines these TYPE_NAMEs; importing it would load TensorFlow.
REPORT_TYPE_NAME = "components.BenchmarkReport"
BLESSING_TYPE_NAME = "components.VariantBlessing"
VARIANT_NAME_PROPERTY = "variant_name"
NULL_VARIANT_NAME = "null_harness_overhead"  # The Benchmarker's harness-overhead row.
# MLMD's lineage traversal accepts at most 100 starting nodes and 100 hops.
MAX_STARTING_NODES = 100
MAX_HOPS = 100
# Metrics a BenchmarkReport records per variant as `<variant>.<metric>` custom properties,
# in the order they are shown; others found on the artifact follow, sorted.
REPORT_METRICS = (
    "p50_ms",
    "speedup_p50",
    "top1",
    "top5",
    "accuracy",
    "auc",
    "mae",
    "rmse",
    "agreement",
)
# Facts recorded on each variant artifact that are worth comparing across runs.
VARIANT_ARTIFACT_FACTS = ("status", "format", "size_bytes")
LATEST = "latest"
# States whose outputs are results: only these executions' reports are ever headlines.
RESULT_STATES = ("COMPLETE", "CACHED")
# An execution that ended without a result on purpose (Ctrl-C), or whose process is gone.
STOPPED_STATES = ("CANCELED", execution_owner.ABANDONED)
# The importers' artifact custom properties (pipelines/input_fingerprint.py; not
# imported, to keep lineage light).
FINGERPRINT_PROPERTY = "input_fingerprint"
CONTENT_SHA256_PROPERTY = "input_content_sha256"
IMPORTER_SUFFIX = "_importer"


# --------------------------------------------------------------------------- data model


@dataclasses.dataclass
class ArtifactNode:
    """One MLMD artifact: a model, examples, a variant, a report or a blessing."""

    id: int
    type: str
    uri: str
    state: str
    created: str
    properties: dict[str, Any]

    @property
    def short_type(self) -> str:
        return self.type.rsplit(".", 1)[-1]


@dataclasses.dataclass
class ExecutionNode:
    """One MLMD execution of a pipeline node, with the parameters it ran with."""

    id: int
    node_id: str
    type: str
    state: str
    started: str
    finished: str
    duration_s: float
    parameters: dict[str, Any]
    run_id: str | None
    pipeline: str | None
    # A FAILED execution's user-facing reason, as its executor recorded it.
    failure_reason: str | None = None
    # What the execution found out and recorded (`fact:*` properties), e.g. the model's form.
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The process that ran it (`runner:*` properties: pid, host, start time), if recorded.
    owner: dict[str, Any] = dataclasses.field(default_factory=dict)
    # MLMD's own state; `state` differs only for ABANDONED (MLMD: RUNNING, process gone).
    recorded_state: str = ""
    # Why it was CANCELED (`reason`, e.g. "interrupted" after Ctrl-C).
    stop_reason: str | None = None


@dataclasses.dataclass
class Edge:
    """An MLMD event: `artifact` was an input or an output of `execution` under `key`."""

    execution_id: int
    artifact_id: int
    kind: str  # "input" or "output"
    key: str


@dataclasses.dataclass
class LineageGraph:
    """Executions and artifacts joined by events, as `get_lineage_subgraph` returned them."""

    executions: dict[int, ExecutionNode]
    artifacts: dict[int, ArtifactNode]
    edges: list[Edge]

    def inputs_of(self, execution_id: int) -> list[Edge]:
        return self._edges(execution_id=execution_id, kind="input")

    def outputs_of(self, execution_id: int) -> list[Edge]:
        return self._edges(execution_id=execution_id, kind="output")

    def producers_of(self, artifact_id: int) -> list[ExecutionNode]:
        ids = {e.execution_id for e in self._edges(artifact_id=artifact_id, kind="output")}
        return [self.executions[i] for i in sorted(ids)]

    def consumers_of(self, artifact_id: int) -> list[ExecutionNode]:
        ids = {e.execution_id for e in self._edges(artifact_id=artifact_id, kind="input")}
        return [self.executions[i] for i in sorted(ids)]

    def ordered_executions(self) -> list[ExecutionNode]:
        """Executions in dependency order (producers before consumers), ties by id."""
        depth: dict[int, int] = {}

        def depth_of(execution_id: int, visiting: frozenset[int]) -> int:
            if execution_id in depth:
                return depth[execution_id]
            upstream = [
                producer.id
                for edge in self.inputs_of(execution_id)
                for producer in self.producers_of(edge.artifact_id)
                if producer.id not in visiting and producer.id != execution_id
            ]
            value = 1 + max((depth_of(p, visiting | {execution_id}) for p in upstream), default=-1)
            depth[execution_id] = value
            return value

        return sorted(self.executions.values(), key=lambda e: (depth_of(e.id, frozenset()), e.id))

    def _edges(
        self, execution_id: int | None = None, artifact_id: int | None = None, kind: str = ""
    ) -> list[Edge]:
        return [
            e
            for e in self.edges
            if (execution_id is None or e.execution_id == execution_id)
            and (artifact_id is None or e.artifact_id == artifact_id)
            and (not kind or e.kind == kind)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "executions": [dataclasses.asdict(e) for e in self.ordered_executions()],
            "artifacts": [dataclasses.asdict(self.artifacts[i]) for i in sorted(self.artifacts)],
            "edges": [dataclasses.asdict(e) for e in self.edges],
        }


@dataclasses.dataclass
class Headline:
    """A run's result in one line: the winner, its p50 and its speedup over the baseline."""

    report_artifact_id: int
    winner: str
    blessed: bool
    winner_p50_ms: float | None
    winner_speedup: float | None
    baseline_p50_ms: float | None
    from_cache: bool  # The report was produced by an earlier run and reused.


@dataclasses.dataclass
class RunInfo:
    """One pipeline run (an MLMD `pipeline_run` context) and its overall state."""

    index: int  # Position in `lineage runs`, 1 = oldest.
    run_id: str
    context_id: int
    pipeline: str
    created: str
    state: str
    duration_s: float | None
    execution_count: int
    cached_count: int
    failed_nodes: list[str]
    headline: Headline | None
    # Nodes whose execution was CANCELED (Ctrl-C) or ABANDONED (its process died).
    stopped_nodes: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RunGraph:
    """A run's DAG: its executions, their input and output artifacts, and the events."""

    run: RunInfo
    graph: LineageGraph
    cached_from: dict[int, int]  # A cached execution -> the execution whose outputs it reused.

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run.to_json(),
            **self.graph.to_json(),
            "cached_from": {str(k): v for k, v in sorted(self.cached_from.items())},
        }


@dataclasses.dataclass
class TraceStep:
    """An execution on the way upstream, with the artifacts it read and wrote on the path."""

    execution_id: int
    inputs: list[Edge]
    outputs: list[Edge]
    reused_by: list[int]  # Cached executions (later runs) that reused these outputs.


@dataclasses.dataclass
class Trace:
    """An artifact's upstream lineage down to the imported model and data."""

    artifact_id: int
    graph: LineageGraph
    steps: list[TraceStep]
    origins: list[int]  # Artifacts nothing produced from inputs: imported model, examples.

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": dataclasses.asdict(self.graph.artifacts[self.artifact_id]),
            "steps": [dataclasses.asdict(s) for s in self.steps],
            "origins": self.origins,
            "graph": self.graph.to_json(),
        }


@dataclasses.dataclass
class ParameterChange:
    """One execution parameter of one pipeline node that differs between two runs."""

    node_id: str
    parameter: str
    a: Any
    b: Any


@dataclasses.dataclass
class VariantComparison:
    """One variant's metrics in run A and run B (None where a run lacks it)."""

    variant: str
    a: dict[str, Any]
    b: dict[str, Any]


@dataclasses.dataclass
class InputComparison:
    """One imported input (`model`, `examples`) in run A and run B: path and fingerprint."""

    name: str
    uri_a: str | None
    uri_b: str | None
    fingerprint_a: str | None
    fingerprint_b: str | None
    content_sha256_a: str | None
    content_sha256_b: str | None

    @property
    def same_path(self) -> bool:
        return self.uri_a == self.uri_b

    @property
    def changed(self) -> bool:
        """Different path, or the same path with a different recorded fingerprint."""
        return not self.same_path or self.fingerprint_a != self.fingerprint_b

    @property
    def same_bytes(self) -> bool:
        """Only modification times differ (the content digests, mtimes left out, match)."""
        return bool(self.content_sha256_a) and self.content_sha256_a == self.content_sha256_b


@dataclasses.dataclass
class RunDiff:
    """Two runs side by side: parameters that changed, and each variant's metrics."""

    run_a: RunInfo
    run_b: RunInfo
    parameter_changes: list[ParameterChange]
    nodes_only_in_a: list[str]
    nodes_only_in_b: list[str]
    metrics: list[str]
    variants: list[VariantComparison]
    inputs: list[InputComparison] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------- runs


def list_runs(store: LineageStore, pipeline: str | None = None) -> list[RunInfo]:
    """Every pipeline run in the store, oldest first, numbered from 1.

    Raises UserInputError when the store (or the chosen pipeline) has no runs.
    """
    mlmd = store.mlmd
    contexts = [c for t in RUN_CONTEXT_TYPES for c in mlmd.get_contexts_by_type(t)]
    if not contexts:
        raise UserInputError(
            f"The ML Metadata store {store.description} holds no pipeline runs. Run "
            f"`inference-optimizer run` first (it records every run in MLMD), or point "
            f"--metadata / --mysql-* at a store that has runs."
        )
    contexts.sort(key=lambda c: (c.create_time_since_epoch, c.id))
    pipelines = {c.id: _pipeline_name(mlmd, c) for c in contexts}
    if pipeline is not None:
        chosen = [c for c in contexts if pipelines[c.id] == pipeline]
        if not chosen:
            known = ", ".join(sorted(set(pipelines.values()))) or "none"
            raise UserInputError(
                f"The store {store.description} has no runs of pipeline {pipeline!r} "
                f"(pipelines with runs: {known}). Pass --pipeline with one of those."
            )
        contexts = chosen
    executions = {c.id: list(mlmd.get_executions_by_context(c.id)) for c in contexts}
    headlines = _headlines(mlmd, executions)
    return [
        _run_info(mlmd, index, c, pipelines[c.id], executions[c.id], headlines.get(c.id))
        for index, c in enumerate(contexts, start=1)
    ]


def resolve_run(store: LineageStore, ref: str, pipeline: str | None = None) -> RunInfo:
    """A run named by its id, `latest`, or its number in `lineage runs` (-1 = latest).

    An exact run id wins, then a number within range, then a unique prefix of a run id
    (`20261122-0448`).
    """
    runs = list_runs(store, pipeline)
    ref = str(ref).strip()
    hint = "`inference-optimizer lineage runs` lists them with their numbers."
    if ref.lower() == LATEST:
        return runs[-1]
    exact = [r for r in runs if r.run_id == ref]
    if exact:
        return exact[0]
    if _is_int(ref):
        number = int(ref)
        position = number - 1 if number > 0 else len(runs) + number
        if number != 0 and 0 <= position < len(runs):
            return runs[position]
    prefixed = [r for r in runs if r.run_id.startswith(ref)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        names = ", ".join(r.run_id for r in prefixed[:5])
        raise UserInputError(
            f"Run {ref!r} is ambiguous in {store.description}: it starts {len(prefixed)} run "
            f"ids ({names}{', ...' if len(prefixed) > 5 else ''}). Give more of the id."
        )
    if _is_int(ref):
        raise UserInputError(
            f"There is no run number {int(ref)} in {store.description}: it has "
            f"{len(runs)} run(s), numbered 1 (oldest) to {len(runs)} (latest), or -1 "
            f"(latest) backwards. {hint}"
        )
    recent = ", ".join(r.run_id for r in runs[-3:])
    raise UserInputError(
        f"No run {ref!r} in {store.description}. Pass a run id (recent: {recent}), "
        f"`latest`, or a number. {hint}"
    )


def run_graph(store: LineageStore, run: RunInfo) -> RunGraph:
    """The run's executions with their input and output artifacts (one hop of lineage)."""
    from ml_metadata.proto import metadata_store_pb2

    mlmd = store.mlmd
    execution_ids = sorted(e.id for e in mlmd.get_executions_by_context(run.context_id))
    merged = metadata_store_pb2.LineageGraph()
    # A run's DAG is its executions plus one hop to their artifacts, in both directions.
    for chunk in _chunks(execution_ids, MAX_STARTING_NODES):
        options = metadata_store_pb2.LineageSubgraphQueryOptions(
            max_num_hops=1,
            direction=metadata_store_pb2.LineageSubgraphQueryOptions.BIDIRECTIONAL,
        )
        options.starting_executions.filter_query = f"id IN ({', '.join(map(str, chunk))})"
        merged.MergeFrom(mlmd.get_lineage_subgraph(options))
    graph = _graph_from_proto(merged)
    return RunGraph(run, graph, _cached_from(mlmd, graph))


# -------------------------------------------------------------------------------- trace


def resolve_artifact(
    store: LineageStore, ref: str, run_ref: str = LATEST, pipeline: str | None = None
) -> int:
    """An artifact id from an id, a URI (or a file inside one), or a name in a run.

    Names are output keys (`report`, `blessing`, `frozen_graph`) or variant names,
    looked up in run `run_ref` (the latest run unless given).
    """
    mlmd = store.mlmd
    ref = str(ref).strip()
    if _is_int(ref):
        if not mlmd.get_artifacts_by_id([int(ref)]):
            raise UserInputError(
                f"No artifact with id {ref} in {store.description}. `inference-optimizer "
                f"lineage show RUN` lists each run's artifacts with their ids in brackets."
            )
        return int(ref)
    by_uri = _artifact_ids_by_uri(mlmd, ref)
    if by_uri:
        return max(by_uri)  # The same URI registered twice: the newest registration.
    if "/" in ref or "://" in ref:
        raise UserInputError(
            f"No artifact has the URI {ref!r} (or a folder holding it) in "
            f"{store.description}. Pass an artifact id, a URI that `inference-optimizer "
            f"lineage show RUN` prints, or a name such as `report`."
        )
    run = resolve_run(store, run_ref, pipeline)
    graph = run_graph(store, run).graph
    names: dict[str, set[int]] = collections.defaultdict(set)
    for edge in graph.edges:
        if edge.key:
            names[edge.key].add(edge.artifact_id)
    for artifact in graph.artifacts.values():
        variant = artifact.properties.get(VARIANT_NAME_PROPERTY)
        if isinstance(variant, str) and variant:
            names[variant].add(artifact.id)
    if len(names.get(ref, ())) == 1:
        return next(iter(names[ref]))
    if ref in names:
        choices = ", ".join(f"{i} ({graph.artifacts[i].short_type})" for i in sorted(names[ref]))
        raise UserInputError(
            f"{ref!r} names several artifacts in run {run.run_id}: {choices}. Pass one id."
        )
    raise UserInputError(
        f"{ref!r} is neither an artifact id, a known URI, nor an output or variant of run "
        f"{run.run_id} (names there: {', '.join(sorted(names)) or 'none'}). Pass one of "
        f"those, an id, or a URI."
    )


def trace_artifact(store: LineageStore, artifact_id: int) -> Trace:
    """Walks upstream from an artifact to the model and data that were imported.

    Artifacts reused through the cache have two producers: the execution that computed
    them and the cached execution of a later run; the trace follows the one that
    computed them and lists the reuses.
    """
    from ml_metadata import errors
    from ml_metadata.proto import metadata_store_pb2

    options = metadata_store_pb2.LineageSubgraphQueryOptions(
        max_num_hops=MAX_HOPS, direction=metadata_store_pb2.LineageSubgraphQueryOptions.UPSTREAM
    )
    options.starting_artifacts.filter_query = f"id = {int(artifact_id)}"
    try:
        proto = store.mlmd.get_lineage_subgraph(options)
    except errors.NotFoundError as error:
        raise UserInputError(f"No artifact with id {artifact_id} in {store.description}.") from (
            error
        )
    graph = _graph_from_proto(proto)
    steps: dict[int, TraceStep] = {}
    depth: dict[int, int] = {}
    origins: list[int] = []
    queue = collections.deque([(artifact_id, 0)])
    visited: set[tuple[int, int]] = set()
    while queue:
        current, distance = queue.popleft()
        producers = graph.producers_of(current)
        if not producers:
            origins.append(current)
            continue
        computed = [p for p in producers if p.state != "CACHED"] or producers
        producer = computed[0]
        reused = [p.id for p in producers if p.id != producer.id]
        depth[producer.id] = max(depth.get(producer.id, 0), distance)
        if producer.id in steps:
            steps[producer.id].reused_by = sorted(set(steps[producer.id].reused_by) | set(reused))
        else:
            steps[producer.id] = TraceStep(
                producer.id, graph.inputs_of(producer.id), graph.outputs_of(producer.id), reused
            )
        inputs = graph.inputs_of(producer.id)
        if not inputs:
            origins.append(current)  # An importer: this artifact came from outside.
        for edge in sorted(inputs, key=lambda e: (e.key, e.artifact_id)):
            if (edge.artifact_id, distance + 1) not in visited:
                visited.add((edge.artifact_id, distance + 1))
                queue.append((edge.artifact_id, distance + 1))

    def order(step: TraceStep) -> tuple[int, int, int]:
        importer = 1 if not step.inputs else 0  # Importers last, next to the origins.
        return (importer, depth[step.execution_id], -step.execution_id)

    return Trace(artifact_id, graph, sorted(steps.values(), key=order), sorted(set(origins)))


# --------------------------------------------------------------------------------- diff


def diff_runs(store: LineageStore, run_a: RunInfo, run_b: RunInfo) -> RunDiff:
    """The execution parameters that differ per node, and every variant's metrics side by side."""
    graph_a = run_graph(store, run_a).graph
    graph_b = run_graph(store, run_b).graph
    params_a = _parameters_by_node(graph_a)
    params_b = _parameters_by_node(graph_b)
    changes = []
    for node_id in sorted(set(params_a) & set(params_b)):
        flat_a = flatten_parameters(params_a[node_id])
        flat_b = flatten_parameters(params_b[node_id])
        for name in sorted(set(flat_a) | set(flat_b)):
            value_a, value_b = flat_a.get(name), flat_b.get(name)
            if value_a != value_b:
                changes.append(ParameterChange(node_id, name, value_a, value_b))
    metrics_a = variant_metrics(graph_a)
    metrics_b = variant_metrics(graph_b)
    metric_names = _ordered_metrics(
        name for table in (metrics_a, metrics_b) for row in table.values() for name in row
    )
    variants = [
        VariantComparison(name, metrics_a.get(name, {}), metrics_b.get(name, {}))
        for name in _ordered_variants(metrics_a, metrics_b)
    ]
    inputs_a, inputs_b = imported_inputs(graph_a), imported_inputs(graph_b)
    inputs = [
        InputComparison(
            name=name,
            uri_a=inputs_a[name].uri if name in inputs_a else None,
            uri_b=inputs_b[name].uri if name in inputs_b else None,
            fingerprint_a=_string_property(inputs_a.get(name), FINGERPRINT_PROPERTY),
            fingerprint_b=_string_property(inputs_b.get(name), FINGERPRINT_PROPERTY),
            content_sha256_a=_string_property(inputs_a.get(name), CONTENT_SHA256_PROPERTY),
            content_sha256_b=_string_property(inputs_b.get(name), CONTENT_SHA256_PROPERTY),
        )
        for name in sorted(set(inputs_a) | set(inputs_b))
    ]
    return RunDiff(
        run_a=run_a,
        run_b=run_b,
        parameter_changes=changes,
        nodes_only_in_a=sorted(set(params_a) - set(params_b)),
        nodes_only_in_b=sorted(set(params_b) - set(params_a)),
        metrics=metric_names,
        variants=variants,
        inputs=inputs,
    )


def imported_inputs(graph: LineageGraph) -> dict[str, ArtifactNode]:
    """The run's imported artifacts by name: `model_importer`'s output is `model`."""
    found: dict[str, ArtifactNode] = {}
    for execution in sorted(graph.executions.values(), key=lambda e: e.id):
        if not execution.node_id.endswith(IMPORTER_SUFFIX):
            continue
        for edge in graph.outputs_of(execution.id):
            found[execution.node_id[: -len(IMPORTER_SUFFIX)]] = graph.artifacts[edge.artifact_id]
    return found


def _string_property(artifact: ArtifactNode | None, key: str) -> str | None:
    value = None if artifact is None else artifact.properties.get(key)
    return None if value is None else str(value)


def flatten_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters with JSON-object strings spread into dotted keys (`benchmark_settings.x`)."""
    flat: dict[str, Any] = {}
    for name, value in parameters.items():
        decoded = _json_object(value)
        if not decoded:  # Not a JSON object, or `{}`: kept as it is, so it stays visible.
            flat[name] = value
            continue
        for key, inner in _flatten_mapping(decoded, name):
            flat[key] = inner
    return flat


def variant_metrics(graph: LineageGraph) -> dict[str, dict[str, Any]]:
    """Per variant: the report's `<variant>.<metric>` properties and its artifact's facts."""
    table: dict[str, dict[str, Any]] = collections.defaultdict(dict)
    report = report_artifact(graph)
    if report is not None:
        for key, value in report.properties.items():
            if "." not in key:
                continue
            variant, metric = key.rsplit(".", 1)
            table[variant][metric] = value
    for artifact in graph.artifacts.values():
        variant = artifact.properties.get(VARIANT_NAME_PROPERTY)
        if not isinstance(variant, str) or not variant:
            continue
        for fact in VARIANT_ARTIFACT_FACTS:
            if fact in artifact.properties:
                table[variant][fact] = artifact.properties[fact]
    return dict(table)


def report_artifact(graph: LineageGraph) -> ArtifactNode | None:
    """The newest BenchmarkReport among the graph's output artifacts."""
    output_ids = {e.artifact_id for e in graph.edges if e.kind == "output"}
    reports = [
        graph.artifacts[i] for i in output_ids if graph.artifacts[i].type == REPORT_TYPE_NAME
    ]
    return max(reports, key=lambda a: a.id) if reports else None


# ------------------------------------------------------------------------------ helpers


def _graph_from_proto(proto: Any) -> LineageGraph:
    """LineageGraph from MLMD's LineageGraph proto (deduplicated: chunks may overlap)."""
    from ml_metadata.proto import metadata_store_pb2

    contexts = {c.id: c for c in proto.contexts}
    contexts_of: dict[int, list[Any]] = collections.defaultdict(list)
    for association in proto.associations:
        context = contexts.get(association.context_id)
        if context is not None and context not in contexts_of[association.execution_id]:
            contexts_of[association.execution_id].append(context)
    executions = {}
    for execution in proto.executions:
        if execution.id not in executions:
            executions[execution.id] = _execution_node(execution, contexts_of[execution.id])
    artifacts = {a.id: _artifact_node(a) for a in proto.artifacts}
    edges: dict[tuple[int, int, str, str], Edge] = {}
    for event in proto.events:
        if event.execution_id not in executions or event.artifact_id not in artifacts:
            continue
        name = metadata_store_pb2.Event.Type.Name(event.type)
        kind = "input" if name.endswith("INPUT") else "output"
        keys = [step.key for step in event.path.steps if step.HasField("key")]
        edge = Edge(event.execution_id, event.artifact_id, kind, keys[0] if keys else "")
        edges[(edge.execution_id, edge.artifact_id, edge.kind, edge.key)] = edge
    return LineageGraph(executions, artifacts, sorted(edges.values(), key=_edge_order))


def _edge_order(edge: Edge) -> tuple[int, int, int, str]:
    return (edge.execution_id, 0 if edge.kind == "input" else 1, edge.artifact_id, edge.key)


def _execution_node(execution: Any, contexts: Sequence[Any]) -> ExecutionNode:
    from ml_metadata.proto import metadata_store_pb2

    pipeline = next((c.name for c in contexts if c.type in PIPELINE_CONTEXT_TYPES), None)
    run_id = next((c.name for c in contexts if c.type in RUN_CONTEXT_TYPES), None)
    node_context = next((c.name for c in contexts if c.type == NODE_CONTEXT_TYPE), None)
    from components.common.executor_output import (
        EXECUTION_FACT_PREFIX,
        EXECUTION_RESULT_PROPERTY,
        failure_reason,
    )

    parameters = {
        **{k: property_value(v) for k, v in execution.properties.items()},
        **{k: property_value(v) for k, v in execution.custom_properties.items()},
    }
    result = parameters.pop(EXECUTION_RESULT_PROPERTY, None)
    # Who ran it and why it stopped are bookkeeping, not parameters: `diff` would show a
    # new PID for every run.
    owner = {
        key: parameters.pop(key)
        for key in sorted(parameters)
        if key.startswith(execution_owner.RUNNER_PROPERTY_PREFIX)
    }
    recorded_state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
    stop_reason = (
        parameters.pop(execution_owner.CANCEL_REASON_PROPERTY, None)
        if recorded_state == "CANCELED"
        else None
    )
    facts = {
        key[len(EXECUTION_FACT_PREFIX) :]: parameters.pop(key)
        for key in sorted(parameters)
        if key.startswith(EXECUTION_FACT_PREFIX)
    }
    if node_context is not None:
        prefix = f"{pipeline}." if pipeline else ""
        node_id = (
            node_context[len(prefix) :]
            if prefix and node_context.startswith(prefix)
            else node_context.split(".", 1)[-1]
        )
    else:  # KFP v2's launcher names the task in custom properties instead.
        node_id = str(
            parameters.get("task_name")
            or parameters.get("display_name")
            or f"{execution.type.rsplit('.', 1)[-1]}-{execution.id}"
        )
    return ExecutionNode(
        id=execution.id,
        node_id=node_id,
        type=execution.type,
        state=effective_state(execution),
        started=iso_time(execution.create_time_since_epoch),
        finished=iso_time(execution.last_update_time_since_epoch),
        duration_s=max(
            0.0,
            (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000,
        ),
        parameters=dict(sorted(parameters.items())),
        run_id=run_id,
        pipeline=pipeline,
        failure_reason=failure_reason(result) if isinstance(result, str) else None,
        facts=facts,
        owner=owner,
        recorded_state=recorded_state,
        stop_reason=None if stop_reason is None else str(stop_reason),
    )


def effective_state(execution: Any) -> str:
    """MLMD's state name, except ABANDONED for RUNNING whose process is gone.

    A process killed by SIGKILL (or a lost machine) never ends its execution: MLMD keeps
    RUNNING forever. The local runner records the PID, host and process start time; on
    that same host, a PID that no longer exists or now belongs to another process means
    no one is running it. On another host nothing can be checked: it stays RUNNING.
    """
    from ml_metadata.proto import metadata_store_pb2

    state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
    if state not in ("NEW", "RUNNING"):
        return state
    owner = {
        key: property_value(value)
        for key, value in execution.custom_properties.items()
        if key.startswith(execution_owner.RUNNER_PROPERTY_PREFIX)
    }
    if execution_owner.owner_status(owner) == execution_owner.DEAD:
        return execution_owner.ABANDONED
    return state


def _artifact_node(artifact: Any) -> ArtifactNode:
    from ml_metadata.proto import metadata_store_pb2

    properties = {
        **{k: property_value(v) for k, v in artifact.properties.items()},
        **{k: property_value(v) for k, v in artifact.custom_properties.items()},
    }
    return ArtifactNode(
        id=artifact.id,
        type=artifact.type,
        uri=artifact.uri,
        state=metadata_store_pb2.Artifact.State.Name(artifact.state),
        created=iso_time(artifact.create_time_since_epoch),
        properties=dict(sorted(properties.items())),
    )


def property_value(value: Any) -> Any:
    """An MLMD Value as a plain Python value (TFX's JSON values unwrapped)."""
    from google.protobuf import json_format

    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "struct_value":
        decoded = json_format.MessageToDict(value.struct_value)
        # TFX stores set_json_value_custom_property values as {"__value__": ...}.
        return decoded["__value__"] if set(decoded) == {"__value__"} else decoded
    if kind == "proto_value":
        return f"<proto {value.proto_value.type_url}>"
    return getattr(value, kind)


def iso_time(milliseconds: int) -> str:
    """MLMD's milliseconds since the epoch as ISO 8601 in UTC (`2026-11-22T04:46:01+00:00`)."""
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds")


def _pipeline_name(mlmd: Any, run_context: Any) -> str:
    parents = mlmd.get_parent_contexts_by_context(run_context.id)
    names = [p.name for p in parents if p.type in PIPELINE_CONTEXT_TYPES]
    return names[0] if names else ""


def _headlines(mlmd: Any, executions_by_run: dict[int, list[Any]]) -> dict[int, Headline]:
    """Each run's newest BenchmarkReport, read from its custom properties."""
    reports = {a.id: a for a in mlmd.get_artifacts_by_type(REPORT_TYPE_NAME)}
    if not reports:
        return {}
    from ml_metadata.proto import metadata_store_pb2

    producers: dict[int, set[int]] = collections.defaultdict(set)
    for event in mlmd.get_events_by_artifact_ids(list(reports)):
        if event.type == metadata_store_pb2.Event.OUTPUT:
            producers[event.execution_id].add(event.artifact_id)
    headlines = {}
    for run_id, executions in executions_by_run.items():
        found = [
            (report_id, execution)
            for execution in executions
            if metadata_store_pb2.Execution.State.Name(execution.last_known_state) in RESULT_STATES
            for report_id in producers.get(execution.id, ())
        ]
        if not found:
            continue
        report_id, execution = max(found, key=lambda pair: pair[0])
        properties = {k: property_value(v) for k, v in reports[report_id].custom_properties.items()}
        winner = str(properties.get("winner") or "")
        headlines[run_id] = Headline(
            report_artifact_id=report_id,
            winner=winner,
            blessed=bool(properties.get("blessed")),
            winner_p50_ms=_number(properties.get(f"{winner}.p50_ms")),
            winner_speedup=_number(properties.get(f"{winner}.speedup_p50")),
            baseline_p50_ms=_number(properties.get("baseline_p50_ms")),
            from_cache=execution.last_known_state == metadata_store_pb2.Execution.CACHED,
        )
    return headlines


def _run_info(
    mlmd: Any,
    index: int,
    context: Any,
    pipeline: str,
    executions: list[Any],
    headline: Headline | None,
) -> RunInfo:

    states = [effective_state(e) for e in executions]
    failed = [e for e, s in zip(executions, states, strict=True) if s == "FAILED"]
    stopped = [e for e, s in zip(executions, states, strict=True) if s in STOPPED_STATES]
    duration = None
    if executions:
        started = min(e.create_time_since_epoch for e in executions)
        finished = max(e.last_update_time_since_epoch for e in executions)
        duration = max(0.0, (finished - started) / 1000)
    return RunInfo(
        index=index,
        run_id=context.name,
        context_id=context.id,
        pipeline=pipeline,
        created=iso_time(context.create_time_since_epoch),
        state=run_state(states),
        duration_s=duration,
        execution_count=len(executions),
        cached_count=states.count("CACHED"),
        failed_nodes=[_node_of(mlmd, e) for e in sorted(failed, key=lambda e: e.id)],
        headline=headline,
        stopped_nodes=[_node_of(mlmd, e) for e in sorted(stopped, key=lambda e: e.id)],
    )


def run_state(states: Sequence[str]) -> str:
    """A run's state from its executions': FAILED, CANCELED, ABANDONED, RUNNING, COMPLETE."""
    if not states:
        return "EMPTY"
    if "FAILED" in states:
        return "FAILED"
    if "CANCELED" in states:
        return "CANCELED"
    if execution_owner.ABANDONED in states:
        return execution_owner.ABANDONED
    if any(s in ("NEW", "RUNNING", "UNKNOWN") for s in states):
        return "RUNNING"
    return "COMPLETE"


def _node_of(mlmd: Any, execution: Any) -> str:
    contexts = mlmd.get_contexts_by_execution(execution.id)
    return _execution_node(execution, contexts).node_id


def _cached_from(mlmd: Any, graph: LineageGraph) -> dict[int, int]:
    """For each cached execution, the execution that computed the outputs it reused."""
    cached = [e for e in graph.executions.values() if e.state == "CACHED"]
    outputs = {e.id: [edge.artifact_id for edge in graph.outputs_of(e.id)] for e in cached}
    artifact_ids = sorted({a for ids in outputs.values() for a in ids})
    if not artifact_ids:
        return {}
    from ml_metadata.proto import metadata_store_pb2

    producers: dict[int, set[int]] = collections.defaultdict(set)
    for event in mlmd.get_events_by_artifact_ids(artifact_ids):
        if event.type == metadata_store_pb2.Event.OUTPUT:
            producers[event.artifact_id].add(event.execution_id)
    candidate_ids = sorted({i for ids in producers.values() for i in ids})
    computed = {
        e.id
        for e in mlmd.get_executions_by_id(candidate_ids)
        if e.last_known_state != metadata_store_pb2.Execution.CACHED
    }
    result = {}
    for execution in cached:
        sources = {
            producer
            for artifact_id in outputs[execution.id]
            for producer in producers.get(artifact_id, ())
            if producer in computed
        }
        if sources:
            result[execution.id] = min(sources)
    return result


def _parameters_by_node(graph: LineageGraph) -> dict[str, dict[str, Any]]:
    """Each node's parameters, from its newest execution in the graph."""
    by_node: dict[str, ExecutionNode] = {}
    for execution in sorted(graph.executions.values(), key=lambda e: e.id):
        by_node[execution.node_id] = execution
    return {node: e.parameters for node, e in by_node.items()}


def _artifact_ids_by_uri(mlmd: Any, ref: str) -> list[int]:
    """Artifacts registered at `ref`, or at the nearest folder holding it (a report.html)."""
    import os

    candidates = [ref.rstrip("/") or ref]
    if "://" not in ref:
        path = os.path.abspath(os.path.expanduser(ref))
        while True:
            candidates.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
    for uri in dict.fromkeys(candidates):
        found = [a.id for a in mlmd.get_artifacts_by_uri(uri)]
        if not found and not uri.endswith("/"):
            found = [a.id for a in mlmd.get_artifacts_by_uri(uri + "/")]
        if found:
            return found
    return []


def _json_object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if not isinstance(value, str) or not value.lstrip().startswith("{"):
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _flatten_mapping(mapping: dict[str, Any], prefix: str) -> Iterable[tuple[str, Any]]:
    for key in sorted(mapping):
        value = mapping[key]
        name = f"{prefix}.{key}"
        if isinstance(value, dict) and value:
            yield from _flatten_mapping(value, name)
        else:
            yield name, value


def _ordered_metrics(names: Iterable[str]) -> list[str]:
    present = set(names)
    known = [m for m in REPORT_METRICS if m in present]
    facts = [m for m in VARIANT_ARTIFACT_FACTS if m in present]
    others = sorted(present - set(known) - set(facts))
    return known + others + facts


def _ordered_variants(*tables: dict[str, dict[str, Any]]) -> list[str]:
    """The baseline first, the harness-overhead row last, the variants by name between."""
    names = {name for table in tables for name in table}
    return sorted(names, key=lambda n: (not n.startswith("baseline"), n == NULL_VARIANT_NAME, n))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def _chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
