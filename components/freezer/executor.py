"""Freezer executor: freezes the serving signature of the input model."""

from __future__ import annotations

from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types.artifact import Artifact

from components.common.artifact_utils import (
    directory_size_bytes,
    set_variant_properties,
    single_artifact,
)
from components.common.graph_io import op_histogram, save_graph_def
from components.freezer.freezing import freeze_saved_model

VARIANT_NAME = "frozen_graph"
FORMAT_GRAPHDEF = "graphdef"


class Executor(base_executor.BaseExecutor):
    """Writes `graph.pb` and `signature.json`; records node count, op histogram and size."""

    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        model = single_artifact(input_dict["model"], "model")
        frozen_graph = single_artifact(output_dict["frozen_graph"], "frozen_graph")
        frozen = freeze_saved_model(model.uri, exec_properties["signature_key"])
        save_graph_def(frozen.graph_def, frozen_graph.uri)
        frozen.signature.save(frozen_graph.uri)
        set_variant_properties(
            frozen_graph,
            variant_name=VARIANT_NAME,
            model_format=FORMAT_GRAPHDEF,
            size_bytes=directory_size_bytes(frozen_graph.uri),
            extra={
                "node_count": len(frozen.graph_def.node),
                "op_histogram": op_histogram(frozen.graph_def),
                "signature_key": frozen.signature.signature_key,
                "source_model_uri": model.uri,
            },
        )
