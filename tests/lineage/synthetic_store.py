"""Small MLMD stores written through ML Metadata's own API, shaped like TFX's records.

A real pipeline run takes a minute; these take milliseconds, so the quick tests can pin
down states, indices, failures and formats. The shape follows what BeamDagRunner writes
(checked against real runs in test_lineage_pipeline.py): `pipeline`, `pipeline_run` and
`node` contexts, executions associated with all three, events keyed by input/output name.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

PIPELINE = "digits"
IMPORTER = "tfx.dsl.components.common.importer.Importer"
FREEZER = "components.freezer.component.Freezer"
BENCHMARKER = "components.benchmarker.component.Benchmarker"


@dataclasses.dataclass
class SyntheticRun:
    run_id: str
    model_id: int
    frozen_id: int | None
    report_id: int | None
    blessing_id: int | None


def create_store(path: str) -> Any:
    """A new, empty MLMD sqlite store at `path` (read-write, schema created)."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    return metadata_store.MetadataStore(config)


def add_run(
    store: Any,
    run_id: str,
    pipeline: str = PIPELINE,
    max_accuracy_drop: float = 0.01,
    benchmark_settings: dict[str, Any] | None = None,
    freezer_fails: bool = False,
    model_uri: str = "/models/digits",
    p50_ms: tuple[float, float] = (0.6, 0.75),
    model_properties: dict[str, Any] | None = None,
    benchmarker_stopped: int | None = None,
    benchmarker_properties: dict[str, Any] | None = None,
) -> SyntheticRun:
    """One run: model and examples importers, a Freezer, and (unless it fails) a Benchmarker.

    `benchmarker_stopped`: an Execution state (RUNNING, CANCELED) for a Benchmarker that
    never finished, so published nothing; `benchmarker_properties` are its custom
    properties (`runner:pid`, `reason`, ...). `model_properties` go on the Model.
    """
    from ml_metadata.proto import metadata_store_pb2 as pb

    pipeline_context = _context(store, "pipeline", pipeline)
    run_context = _context(store, "pipeline_run", run_id)
    store.put_parent_contexts(
        [pb.ParentContext(child_id=run_context.id, parent_id=pipeline_context.id)]
    )

    def execute(
        node: str,
        type_name: str,
        parameters: dict[str, Any],
        inputs: dict[str, pb.Artifact],
        outputs: dict[str, pb.Artifact],
        state: int = pb.Execution.COMPLETE,
    ) -> dict[str, int]:
        execution = pb.Execution(
            type_id=_type(store, "execution", type_name), last_known_state=state
        )
        for key, value in parameters.items():
            _set(execution.custom_properties[key], value)
        pairs = [(a, _event(pb.Event.INPUT, key)) for key, a in inputs.items()]
        pairs += [(a, _event(pb.Event.OUTPUT, key)) for key, a in outputs.items()]
        node_context = _context(store, "node", f"{pipeline}.{node}")
        _, artifact_ids, _ = store.put_execution(
            execution, pairs, [pipeline_context, run_context, node_context]
        )
        keys = list(inputs) + list(outputs)
        return dict(zip(keys, artifact_ids, strict=True))

    model = _artifact(store, "Model", model_uri, {"is_external": 1, **(model_properties or {})})
    model_id = execute(
        "model_importer", IMPORTER, {"artifact_uri": model_uri}, {}, {"result": model}
    )["result"]
    model.id = model_id
    examples = _artifact(store, "Examples", "/data/digits", {})
    examples.id = execute(
        "examples_importer", IMPORTER, {"artifact_uri": "/data/digits"}, {}, {"result": examples}
    )["result"]
    if freezer_fails:
        execute(
            "Freezer",
            FREEZER,
            {"signature_key": "serving_default"},
            {"model": model},
            {},
            state=pb.Execution.FAILED,
        )
        return SyntheticRun(run_id, model_id, None, None, None)
    frozen = _artifact(
        store,
        "components.FrozenGraph",
        f"/root/{run_id}/Freezer/frozen_graph",
        {"variant_name": "frozen_graph", "format": "graphdef", "status": "ok", "size_bytes": 89223},
    )
    frozen.id = execute(
        "Freezer",
        FREEZER,
        {"signature_key": "serving_default"},
        {"model": model},
        {"frozen_graph": frozen},
    )["frozen_graph"]
    if benchmarker_stopped is not None:
        execute(
            "Benchmarker",
            BENCHMARKER,
            {"objective": "p50", **(benchmarker_properties or {})},
            {"model": model, "examples": examples, "frozen_graph": frozen},
            {},
            state=benchmarker_stopped,
        )
        return SyntheticRun(run_id, model_id, frozen.id, None, None)
    baseline, variant = p50_ms
    report = _artifact(
        store,
        "components.BenchmarkReport",
        f"/root/{run_id}/Benchmarker/report",
        {
            "winner": "baseline",
            "blessed": 1,
            "baseline_p50_ms": baseline,
            "baseline.p50_ms": baseline,
            "baseline.speedup_p50": 1.0,
            "baseline.top1": 0.94,
            "frozen_graph.p50_ms": variant,
            "frozen_graph.speedup_p50": baseline / variant,
            "frozen_graph.top1": 0.94,
        },
    )
    blessing = _artifact(
        store,
        "components.VariantBlessing",
        f"/root/{run_id}/Benchmarker/blessing",
        {"blessed": 1, "winner": "baseline"},
    )
    settings = {"split": "eval", "time_budget_s": 3.0, **(benchmark_settings or {})}
    ids = execute(
        "Benchmarker",
        BENCHMARKER,
        {
            "benchmark_settings": json.dumps(settings, sort_keys=True),
            "max_accuracy_drop": max_accuracy_drop,
            "objective": "p50",
        },
        {"model": model, "examples": examples, "frozen_graph": frozen},
        {"report": report, "blessing": blessing},
    )
    return SyntheticRun(run_id, model_id, frozen.id, ids["report"], ids["blessing"])


def _context(store: Any, type_name: str, name: str) -> Any:
    from ml_metadata.proto import metadata_store_pb2 as pb

    existing = store.get_context_by_type_and_name(type_name, name)
    if existing is not None:
        return existing
    context = pb.Context(type_id=_type(store, "context", type_name), name=name)
    [context.id] = store.put_contexts([context])
    return context


def _type(store: Any, kind: str, name: str) -> int:
    from ml_metadata.proto import metadata_store_pb2 as pb

    put = {
        "context": (store.put_context_type, pb.ContextType),
        "execution": (store.put_execution_type, pb.ExecutionType),
        "artifact": (store.put_artifact_type, pb.ArtifactType),
    }[kind]
    return put[0](put[1](name=name))


def _artifact(store: Any, type_name: str, uri: str, properties: dict[str, Any]) -> Any:
    from ml_metadata.proto import metadata_store_pb2 as pb

    artifact = pb.Artifact(
        type_id=_type(store, "artifact", type_name), uri=uri, state=pb.Artifact.LIVE
    )
    for key, value in properties.items():
        _set(artifact.custom_properties[key], value)
    return artifact


def _event(kind: int, key: str) -> Any:
    from ml_metadata.proto import metadata_store_pb2 as pb

    event = pb.Event(type=kind)
    event.path.steps.add().key = key
    event.path.steps.add().index = 0
    return event


def _set(value: Any, python_value: Any) -> None:
    if isinstance(python_value, bool):
        value.bool_value = python_value
    elif isinstance(python_value, int):
        value.int_value = python_value
    elif isinstance(python_value, float):
        value.double_value = python_value
    else:
        value.string_value = str(python_value)
