"""Submit and schedule a compiled package through `kfp.Client`, with clear errors.

    client = connect(Connection(host="http://localhost:8080", token=None))
    run = submit_run(client, "pipeline.yaml", RunOptions(params={"model_uri": "gs://m/7"}))
    job = schedule_recurring_run(client, "pipeline.yaml", ScheduleOptions(cron="0 0 3 * * *"))

Both upload the package first, as a version of the pipeline named in it (the pipeline is
created on first use; a version whose content is already uploaded is reused). The run or
recurring run then refers to that version, so the Kubeflow UI shows one pipeline with its
versions, and any later run can start from it with other parameters.

Every API failure (unreachable host, refused credentials, a cron the server rejects, ...)
becomes a `UserInputError`: one paragraph naming the host, the HTTP status, the server's
own message and what to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from components.common.errors import UserInputError
from components.version import __version__
from pipelines.kubeflow.config import check_pipeline_root

DEFAULT_EXPERIMENT = "inference-optimizer"
DEFAULT_TIMEOUT_S = 30.0
IN_CLUSTER_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
MAX_CONCURRENCY_LIMIT = 10  # The KFP API server refuses more.
_CRON_FIELD_RE = re.compile(r"^[0-9A-Za-z*/,?#\-]+$")


@dataclasses.dataclass(frozen=True)
class Connection:
    """Where the KFP API is and how to authenticate: a bearer token, or the pod's identity."""

    host: str | None = None
    token: str | None = None
    in_cluster: bool = False
    namespace: str | None = None  # multi-user Kubeflow: your profile namespace
    timeout_s: float = DEFAULT_TIMEOUT_S

    def describe(self) -> str:
        return self.host or "the in-cluster Kubeflow Pipelines service"


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What a run (or each run of a schedule) gets: parameters, root, experiment, caching."""

    experiment: str = DEFAULT_EXPERIMENT
    name: str | None = None  # default: "<pipeline> <version name>"
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)
    pipeline_root: str | None = None  # default: the package's defaultPipelineRoot
    pipeline_name: str | None = None  # default: the package's pipelineInfo.name
    enable_caching: bool | None = None  # None: as compiled
    service_account: str | None = None


@dataclasses.dataclass(frozen=True)
class ScheduleOptions(RunOptions):
    """A recurring run: a 6-field cron (seconds first), concurrency and catch-up policy."""

    cron: str = "0 0 3 * * *"
    max_concurrency: int = 1
    no_catchup: bool = False
    start_time: str | None = None  # RFC 3339, e.g. 2026-12-01T00:00:00Z
    end_time: str | None = None


@dataclasses.dataclass(frozen=True)
class Submitted:
    """What the API created."""

    kind: str  # "run" or "recurring run"
    id: str
    name: str
    pipeline_id: str
    pipeline_version_id: str
    pipeline_version_name: str
    experiment_id: str
    url: str


# ---------------------------------------------------------------------------- checks offline


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """`--param k=v` strings -> {k: v}; a repeated key is an error, not a silent override."""
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserInputError(f"Parameter {item!r} is not NAME=VALUE, e.g. model_uri=gs://b/m.")
        if key in params:
            raise UserInputError(f"Parameter {key!r} is given twice.")
        params[key] = value
    return params


def check_params(pipeline_spec: Any, params: Mapping[str, str]) -> dict[str, Any]:
    """Checks names against the package's parameters and converts values to their types."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    declared = pipeline_spec.root.input_definitions.parameters
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise UserInputError(
            f"Unknown pipeline parameter(s) {unknown}; this package takes "
            f"{sorted(declared) or 'none'}."
        )
    missing = sorted(
        name
        for name, spec in declared.items()
        if name not in params and not spec.HasField("default_value") and not spec.is_optional
    )
    if missing:
        raise UserInputError(
            f"The package has no default for parameter(s) {missing}; pass --param NAME=VALUE."
        )
    types = pipeline_spec_pb2.ParameterType
    converted: dict[str, Any] = {}
    for name, raw in params.items():
        kind = declared[name].parameter_type
        try:
            if kind == types.NUMBER_INTEGER:
                converted[name] = int(raw)
            elif kind == types.NUMBER_DOUBLE:
                converted[name] = float(raw)
            elif kind == types.BOOLEAN:
                if raw.lower() not in ("true", "false"):
                    raise ValueError(raw)
                converted[name] = raw.lower() == "true"
            elif kind in (types.LIST, types.STRUCT):
                converted[name] = json.loads(raw)
            else:
                converted[name] = raw
        except ValueError:
            raise UserInputError(
                f"Parameter {name!r}={raw!r} is not a {types.ParameterTypeEnum.Name(kind)}."
            ) from None
    return converted


