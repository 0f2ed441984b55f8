"""Run a compiled KFP v2 package task by task, the way the KFP v2 driver and launcher would.

This is the closest to a cluster these machines get. For each task of the root DAG, once
its upstream tasks are done (several at once, as Argo would start them):

- importer tasks are resolved as KFP's importer launcher does (no user container runs): the
  artifact URI is the `artifactUri` constant or the runtime parameter behind it, the type is
  the importer's `typeSchema`, and the importer's `metadata` becomes the artifact's metadata;
- container tasks get the ExecutorInput the KFP driver builds: `parameterValues` from
  constants and pipeline parameters, input artifacts from upstream outputs (URI, schema title,
  and the metadata the upstream executor reported, as MLMD would hand it back), output
  artifacts at `<pipeline root>/<pipeline>/<run id>/<task>/<output key>` with the compiled
  artifact type, and an `outputFile` for the ExecutorOutput;
- the container's `command` and `args` run exactly as compiled (with `{{$}}` replaced by the
  ExecutorInput JSON, as the launcher does) in a subprocess on CPU, where `python` on PATH is
  this environment's interpreter, from an empty working directory;
- the ExecutorOutput the task writes is merged into its output artifacts, as the launcher
  does before it records them in MLMD for downstream tasks.

Not emulated: Kubernetes scheduling (node selectors, tolerations, resource limits), object
store download/upload (TFX executors read and write artifact URIs directly), MLMD itself and
caching.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import yaml

EXECUTOR_INPUT_PLACEHOLDER = "{{$}}"


@dataclasses.dataclass
class TaskResult:
    """One finished task: its output artifacts (RuntimeArtifact JSON) and how it ran."""

    name: str
    kind: str  # "importer" or "container"
    outputs: dict[str, dict[str, Any]]
    seconds: float = 0.0
    command: list[str] = dataclasses.field(default_factory=list)
    log_path: str = ""


class TaskFailed(AssertionError):
    pass


def schema_title(artifact_type: Mapping[str, Any]) -> str:
    if "schemaTitle" in artifact_type:
        return artifact_type["schemaTitle"]
    return yaml.safe_load(artifact_type["instanceSchema"])["title"]


class LocalKfpRun:
    """One run of a package: `LocalKfpRun(spec, root, workdir, params).run()`."""

    def __init__(
        self,
        pipeline_spec: Mapping[str, Any],
        pipeline_root: str,
        workdir: str,
        params: Mapping[str, Any] | None = None,
        run_id: str = "local-run-1",
        max_parallel: int = 2,
        timeout_s: float = 900,
    ) -> None:
        self.spec = pipeline_spec
        self.workdir = workdir
        self.run_root = (
            f"{pipeline_root.rstrip('/')}/{pipeline_spec['pipelineInfo']['name']}/{run_id}"
        )
        self.max_parallel = max_parallel
        self.timeout_s = timeout_s
        self.params = self._pipeline_parameters(params or {})
        self.tasks: Mapping[str, Any] = pipeline_spec["root"]["dag"]["tasks"]
        self.results: dict[str, TaskResult] = {}
        self._artifact_ids = itertools.count(1)

    def _pipeline_parameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        declared = self.spec["root"].get("inputDefinitions", {}).get("parameters", {})
        unknown = set(given) - set(declared)
        if unknown:
            raise ValueError(f"unknown pipeline parameters {sorted(unknown)}")
        values = {n: p["defaultValue"] for n, p in declared.items() if "defaultValue" in p}
        values.update(given)
        missing = set(declared) - set(values)
        if missing:
            raise ValueError(f"pipeline parameters without value: {sorted(missing)}")
        return values

    # -- scheduling ------------------------------------------------------------------------

    def upstream(self, task_name: str) -> set[str]:
        task = self.tasks[task_name]
        names = set(task.get("dependentTasks", []))
        for spec in task.get("inputs", {}).get("artifacts", {}).values():
            names.add(spec["taskOutputArtifact"]["producerTask"])
        return names

    def run(self) -> dict[str, TaskResult]:
        """Runs every task once its upstream tasks are done; raises TaskFailed on a failure."""
        pending = set(self.tasks)
        with concurrent.futures.ThreadPoolExecutor(self.max_parallel) as pool:
            running: dict[concurrent.futures.Future, str] = {}
            while pending or running:
                for name in sorted(pending):
                    if len(running) < self.max_parallel and self.upstream(name) <= set(
                        self.results
                    ):
                        running[pool.submit(self.run_task, name)] = name
                        pending.discard(name)
                if not running:
                    raise TaskFailed(f"tasks {sorted(pending)} can never start (cycle?)")
                done, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    name = running.pop(future)
                    self.results[name] = future.result()  # Re-raises a task's failure.
        return self.results

    # -- one task --------------------------------------------------------------------------

    def component(self, task_name: str) -> Mapping[str, Any]:
        return self.spec["components"][self.tasks[task_name]["componentRef"]["name"]]

    def executor(self, task_name: str) -> Mapping[str, Any]:
        label = self.component(task_name)["executorLabel"]
        return self.spec["deploymentSpec"]["executors"][label]

    def run_task(self, task_name: str) -> TaskResult:
        executor = self.executor(task_name)
        if "importer" in executor:
            return self.run_importer(task_name, executor["importer"])
        if "container" in executor:
            return self.run_container(task_name, executor["container"])
        raise NotImplementedError(f"{task_name}: executor kind {sorted(executor)}")

    def parameter_values(self, task_name: str) -> dict[str, Any]:
        values = {}
        for name, spec in self.tasks[task_name].get("inputs", {}).get("parameters", {}).items():
            if "runtimeValue" in spec:
                values[name] = spec["runtimeValue"]["constant"]
            elif "componentInputParameter" in spec:
                values[name] = self.params[spec["componentInputParameter"]]
            else:
                raise NotImplementedError(f"{task_name}.{name}: parameter source {sorted(spec)}")
        return values

    def new_artifact_name(self) -> str:
        # KFP hands artifacts to executors with their MLMD identity as the name.
        return f"artifacts/{next(self._artifact_ids)}"

    def run_importer(self, task_name: str, importer: Mapping[str, Any]) -> TaskResult:
        uri_spec = importer["artifactUri"]
        if "constant" in uri_spec:
            uri = uri_spec["constant"]
        else:
            uri = self.parameter_values(task_name)[uri_spec["runtimeParameter"]]
        if not uri:
            raise TaskFailed(f"{task_name}: empty artifact URI")
        (output_key,) = self.component(task_name)["outputDefinitions"]["artifacts"]
        artifact = {
            "name": self.new_artifact_name(),
            "type": {"schemaTitle": schema_title(importer["typeSchema"])},
            "uri": uri,
            "metadata": dict(importer.get("metadata", {})),
        }
        return TaskResult(task_name, "importer", {output_key: artifact})

    def executor_input(self, task_name: str, task_dir: str) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for key, spec in self.tasks[task_name].get("inputs", {}).get("artifacts", {}).items():
            source = spec["taskOutputArtifact"]
            produced = self.results[source["producerTask"]].outputs[source["outputArtifactKey"]]
            inputs[key] = {"artifacts": [produced]}
        outputs = {}
        definitions = self.component(task_name).get("outputDefinitions", {}).get("artifacts", {})
        for key, definition in definitions.items():
            outputs[key] = {
                "artifacts": [
                    {
                        "name": "",
                        "type": definition["artifactType"],
                        "uri": f"{self.run_root}/{task_name}/{key}",
                        "metadata": {},
                    }
                ]
            }
        return {
            "inputs": {"parameterValues": self.parameter_values(task_name), "artifacts": inputs},
            "outputs": {
                "artifacts": outputs,
                "outputFile": os.path.join(task_dir, "kfp_outputs", "output_metadata.json"),
            },
        }

    def run_container(self, task_name: str, container: Mapping[str, Any]) -> TaskResult:
        task_dir = os.path.join(self.workdir, task_name)
        os.makedirs(task_dir)
        executor_input = self.executor_input(task_name, task_dir)
        substituted = json.dumps(executor_input)
        args = [substituted if a == EXECUTOR_INPUT_PLACEHOLDER else a for a in container["args"]]
        leftover = [a for a in args if "{{$" in a]
        if leftover:
            raise NotImplementedError(f"{task_name}: placeholders not emulated: {leftover}")
        command = list(container["command"]) + args
        env = dict(os.environ)
        # `python` in the compiled command must be this environment's interpreter, as it is
        # the image's on the cluster; no GPU, as on a CPU node.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["CUDA_VISIBLE_DEVICES"] = ""
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        log_path = os.path.join(task_dir, "log.txt")
        started = time.monotonic()
        with open(log_path, "wb") as log:
            completed = subprocess.run(
                command,
                cwd=task_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=self.timeout_s,
                check=False,
            )
        seconds = time.monotonic() - started
        if completed.returncode != 0:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                tail = "".join(f.readlines()[-60:])
            raise TaskFailed(
                f"task {task_name} exited with {completed.returncode} after {seconds:.0f}s; "
                f"last lines of {log_path}:\n{tail}"
            )
        outputs = self.merge_executor_output(task_name, executor_input)
        return TaskResult(task_name, "container", outputs, seconds, command, log_path)

    def merge_executor_output(
        self, task_name: str, executor_input: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """Output artifacts as downstream tasks receive them, after the launcher's merge."""
        output_file = executor_input["outputs"]["outputFile"]
        if not os.path.exists(output_file):
            raise TaskFailed(f"task {task_name} wrote no ExecutorOutput at {output_file}")
        with open(output_file, encoding="utf-8") as f:
            executor_output = json.load(f)
        reported = executor_output.get("artifacts", {})
        outputs = {}
        for key, artifact_list in executor_input["outputs"]["artifacts"].items():
            (declared,) = artifact_list["artifacts"]
            merged = {
                "name": self.new_artifact_name(),
                # MLMD stores the type by its title; that is what the driver hands downstream.
                "type": {"schemaTitle": schema_title(declared["type"])},
                "uri": declared["uri"],
                "metadata": {},
            }
            if key in reported and reported[key].get("artifacts"):
                update = reported[key]["artifacts"][0]
                merged["uri"] = update.get("uri") or merged["uri"]
                merged["metadata"] = dict(update.get("metadata", {}))
            outputs[key] = merged
        return outputs
