"""Reading a finished local run back from ML Metadata: its executions and its report."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from components.artifacts import BenchmarkReport

_EXECUTION_STATES = {
    0: "UNKNOWN",
    1: "NEW",
    2: "RUNNING",
    3: "COMPLETE",
    4: "FAILED",
    5: "CACHED",
    6: "CANCELED",
}


@dataclasses.dataclass
class ExecutionRow:
    node_id: str
    state: str
    execution_id: int


@dataclasses.dataclass
class RunSummary:
    run_id: str
    executions: list[ExecutionRow]
    report_uri: str | None
    report: dict[str, Any] | None


def open_store(metadata_path: str) -> Any:
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata

    return metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(metadata_path))


def latest_run(store: Any, pipeline_name: str) -> RunSummary | None:
    """The newest `pipeline_run` context of a pipeline, with its executions and report."""
    runs = [
        c
        for c in store.get_contexts_by_type("pipeline_run")
        if _belongs_to_pipeline(store, c, pipeline_name)
    ]
    if not runs:
        return None
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
    rows = [
        ExecutionRow(
            node_id=_node_id(store, execution),
            state=_EXECUTION_STATES.get(execution.last_known_state, "?"),
            execution_id=execution.id,
        )
        for execution in executions
    ]
    report_uri = _report_uri(store, [e.id for e in executions])
    report = None
    if report_uri and os.path.exists(os.path.join(report_uri, "report.json")):
        with open(os.path.join(report_uri, "report.json"), encoding="utf-8") as f:
            report = json.load(f)
    return RunSummary(run.name, rows, report_uri, report)


def _belongs_to_pipeline(store: Any, run_context: Any, pipeline_name: str) -> bool:
    parents = store.get_parent_contexts_by_context(run_context.id)
    if parents:
        return any(p.name == pipeline_name for p in parents)
    return True  # Older TFX versions do not link run contexts to the pipeline context.


def _node_id(store: Any, execution: Any) -> str:
    """The pipeline node an execution belongs to (its `node` context is `<pipeline>.<node>`)."""
    node_type = store.get_context_type("node")
    for context in store.get_contexts_by_execution(execution.id):
        if context.type_id == node_type.id:
            return context.name.split(".", 1)[-1]
    return f"execution {execution.id}"


def _report_uri(store: Any, execution_ids: list[int]) -> str | None:
    from ml_metadata.proto import metadata_store_pb2

    output_ids = [
        e.artifact_id
        for e in store.get_events_by_execution_ids(execution_ids)
        if e.type == metadata_store_pb2.Event.OUTPUT
    ]
    if not output_ids:
        return None
    report_type = store.get_artifact_type(BenchmarkReport.TYPE_NAME)
    reports = [
        a
        for a in store.get_artifacts_by_id(output_ids)
        if a.type_id == report_type.id and a.state == metadata_store_pb2.Artifact.LIVE
    ]
    return max(reports, key=lambda a: a.id).uri if reports else None