def resolve_pipeline_root(pipeline_spec: Any, override: str | None) -> str | None:
    """The run's root override, or None to use the package's; refuses a package with neither."""
    if override:
        return check_pipeline_root(override)
    if pipeline_spec.default_pipeline_root:
        return None
    raise UserInputError(
        "The package has no default pipeline root and none was passed. Pass --pipeline-root "
        "gs://BUCKET/PATH (or s3://...) here, or compile with --pipeline-root."
    )


def check_cron(cron: str) -> str:
    """A KFP cron: 6 fields, seconds first (robfig/cron), or a descriptor such as @daily."""
    cron = " ".join(cron.split())
    if cron.startswith("@"):
        return cron
    fields = cron.split(" ") if cron else []
    if len(fields) == 5:
        raise UserInputError(
            f"Cron {cron!r} has 5 fields, but KFP's cron has 6 with seconds first. "
            f"Did you mean '0 {cron}'?"
        )
    if len(fields) != 6 or not all(_CRON_FIELD_RE.match(f) for f in fields):
        raise UserInputError(
            f"Cron {cron!r} is not a KFP cron expression: 6 space-separated fields, seconds "
            "first ('0 0 3 * * *' is every day at 03:00:00), or a descriptor like @daily."
        )
    return cron


def check_max_concurrency(value: int) -> int:
    if not 1 <= value <= MAX_CONCURRENCY_LIMIT:
        raise UserInputError(
            f"--max-concurrency must be between 1 and {MAX_CONCURRENCY_LIMIT} (the KFP API "
            f"refuses others), got {value}."
        )
    return value


def package_version_name(package_path: str) -> str:
    """`<tool version>-<12 hex of the package's sha256>`: equal content, equal name."""
    with open(package_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return f"{__version__}-{digest[:12]}"


# ---------------------------------------------------------------------------- the API


@contextlib.contextmanager
def api_errors(connection: Connection, action: str) -> Iterator[None]:
    """Turns kfp/HTTP/network failures during `action` into one clear UserInputError."""
    previous = socket.getdefaulttimeout()
    # kfp's HTTP client sets no timeout; urllib3 then uses the socket default.
    socket.setdefaulttimeout(connection.timeout_s)
    try:
        yield
    except UserInputError:
        raise
    except Exception as error:  # Translated below; anything unknown is re-raised as is.
        message = describe_api_error(error, connection, action)
        if message is None:
            raise
        raise UserInputError(message) from error
    finally:
        socket.setdefaulttimeout(previous)


def describe_api_error(error: BaseException, connection: Connection, action: str) -> str | None:
    """One paragraph for a failed API call, or None when `error` is not an API failure."""
    import kfp_server_api
    import urllib3

    where = connection.describe()
    if isinstance(error, kfp_server_api.ApiException):
        status = int(error.status or 0)
        detail = _server_message(error.body) or (error.reason or "").strip()
        said = f": {detail}" if detail else ""
        if status in (401, 403):
            return (
                f"The Kubeflow Pipelines API at {where} refused the credentials while "
                f"{action} (HTTP {status}){said}. Pass a valid --token (or --token-file), "
                "or use --in-cluster from a pod whose service account may use Kubeflow "
                "Pipelines; for multi-user Kubeflow also pass --namespace."
            )
        if status == 404:
            return (
                f"The Kubeflow Pipelines API at {where} answered 'not found' while {action} "
                f"(HTTP 404){said}. Check that --host is the KFP 2.x endpoint (API v2beta1); "
                "behind the Kubeflow central dashboard it usually ends in /pipeline."
            )
        if status == 0:
            return f"Cannot talk to the Kubeflow Pipelines API at {where} while {action}{said}."
        if 400 <= status < 500:
            return (
                f"The Kubeflow Pipelines API at {where} rejected the request while {action} "
                f"(HTTP {status}){said}. Fix the value it names and retry."
            )
        return (
            f"The Kubeflow Pipelines API at {where} failed while {action} (HTTP {status})"
            f"{said}. Retry later, or read the ml-pipeline API server's logs."
        )
    network = (
        urllib3.exceptions.HTTPError,  # MaxRetryError, NewConnectionError, timeouts, ...
        ConnectionError,
        socket.timeout,
        socket.gaierror,
    )
    if isinstance(error, network):
        reason = getattr(error, "reason", None) or error
        return (
            f"Cannot reach the Kubeflow Pipelines API at {where} while {action}: {reason}. "
            "Check --host: the KFP API or UI address, e.g. http://localhost:8080 after "
            "`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`."
        )
    if isinstance(error, TimeoutError):
        return f"The Kubeflow Pipelines API at {where} did not answer while {action}: {error}."
    if isinstance(error, ValueError) and "pipeline" in str(error).lower():
        return f"Kubeflow Pipelines: {error} (while {action})."
    return None


def _server_message(body: Any) -> str:
    """The error text in a KFP error body (JSON from grpc-gateway), else the raw text."""
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        value = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:500]
    if isinstance(value, dict):
        for key in ("error_message", "message", "error"):
            if value.get(key):
                return " ".join(str(value[key]).split())[:500]
    return " ".join(text.split())[:500]


