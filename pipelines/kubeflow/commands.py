"""`inference-optimizer compile | submit | schedule`: the pipeline on Kubeflow Pipelines.

Only the standard library is imported at module level: the CLI imports this module to
build its parser, and `--help` must stay fast. TFX loads only inside `compile`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from typing import Any

from pipelines.cli import EXIT_OK
from pipelines.kubeflow.vertex import DEFAULT_REGION, TARGET_VERTEX, TARGETS

KFP_HOST_ENV = "KF_PIPELINES_ENDPOINT"  # kfp's own variable for the API address
# `submit --wait`: EXIT_OK when the run SUCCEEDED; a failure to submit is EXIT_FAILED.
EXIT_RUN_NOT_SUCCEEDED = 4  # It ended FAILED, CANCELED or SKIPPED.
EXIT_WAIT_TIMED_OUT = 5  # --wait-timeout passed; the run goes on.


_JSON_HELP = (
    "print one JSON document on stdout instead of the summary (its shape: "
    "pipelines/kubeflow/commands.py, package_document and submitted_document)"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers `compile`, `submit` and `schedule`."""
    _add_compile(subparsers)
    _add_submit(subparsers)
    _add_schedule(subparsers)


def _add_compile(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compile",
        help="compile the pipeline into a Kubeflow Pipelines v2 package (YAML)",
        description=(
            "Compile the same pipeline as `run` into a KFP v2 package: the PipelineSpec plus "
            "a Kubernetes PlatformSpec that puts the Benchmarker on GPU nodes. Every option "
            "can also come from --config FILE (keys are the option names with underscores); "
            "options on the command line win."
        ),
    )
    parser.add_argument("--config", help="YAML file of these settings, e.g. kept in git")
    parser.add_argument(
        "--target",
        choices=TARGETS,
        help="kubeflow (default): a KFP v2 YAML package; vertex: a Vertex AI PipelineJob JSON",
    )
    parser.add_argument(
        "--output",
        help="package path: .yaml for kubeflow (default pipeline.yaml), .json for vertex "
        "(default pipeline.json)",
    )
    parser.add_argument(
        "--image",
        help="container image for every step (default tfx-inference-optimizer:<version>)",
    )
    parser.add_argument("--pipeline-name", help="default inference-optimizer")
    parser.add_argument(
        "--pipeline-root",
        help="gs:// or s3:// URI for artifacts (default: none; then give it at submit time)",
    )
    parser.add_argument(
        "--model-uri",
        help="default of the model_uri run parameter (default: the demo model in the image)",
    )
    parser.add_argument(
        "--examples-uri",
        help="default of the examples_uri run parameter (default: the demo examples)",
    )
    gpu = parser.add_argument_group("Benchmarker placement and limits")
    gpu.add_argument(
        "--gpu-node-selector",
        action="append",
        metavar="KEY=VALUE",
        help="node label the Benchmarker's pod must match (repeatable)",
    )
    gpu.add_argument(
        "--gpu-toleration",
        action="append",
        dest="gpu_tolerations",
        metavar="KEY[=VALUE]:EFFECT",
        help="taint the Benchmarker's pod tolerates, e.g. nvidia.com/gpu:NoSchedule (repeatable)",
    )
    gpu.add_argument("--gpus", type=int, help="GPUs for the Benchmarker (default 0: CPU only)")
    gpu.add_argument(
        "--accelerator", help="Kubernetes GPU resource name (default nvidia.com/gpu; kubeflow)"
    )
    gpu.add_argument(
        "--gpu-type", help="Vertex AI accelerator type, e.g. NVIDIA_L4 or NVIDIA_TESLA_T4 (vertex)"
    )
    gpu.add_argument(
        "--machine-type",
        help="Vertex machine type, e.g. g2-standard-8: sets the Benchmarker's CPU and memory "
        "limits, from which Vertex picks the machine (vertex)",
    )
    gpu.add_argument("--benchmarker-cpu", metavar="CPU", help="CPU limit, e.g. 4 or 3500m")
    gpu.add_argument("--benchmarker-memory", metavar="MEM", help="memory limit, e.g. 16Gi")
    creds = parser.add_argument_group("credentials and environment, on every step")
    creds.add_argument(
        "--env",
        action="append",
        metavar="NAME=VALUE",
        help="a plain environment variable (repeatable; both targets)",
    )
    creds.add_argument(
        "--secret-env",
        action="append",
        metavar="NAME=SECRET:KEY",
        help="a Kubernetes Secret's KEY as variable NAME, e.g. "
        "AWS_SECRET_ACCESS_KEY=s3-credentials:secret-key (repeatable; kubeflow)",
    )
    creds.add_argument(
        "--secret-volume",
        action="append",
        dest="secret_volumes",
        metavar="SECRET:/PATH",
        help="a Kubernetes Secret mounted as files under PATH (repeatable; kubeflow)",
    )
    creds.add_argument(
        "--image-pull-secret",
        action="append",
        dest="image_pull_secrets",
        metavar="SECRET",
        help="registry credentials to pull the image (repeatable; kubeflow)",
    )
    other = parser.add_argument_group("other steps")
    other.add_argument("--cpu", help="CPU limit of every other step, e.g. 2")
    other.add_argument("--memory", help="memory limit of every other step, e.g. 8Gi")
    other.add_argument(
        "--no-cache",
        dest="enable_cache",
        action="store_const",
        const=False,
        help="compile with KFP caching off for every step",
    )
    other.add_argument(
        "--time-budget",
        type=float,
        help="seconds each benchmark timing scenario may take",
    )
    parser.add_argument("--json", action="store_true", help=_JSON_HELP)
    parser.set_defaults(execute=compile_command)


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=os.environ.get(KFP_HOST_ENV),
        help=f"Kubeflow Pipelines API URL, e.g. http://localhost:8080 (default ${KFP_HOST_ENV})",
    )
    parser.add_argument("--token", help="bearer token for the API (prefer --token-file)")
    parser.add_argument("--token-file", help="file holding the bearer token")
    parser.add_argument(
        "--in-cluster",
        action="store_true",
        help="authenticate as this pod's service account (run from inside the cluster)",
    )
    parser.add_argument("--namespace", help="Kubeflow profile namespace (multi-user Kubeflow)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for each API call"
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--package",
        help="compiled package (default pipeline.yaml; pipeline.json with --target vertex)",
    )
    parser.add_argument(
        "--experiment", default="inference-optimizer", help="experiment to file runs under"
    )
    parser.add_argument("--name", help="run name shown in the Kubeflow UI")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter (repeatable), e.g. model_uri=gs://bucket/models/7",
    )
    parser.add_argument("--model-uri", help="same as --param model_uri=URI")
    parser.add_argument("--examples-uri", help="same as --param examples_uri=URI")
    parser.add_argument("--pipeline-root", help="gs:// or s3:// root (default: the package's)")
    parser.add_argument(
        "--pipeline-name", help="pipeline to upload into (default: the package's name)"
    )
    parser.add_argument(
        "--no-cache",
        dest="enable_caching",
        action="store_const",
        const=False,
        help="rerun every step instead of reusing cached results",
    )
    parser.add_argument("--service-account", help="Kubernetes service account for the run's pods")
    _add_connection_arguments(parser)


