"""The upstream half of the proof-case pipelines: ExampleGen ... Trainer, as real TFX components.

`upstream_components(case, data_dir)` only builds the components, so that a caller can
append the optimizer's components after the Trainer and run one pipeline.
`run_upstream(case, workdir)` writes the raw data and runs just the upstream part on
BeamDagRunner, returning the URIs of the Trainer's `Model` and the ExampleGen's `Examples`
as MLMD recorded them::

    python -m pipelines.examples.upstream breast_cancer /tmp/upstream

Layout under `workdir`::

    data/{case}/            # raw input (datasets.py), the ExampleGen's input_base
    pipeline_root/          # artifacts: {component}/{output}/{execution id}/...
    metadata.sqlite         # MLMD

Importing TFX (`tfx.components`) takes ~35 s and sets `TF_USE_LEGACY_KERAS=1` in this
process (via tensorflow_transform.keras_lib); that is why every TFX import here is inside
a function.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from typing import Any

from pipelines.examples import datasets

CASES = ("breast_cancer", "diabetes", "digits_png")
METADATA_FILENAME = "metadata.sqlite"
PIPELINE_ROOT_DIRNAME = "pipeline_root"
DATA_DIRNAME = "data"
TRAINER_ID = "Trainer"
EXAMPLE_GEN_IDS = {
    "breast_cancer": "CsvExampleGen",
    "diabetes": "CsvExampleGen",
    "digits_png": "ImportExampleGen",
}
# No Beam arguments: the DirectRunner's defaults (one in-memory worker) suit a few hundred
# rows on 2 cores, and any non-empty list makes every Beam executor build an sdist of TFX
# itself for remote workers (`--extra_package`, ~2.5 s per component).
BEAM_PIPELINE_ARGS: list[str] = []


@dataclasses.dataclass
class Upstream:
    """The built (not run) upstream components of one case and what the downstream needs."""

    components: list  # TFX component objects, in pipeline order.
    model: Any  # The Trainer's outputs["model"] channel.
    examples: Any  # The ExampleGen's outputs["examples"] channel (raw, not Transform's).
    label_feature: str
    task: str  # "binary" | "regression" | "multiclass"


@dataclasses.dataclass(frozen=True)
class _CaseSpec:
    label_feature: str
    task: str
    # Trainer steps; sized so that each case trains in seconds yet beats chance clearly.
    train_steps: int
    eval_steps: int


_SPECS = {
    # ~380 training rows at batch 32: 240 steps are ~20 epochs.
    "breast_cancer": _CaseSpec(datasets.BREAST_CANCER_LABEL, "binary", 240, 3),
    # ~295 training rows at batch 32: 300 steps are ~32 epochs.
    "diabetes": _CaseSpec(datasets.DIABETES_LABEL, "regression", 300, 3),
    # ~1200 training images at batch 32: 300 steps are ~8 epochs.
    "digits_png": _CaseSpec(datasets.DIGITS_LABEL, "multiclass", 300, 10),
}


def _check_case(case: str) -> None:
    if case not in CASES:
        raise ValueError(f"Unknown case {case!r}; choose one of {', '.join(CASES)}.")


def module_file(case: str) -> str:
    """The absolute path of `case`'s TFX module file, next to this file."""
    _check_case(case)
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{case}_module.py")


def module_path(case: str) -> str:
    """`case`'s module file as an importable module name (this project is installed)."""
    _check_case(case)
    return f"{__package__}.{case}_module"


def _user_code(case: str, fn_name: str, package_module_files: bool) -> dict[str, str]:
    """Transform/Trainer keyword arguments that point at `fn_name` in `case`'s module file.

    By default the function is named by import path (`preprocessing_fn=`/`run_fn=`), as
    TFX allows for installed code. `module_file=` is what many teams write, but then TFX
    builds a wheel of the module's directory (every `.py` in it, as top-level modules)
    and the executors `pip install --target` it, once per Trainer and three times per
    Transform: ~12 s more per tabular case on 2 cores. The artifacts are the same.
    """
    if package_module_files:
        return {"module_file": module_file(case)}
    return {fn_name: f"{module_path(case)}.{fn_name}"}


def pipeline_name(case: str) -> str:
    return f"upstream-{case.replace('_', '-')}"


def upstream_components(
    case: str, data_dir: str, *, package_module_files: bool = False
) -> Upstream:
    """Builds `case`'s ExampleGen ... Trainer; `data_dir` holds (or will hold) its raw data.

    ExampleGens use their default output config: a hash split of the input into
    `train` and `eval`, 2:1, written as GZIP TFRecords. `package_module_files` passes the
    module files as `module_file=` (TFX wheel packaging) instead of by import path.
    """
    _check_case(case)
    from tfx.components import (
        CsvExampleGen,
        ImportExampleGen,
        SchemaGen,
        StatisticsGen,
        Trainer,
        Transform,
    )
    from tfx.proto import trainer_pb2

    spec = _SPECS[case]
    train_args = trainer_pb2.TrainArgs(num_steps=spec.train_steps)
    eval_args = trainer_pb2.EvalArgs(num_steps=spec.eval_steps)
    if case == "digits_png":
        example_gen = ImportExampleGen(input_base=data_dir)
        trainer = Trainer(
            examples=example_gen.outputs["examples"],
            train_args=train_args,
            eval_args=eval_args,
            **_user_code(case, "run_fn", package_module_files),
        )
        components = [example_gen, trainer]
    else:
        example_gen = CsvExampleGen(input_base=data_dir)
        statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
        schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"])
        transform = Transform(
            examples=example_gen.outputs["examples"],
            schema=schema_gen.outputs["schema"],
            # Pre/post-transform statistics and the analyzer cache are optional outputs
            # that nothing downstream reads; on 2 cores they cost ~20 s per run.
            disable_statistics=True,
            disable_analyzer_cache=True,
            **_user_code(case, "preprocessing_fn", package_module_files),
        )
        trainer = Trainer(
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=train_args,
            eval_args=eval_args,
            **_user_code(case, "run_fn", package_module_files),
        )
        components = [example_gen, statistics_gen, schema_gen, transform, trainer]
    if trainer.id != TRAINER_ID or example_gen.id != EXAMPLE_GEN_IDS[case]:
        raise AssertionError(
            f"TFX changed its default component ids: {trainer.id}, {example_gen.id}"
        )
    return Upstream(
        components=components,
        model=trainer.outputs["model"],
        examples=example_gen.outputs["examples"],
        label_feature=spec.label_feature,
        task=spec.task,
    )


