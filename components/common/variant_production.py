"""The shared body of every variant producer's executor (Quantizer, XlaCompiler,
RuntimeConverter): skip, calibrate, produce, publish.

    produce_variant(
        VariantJob("Quantizer", mode.name, mode.variant_name, mode.needs_calibration,
                   num_calibration),
        input_dict, output, exec_properties,
        produce=lambda graph_uri, calibration: (model_format, size_bytes, properties),
    )

1. The kind does not apply on this node (its CPU flags or optional runtime are
   missing; components/variant_kinds.py): a `skipped` artifact with the reason.
2. A calibrating kind reads its inputs from the calibration split. Examples that do not
   fit the model fail the execution (bad input, reported to the user).
3. `produce` raises when the tool cannot take this model (a converter crash, an op it
   lacks): a `failed` artifact with the reason, and the pipeline goes on.
4. Otherwise the variant properties every artifact carries, plus the mode's facts and
   the transform's peak memory (memory_watch.py: the pipeline process's growth, and
   the largest peak of the children it ran).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from components.common.artifact_utils import (
    record_failed_variant,
    record_skipped_variant,
    set_variant_properties,
    single_artifact,
)

# (format, size in bytes, properties to record) of a produced variant.
Produced = tuple[str, int, dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class VariantJob:
    """Which kind a producer instance makes."""

    producer: str  # The component, as the variant-kind registry names it.
    mode: str
    variant_name: str
    needs_calibration: bool = False
    num_calibration: int = 0


def produce_variant(
    job: VariantJob,
    input_dict: dict[str, list[Any]],
    output: Any,
    exec_properties: dict[str, Any],
    produce: Callable[[str, list[Any] | None], Produced],
) -> None:
    """Skips, calibrates, produces and publishes one variant (see the module doc)."""
    from components.common.calibration import read_calibration_inputs
    from components.variant_kinds import unavailable_here

    skip_reason = unavailable_here(job.producer, job.mode)
    if skip_reason:
        record_skipped_variant(
            output, variant_name=job.variant_name, mode=job.mode, reason=skip_reason
        )
        return
    graph = single_artifact(input_dict["frozen_graph"], "frozen_graph")
    calibration = None
    calibration_facts: dict[str, Any] = {}
    if job.needs_calibration:
        examples = single_artifact(input_dict.get("examples", []), "examples")
        calibration, calibration_facts = read_calibration_inputs(
            graph.uri, examples.uri, exec_properties, job.num_calibration
        )
    from components.common.memory_watch import watch_peak_rss

    try:
        with watch_peak_rss() as peak:
            model_format, size_bytes, properties = produce(graph.uri, calibration)
    except Exception as error:  # The tool cannot take this model: a failed variant.
        record_failed_variant(output, variant_name=job.variant_name, mode=job.mode, error=error)
        return
    set_variant_properties(
        output,
        variant_name=job.variant_name,
        model_format=model_format,
        size_bytes=size_bytes,
        extra={"mode": job.mode, **calibration_facts, **properties, **peak.properties()},
    )
