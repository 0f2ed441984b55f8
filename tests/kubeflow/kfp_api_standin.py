"""A small stand-in for the Kubeflow Pipelines v2beta1 REST API, served on 127.0.0.1.

No cluster can run here, so this is the one fake in the project. It answers the calls
`kfp.Client` 2.5 makes for an upload, a run and a recurring run, records every request
(path, query, headers, JSON body or multipart upload), and checks what a real API server
checks at those points:

- the bearer token, when started with `required_token` (HTTP 401 otherwise);
- an uploaded package parses into kfp-pipeline-spec's PipelineSpec and PlatformSpec;
- a recurring run's cron has 6 fields, seconds first (HTTP 400 otherwise, as robfig/cron
  in the KFP server would refuse it).

Responses use the API's snake_case JSON, which kfp_server_api's models read.
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import http.server
import itertools
import json
import re
import threading
import urllib.parse
from typing import Any

import yaml

API = "/apis/v2beta1"


@dataclasses.dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any = None
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)


class KfpApiStandIn:
    """Start with `with KfpApiStandIn() as api:`; `api.url` is the --host to pass."""

    def __init__(self, required_token: str | None = None) -> None:
        self.required_token = required_token
        self.requests: list[Recorded] = []
        self.experiments: dict[str, dict[str, Any]] = {}
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        # The states a submitted run reports on successive reads (GET /runs/ID).
        self.run_states: list[str] = ["RUNNING", "SUCCEEDED"]
        self._ids = itertools.count(1)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> KfpApiStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls(self, method: str, path_suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    # -- the API ---------------------------------------------------------------------------

    def handle(self, request: Recorded) -> tuple[int, dict[str, Any]]:
        expected = f"Bearer {self.required_token}"
        if self.required_token is not None and request.headers.get("authorization") != expected:
            return 401, _error(16, "Unauthenticated: invalid or missing bearer token")
        path = request.path[len(API) :] if request.path.startswith(API) else None
        route = (request.method, path)
        if route == ("GET", "/healthz"):
            return 200, {"commit_sha": "stand-in", "tag_name": "2.1.0", "multi_user": False}
        if route == ("GET", "/experiments"):
            name = _filter_value(request.query)
            found = [e for e in self.experiments.values() if name in (None, e["display_name"])]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if route == ("POST", "/experiments"):
            experiment = dict(request.json, experiment_id=self.new_id("experiment"))
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if route == ("GET", "/pipelines"):
            name = _filter_value(request.query)
            found = [p for p in self.pipelines.values() if name in (None, p["display_name"])]
            return 200, {"pipelines": found, "total_size": len(found)} if found else {}
        if route == ("POST", "/pipelines/upload"):
            spec = self._read_package(request)
            if isinstance(spec, tuple):
                return spec
            pipeline_id = self.new_id("pipeline")
            name = request.query["name"][0]
            pipeline = {"pipeline_id": pipeline_id, "display_name": name}
            self.pipelines[pipeline_id] = pipeline
            self.versions[pipeline_id] = [self._version(pipeline_id, name, spec)]
            return 200, pipeline
        if route == ("POST", "/pipelines/upload_version"):
            spec = self._read_package(request)
            if isinstance(spec, tuple):
                return spec
            pipeline_id = request.query["pipelineid"][0]
            if pipeline_id not in self.pipelines:
                return 404, _error(5, f"Pipeline {pipeline_id} not found")
            version = self._version(pipeline_id, request.query["name"][0], spec)
            self.versions[pipeline_id].append(version)
            return 200, version
        if request.method == "GET" and path and path.startswith("/pipelines/"):
            pipeline_id = path.split("/")[2]
            name = _filter_value(request.query)
            versions = [
                v for v in self.versions.get(pipeline_id, []) if name in (None, v["display_name"])
            ]
            if "created_at desc" in request.query.get("sort_by", [""])[0]:
                versions = versions[::-1]
            return 200, {"pipeline_versions": versions, "total_size": len(versions)}
        if route == ("POST", "/runs"):
            run = dict(request.json, run_id=self.new_id("run"), state="PENDING")
            self.runs[run["run_id"]] = run
            return 200, run
        if request.method == "GET" and path and path.startswith("/runs/"):
            run = self.runs.get(path.split("/")[2])
            if run is None:
                return 404, _error(5, f"Run {path.split('/')[2]} not found")
            # Each read moves the run one step along `run_states`, as a server's run would.
            if self.run_states:
                run["state"] = self.run_states.pop(0)
            return 200, run
        if route == ("POST", "/recurringruns"):
            cron = (request.json.get("trigger") or {}).get("cron_schedule", {}).get("cron", "")
            problem = cron_problem(cron)
            if problem:
                return 400, _error(
                    3, f"Invalid input error: The cron schedule {cron!r} is invalid: {problem}"
                )
            job = dict(request.json, recurring_run_id=self.new_id("recurring"), status="ENABLED")
            self.recurring_runs[job["recurring_run_id"]] = job
            return 200, job
        return 404, _error(5, f"Not found: {request.method} {request.path}")

    def _version(self, pipeline_id: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": self.new_id("version"),
            "display_name": name,
            "pipeline_spec": spec,
        }

    def _read_package(self, request: Recorded) -> dict[str, Any] | tuple[int, dict[str, Any]]:
        """The uploaded package as the server stores it, or a 400 like the server's."""
        from google.protobuf import json_format
        from kfp.pipeline_spec import pipeline_spec_pb2

        content = request.files.get("uploadfile")
        if content is None:
            return 400, _error(3, "Failed to read the uploaded file: no 'uploadfile' part")
        try:
            documents = list(yaml.safe_load_all(content))
            json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())
            platform: dict[str, Any] = {}
            for document in documents[1:]:
                platform.update(document)
            json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
        except Exception as error:  # The server answers any parse failure with a 400.
            return 400, _error(3, f"Invalid input error: not a valid pipeline spec: {error}")
        return {"pipeline_spec": documents[0], "platform_spec": platform}


