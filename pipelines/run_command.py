"""`inference-optimizer run`: the local pipeline run, from arguments to the printed table.

Only the standard library is imported at module level: the CLI imports this module to
build its parser, and `--help` must stay fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

# pipelines.pipeline imports TFX only inside create_pipeline, so this stays light.
from components.benchmarker.run_parameters import OBJECTIVES
from components.common.calibration import DEFAULT_NUM_CALIBRATION
from components.common.held_out import DEFAULT_HELD_OUT_EXAMPLES
from components.common.int8_fallback import CALIBRATION_AUTO, CALIBRATION_METHODS
from pipelines.pipeline import DEFAULT_PIPELINE_NAME, PipelineSettings

TASK_CHOICES = ("auto", "multiclass", "binary", "regression")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers `inference-optimizer run`."""
    run = subparsers.add_parser(
        "run",
        help="run the pipeline locally on BeamDagRunner and print the results table",
        description=(
            "Freeze, transform and benchmark a model locally. With no --model, uses the "
            "embedded default: a small CNN trained in seconds on scikit-learn's digits."
        ),
    )
    run.add_argument("--model", help="SavedModel directory or TFX Model artifact URI")
    run.add_argument("--examples", help="TFX Examples artifact URI (Split-eval/ GZIP TFRecords)")
    run.add_argument(
        "--output",
        help="output directory for MLMD, artifacts and reports (default: ./runs/<pipeline name>)",
    )
    run.add_argument("--pipeline-name", default=None, help="default: inference-optimizer")
    run.add_argument(
        "--signature",
        default="serving_default",
        help="signature to freeze and benchmark (the baseline runs the same one)",
    )
    run.add_argument(
        "--output-nodes",
        type=_name_list,
        default=(),
        help="TF1 checkpoints: comma-separated nodes (or node:k tensors) to fetch",
    )
    run.add_argument(
        "--input-nodes",
        type=_name_list,
        default=(),
        help="TF1 checkpoints: nodes to feed, when they are not the graph's placeholders",
    )
    run.add_argument("--split", default="eval", help="Examples split to evaluate on")
    run.add_argument(
        "--calibration-split",
        default="auto",
        help="split int8 calibrates on (default auto: train if present, else a hashed "
        "quarter of --split that evaluation then leaves out)",
    )
    run.add_argument(
        "--num-calibration",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"calibration examples every int8 kind calibrates on (default: "
        f"{DEFAULT_NUM_CALIBRATION})",
    )
    run.add_argument(
        "--feature-map",
        type=_pairs,
        default={},
        metavar="INPUT=FEATURE,...",
        help="feed model inputs from Example features of other names",
    )
    run.add_argument(
        "--image-resize",
        default="bilinear",
        help="resize method for encoded images (bilinear, nearest, bicubic, area, ...)",
    )
    run.add_argument(
        "--image-size",
        type=_image_size,
        default=None,
        metavar="HxW",
        help="decode images to this size (default: the model input's)",
    )
    run.add_argument(
        "--image-scaling",
        default="auto",
        choices=("auto", "none", "unit", "symmetric"),
        help="pixel scaling for decoded images: none 0..255, unit [0,1], symmetric [-1,1] "
        "(default auto: none for integer inputs, unit for float inputs)",
    )
    run.add_argument(
        "--label-feature",
        default=None,
        help="label feature of the primary output (default: 'label' if present, else "
        "no labels and faithfulness only)",
    )
    run.add_argument(
        "--label-map",
        type=_pairs,
        default={},
        metavar="OUTPUT=FEATURE,...",
        help="label features of further outputs",
    )
    run.add_argument(
        "--task",
        default="auto",
        # The task registry's names (tasks.task_names(), tested to agree): importing it
        # here would pull numpy into `--help`.
        choices=TASK_CHOICES,
        help="what the primary output predicts (default: inferred from its shape and labels)",
    )
    run.add_argument("--primary-output", default=None, help="output whose metric gates blessing")
    run.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=None,
        help="largest top-1 (or binary accuracy) loss a blessed variant may have, as a "
        f"fraction (default {PipelineSettings.max_accuracy_drop} = 1 point)",
    )
    run.add_argument(
        "--max-metric-drop",
        default="",
        help="budget of the primary metric in its own units (0.5 MAE) or relative (1%%); "
        "default: --max-accuracy-drop for classifiers, 1%% for regression",
    )
    run.add_argument("--objective", choices=OBJECTIVES, default=None, help="default: p50 latency")
    run.add_argument("--max-p99-ms", type=float, default=None, help="p99 ceiling (default: none)")
    run.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds each timing scenario may take before unstable variants are given up",
    )
    run.add_argument(
        "--require-speedup",
        type=_positive_float,
        default=None,
        metavar="X",
        help="for CI gates: exit with code 3 unless the blessed variant is at least X times "
        "the baseline on the objective (nothing blessed also fails the gate)",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout instead of the table (its shape: "
        "pipelines/run_summary.py; progress stays on stderr)",
    )
    run.add_argument(
        "--memory-budget",
        dest="memory_budget_bytes",
        type=_memory_bytes,
        default=None,
        metavar="SIZE",
        help="memory the transforms and the benchmark may take, as a Kubernetes quantity "
        "(10Gi, 512Mi): a transform that outgrows its share is a failed variant that says so, "
        "and the Benchmarker loads variants in groups that fit; default: what the machine has",
    )
    run.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="the thread budget of every runtime: BenchmarkSettings.intra_op_threads (TF's "
        "intra-op pool, TFLite/ONNX Runtime num_threads, OpenVINO INFERENCE_NUM_THREADS); "
        "default: BenchmarkSettings' own",
    )
    run.add_argument(
        "--inter-op-threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="BenchmarkSettings.inter_op_threads (TF's inter-op pool); default: its own",
    )
    run.add_argument(
        "--variants",
        type=_variant_list,
        default=None,
        metavar="KIND,...",
        help="variant kinds to build and benchmark, '' for the frozen graph only (default: "
        "every kind this machine can run; the others are listed as skipped). Kinds: "
        + _kinds_help(),
    )
    search = run.add_argument_group(
        "accuracy-aware int8 (the *_int8_aa kinds; pass them in --variants)"
    )
    search.add_argument(
        "--int8-exclude",
        action="append",
        default=None,
        metavar="PATTERN",
        help="keep these layers in float in every accuracy-aware kind: a layer name, "
        "re:REGEX (matched whole) or op:TYPE (e.g. op:CONV_2D); repeatable",
    )
    search.add_argument(
        "--max-fallback-layers",
        type=_positive_int,
        default=None,
        help="stop the search with this many layers in float (default: 8)",
    )
    search.add_argument(
        "--int8-search-budget-s",
        type=_positive_float,
        default=None,
        metavar="S",
        help="time bound on each kind's search; when hit, the best found so far is kept "
        "and says so (default: 600)",
    )
    search.add_argument(
        "--held-out-examples",
        dest="int8_held_out_examples",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"evaluation records each search step is scored on (default: "
        f"{DEFAULT_HELD_OUT_EXAMPLES}; never the calibration records)",
    )
    search.add_argument(
        "--int8-calibration",
        choices=(CALIBRATION_AUTO, *CALIBRATION_METHODS),
        default=None,
        help="how activation ranges are calibrated; auto (the default) tries every method "
        "the kind's quantizer offers on full int8 and keeps the one that loses least "
        "(entropy: the histogram method). TFLite and oneDNN offer minmax only",
    )
    run.add_argument(
        "--transforms",
        type=_name_list,
        default=None,
        help="comma-separated InferenceOptimizer transforms (default: all but bfloat16)",
    )
    run.add_argument(
        "--metadata-mysql-host",
        help="record MLMD in this MySQL/MariaDB server instead of DIR/metadata.sqlite "
        "(password from $MLMD_MYSQL_PASSWORD)",
    )
    run.add_argument("--metadata-mysql-port", type=int, default=3306)
    run.add_argument("--metadata-mysql-database", default="metadb")
    run.add_argument("--metadata-mysql-user", default="root")
    run.add_argument("--no-cache", action="store_true", help="rerun every component")
    run.set_defaults(execute=run_command)


def _positive_int(value: str) -> int:
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return int(value)


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value!r}")
    return number