def _add_submit(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="upload a compiled package to Kubeflow Pipelines and start one run",
        description=(
            "Upload the package as a version of its pipeline (reused if already uploaded) "
            "and start one run of it."
        ),
    )
    _add_run_arguments(parser)
    vertex = parser.add_argument_group("Vertex AI (--target vertex)")
    vertex.add_argument(
        "--target",
        choices=TARGETS,
        default="kubeflow",
        help="kubeflow (default): a KFP API at --host; vertex: aiplatform.PipelineJob",
    )
    vertex.add_argument("--project", help="Google Cloud project (default $GOOGLE_CLOUD_PROJECT)")
    vertex.add_argument(
        "--region", default=DEFAULT_REGION, help=f"Vertex AI region (default {DEFAULT_REGION})"
    )
    parser.add_argument("--json", action="store_true", help=_JSON_HELP)
    parser.add_argument(
        "--wait",
        action="store_true",
        help=f"wait for the run to end, print its final state, and exit {EXIT_OK} only if it "
        f"SUCCEEDED ({EXIT_RUN_NOT_SUCCEEDED} if it ended otherwise, {EXIT_WAIT_TIMED_OUT} if "
        "--wait-timeout passed first)",
    )
    parser.add_argument(
        "--wait-timeout",
        type=float,
        default=None,
        metavar="S",
        help="with --wait: give up waiting after S seconds (the run goes on); default: no limit",
    )
    parser.add_argument("--poll-interval", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.set_defaults(execute=submit_command)


def _add_schedule(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schedule",
        help="upload a compiled package and create a recurring run on a cron schedule",
        description=(
            "Upload the package as a version of its pipeline and create a recurring run. "
            "KFP's cron has 6 fields, seconds first: '0 0 3 * * *' is every day at 03:00."
        ),
    )
    parser.add_argument("--cron", required=True, help="6-field cron, e.g. '0 0 3 * * *'")
    parser.add_argument(
        "--max-concurrency", type=int, default=1, help="runs that may overlap (1-10, default 1)"
    )
    parser.add_argument(
        "--no-catchup",
        action="store_true",
        help="after a pause, run once instead of once per missed slot",
    )
    parser.add_argument("--start-time", help="RFC 3339 time the schedule starts")
    parser.add_argument("--end-time", help="RFC 3339 time the schedule ends")
    _add_run_arguments(parser)
    parser.set_defaults(execute=schedule_command)


# ---------------------------------------------------------------------------- compile

_COMPILE_KEYS = (
    "output",
    "target",
    "image",
    "pipeline_name",
    "pipeline_root",
    "model_uri",
    "examples_uri",
    "gpu_node_selector",
    "gpu_tolerations",
    "gpus",
    "accelerator",
    "gpu_type",
    "machine_type",
    "benchmarker_cpu",
    "benchmarker_memory",
    "cpu",
    "memory",
    "enable_cache",
    "time_budget",
    "env",
    "secret_env",
    "secret_volumes",
    "image_pull_secrets",
)


def compile_command(args: argparse.Namespace) -> int:
    from pipelines.kubeflow.compiler import compile_package
    from pipelines.kubeflow.config import build_settings

    overrides = {key: getattr(args, key) for key in _COMPILE_KEYS}
    settings = build_settings(args.config, overrides)
    if not args.verbose:
        _quiet_tfx_logs()
    where = "Vertex AI" if settings.target == TARGET_VERTEX else "Kubeflow"
    print(f"Compiling pipeline {settings.pipeline_name!r} for {where} ...", file=sys.stderr)
    package = compile_package(settings)
    if args.json:
        print(json.dumps(package_document(package), indent=2))
    else:
        print(describe_package(package, settings))
    return 0


def package_document(package: Any) -> dict[str, Any]:
    """`compile --json`: {"package": path, "target" ("kubeflow" or "vertex"),
    "pipeline_name", "pipeline_root" (or null), "parameters": {name: {"type", "default"}},
    "benchmarker_executor", "benchmarker_resources" (the executor's cpuLimit, memoryLimit
    and accelerator as compiled), "has_platform_spec"}."""
    spec = package.pipeline_spec
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    return {
        "package": package.path,
        "target": package.target,
        "pipeline_name": spec["pipelineInfo"]["name"],
        "pipeline_root": spec.get("defaultPipelineRoot"),
        "parameters": {
            name: {"type": p.get("parameterType"), "default": p.get("defaultValue")}
            for name, p in sorted(parameters.items())
        },
        "benchmarker_executor": package.benchmarker_executor,
        "benchmarker_resources": benchmarker_resources(package),
        "has_platform_spec": bool(package.platform_spec),
    }


def benchmarker_resources(package: Any) -> dict[str, Any]:
    """The Benchmarker executor's container resources as the package holds them."""
    executors = package.pipeline_spec.get("deploymentSpec", {}).get("executors", {})
    container = executors.get(package.benchmarker_executor, {}).get("container", {})
    return dict(container.get("resources", {}))


def submitted_document(submitted: Any, final_state: str | None, exit_code: int) -> dict:
    """`submit --json`: what was created ({"kind", "id", "name", "pipeline_id",
    "pipeline_version_id", "pipeline_version_name", "experiment_id", "url"}), plus
    "final_state" (null without --wait, or when --wait-timeout passed) and "exit_code"."""
    import dataclasses

    return {**dataclasses.asdict(submitted), "final_state": final_state, "exit_code": exit_code}


def describe_package(package: Any, settings: Any) -> str:
    """What was compiled, in a few lines, and the next command to run."""
    spec = package.pipeline_spec
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    root = spec.get("defaultPipelineRoot") or "none (pass --pipeline-root to submit/schedule)"
    cpu, memory_gb, accelerator = settings.benchmarker_resources()
    benchmarker = [f"{settings.gpus} x {accelerator}"] if settings.gpus > 0 else ["CPU"]
    if settings.machine_type:
        benchmarker.append(f"machine {settings.machine_type}")
    if cpu is not None:
        benchmarker.append(f"cpu {cpu:g}")
    if memory_gb is not None:
        benchmarker.append(f"memory {memory_gb:g} G")
    if settings.gpu_node_selector:
        pairs = ", ".join(f"{k}={v}" for k, v in sorted(settings.gpu_node_selector.items()))
        benchmarker.append(f"nodes {pairs}")
    if settings.gpu_tolerations:
        names = ", ".join(
            f"{t.key}{'=' + t.value if t.value else ''}:{t.effect}"
            for t in settings.gpu_tolerations
        )
        benchmarker.append(f"tolerates {names}")
    others = []
    if settings.cpu is not None:
        others.append(f"cpu {settings.cpu:g}")
    if settings.memory_gb is not None:
        others.append(f"memory {settings.memory_gb:g} G")
    credentials = [f"env {name}" for name, _ in settings.env]
    credentials += [f"{s.env_var} from secret {s.secret_name}" for s in settings.secret_env]
    credentials += [f"secret {v.secret_name} at {v.mount_path}" for v in settings.secret_volumes]
    credentials += [f"pulls with {name}" for name in settings.image_pull_secrets]
    lines = [
        f"Compiled {spec['pipelineInfo']['name']!r} -> {package.path}",
        f"  image:          {settings.image}",
        f"  pipeline root:  {root}",
        *(
            f"  parameter:      {name} (default {p.get('defaultValue')!r})"
            for name, p in sorted(parameters.items())
        ),
        f"  Benchmarker:    {', '.join(benchmarker)}",
        f"  other steps:    {', '.join(others) or 'no limits'}",
        *([f"  every step:     {', '.join(credentials)}"] if credentials else []),
        (
            f"Next: inference-optimizer submit --target vertex --project PROJECT "
            f"--package {package.path}"
            if settings.target == TARGET_VERTEX
            else f"Next: inference-optimizer submit --host URL --package {package.path}"
        ),
    ]
    return "\n".join(lines)


def _quiet_tfx_logs() -> None:
    # TFX logs every compile step at INFO; the summary above replaces that.
    logging.getLogger().setLevel(logging.ERROR)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)


