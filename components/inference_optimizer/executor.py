"""InferenceOptimizer executor: runs the named graph transforms on a frozen graph."""

from __future__ import annotations

import json
from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types.artifact import Artifact

from components.common.artifact_utils import single_artifact
from components.common.executor_output import records_user_errors
from components.common.graph_io import load_graph_def
from components.common.signature import GraphSignature
from components.common.variant_production import Produced, VariantJob, produce_variant
from components.inference_optimizer.modes import DEFAULT_MODE, MODES, PRODUCER, transforms_for
from components.inference_optimizer.optimizer import optimize_graph, write_optimized_graph
from components.runtimes import model_size_bytes
from components.runtimes.graphdef import FORMAT_GRAPHDEF


def optimize(graph_uri: str, calibration: Any, output_uri: str, exec_properties: dict) -> Produced:
    """The InferenceOptimizer's producer (common/variant_production.py runs it in a child)."""
    mode = exec_properties.get("mode") or DEFAULT_MODE
    transforms = transforms_for(mode, json.loads(exec_properties["transforms"]))
    configs = json.loads(exec_properties["transform_configs"] or "{}")
    signature = GraphSignature.load(graph_uri)
    result = optimize_graph(load_graph_def(graph_uri), signature, transforms, configs)
    write_optimized_graph(result, signature, output_uri)
    fusions = next((e["details"] for e in result.transform_log if e["transform"] == "fuse_ops"), {})
    # The variant is graph.pb; the SavedModel beside it is a servable copy of it.
    return (
        FORMAT_GRAPHDEF,
        model_size_bytes(output_uri, FORMAT_GRAPHDEF),
        {
            "transforms": result.transforms,
            "node_count_before": result.node_count_before,
            "node_count_after": result.node_count_after,
            "transform_seconds": round(result.seconds, 4),
            "hardware_requirements": result.hardware_requirements,
            "fusions": fusions.get("fusions", {}),
            "reverted_onednn_only_fusions": fusions.get("reverted_onednn_only_fusions", {}),
        },
    )


class Executor(base_executor.BaseExecutor):
    """Writes the optimized graph, its SavedModel and the transform log.

    A mode this node cannot run (bfloat16 without native bf16) is a skipped variant, and
    a graph a transform cannot take a failed one (common/variant_production.py).
    """

    @records_user_errors
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        optimized = single_artifact(output_dict["optimized_graph"], "optimized_graph")
        mode = exec_properties.get("mode") or DEFAULT_MODE
        job = VariantJob(PRODUCER, mode, MODES[mode].variant_name)
        produce_variant(job, input_dict, optimized, exec_properties, optimize)