def _memory_bytes(value: str) -> int:
    """A Kubernetes memory quantity (10Gi, 512Mi, 8G), the same spelling as `--memory`."""
    from components.common.errors import UserInputError
    from pipelines.kubeflow.platform_spec import parse_memory_gb

    try:
        return round(parse_memory_gb(value, "memory budget") * 10**9)
    except UserInputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _name_list(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _variant_list(value: str) -> tuple[str, ...]:
    from components.variant_kinds import selectable_kinds

    names = _name_list(value)
    known = [kind.name for kind in selectable_kinds()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown variant kinds {unknown}; choose from: {', '.join(known)}"
        )
    return names


def _kinds_help() -> str:
    """Every selectable kind with what it is, from the variant-kind registry."""
    from components.variant_kinds import selectable_kinds

    return "; ".join(f"{kind.name} ({kind.description})" for kind in selectable_kinds())


def _pairs(value: str) -> dict[str, str]:
    from components.common.errors import UserInputError
    from components.common.feeds import parse_feature_map

    try:
        return parse_feature_map(value)
    except UserInputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _image_size(value: str) -> tuple[int, int]:
    height, sep, width = value.lower().partition("x")
    if not sep or not height.isdigit() or not width.isdigit():
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 224x224, got {value!r}")
    return int(height), int(width)


def resolve_inputs(args: argparse.Namespace, output_dir: str) -> tuple[str, str]:
    """The model and examples URIs: the user's, or the embedded default's."""
    if args.model and args.examples:
        return os.path.abspath(args.model), os.path.abspath(args.examples)
    if args.model or args.examples:
        from components.common.errors import UserInputError

        raise UserInputError(
            "Pass both --model and --examples (the examples are needed to measure accuracy "
            "and calibrate int8), or neither to use the embedded default."
        )
    from pipelines.embedded_default import ensure_embedded_default

    started = time.monotonic()
    print("Embedded default: digits CNN (cached after the first run) ...", file=sys.stderr)
    default = ensure_embedded_default(output_dir)
    print(
        f"  ready in {time.monotonic() - started:.1f}s, eval accuracy {default.eval_accuracy:.3f}",
        file=sys.stderr,
    )
    return default.model_uri, default.examples_uri


def metadata_store(args: argparse.Namespace, output_dir: str) -> tuple[Any, Any, str]:
    """The run's MLMD store: (connection config to write, location to read, description).

    DIR/metadata.sqlite by default, or a MySQL/MariaDB server when one is named. The
    location is what `inference-optimizer lineage` (and the table below) reads back.
    """
    from pipelines.lineage.store import (
        DEFAULT_PASSWORD_ENV,
        MySQLLocation,
        SqliteLocation,
        mysql_connection_config,
    )

    if not args.metadata_mysql_host:
        from pipelines.local_runner import metadata_path, sqlite_connection_config

        path = metadata_path(output_dir)
        return sqlite_connection_config(output_dir), SqliteLocation(path), path
    location = MySQLLocation(
        host=args.metadata_mysql_host,
        port=args.metadata_mysql_port,
        database=args.metadata_mysql_database,
        user=args.metadata_mysql_user,
    )
    password = os.environ.get(DEFAULT_PASSWORD_ENV, "")
    # A first run may create the database; lineage readers never do.
    config = mysql_connection_config(location, password, create_database=True)
    lineage_flags = (
        f"--mysql-host {location.host} --mysql-port {location.port} "
        f"--mysql-database {location.database} --mysql-user {location.user}"
    )
    return config, location, f"{location.describe()} (lineage flags: {lineage_flags})"


def quiet_pipeline_logs() -> None:
    """Keeps a local run's terminal to progress lines, the table and errors.

    TFX and Beam log every step (and a few harmless warnings); the progress lines replace
    that, and a failing component is reported once, by the CLI, instead of three
    tracebacks. `--verbose` skips this.
    """
    logging.getLogger().setLevel(logging.CRITICAL)
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.FATAL)


