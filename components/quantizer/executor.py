"""Quantizer executor: one mode per component instance, failures recorded, not raised."""

from __future__ import annotations

import json
from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types.artifact import Artifact

from components.common.artifact_utils import (
    record_failed_variant,
    set_variant_properties,
    single_artifact,
)
from components.common.examples_io import read_labelled_images
from components.common.graph_io import load_graph_def
from components.common.signature import GraphSignature
from components.quantizer.modes import QuantizeSettings, get_mode


class Executor(base_executor.BaseExecutor):
    """Quantizes the input graph in the configured mode.

    When the mode cannot quantize this model (converter crash, unsupported ops, a graph
    shape it does not handle), the output artifact is still published, with
    `status=failed`, the reason, and only a `FAILED.txt` inside: the Benchmarker shows it
    as a failed row and the pipeline goes on. Settings are checked when the pipeline is
    built, and examples that do not fit the model fail the execution (read first).
    """

    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        graph_artifact = single_artifact(input_dict["frozen_graph"], "frozen_graph")
        output = single_artifact(output_dict["quantized_model"], "quantized_model")
        mode = get_mode(exec_properties["mode"])
        settings = QuantizeSettings(
            num_calibration=int(exec_properties["num_calibration"]),
            inference_io_type=exec_properties["inference_io_type"],
            batch_sizes=tuple(json.loads(exec_properties["batch_sizes"])),
        )
        signature = GraphSignature.load(graph_artifact.uri)
        calibration = None
        if mode.needs_calibration:
            examples = single_artifact(input_dict.get("examples", []), "examples")
            calibration = read_labelled_images(
                examples.uri,
                signature.inputs[0],
                split=exec_properties["calibration_split"],
                image_feature=exec_properties["image_feature"],
                label_feature=exec_properties["label_feature"],
                limit=settings.num_calibration,
            ).images
        try:
            outcome = mode.run(
                load_graph_def(graph_artifact.uri), signature, calibration, output.uri, settings
            )
        except Exception as error:  # The mode cannot handle this model: a failed variant.
            record_failed_variant(
                output, variant_name=mode.variant_name, mode=mode.name, error=error
            )
            return
        set_variant_properties(
            output,
            variant_name=mode.variant_name,
            model_format=outcome.model_format,
            size_bytes=outcome.size_bytes,
            extra={
                "mode": mode.name,
                "calibration_samples": outcome.calibration_samples,
                "float_ops": outcome.float_ops,
                "hardware_requirements": outcome.hardware_requirements,
                **outcome.properties,
            },
        )