def connect(connection: Connection) -> Any:
    """A `kfp.Client` for `connection`; fails fast with a clear message if the API is unusable."""
    import kfp

    class _Client(kfp.Client):
        def get_kfp_healthz(self, sleep_duration: int = 5) -> Any:
            # kfp retries five times, 5 s apart, even on 401; one attempt fails fast and the
            # error is then explained by api_errors.
            return self._healthz_api.get_healthz()

    credentials = None
    if connection.in_cluster:
        if not os.path.exists(IN_CLUSTER_TOKEN_PATH):
            raise UserInputError(
                "--in-cluster works only inside a pod of the Kubernetes cluster (no service "
                f"account token at {IN_CLUSTER_TOKEN_PATH}). From outside, pass --host and "
                "--token."
            )
        if connection.host:
            credentials = kfp.client.ServiceAccountTokenVolumeCredentials()
    elif not connection.host:
        raise UserInputError(
            "Pass --host URL (the Kubeflow Pipelines API, e.g. http://localhost:8080 after "
            "`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`), or --in-cluster "
            "from a pod in the cluster."
        )
    with api_errors(connection, "connecting"):
        client = _Client(
            host=connection.host or None,
            existing_token=connection.token or None,
            namespace=connection.namespace or "kubeflow",
            credentials=credentials,
        )
        # Also checks the host when kfp skipped its own health check (namespace given).
        client.get_kfp_healthz()
    return client


def upload_package(
    client: Any, connection: Connection, package_path: str, pipeline_name: str
) -> tuple[str, str, str]:
    """(pipeline id, version id, version name): creates the pipeline or adds a version.

    The version name carries the package's content hash, so submitting the same package
    twice reuses its version instead of uploading a copy.
    """
    version_name = package_version_name(package_path)
    with api_errors(connection, f"looking up pipeline {pipeline_name!r}"):
        pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        with api_errors(connection, f"uploading pipeline {pipeline_name!r}"):
            pipeline = client.upload_pipeline(
                package_path,
                pipeline_name=pipeline_name,
                description=f"tfx-inference-optimizer {__version__}",
                namespace=connection.namespace,
            )
            # The upload creates the first version; find its id.
            versions = client.list_pipeline_versions(
                pipeline.pipeline_id, page_size=1, sort_by="created_at desc"
            ).pipeline_versions
        if not versions:
            raise UserInputError(
                f"Kubeflow Pipelines created pipeline {pipeline_name!r} but lists no version."
            )
        return pipeline.pipeline_id, versions[0].pipeline_version_id, versions[0].display_name
    name_filter = json.dumps(
        {"predicates": [{"operation": 1, "key": "display_name", "stringValue": version_name}]}
    )
    with api_errors(connection, f"listing versions of pipeline {pipeline_name!r}"):
        existing = client.list_pipeline_versions(pipeline_id, filter=name_filter).pipeline_versions
    if existing:
        return pipeline_id, existing[0].pipeline_version_id, version_name
    with api_errors(connection, f"uploading version {version_name!r} of {pipeline_name!r}"):
        version = client.upload_pipeline_version(
            package_path, version_name, pipeline_id=pipeline_id
        )
    return pipeline_id, version.pipeline_version_id, version_name


@dataclasses.dataclass(frozen=True)
class _Prepared:
    params: dict[str, Any]
    pipeline_root: str | None
    pipeline_name: str
    experiment_id: str
    pipeline_id: str
    version_id: str
    version_name: str


