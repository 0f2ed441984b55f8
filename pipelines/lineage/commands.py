"""`inference-optimizer lineage {runs,show,trace,diff,export}`: ML Metadata, read back.

Only the standard library is imported at module level: the CLI imports this module to
build its parser, and `--help` must stay fast. ml_metadata loads when a command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

DEFAULT_PASSWORD_ENV = "MLMD_MYSQL_PASSWORD"  # Same as pipelines.lineage.store.
STORE_HELP = """\
Which store: by default the latest local run's, the newest ./runs/*/metadata.sqlite by
modification time (where `inference-optimizer run` writes). --metadata PATH picks a
sqlite file (or a run's --output directory); --mysql-host and friends pick a MySQL or
MariaDB store, such as Kubeflow's (database metadb), with the password read from the
environment variable named by --mysql-password-env. Stores are only read (though
MLMD creates its empty tables in a MySQL database that has none).
"""
MYSQL_FLAGS = ("mysql_port", "mysql_database", "mysql_user", "mysql_password_env")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers `inference-optimizer lineage` and its sub-commands."""
    common = _common_flags()
    lineage = subparsers.add_parser(
        "lineage",
        parents=[common],
        help="inspect runs, variants and measurements recorded in ML Metadata",
        description=(
            "Read pipeline runs back from ML Metadata, as the Kubeflow UI shows them: which\n"
            "model and which settings produced each number, and what changed between runs."
        ),
        epilog=STORE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lineage.set_defaults(execute=lambda args: _print_help(lineage))
    commands = lineage.add_subparsers(dest="lineage_command", metavar="SUBCOMMAND")

    runs = commands.add_parser(
        "runs",
        parents=[common],
        help="list pipeline runs with date, state and headline result",
        description="List the pipeline runs in the store, oldest first, numbered from 1.",
        epilog=STORE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    runs.set_defaults(execute=runs_command)

    run_help = (
        "a run id (or unique prefix), `latest`, or a number from `lineage runs` (-1 = latest)"
    )
    show = commands.add_parser(
        "show",
        parents=[common],
        help="a run's DAG: executions and artifacts with states, durations, URIs, properties",
        description="Show a run's executions and artifacts, in dependency order.",
        epilog=STORE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("run", nargs="?", default="latest", metavar="RUN", help=run_help)
    show.set_defaults(execute=show_command)

    trace = commands.add_parser(
        "trace",
        parents=[common],
        help="walk upstream from an artifact to the original model and data",
        description=(
            "Walk upstream from an artifact (a report, a blessing, any variant) to the\n"
            "imported model and examples, printing every execution and its parameters."
        ),
        epilog=STORE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    trace.add_argument(
        "artifact",
        metavar="ARTIFACT",
        help=(
            "an artifact id, its URI (or a file inside it, e.g. report.html), or a name in "
            "--run: an input/output key (report, blessing, model) or a variant name"
        ),
    )
    trace.add_argument("--run", default="latest", help=f"where names are looked up: {run_help}")
    trace.set_defaults(execute=trace_command)

    diff = commands.add_parser(
        "diff",
        parents=[common],
        help="two runs side by side: changed parameters and per-variant metrics",
        description=(
            "Compare two runs: the execution parameters that changed per node, and each\n"
            "variant's metrics in both. With no RUNs, compares the last two runs."
        ),
        epilog=STORE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diff.add_argument("run_a", nargs="?", default="-2", metavar="RUN_A", help=run_help)
    diff.add_argument("run_b", nargs="?", default="-1", metavar="RUN_B", help="default: latest")
    diff.add_argument(
        "--allow-fingerprint-mismatch",
        action="store_true",
        help="compare runs measured on different hardware or software (refused by default)",
    )
    diff.set_defaults(execute=diff_command)

    export = commands.add_parser(
        "export",
        parents=[common],
        help="a run's lineage graph as DOT, Mermaid, JSON or self-contained HTML",
        description=(
            "Write a run's lineage graph. HTML is one self-contained page (inline SVG, no\n"
            "external assets) with each node's properties."
        ),
        epilog=STORE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("run", nargs="?", default="latest", metavar="RUN", help=run_help)
    export.add_argument(
        "--format",
        choices=("dot", "mermaid", "json", "html"),
        help="default: from the --output extension (.dot .gv .mmd .json .html)",
    )
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    export.set_defaults(execute=export_command)


def _common_flags() -> argparse.ArgumentParser:
    """Store selection and --json, accepted before or after the sub-command.

    Defaults are SUPPRESS so a sub-command's parser never overwrites a value given
    before it (`lineage --metadata X runs`).
    """
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("store")
    group.add_argument(
        "--metadata",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="MLMD sqlite file or run directory (default: newest ./runs/*/metadata.sqlite)",
    )
    group.add_argument(
        "--mysql-host", default=argparse.SUPPRESS, help="MySQL/MariaDB host of the store"
    )
    group.add_argument("--mysql-port", type=int, default=argparse.SUPPRESS, help="default: 3306")
    group.add_argument("--mysql-database", default=argparse.SUPPRESS, help="default: metadb")
    group.add_argument("--mysql-user", default=argparse.SUPPRESS, help="default: root")
    group.add_argument(
        "--mysql-password-env",
        default=argparse.SUPPRESS,
        metavar="VAR",
        help=f"environment variable holding the password (default: {DEFAULT_PASSWORD_ENV})",
    )
    group.add_argument(
        "--pipeline", default=argparse.SUPPRESS, help="only runs of this pipeline (shared stores)"
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    return common


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 1


# ------------------------------------------------------------------------------ commands


def runs_command(args: argparse.Namespace) -> int:
    from pipelines.lineage import queries, render

    store = open_store_from_args(args)
    runs = queries.list_runs(store, _flag(args, "pipeline"))
    if _flag(args, "json"):
        _emit(
            render.to_json_text({"store": store.description, "runs": [r.to_json() for r in runs]})
        )
    else:
        _emit(render.render_runs(runs, store.description))
    return 0


def show_command(args: argparse.Namespace) -> int:
    from pipelines.lineage import queries, render

    store = open_store_from_args(args)
    run = queries.resolve_run(store, args.run, _flag(args, "pipeline"))
    graph = queries.run_graph(store, run)
    if _flag(args, "json"):
        _emit(render.to_json_text({"store": store.description, **graph.to_json()}))
    else:
        _emit(render.render_run_graph(graph, store.description))
    return 0


def trace_command(args: argparse.Namespace) -> int:
    from pipelines.lineage import queries, render

    store = open_store_from_args(args)
    artifact_id = queries.resolve_artifact(store, args.artifact, args.run, _flag(args, "pipeline"))
    trace = queries.trace_artifact(store, artifact_id)
    if _flag(args, "json"):
        _emit(render.to_json_text({"store": store.description, **trace.to_json()}))
    else:
        _emit(render.render_trace(trace, store.description))
    return 0


def diff_command(args: argparse.Namespace) -> int:
    from components.common.errors import UserInputError
    from pipelines.lineage import queries, render

    store = open_store_from_args(args)
    pipeline = _flag(args, "pipeline")
    runs = queries.list_runs(store, pipeline)
    if len(runs) < 2 and (args.run_a, args.run_b) == ("-2", "-1"):
        raise UserInputError(
            f"`lineage diff` compares two runs, but {store.description} holds only one "
            f"({runs[0].run_id}). Run the pipeline again (for example with another "
            f"--max-accuracy-drop), or pass RUN_A RUN_B from another store."
        )
    run_a = queries.resolve_run(store, args.run_a, pipeline)
    run_b = queries.resolve_run(store, args.run_b, pipeline)
    differences = check_fingerprints(
        store, {run_a.run_id: run_a, run_b.run_id: run_b}, args.allow_fingerprint_mismatch
    )
    diff = queries.diff_runs(store, run_a, run_b)
    if _flag(args, "json"):
        _emit(
            render.to_json_text(
                {
                    "store": store.description,
                    **diff.to_json(),
                    "fingerprint_differences": differences,
                }
            )
        )
    else:
        _emit(render.render_diff(diff, store.description))
        for line in differences:
            _emit(f"warning: runs measured on different machines or stacks: {line}")
    return 0


def check_fingerprints(store: Any, runs: dict[str, Any], allow_mismatch: bool) -> list[str]:
    """Refuses to compare runs whose benchmark fingerprints differ, unless allowed.

    Latency from two machines (or two TF builds, thread settings, oneDNN on/off) is not
    comparable; a silent side-by-side would invite exactly the wrong conclusion. Runs
    without a readable local report (no Benchmarker yet, or a remote URI) are skipped.
    Returns the differing fields when the mismatch is allowed.
    """
    import json
    import os

    from components.benchmarker.fingerprint import HardwareFingerprint, check_comparable
    from pipelines.lineage import queries

    fingerprints = {}
    for run_id in runs:
        try:
            artifact_id = queries.resolve_artifact(store, "report", run_ref=run_id)
        except Exception:  # No report in this run: nothing to compare on.
            continue
        [artifact] = store.mlmd.get_artifacts_by_id([artifact_id])
        path = os.path.join(artifact.uri, "report.json")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            fingerprint = json.load(f).get("fingerprint")
        if fingerprint:
            fingerprints[run_id] = HardwareFingerprint.from_json(fingerprint)
    if len(fingerprints) < 2:
        return []
    return list(check_comparable(fingerprints, allow_mismatch=allow_mismatch) or [])


def export_command(args: argparse.Namespace) -> int:
    from components.common.errors import UserInputError
    from pipelines.lineage import export, queries

    fmt = args.format
    if fmt is None and args.output:
        fmt = export.EXTENSIONS.get(os.path.splitext(args.output)[1].lower())
    if fmt is None:
        raise UserInputError(
            "Pass --format dot|mermaid|json|html, or an --output file ending in .dot, .gv, "
            ".mmd, .json or .html."
        )
    store = open_store_from_args(args)
    run = queries.resolve_run(store, args.run, _flag(args, "pipeline"))
    text = export.export_run(queries.run_graph(store, run), fmt, store.description)
    if not args.output:
        _emit(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as error:
        raise UserInputError(
            f"Cannot write {args.output!r}: {error.strerror}. Pass --output a writable path."
        ) from error
    print(f"Wrote {fmt} lineage of run {run.run_id} to {args.output}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------- helpers


def store_location(args: argparse.Namespace) -> Any:
    """The store the flags name; the latest local run's when none is given."""
    from components.common.errors import UserInputError
    from pipelines.lineage import store

    metadata = _flag(args, "metadata")
    host = _flag(args, "mysql_host")
    if metadata and host:
        raise UserInputError(
            "Pass either --metadata (a local sqlite store) or --mysql-host (a MySQL store), "
            "not both."
        )
    if host:
        return store.MySQLLocation(
            host=host,
            port=_flag(args, "mysql_port") or store.DEFAULT_MYSQL_PORT,
            database=_flag(args, "mysql_database") or store.DEFAULT_MYSQL_DATABASE,
            user=_flag(args, "mysql_user") or store.DEFAULT_MYSQL_USER,
            password_env=_flag(args, "mysql_password_env") or store.DEFAULT_PASSWORD_ENV,
        )
    given = [f"--{name.replace('_', '-')}" for name in MYSQL_FLAGS if _flag(args, name)]
    if given:
        raise UserInputError(
            f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --mysql-host: pass "
            f"the MySQL server's host too, or "
            f"drop them to read a local sqlite store."
        )
    return store.SqliteLocation(metadata or store.default_sqlite_path())


def open_store_from_args(args: argparse.Namespace) -> Any:
    from pipelines.lineage import store

    return store.open_store(store_location(args))


def _flag(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, None)


def _emit(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