# ---------------------------------------------------------------------------- submit, schedule


def connection_from_args(args: argparse.Namespace) -> Any:
    from components.common.errors import UserInputError
    from pipelines.kubeflow.client import Connection

    token = args.token
    if args.token_file:
        if token:
            raise UserInputError("Pass --token or --token-file, not both.")
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as error:
            raise UserInputError(
                f"Cannot read --token-file {args.token_file!r}: {error.strerror}."
            ) from None
    if token and args.in_cluster:
        raise UserInputError("Pass a token or --in-cluster, not both.")
    return Connection(
        host=args.host,
        token=token,
        in_cluster=args.in_cluster,
        namespace=args.namespace,
        timeout_s=args.timeout,
    )


def run_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from components.common.errors import UserInputError
    from pipelines.kubeflow.client import parse_params
    from pipelines.kubeflow.compiler import EXAMPLES_URI_PARAMETER, MODEL_URI_PARAMETER

    params = parse_params(args.param)
    for name, value in (
        (MODEL_URI_PARAMETER, args.model_uri),
        (EXAMPLES_URI_PARAMETER, args.examples_uri),
    ):
        if value is None:
            continue
        if name in params:
            raise UserInputError(f"Pass {name} once: as --{name.replace('_', '-')} or --param.")
        params[name] = value
    return {
        "experiment": args.experiment,
        "name": args.name,
        "params": params,
        "pipeline_root": args.pipeline_root,
        "pipeline_name": args.pipeline_name,
        "enable_caching": args.enable_caching,
        "service_account": args.service_account,
    }


