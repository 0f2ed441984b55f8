"""Check that this Python environment can run a compiled package: every name it uses imports.

    python -m pipelines.kubeflow.image_check pipeline.yaml

A KFP pod runs `python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor
--executor_class_path module.Executor ...`, and that entrypoint imports every artifact's
schema title (`components.FrozenGraph`) as `module.Class`. Run inside the image (or any
environment built like it), this imports each of those names and exits non-zero, listing
the ones that fail, so a broken image is caught before a cluster pulls it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

ENTRYPOINT_MODULE = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"


def _schema_title(artifact_type: Mapping[str, Any]) -> str | None:
    import yaml

    if "schemaTitle" in artifact_type:
        return artifact_type["schemaTitle"]
    if "instanceSchema" in artifact_type:
        return yaml.safe_load(artifact_type["instanceSchema"]).get("title")
    return None


def _artifact_types(node: Any) -> list[Mapping[str, Any]]:
    """Every `artifactType`/`typeSchema` anywhere in the spec."""
    found = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("artifactType", "typeSchema") and isinstance(value, Mapping):
                found.append(value)
            else:
                found.extend(_artifact_types(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_artifact_types(value))
    return found


def referenced_classes(pipeline_spec: Mapping[str, Any]) -> dict[str, str]:
    """{import path: why it is needed} for every executor and artifact type in the spec.

    Standard TFX titles (`tfx.Model`) map to their classes the way the TFX entrypoint maps
    them; custom titles are imported as written.
    """
    from tfx.orchestration.kubeflow.v2 import compiler_utils

    needed: dict[str, str] = {}
    for label, executor in pipeline_spec["deploymentSpec"]["executors"].items():
        container = executor.get("container")
        if not container:
            continue  # Importers and resolvers run in the KFP launcher, not in our image.
        args = list(container.get("args", []))
        if "--executor_class_path" in args:
            path = args[args.index("--executor_class_path") + 1]
            needed[path] = f"executor of {label}"
        command = " ".join(container.get("command", []))
        if ENTRYPOINT_MODULE in command:
            needed.setdefault(f"{ENTRYPOINT_MODULE}.main", "the container entrypoint")
    for artifact_type in _artifact_types(pipeline_spec):
        title = _schema_title(artifact_type)
        if title:
            path = compiler_utils.TITLE_TO_CLASS_PATH.get(title, title)
            needed.setdefault(path, f"artifact type {title}")
    return needed


def import_failures(paths: Mapping[str, str]) -> dict[str, str]:
    """{path: error} for each `module.Name` that does not import here."""
    from tfx.utils import import_utils

    failures = {}
    for path in sorted(paths):
        try:
            import_utils.import_class_by_path(path)
        except Exception as error:  # Any failure means the pod would fail the same way.
            cause = error.__cause__ or error
            failures[path] = f"{type(cause).__name__}: {cause}"
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m pipelines.kubeflow.image_check PACKAGE.yaml", file=sys.stderr)
        return 2
    import yaml

    with open(argv[0], encoding="utf-8") as f:
        pipeline_spec = next(yaml.safe_load_all(f))
    needed = referenced_classes(pipeline_spec)
    failures = import_failures(needed)
    for path, why in sorted(needed.items()):
        status = "MISSING " + failures[path] if path in failures else "ok"
        print(f"{path:<70} {why:<40} {status}")
    if failures:
        print(f"{len(failures)} of {len(needed)} names do not import here.", file=sys.stderr)
        return 1
    print(f"All {len(needed)} names the package uses import.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
