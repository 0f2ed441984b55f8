"""The shared body of every variant producer's executor (Quantizer, XlaCompiler,
RuntimeConverter): skip, calibrate, produce, publish.

    def quantize(graph_uri, calibration, output_uri, exec_properties) -> Produced:
        ...  # Writes the variant into output_uri.
        return model_format, size_bytes, properties

    produce_variant(
        VariantJob("Quantizer", mode.name, mode.variant_name, mode.needs_calibration,
                   num_calibration),
        input_dict, output, exec_properties, produce=quantize,  # a module-level function
    )

1. The kind does not apply on this node (its CPU flags or optional runtime are
   missing; components/variant_kinds.py): a `skipped` artifact with the reason.
2. A calibrating kind reads its inputs from the calibration split. Examples that do not
   fit the model fail the execution (bad input, reported to the user). An
   accuracy-aware kind also reads held-out evaluation records and their labels
   (common/held_out.py); without labels it is a failed variant, and the others go on.
3. `produce` runs in an isolated child (common/isolation.py; forked, so it costs no
   TensorFlow import). Not in the pipeline's process, because TensorFlow keeps every
   function a graph was imported into, constants included, for the life of the
   process: on a 440 MB BERT-base graph, the XLA JIT and AOT transforms in-process
   grew the pipeline process from 3.8 to 12.6 GiB. A child's memory goes back to the
   system when it ends. `produce` raises, or its child dies, when the tool cannot take
   this model (a converter crash, an op it lacks): a `failed` artifact with the
   reason, and the pipeline goes on.
4. Otherwise the variant properties every artifact carries, plus the mode's facts and
   the transform's peak memory (memory_watch.py: the pipeline process's growth, and
   the largest peak of the children it ran).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from components.common.artifact_utils import (
    record_failed_variant,
    record_skipped_variant,
    set_variant_properties,
    single_artifact,
)

# The producers' optional execution parameter: the memory their children may take with
# the pipeline's process (PipelineSettings.memory_budget_bytes; None: no cap).
MEMORY_BUDGET_PARAMETER = "memory_budget_bytes"
# (format, size in bytes, properties to record) of a produced variant.
Produced = tuple[str, int, dict[str, Any]]
# produce(graph_uri, calibration inputs or None, output_uri, exec_properties): a
# module-level function, so that a child process can import it by name.
Producer = Callable[[str, "list[Any] | None", str, dict[str, Any]], Produced]


class ProducerFailed(Exception):
    """The producer's child raised or died; `reason` is what the failed row shows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class VariantJob:
    """Which kind a producer instance makes."""

    producer: str  # The component, as the variant-kind registry names it.
    mode: str
    variant_name: str
    needs_calibration: bool = False
    num_calibration: int = 0
    # >0: the kind scores its work on this many held-out evaluation records (the
    # accuracy-aware int8 kinds); `produce` then gets `held_out=` (common/held_out.py).
    held_out_examples: int = 0


def produce_variant(
    job: VariantJob,
    input_dict: dict[str, list[Any]],
    output: Any,
    exec_properties: dict[str, Any],
    produce: Producer,
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
    held_out = None
    if job.held_out_examples:
        from components.common.held_out import NoLabels, read_held_out

        examples = single_artifact(input_dict.get("examples", []), "examples")
        try:
            held_out, held_out_facts = read_held_out(
                graph.uri, examples.uri, exec_properties, job.held_out_examples
            )
        except NoLabels as error:  # This kind cannot run here; the others can.
            record_failed_variant(output, variant_name=job.variant_name, mode=job.mode, error=error)
            return
        calibration_facts.update(held_out_facts)
    from components.common.memory_watch import watch_peak_rss

    try:
        with watch_peak_rss() as peak:
            model_format, size_bytes, properties = _produce_in_child(
                produce, job, graph.uri, calibration, output.uri, exec_properties, held_out
            )
    except Exception as error:  # The tool cannot take this model: a failed variant.
        record_failed_variant(output, variant_name=job.variant_name, mode=job.mode, error=error)
        return
    from components.runtimes import model_size_bytes

    # The one size (sizes.py): what the variant's runtime loads, as the Benchmarker counts
    # it. A producer's own figure (one model file of several) is kept when it differs.
    published = model_size_bytes(output.uri, model_format)
    if size_bytes != published:
        properties = {**properties, "model_file_bytes": size_bytes}
    set_variant_properties(
        output,
        variant_name=job.variant_name,
        model_format=model_format,
        size_bytes=published,
        extra={"mode": job.mode, **calibration_facts, **properties, **peak.properties()},
    )


def _produce_in_child(
    produce: Producer,
    job: VariantJob,
    graph_uri: str,
    calibration: list[Any] | None,
    output_uri: str,
    exec_properties: dict[str, Any],
    held_out: Any = None,
) -> Produced:
    import numpy as np

    from components.common.isolation import run_isolated, scratch_directory

    with scratch_directory(f"produce_{job.variant_name}_") as work_dir:
        calibration_path = None
        if calibration is not None:
            calibration_path = os.path.join(work_dir, "calibration.npz")
            np.savez(calibration_path, *calibration)
        held_out_dir = None
        if held_out is not None:
            held_out_dir = held_out.save(os.path.join(work_dir, "held_out"))
        outcome = run_isolated(
            f"{__name__}:produce_in_this_process",
            {
                "producer": f"{produce.__module__}:{produce.__qualname__}",
                # The child works in the package root: a relative local path must not move.
                "graph_uri": _absolute(graph_uri),
                "calibration_path": calibration_path,
                "output_uri": _absolute(output_uri),
                "exec_properties": exec_properties,
                "held_out_dir": held_out_dir,
            },
            work_dir,
            name="produce",
            # A budget caps the child and what it starts (common/memory_cap.py).
            memory_budget_bytes=exec_properties.get(MEMORY_BUDGET_PARAMETER) or None,
        )
    if outcome.ok:
        model_format, size_bytes, properties = outcome.result
        return model_format, int(size_bytes), properties
    if outcome.error_type:  # What the producer raised, as it would read in this process.
        raise ProducerFailed(f"{outcome.error_type}: {outcome.error_message}")
    raise ProducerFailed(outcome.failure(f"the {job.producer} process"))


def produce_in_this_process(
    producer: str,
    graph_uri: str,
    calibration_path: str | None,
    output_uri: str,
    exec_properties: dict[str, Any],
    held_out_dir: str | None = None,
) -> Produced:
    """In the isolated child: imports `module:function` and produces the variant."""
    import importlib

    import numpy as np

    module_name, _, function_name = producer.partition(":")
    produce = getattr(importlib.import_module(module_name), function_name)
    calibration = None
    if calibration_path is not None:
        with np.load(calibration_path) as data:
            calibration = [data[f"arr_{i}"] for i in range(len(data.files))]
    if held_out_dir is not None:
        from components.common.held_out import HeldOut

        held_out = HeldOut.load(held_out_dir)
        return produce(graph_uri, calibration, output_uri, exec_properties, held_out=held_out)
    return produce(graph_uri, calibration, output_uri, exec_properties)


def _absolute(uri: str) -> str:
    return uri if "://" in uri else os.path.abspath(uri)