def pipeline_settings(args: argparse.Namespace):  # -> pipelines.pipeline.PipelineSettings
    """The pipeline settings the `run` flags describe (through the one settings parser)."""
    from pipelines.pipeline import PipelineSettings

    values: dict[str, Any] = {
        "signature_key": args.signature,
        "output_nodes": args.output_nodes,
        "input_nodes": args.input_nodes,
        "eval_split": args.split,
        "calibration_split": args.calibration_split,
        "feature_map": args.feature_map,
        "image_resize_method": args.image_resize,
        "image_size": args.image_size,
        "image_scaling": args.image_scaling,
        "label_feature": args.label_feature,
        "label_map": args.label_map,
        "task": args.task,
        "primary_output": args.primary_output,
        "benchmark_settings": benchmark_overrides(args),
        "max_metric_drop": args.max_metric_drop,
    }
    # Left unset unless given, so that PipelineSettings holds the one default.
    for field in (
        "variants",
        "transforms",
        "objective",
        "max_accuracy_drop",
        "max_p99_ms",
        "memory_budget_bytes",
        "int8_exclude",
        "max_fallback_layers",
        "int8_search_budget_s",
        "int8_calibration",
        "num_calibration",
        "int8_held_out_examples",
    ):
        if getattr(args, field, None) is not None:
            values[field] = getattr(args, field)
    return PipelineSettings.from_json(values)


