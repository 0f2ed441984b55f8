"""Real pipeline runs for the lineage tests, with the shortest benchmark that still measures.

The lineage tests check bookkeeping, not speed, so the Benchmarker times few calls;
every component still runs for real on BeamDagRunner and writes MLMD as usual.
"""

from __future__ import annotations

import io
import os
from typing import Any

PIPELINE_NAME = "inference-optimizer"
# Every BenchmarkSettings knob that bounds time, at its smallest useful value.
FAST_BENCHMARK = {
    "warmup_calls": 2,
    "latency_window_size": 10,
    "throughput_window_size": 2,
    "min_windows": 3,
    "max_windows": 3,
    "time_budget_s": 1.0,
    "throughput_batch_sizes": [1],
    "max_eval_examples": 64,
    # Three short windows rarely settle below the default 5% CV on a shared machine, and
    # an unsettled variant is never blessed; lineage wants a winner to report.
    "cv_threshold": 1.0,
}


# One instance of each TF transforming component, its quickest mode: every kind of
# component lineage reads still appears in MLMD, at a fraction of the full run's time
# (the TFLite converters take about 25 s each). The RuntimeConverter's kinds have tests
# of their own (tests/runtime_converter, tests/pipelines/test_failed_variants.py).
QUICK_VARIANTS = ("optimized_graph", "weights_int8_graph", "xla_jit")


def fast_settings(**overrides: Any) -> Any:
    """PipelineSettings with the quick benchmark and one quick mode per component kind."""
    from pipelines.pipeline import PipelineSettings

    values: dict[str, Any] = {
        "benchmark_settings": dict(FAST_BENCHMARK),
        "num_calibration": 32,
        "variants": QUICK_VARIANTS,
    }
    values.update(overrides)
    return PipelineSettings.from_json(values)


def run_pipeline_once(
    output_dir: str,
    model_uri: str,
    examples_uri: str,
    metadata_connection_config: Any = None,
    max_accuracy_drop: float = 0.01,
    **settings: Any,
) -> None:
    """One run into `output_dir` (MLMD in its metadata.sqlite unless a config is given).

    `settings` override fast_settings' PipelineSettings fields (modes, signature, ...).
    """
    from pipelines.local_runner import (
        PIPELINE_ROOT_DIRNAME,
        run_pipeline,
        sqlite_connection_config,
    )
    from pipelines.pipeline import create_pipeline

    os.makedirs(output_dir, exist_ok=True)
    pipeline = create_pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=os.path.join(output_dir, PIPELINE_ROOT_DIRNAME),
        model_uri=model_uri,
        examples_uri=examples_uri,
        metadata_connection_config=(
            metadata_connection_config or sqlite_connection_config(output_dir)
        ),
        settings=fast_settings(max_accuracy_drop=max_accuracy_drop, **settings),
    )
    run_pipeline(pipeline, progress_stream=io.StringIO())


def latest_report(output_dir: str) -> dict[str, Any]:
    """The report.json of the newest run in `output_dir`, found through MLMD."""
    from components.benchmarker.report import read_report
    from pipelines.lineage import queries
    from pipelines.lineage.store import SqliteLocation, open_store
    from pipelines.local_runner import metadata_path

    store = open_store(SqliteLocation(metadata_path(output_dir)))
    run = queries.resolve_run(store, "latest", PIPELINE_NAME)
    report_id = queries.resolve_artifact(
        store, "report", run_ref=run.run_id, pipeline=PIPELINE_NAME
    )
    return read_report(queries.run_graph(store, run).graph.artifacts[report_id].uri)