# robfig/cron's ranges, seconds first, as the KFP server parses a recurring run's cron.
_CRON_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def cron_problem(cron: str) -> str | None:
    """Why robfig/cron would refuse `cron`, or None. Checks field count and plain numbers."""
    if cron.startswith("@"):
        return None
    fields = cron.split()
    if len(fields) != 6:
        return f"expected exactly 6 fields, found {len(fields)}"
    for field, (low, high) in zip(fields, _CRON_RANGES, strict=True):
        for number in re.findall(r"[0-9]+", field):
            if not low <= int(number) <= high:
                return f"value {number} out of range [{low}, {high}] in field {field!r}"
    return None


def _error(code: int, message: str) -> dict[str, Any]:
    return {"error_message": message, "code": code, "message": message, "details": []}


def _filter_value(query: dict[str, list[str]]) -> str | None:
    if "filter" not in query:
        return None
    predicates = json.loads(query["filter"][0]).get("predicates", [])
    for predicate in predicates:
        if predicate.get("key") in ("display_name", "name"):
            return predicate.get("stringValue", predicate.get("string_value"))
    return None


def _handler(api: KfpApiStandIn) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Recorded(
                method=self.command,
                path=url.path,
                query=urllib.parse.parse_qs(url.query),
                headers={k.lower(): v for k, v in self.headers.items()},
            )
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("multipart/form-data"):
                request.files = _multipart_files(content_type, body)
            elif body:
                request.json = json.loads(body)
            api.requests.append(request)
            status, payload = api.handle(request)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass  # Keep test output clean.

    return Handler


def _multipart_files(content_type: str, body: bytes) -> dict[str, bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    files = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        files[name] = part.get_payload(decode=True)
    return files
