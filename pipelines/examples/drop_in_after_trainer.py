"""Drop in after your Trainer: one TFX pipeline, ExampleGen ... Trainer -> this tool's components.

Copy `create_pipeline` into your own pipeline file: the only lines that matter are the
last ones, which hand the Trainer's `model` and the ExampleGen's (raw) `examples` to
`optimizer_components`. The model keeps its standard serialized-Example
`serving_default`: the Freezer splits it into the parsing/Transform part and the model
core, every variant is built from the core, and the Benchmarker measures the baseline end
to end, each variant on the core, and the preprocessing on its own.

Run one of the proof cases by hand (real CsvExampleGen, StatisticsGen, SchemaGen,
Transform and Trainer on scikit-learn's bundled data, then the five components)::

    .venv/bin/python -m pipelines.examples.drop_in_after_trainer breast_cancer
    .venv/bin/python -m pipelines.examples.drop_in_after_trainer diabetes --output runs/diabetes
    .venv/bin/python -m pipelines.examples.drop_in_after_trainer digits_png

It prints the same progress lines and results table as `inference-optimizer run`, and
the run can be inspected with `inference-optimizer lineage --metadata DIR/metadata.sqlite`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Any

from pipelines.examples import upstream as upstream_cases
from pipelines.pipeline import PipelineSettings, optimizer_components

DEFAULT_OUTPUT = os.path.join("runs", "drop-in-{case}")


def create_pipeline(
    case: str,
    pipeline_root: str,
    data_dir: str,
    metadata_connection_config: Any = None,
    settings: PipelineSettings | None = None,
    enable_cache: bool = True,
):  # -> tfx.orchestration.pipeline.Pipeline
    """ExampleGen ... Trainer for `case` (pipelines/examples/upstream.py), then ours."""
    from tfx.orchestration import pipeline as tfx_pipeline

    upstream = upstream_cases.upstream_components(case, data_dir)
    settings = settings or PipelineSettings()
    if settings.label_feature is None:  # The Trainer's label, e.g. `target` for diabetes.
        settings = dataclasses.replace(settings, label_feature=upstream.label_feature)
    ours = optimizer_components(upstream.model, upstream.examples, settings)
    return tfx_pipeline.Pipeline(
        pipeline_name=f"drop-in-{case.replace('_', '-')}",
        pipeline_root=pipeline_root,
        components=[*upstream.components, *ours],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=upstream_cases.BEAM_PIPELINE_ARGS,
    )


def run_case(
    case: str, output_dir: str, settings: PipelineSettings | None = None, enable_cache: bool = True
) -> str:
    """Runs one case's whole pipeline into `output_dir`; returns its pipeline name."""
    from pipelines.local_runner import (
        PIPELINE_ROOT_DIRNAME,
        run_pipeline,
        sqlite_connection_config,
    )

    output_dir = os.path.abspath(output_dir)
    data_dir = upstream_cases.ensure_case_data(
        case, os.path.join(output_dir, upstream_cases.DATA_DIRNAME, case)
    )
    pipeline = create_pipeline(
        case,
        os.path.join(output_dir, PIPELINE_ROOT_DIRNAME),
        data_dir,
        sqlite_connection_config(output_dir),
        settings,
        enable_cache,
    )
    run_pipeline(pipeline, progress_stream=sys.stderr)
    return pipeline.pipeline_info.pipeline_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.examples.drop_in_after_trainer",
        description="Run a real TFX ExampleGen ... Trainer pipeline with this tool's "
        "components after the Trainer, and print the results table.",
    )
    parser.add_argument("case", choices=upstream_cases.CASES)
    parser.add_argument("--output", help=f"output directory (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--no-cache", action="store_true", help="rerun every component")
    parser.add_argument("--verbose", action="store_true", help="show TFX, Beam and TF logs")
    args = parser.parse_args(argv)
    if not args.verbose:
        from pipelines.cli import quiet_libraries
        from pipelines.run_command import quiet_pipeline_logs

        quiet_libraries(verbose=False)
        quiet_pipeline_logs()
    output_dir = os.path.abspath(args.output or DEFAULT_OUTPUT.format(case=args.case))
    started = time.monotonic()
    print(f"Running the {args.case} pipeline (TFX import takes ~40 s) ...", file=sys.stderr)
    name = run_case(args.case, output_dir, enable_cache=not args.no_cache)
    print(f"Pipeline finished in {time.monotonic() - started:.1f}s.", file=sys.stderr)

    from pipelines.lineage.store import SqliteLocation
    from pipelines.local_runner import metadata_path
    from pipelines.run_command import print_results

    path = metadata_path(output_dir)
    print_results(SqliteLocation(path), name, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