def submit_command(args: argparse.Namespace) -> int:
    from pipelines.kubeflow.client import RunOptions, check_offline, connect, submit_run

    if args.target == TARGET_VERTEX:
        return submit_vertex(args)
    args.package = args.package or "pipeline.yaml"
    options = RunOptions(**run_options_from_args(args))
    check_offline(args.package, options)  # A bad package or --param: before any connection.
    connection = connection_from_args(args)
    # With --json, stdout holds only the document: the human lines, and the links that
    # kfp.Client prints itself ("Experiment details: ..."), go to stderr.
    human = sys.stderr if args.json else sys.stdout
    with contextlib.redirect_stdout(human):
        client = connect(connection)
        submitted = submit_run(client, connection, args.package, options)
        print(describe_submitted(submitted), flush=True)
        state, code = None, EXIT_OK
        if args.wait:
            state, code = _wait(client, connection, submitted, args, human)
    if args.json:
        print(json.dumps(submitted_document(submitted, state, code), indent=2))
    return code


def _wait(client: Any, connection: Any, submitted: Any, args: argparse.Namespace, human: Any):
    """(final state or None, exit code) of `submit --wait`."""
    from pipelines.kubeflow.client import wait_for_run
    from pipelines.lineage.render import format_duration

    started = time.monotonic()
    state = wait_for_run(
        client,
        connection,
        submitted.id,
        args.wait_timeout,
        poll_s=args.poll_interval,
        on_state=lambda s: print(
            f"  {format_duration(time.monotonic() - started)}  run {submitted.id}: {s}",
            file=human,
            flush=True,
        ),
    )
    if state is None:
        print(
            f"Run {submitted.id} had not ended after {args.wait_timeout:g} s; it goes on. "
            f"Follow it at {submitted.url}",
            file=sys.stderr,
        )
        return None, EXIT_WAIT_TIMED_OUT
    print(f"Run {submitted.id} ended: {state}.", file=human)
    return state, EXIT_OK if state == "SUCCEEDED" else EXIT_RUN_NOT_SUCCEEDED


