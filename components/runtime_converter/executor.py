"""RuntimeConverter executor: one mode per instance; failures and skips are published."""

from __future__ import annotations

import json
import time
from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types.artifact import Artifact

from components.common.artifact_utils import single_artifact
from components.common.executor_output import records_user_errors
from components.common.int8_fallback import Int8SearchSettings
from components.common.local_staging import local_input_dir, local_output_dir
from components.common.signature import GraphSignature
from components.common.variant_production import Produced, VariantJob, produce_variant
from components.runtime_converter.modes import PRODUCER, ConvertSettings, get_mode


def settings_from(exec_properties: dict[str, Any]) -> ConvertSettings:
    return ConvertSettings(
        num_calibration=int(exec_properties["num_calibration"]),
        timeout_s=float(exec_properties["timeout_s"]),
        int8_search=Int8SearchSettings.from_json(
            json.loads(exec_properties.get("int8_search") or "{}")
        ),
    )


def convert(
    graph_uri: str,
    calibration: list[Any] | None,
    output_uri: str,
    exec_properties: dict,
    held_out: Any = None,  # common.held_out.HeldOut, for the modes that need it
) -> Produced:
    """The RuntimeConverter's producer (common/variant_production.py runs it in a child)."""
    mode = get_mode(exec_properties["mode"])
    extra = {"held_out": held_out} if mode.needs_held_out else {}
    started = time.monotonic()
    # Converters read and write local paths only; gs:// and s3:// are staged.
    with (
        local_input_dir(graph_uri) as graph_dir,
        local_output_dir(output_uri) as output_dir,
    ):
        signature = GraphSignature.load(graph_dir)
        outcome = mode.run(
            graph_dir, signature, calibration, output_dir, settings_from(exec_properties), **extra
        )
    return (
        outcome.model_format,
        outcome.size_bytes,
        {
            "calibration_samples": outcome.calibration_samples,
            "conversion_seconds": round(time.monotonic() - started, 3),
            **outcome.properties,
        },
    )


class Executor(base_executor.BaseExecutor):
    """Converts the frozen graph in the configured mode (common/variant_production.py):

    * the kind does not apply on this node (no bf16 CPU, the runtime not installed): a
      `skipped` variant with the reason;
    * the converter cannot take the model (an op it lacks, a crash): a `failed` variant
      with the converter's message, and the pipeline goes on;
    * examples that do not fit the model fail the execution (read before converting).
    """

    @records_user_errors
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        output = single_artifact(output_dict["converted_model"], "converted_model")
        mode = get_mode(exec_properties["mode"])
        settings = settings_from(exec_properties)
        job = VariantJob(
            PRODUCER,
            mode.name,
            mode.variant_name,
            mode.needs_calibration,
            settings.num_calibration,
            held_out_examples=settings.int8_search.held_out_examples if mode.needs_held_out else 0,
        )
        produce_variant(job, input_dict, output, exec_properties, convert)
