"""Freezer executor: finds the model's form, freezes the chosen function, records what it did."""

from __future__ import annotations

import json
from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types.artifact import Artifact

from components.common.artifact_utils import (
    set_variant_properties,
    single_artifact,
)
from components.common.executor_output import executor_output, records_user_errors
from components.common.graph_io import op_histogram
from components.common.memory_watch import watch_peak_rss
from components.freezer.model_forms import ModelSelection, freeze_model, resolve_model
from components.runtimes import model_size_bytes
from components.runtimes.graphdef import FORMAT_GRAPHDEF

VARIANT_NAME = "frozen_graph"


def selection_from(exec_properties: dict[str, Any]) -> ModelSelection:
    """The function to freeze, from the Freezer's parameters."""
    return ModelSelection(
        signature_key=exec_properties["signature_key"],
        output_nodes=tuple(json.loads(exec_properties.get("output_nodes") or "[]")),
        input_nodes=tuple(json.loads(exec_properties.get("input_nodes") or "[]")),
    )


def _absolute(uri: str) -> str:
    import os

    return uri if "://" in uri else os.path.abspath(uri)


class FreezeFailed(RuntimeError):
    """The Freezer's child process died or raised something other than bad input."""


def freeze_in_this_process(model_uri: str, output_uri: str, selection: dict) -> dict:
    """In the isolated child: freezes the model, writes the artifact's files, and returns
    {"properties": the artifact's, "source_facts": what the execution records}."""
    source = resolve_model(model_uri)
    frozen = freeze_model(
        source,
        ModelSelection(
            selection["signature_key"],
            tuple(selection["output_nodes"]),
            tuple(selection["input_nodes"]),
        ),
    )
    frozen.save(output_uri)
    split: dict[str, Any] = {}
    if frozen.preprocessing is not None:
        split = {
            "preprocessing": 1,
            "core_inputs": [t.to_json() for t in frozen.signature.inputs],
            "preprocessing_node_count": len(frozen.preprocessing.graph_def.node),
            "lookup_tables": [t.describe() for t in frozen.preprocessing.tables],
        }
    source_facts = {
        "source_model_form": source.form,
        "source_model_path": source.path,
        "source_model_uri": model_uri,
    }
    properties = {
        "node_count": len(frozen.graph_def.node),
        "op_histogram": op_histogram(frozen.graph_def),
        "signature_key": frozen.signature.signature_key,
        "source_inputs": [t.to_json() for t in frozen.original_signature.inputs],
        "portable_rewrites": frozen.portable_rewrites,
        **source_facts,
        **split,
    }
    return {"properties": properties, "source_facts": source_facts}


class Executor(base_executor.BaseExecutor):
    """Writes the frozen graph (and its preprocessing part); records what it froze.

    The freezing runs in a child process (common/isolation.py): loading the model and
    folding its variables leaves TF holding memory it never gives back, and the
    pipeline's process goes on to run every other component (ResNet50: 1.08 GiB that
    stayed for the whole run when it froze in-process). The model's form and resolved
    path are recorded on the artifact and, under the portable launcher, on the execution.
    """

    @records_user_errors
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> Any:
        from components.common.isolation import run_isolated, scratch_directory

        model = single_artifact(input_dict["model"], "model")
        frozen_graph = single_artifact(output_dict["frozen_graph"], "frozen_graph")
        resolve_model(model.uri)  # Bad input is reported before a process starts.
        with watch_peak_rss() as peak, scratch_directory("freeze_") as work_dir:
            outcome = run_isolated(
                f"{__name__}:freeze_in_this_process",
                {
                    # The child works in the package root: a relative path must not move.
                    "model_uri": _absolute(model.uri),
                    "output_uri": _absolute(frozen_graph.uri),
                    "selection": selection_from(exec_properties).to_json(),
                },
                work_dir,
                name="freeze",
            )
        outcome.raise_user_error()  # A model that cannot be frozen, as the child said.
        if not outcome.ok:
            raise FreezeFailed(outcome.failure("the Freezer process"))
        result = outcome.result
        for facts in (result["properties"], result["source_facts"]):
            facts["source_model_uri"] = model.uri  # As given, not as made absolute.
        set_variant_properties(
            frozen_graph,
            variant_name=VARIANT_NAME,
            model_format=FORMAT_GRAPHDEF,
            size_bytes=model_size_bytes(frozen_graph.uri, FORMAT_GRAPHDEF),
            extra={**result["properties"], **peak.properties()},
        )
        return executor_output(output_dict, exec_properties, result["source_facts"])
