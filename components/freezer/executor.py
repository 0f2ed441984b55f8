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
from components.common.memory_watch import release_memory, watch_peak_rss
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


class Executor(base_executor.BaseExecutor):
    """Writes the frozen graph (and its preprocessing part); records what it froze.

    The model's form and resolved path are recorded on the artifact and, under the
    portable launcher, on the execution too.
    """

    @records_user_errors
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> Any:
        model = single_artifact(input_dict["model"], "model")
        frozen_graph = single_artifact(output_dict["frozen_graph"], "frozen_graph")
        source = resolve_model(model.uri)
        with watch_peak_rss() as peak:
            frozen = freeze_model(source, selection_from(exec_properties))
            frozen.save(frozen_graph.uri)
        split = {}
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
            "source_model_uri": model.uri,
        }
        set_variant_properties(
            frozen_graph,
            variant_name=VARIANT_NAME,
            model_format=FORMAT_GRAPHDEF,
            size_bytes=model_size_bytes(frozen_graph.uri, FORMAT_GRAPHDEF),
            extra={
                "node_count": len(frozen.graph_def.node),
                "op_histogram": op_histogram(frozen.graph_def),
                "signature_key": frozen.signature.signature_key,
                "source_inputs": [t.to_json() for t in frozen.original_signature.inputs],
                "portable_rewrites": frozen.portable_rewrites,
                **source_facts,
                **split,
                **peak.properties(),
            },
        )
        # The pipeline's process goes on to run the other components: the loaded model
        # and its frozen graph must not stay in it (4.2 GiB for a BERT-base otherwise).
        del frozen
        release_memory()
        return executor_output(output_dict, exec_properties, source_facts)