def benchmark_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The BenchmarkSettings fields the flags set; unset flags leave its defaults alone."""
    flags = {
        "time_budget_s": args.time_budget,
        "intra_op_threads": args.threads,
        "inter_op_threads": args.inter_op_threads,
    }
    return {name: value for name, value in flags.items() if value is not None}


def run_command(args: argparse.Namespace) -> int:
    pipeline_name = args.pipeline_name or DEFAULT_PIPELINE_NAME
    output_dir = os.path.abspath(args.output or os.path.join("runs", pipeline_name))
    if args.model and args.examples:
        from pipelines.preflight import check_paths

        # Before any heavy import: a mistyped path is refused in well under a second.
        check_paths(os.path.abspath(args.model), os.path.abspath(args.examples), args.split)
    from pipelines.run_failures import DiskFull, disk_full_message, find_disk_full
    from pipelines.run_lock import hold_run_lock

    # Held for the whole run (the embedded default is written into DIR too); a second
    # run into DIR is refused here, in about a second, naming this one's PID and host.
    with hold_run_lock(output_dir):
        try:
            return _run_holding_lock(args, pipeline_name, output_dir)
        except Exception as error:
            full = find_disk_full(error)
            if full is None:
                raise
            raise DiskFull(disk_full_message(full, output_dir=output_dir)) from error


def _run_holding_lock(args: argparse.Namespace, pipeline_name: str, output_dir: str) -> int:
    model_uri, examples_uri = resolve_inputs(args, output_dir)
    settings = pipeline_settings(args)
    started = time.monotonic()
    from pipelines.preflight import check_run_inputs

    checked = check_run_inputs(model_uri, examples_uri, settings)
    from components.common.memory_watch import release_memory

    release_memory()  # The model it loaded: 1.6 -> 0.6 GiB for a BERT-base.
    print(
        f"Checked the inputs in {time.monotonic() - started:.1f}s: {checked.model_form} at "
        f"{checked.model_path}; task {checked.task}, "
        + (f"labels {checked.labels!r}" if checked.labels else "no labels (faithfulness only)"),
        file=sys.stderr,
    )

    from pipelines.local_runner import PIPELINE_ROOT_DIRNAME, run_pipeline
    from pipelines.pipeline import create_pipeline

    if not args.verbose:
        quiet_pipeline_logs()
    connection_config, store_location, store_description = metadata_store(args, output_dir)
    model_fingerprint, examples_fingerprint = fingerprint_inputs(
        model_uri, examples_uri, output_dir, use_cache=not args.no_cache
    )
    pipeline = create_pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=os.path.join(output_dir, PIPELINE_ROOT_DIRNAME),
        model_uri=model_uri,
        examples_uri=examples_uri,
        metadata_connection_config=connection_config,
        settings=settings,
        enable_cache=not args.no_cache,
        model_fingerprint=model_fingerprint,
        examples_fingerprint=examples_fingerprint,
    )
    from components.common import warm_children

    # The converters' and the Benchmarker's children fork from a server that imports
    # TensorFlow once, from now on, while the first components run (after TFX's
    # import, which sets variables TF reads at import: see warm_children.py).
    warm_children.start_in_background()
    print(f"Running pipeline {pipeline_name!r} on BeamDagRunner:", file=sys.stderr)
    started = time.monotonic()
    run_pipeline(pipeline, progress_stream=sys.stderr)
    print(f"Pipeline finished in {time.monotonic() - started:.1f}s.", file=sys.stderr)

    return print_results(
        store_location,
        pipeline_name,
        store_description,
        output_dir=output_dir,
        as_json=args.json,
        required_speedup=args.require_speedup,
    )


def fingerprint_inputs(
    model_uri: str, examples_uri: str, output_dir: str, use_cache: bool = True
) -> tuple[Any, Any]:
    """Both inputs' content fingerprints, with per-file digests cached in DIR.

    The cache spares re-reading unchanged multi-GB models on every run; --no-cache (which
    reruns every component anyway) reads every byte again.
    """
    from pipelines.input_fingerprint import cache_path_for, fingerprint_input

    started = time.monotonic()
    cache_path = cache_path_for(output_dir) if use_cache else None
    model = fingerprint_input(model_uri, cache_path)
    examples = fingerprint_input(examples_uri, cache_path)
    print(
        f"Fingerprinted the inputs in {time.monotonic() - started:.1f}s "
        f"({model.num_files + examples.num_files} files, "
        f"{(model.total_bytes + examples.total_bytes) / 1e6:.1f} MB): a changed model is a "
        "new input, never a cache hit.",
        file=sys.stderr,
    )
    return model, examples


def print_results(
    store_location: Any,
    pipeline_name: str,
    store_description: str,
    output_dir: str = "",
    as_json: bool = False,
    required_speedup: float | None = None,
) -> int:
    """The newest run's results table (or --json document), the cached nodes and where
    everything is; returns the exit code (run_summary.EXIT_SPEEDUP_NOT_MET when the
    --require-speedup gate fails)."""
    import json

    from components.benchmarker.report import read_report, render_text_table
    from pipelines import run_summary
    from pipelines.lineage import queries
    from pipelines.lineage.store import open_store

    store = open_store(store_location)
    run = queries.resolve_run(store, "latest", pipeline_name)
    graph = queries.run_graph(store, run).graph
    report_id = queries.resolve_artifact(
        store, "report", run_ref=run.run_id, pipeline=pipeline_name
    )
    report_uri = graph.artifacts[report_id].uri
    report = read_report(report_uri)
    # Importers always reuse an already registered URI; only real components count here.
    cached = [
        e.node_id
        for e in sorted(graph.executions.values(), key=lambda e: e.id)
        if e.state == "CACHED" and not e.node_id.endswith("_importer")
    ]
    code, gate_line = 0, ""
    if required_speedup is not None:
        met, gate_line = run_summary.speedup_gate(report, required_speedup)
        code = 0 if met else run_summary.EXIT_SPEEDUP_NOT_MET
    if as_json:
        document = run_summary.run_document(
            report,
            pipeline=pipeline_name,
            run_id=run.run_id,
            output_dir=output_dir,
            report_uri=report_uri,
            metadata=store_description,
            served_from_cache=cached,
            required_speedup=required_speedup,
            exit_code=code,
        )
        print(json.dumps(document, indent=2, allow_nan=False))
        if gate_line:
            print(gate_line, file=sys.stderr)
        return code
    print()
    print(render_text_table(report))
    print()
    if cached:
        print(f"Served from cache: {', '.join(cached)} (use --no-cache to rerun).")
    print(f"Report:   {os.path.join(report_uri, 'report.html')}")
    print(f"Metadata: {store_description} (inspect with `inference-optimizer lineage`)")
    if gate_line:
        print(gate_line)
    return code
