"""Quantizer executor: one mode per component instance, failures recorded, not raised."""

from __future__ import annotations

import json
from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types.artifact import Artifact

from components.common.artifact_utils import single_artifact
from components.common.executor_output import records_user_errors
from components.common.graph_io import load_graph_def
from components.common.int8_fallback import Int8SearchSettings
from components.common.signature import GraphSignature
from components.common.variant_production import Produced, VariantJob, produce_variant
from components.quantizer.modes import QuantizeSettings, get_mode


def settings_from(exec_properties: dict[str, Any]) -> QuantizeSettings:
    return QuantizeSettings(
        num_calibration=int(exec_properties["num_calibration"]),
        inference_io_type=exec_properties["inference_io_type"],
        batch_sizes=tuple(json.loads(exec_properties["batch_sizes"])),
        int8_search=Int8SearchSettings.from_json(
            json.loads(exec_properties.get("int8_search") or "{}")
        ),
    )


def quantize(
    graph_uri: str,
    calibration: list[Any] | None,
    output_uri: str,
    exec_properties: dict,
    held_out: Any = None,  # common.held_out.HeldOut, for the modes that need it
) -> Produced:
    """The Quantizer's producer (common/variant_production.py runs it in a child)."""
    mode = get_mode(exec_properties["mode"])
    extra = {"held_out": held_out} if mode.needs_held_out else {}
    outcome = mode.run(
        load_graph_def(graph_uri),
        GraphSignature.load(graph_uri),
        calibration,
        output_uri,
        settings_from(exec_properties),
        **extra,
    )
    return (
        outcome.model_format,
        outcome.size_bytes,
        {
            "calibration_samples": outcome.calibration_samples,
            "float_ops": outcome.float_ops,
            "hardware_requirements": outcome.hardware_requirements,
            **outcome.properties,
        },
    )


class Executor(base_executor.BaseExecutor):
    """Quantizes the input graph in the configured mode.

    When the mode cannot quantize this model (converter crash, unsupported ops, a graph
    shape it does not handle), the output artifact is still published, with
    `status=failed`, the reason, and only a `FAILED.txt` inside: the Benchmarker shows it
    as a failed row and the pipeline goes on. Settings are checked when the pipeline is
    built, and examples that do not fit the model fail the execution (read first).
    """

    @records_user_errors
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        output = single_artifact(output_dict["quantized_model"], "quantized_model")
        mode = get_mode(exec_properties["mode"])
        settings = settings_from(exec_properties)
        job = VariantJob(
            "Quantizer",
            mode.name,
            mode.variant_name,
            mode.needs_calibration,
            settings.num_calibration,
            held_out_examples=settings.int8_search.held_out_examples if mode.needs_held_out else 0,
        )
        produce_variant(job, input_dict, output, exec_properties, quantize)
