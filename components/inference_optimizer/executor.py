"""InferenceOptimizer executor: runs the named graph transforms on a frozen graph."""

from __future__ import annotations

import json
import os
from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types.artifact import Artifact

from components.common.artifact_utils import (
    directory_size_bytes,
    set_variant_properties,
    single_artifact,
)
from components.common.executor_output import records_user_errors
from components.common.graph_io import GRAPH_FILENAME, load_graph_def
from components.common.signature import GraphSignature
from components.inference_optimizer.optimizer import optimize_graph, write_optimized_graph
from components.runtimes.graphdef import FORMAT_GRAPHDEF

VARIANT_NAME = "optimized_graph"


class Executor(base_executor.BaseExecutor):
    """Writes the optimized graph, its SavedModel and the transform log."""

    @records_user_errors
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        frozen = single_artifact(input_dict["frozen_graph"], "frozen_graph")
        optimized = single_artifact(output_dict["optimized_graph"], "optimized_graph")
        transforms = json.loads(exec_properties["transforms"])  # null: the defaults.
        configs = json.loads(exec_properties["transform_configs"] or "{}")
        signature = GraphSignature.load(frozen.uri)
        result = optimize_graph(load_graph_def(frozen.uri), signature, transforms, configs)
        write_optimized_graph(result, signature, optimized.uri)
        fusions = next(
            (e["details"] for e in result.transform_log if e["transform"] == "fuse_ops"), {}
        )
        set_variant_properties(
            optimized,
            variant_name=VARIANT_NAME,
            model_format=FORMAT_GRAPHDEF,
            # The variant is graph.pb; the SavedModel beside it is a servable copy of it.
            size_bytes=directory_size_bytes(os.path.join(optimized.uri, GRAPH_FILENAME)),
            extra={
                "transforms": result.transforms,
                "node_count_before": result.node_count_before,
                "node_count_after": result.node_count_after,
                "transform_seconds": round(result.seconds, 4),
                "hardware_requirements": result.hardware_requirements,
                "fusions": fusions.get("fusions", {}),
                "reverted_onednn_only_fusions": fusions.get("reverted_onednn_only_fusions", {}),
            },
        )