def check_offline(package_path: str, options: RunOptions) -> None:
    """Everything about a submission that needs no server: the package, the parameters'
    names and types, the pipeline root. Called before connecting, so that a mistyped
    `--param` is reported as such, not as the connection error of an unreachable host."""
    from components.benchmarker.run_parameters import check_run_parameters
    from pipelines.kubeflow.compiler import load_package

    pipeline_spec, _ = load_package(package_path)
    check_run_parameters(check_params(pipeline_spec, options.params))
    resolve_pipeline_root(pipeline_spec, options.pipeline_root)


def _prepare(
    client: Any, connection: Connection, package_path: str, options: RunOptions
) -> _Prepared:
    """Checks the package and options offline, then finds the experiment and uploads."""
    from pipelines.kubeflow.compiler import load_package

    pipeline_spec, _ = load_package(package_path)
    params = check_params(pipeline_spec, options.params)
    root = resolve_pipeline_root(pipeline_spec, options.pipeline_root)
    pipeline_name = options.pipeline_name or pipeline_spec.pipeline_info.name
    with api_errors(connection, f"finding or creating experiment {options.experiment!r}"):
        experiment = client.create_experiment(options.experiment, namespace=connection.namespace)
    pipeline_id, version_id, version_name = upload_package(
        client, connection, package_path, pipeline_name
    )
    return _Prepared(
        params, root, pipeline_name, experiment.experiment_id, pipeline_id, version_id, version_name
    )


def _ui_url(connection: Connection, path: str) -> str:
    base = (connection.host or "").rstrip("/")
    return f"{base}/#/{path}" if base else f"/#/{path}"


def submit_run(
    client: Any, connection: Connection, package_path: str, options: RunOptions
) -> Submitted:
    """Uploads the package (if new) and starts one run of it."""
    p = _prepare(client, connection, package_path, options)
    name = options.name or f"{p.pipeline_name} {p.version_name}"
    with api_errors(connection, "creating the run"):
        run = client.run_pipeline(
            experiment_id=p.experiment_id,
            job_name=name,
            params=p.params,
            pipeline_id=p.pipeline_id,
            version_id=p.version_id,
            pipeline_root=p.pipeline_root,
            enable_caching=options.enable_caching,
            service_account=options.service_account,
        )
    return Submitted(
        "run",
        run.run_id,
        name,
        p.pipeline_id,
        p.version_id,
        p.version_name,
        p.experiment_id,
        _ui_url(connection, f"runs/details/{run.run_id}"),
    )


def schedule_recurring_run(
    client: Any, connection: Connection, package_path: str, options: ScheduleOptions
) -> Submitted:
    """Uploads the package (if new) and creates a cron-triggered recurring run of it."""
    cron = check_cron(options.cron)
    check_max_concurrency(options.max_concurrency)
    p = _prepare(client, connection, package_path, options)
    name = options.name or f"{p.pipeline_name} ({cron})"
    with api_errors(connection, f"creating the recurring run with cron {cron!r}"):
        job = client.create_recurring_run(
            experiment_id=p.experiment_id,
            job_name=name,
            cron_expression=cron,
            start_time=options.start_time,
            end_time=options.end_time,
            max_concurrency=options.max_concurrency,
            no_catchup=options.no_catchup,
            params=p.params,
            pipeline_id=p.pipeline_id,
            version_id=p.version_id,
            pipeline_root=p.pipeline_root,
            enable_caching=options.enable_caching,
            service_account=options.service_account,
        )
    return Submitted(
        "recurring run",
        job.recurring_run_id,
        name,
        p.pipeline_id,
        p.version_id,
        p.version_name,
        p.experiment_id,
        _ui_url(connection, f"recurringrun/details/{job.recurring_run_id}"),
    )


# The states after which a KFP v2 run changes no more (kfp_server_api V2beta1RuntimeState).
FINAL_RUN_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")


def wait_for_run(
    client: Any,
    connection: Connection,
    run_id: str,
    timeout_s: float | None,
    poll_s: float = 10.0,
    on_state: Any = None,  # Callable[[str], None]: called when the state changes.
) -> str | None:
    """Polls the run until it reaches a final state; that state, or None at the timeout."""
    import time

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = None
    while True:
        with api_errors(connection, f"reading the state of run {run_id}"):
            state = str(client.get_run(run_id).state or "PENDING")
        if state != last and on_state is not None:
            on_state(state)
        last = state
        if state in FINAL_RUN_STATES:
            return state
        if deadline is not None and time.monotonic() + poll_s > deadline:
            return None
        time.sleep(poll_s)