def submit_vertex(args: argparse.Namespace, credentials: Any = None) -> int:
    """`submit --target vertex`: offline checks, then aiplatform.PipelineJob.submit, and with
    --wait the job's final state (the same exit codes as for Kubeflow)."""
    import dataclasses

    from components.common.errors import UserInputError
    from pipelines.kubeflow import vertex
    from pipelines.kubeflow.config import DEFAULT_VERTEX_OUTPUT
    from pipelines.lineage.render import format_duration

    kubeflow_only = [
        flag
        for flag, given in (
            ("--token", args.token),
            ("--token-file", args.token_file),
            ("--in-cluster", args.in_cluster),
            ("--namespace", args.namespace),
        )
        if given
    ]
    if kubeflow_only:
        raise UserInputError(
            f"{', '.join(kubeflow_only)} are for a Kubeflow API; --target vertex authenticates "
            "with Google Cloud credentials (gcloud auth application-default login)."
        )
    package = args.package or DEFAULT_VERTEX_OUTPUT
    options = run_options_from_args(args)
    values = vertex.check_offline(package, options["params"], options["pipeline_root"])
    job = vertex.build_job(
        package,
        project=args.project or vertex.default_project(),
        region=args.region,
        display_name=args.name,
        pipeline_root=options["pipeline_root"],
        parameter_values=values,
        enable_caching=options["enable_caching"],
        credentials=credentials,
    )
    human = sys.stderr if args.json else sys.stdout
    submitted = vertex.submit(job, options["service_account"])
    print(vertex.describe_run(submitted), file=human, flush=True)
    state, code = None, EXIT_OK
    if args.wait:
        started = time.monotonic()
        state = vertex.wait(
            job,
            args.wait_timeout,
            poll_s=args.poll_interval,
            on_state=lambda s: print(
                f"  {format_duration(time.monotonic() - started)}  job {submitted.id}: {s}",
                file=human,
                flush=True,
            ),
        )
        if state is None:
            print(
                f"Job {submitted.id} had not ended after {args.wait_timeout:g} s; it goes on. "
                f"Follow it at {submitted.url}",
                file=sys.stderr,
            )
            code = EXIT_WAIT_TIMED_OUT
        else:
            print(f"Job {submitted.id} ended: {state}.", file=human)
            code = EXIT_OK if state == "SUCCEEDED" else EXIT_RUN_NOT_SUCCEEDED
    if args.json:
        document = {**dataclasses.asdict(submitted), "final_state": state, "exit_code": code}
        print(json.dumps(document, indent=2))
    return code


def schedule_command(args: argparse.Namespace) -> int:
    from pipelines.kubeflow.client import (
        ScheduleOptions,
        check_cron,
        check_max_concurrency,
        check_offline,
        connect,
        schedule_recurring_run,
    )

    options = ScheduleOptions(
        **run_options_from_args(args),
        cron=check_cron(args.cron),
        max_concurrency=check_max_concurrency(args.max_concurrency),
        no_catchup=args.no_catchup,
        start_time=args.start_time,
        end_time=args.end_time,
    )
    args.package = args.package or "pipeline.yaml"
    check_offline(args.package, options)
    connection = connection_from_args(args)
    client = connect(connection)
    submitted = schedule_recurring_run(client, connection, args.package, options)
    print(describe_submitted(submitted))
    return 0


def describe_submitted(submitted: Any) -> str:
    return "\n".join(
        [
            f"Pipeline version: {submitted.pipeline_version_name} "
            f"(pipeline {submitted.pipeline_id}, version {submitted.pipeline_version_id})",
            f"Created {submitted.kind} {submitted.name!r} (id {submitted.id})",
            f"  {submitted.url}",
        ]
    )
