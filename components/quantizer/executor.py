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
from components.common.executor_output import records_user_errors
from components.common.graph_io import load_graph_def
from components.common.signature import GraphSignature
from components.quantizer.modes import QuantizeSettings, get_mode


def read_calibration_inputs(
    frozen_graph_uri: str,
    examples_uri: str,
    exec_properties: dict[str, Any],
    num_calibration: int,
) -> tuple[list[Any], dict[str, Any]]:
    """The calibration inputs of the frozen graph (its core, after a split), and what they were.

    Read from the calibration split (train when there is one), never the evaluation
    records (examples_io.resolve_calibration), and fed exactly as the Benchmarker feeds
    the graph: the same feature mapping and image decoding, and the preprocessing graph
    for a model core.
    """
    from components.common.examples_io import read_records, resolve_calibration
    from components.common.feeds import ExampleRecords, FeedSettings, ModelFeeder
    from components.common.preprocessing import Preprocessing

    plan = resolve_calibration(
        examples_uri, exec_properties["eval_split"], exec_properties["calibration_split"]
    )
    records = ExampleRecords(
        read_records(examples_uri, plan.split, limit=num_calibration, part=plan.calibration_part),
        examples_uri,
    )
    feeder = ModelFeeder(
        FeedSettings.from_json(json.loads(exec_properties["feed_settings"] or "{}")),
        Preprocessing.load(frozen_graph_uri),
    )
    inputs = feeder.inputs(GraphSignature.load(frozen_graph_uri), records)
    return inputs, {"calibration_data": {**plan.describe(), "records": len(records)}}


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
        calibration_facts: dict[str, Any] = {}
        if mode.needs_calibration:
            examples = single_artifact(input_dict.get("examples", []), "examples")
            calibration, calibration_facts = read_calibration_inputs(
                graph_artifact.uri, examples.uri, exec_properties, settings.num_calibration
            )
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
                **calibration_facts,
                **outcome.properties,
            },
        )
