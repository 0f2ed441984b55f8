"""`inference-optimizer`: the command-line entry point; sub-commands live in their own modules.

Only argparse and the standard library are imported at module level, so `--help`
answers in about a second; TensorFlow and TFX load inside the command that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
import warnings
from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what shells report for a command stopped by Ctrl-C.

# Each module defines `add_parser(subparsers)`, which registers its sub-command and sets
# `execute=function(args) -> exit code` as a default. These modules import only argparse
# at top level, so building the parser stays fast; heavy imports happen in `execute`.
COMMAND_MODULES = (
    "pipelines.run_command",
    "pipelines.kubeflow.commands",
    "pipelines.lineage.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inference-optimizer",
        description=(
            "Find the fastest faithful version of a TensorFlow model: freeze, optimize, "
            "quantize, XLA-compile and benchmark it as a TFX pipeline."
        ),
    )
    parser.add_argument("--verbose", action="store_true", help="show tracebacks and TF logs")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_FAILED
    quiet_libraries(args.verbose)
    try:
        return int(args.execute(args))
    except KeyboardInterrupt as interrupt:
        # One line, no traceback: RunInterrupted says what MLMD recorded; a bare
        # KeyboardInterrupt came before any component ran (or after the last one).
        message = getattr(interrupt, "message", "") or (
            "Interrupted: no component was running; rerun the same command to resume."
        )
        print(message.split(" [while running", 1)[0], file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # Every failure becomes a clear message and a non-zero exit.
        return report_failure(error, args.verbose)


def report_failure(error: BaseException, verbose: bool) -> int:
    """Prints one paragraph for user errors (traceback only with --verbose)."""
    from components.common.errors import find_user_error

    user_error = find_user_error(error)
    if verbose:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    if user_error is not None:
        # Beam appends where the error surfaced; the component is already in the progress.
        message = str(user_error).split(" [while running", 1)[0]
        print(f"error: {message}", file=sys.stderr)
    else:
        summary = str(error).strip().splitlines()
        print(
            f"error: {type(error).__name__}: {summary[0] if summary else ''}"
            + ("" if verbose else "\n(run with --verbose for the traceback)"),
            file=sys.stderr,
        )
    return EXIT_FAILED


def quiet_libraries(verbose: bool) -> None:
    """Without --verbose, keep the terminal to progress lines, the table and errors.

    TF's C++ start-up chatter (CUDA plugin registration on a GPU-less machine) and the
    deprecation warnings of Google client libraries say nothing about the user's run.
    """
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("PYTHONWARNINGS", "ignore")  # Also for child processes.
        warnings.filterwarnings("ignore")


def elapsed_since(started: float) -> str:
    return f"{time.monotonic() - started:.1f}s"


if __name__ == "__main__":
    sys.exit(main())