def ensure_case_data(case: str, data_dir: str) -> str:
    """Writes `case`'s raw data into `data_dir` unless a complete copy is already there.

    The data are deterministic, and ExampleGen fingerprints its input by file size and
    mtime, so keeping an existing copy keeps TFX's cache valid when a workdir is reused.
    The copy is written next to `data_dir` and renamed into place, so an interrupted
    write never looks complete.
    """
    _check_case(case)
    if os.path.isdir(data_dir) and os.listdir(data_dir):
        return data_dir
    scratch = data_dir.rstrip(os.sep) + ".partial"
    shutil.rmtree(scratch, ignore_errors=True)
    datasets.write_case_data(case, scratch)
    shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(data_dir)), exist_ok=True)
    os.rename(scratch, data_dir)
    return data_dir


def latest_output_uri(store: Any, pipeline: str, node_id: str, artifact_type: str) -> str:
    """The URI of `artifact_type` output by the node's newest completed or cached execution."""
    from ml_metadata.proto import metadata_store_pb2

    context = store.get_context_by_type_and_name("node", f"{pipeline}.{node_id}")
    if context is None:
        raise RuntimeError(f"MLMD has no node context {pipeline}.{node_id}")
    done = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
    executions = [
        e for e in store.get_executions_by_context(context.id) if e.last_known_state in done
    ]
    if not executions:
        raise RuntimeError(f"MLMD has no completed execution of {pipeline}.{node_id}")
    execution = max(executions, key=lambda e: e.id)
    output_ids = [
        event.artifact_id
        for event in store.get_events_by_execution_ids([execution.id])
        if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    ]
    type_id = store.get_artifact_type(artifact_type).id
    uris = [a.uri for a in store.get_artifacts_by_id(output_ids) if a.type_id == type_id]
    if len(uris) != 1:
        raise RuntimeError(
            f"Execution {execution.id} of {node_id} output {len(uris)} {artifact_type} artifacts"
        )
    return uris[0]


def run_upstream(
    case: str, workdir: str, enable_cache: bool = True, *, package_module_files: bool = False
) -> tuple[str, str]:
    """Runs `case`'s upstream pipeline on BeamDagRunner; returns (model URI, examples URI).

    Both URIs are read back from MLMD (`{workdir}/metadata.sqlite`), so they are what a
    downstream Importer or lineage query would see.
    """
    _check_case(case)
    from tfx.orchestration import metadata
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    workdir = os.path.abspath(workdir)
    data_dir = ensure_case_data(case, os.path.join(workdir, DATA_DIRNAME, case))
    upstream = upstream_components(case, data_dir, package_module_files=package_module_files)
    connection_config = metadata.sqlite_metadata_connection_config(
        os.path.join(workdir, METADATA_FILENAME)
    )
    name = pipeline_name(case)
    BeamDagRunner().run(
        tfx_pipeline.Pipeline(
            pipeline_name=name,
            pipeline_root=os.path.join(workdir, PIPELINE_ROOT_DIRNAME),
            components=upstream.components,
            enable_cache=enable_cache,
            metadata_connection_config=connection_config,
            beam_pipeline_args=BEAM_PIPELINE_ARGS,
        )
    )
    with metadata.Metadata(connection_config) as store_handle:
        store = store_handle.store
        model_uri = latest_output_uri(store, name, TRAINER_ID, "Model")
        examples_uri = latest_output_uri(store, name, EXAMPLE_GEN_IDS[case], "Examples")
    return model_uri, examples_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.examples.upstream",
        description="Run one proof case's upstream TFX pipeline and print its Model and "
        "Examples URIs.",
    )
    parser.add_argument("case", choices=CASES)
    parser.add_argument("workdir", help="pipeline root, MLMD and raw data go under here")
    parser.add_argument("--no-cache", action="store_true", help="rerun every component")
    parser.add_argument(
        "--package-module-files",
        action="store_true",
        help="pass the module files as module_file= (TFX builds and pip-installs a wheel)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    model_uri, examples_uri = run_upstream(
        args.case,
        args.workdir,
        not args.no_cache,
        package_module_files=args.package_module_files,
    )
    elapsed = time.monotonic() - started
    print(f"upstream {args.case} finished in {elapsed:.1f}s (TFX import included)", file=sys.stderr)
    print(f"model: {model_uri}")
    print(f"examples: {examples_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
