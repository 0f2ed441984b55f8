"""Benchmarker component: every variant side by side, and the best one blessed."""

from __future__ import annotations

import json
from typing import Any

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components import artifacts
from components.artifacts import BenchmarkReport, VariantBlessing
from components.benchmarker import executor
from components.benchmarker.run_parameters import check_run_parameters
from components.benchmarker.selection import DEFAULT_MAX_ACCURACY_DROP
from components.common.errors import UserInputError
from components.common.tasks import parse_metric_budget
from components.variant_kinds import all_kinds
from components.version import __version__
from system import HTML, Markdown

# One optional input key per variant kind (components/variant_kinds.py): on Kubeflow an
# output key carries one artifact, so each producer instance feeds its own key here.
VARIANT_INPUT_TYPES = {kind.name: getattr(artifacts, kind.artifact_type) for kind in all_kinds()}


class BenchmarkerSpec(ComponentSpec):
    """Benchmarker's inputs, outputs and parameters."""

    PARAMETERS = {
        "benchmark_settings": ExecutionParameter(type=str),  # JSON of BenchmarkSettings.
        "objective": ExecutionParameter(type=str),
        "max_accuracy_drop": ExecutionParameter(type=float),
        # "" (the task's default), a number in the metric's units, or "N%" of the baseline.
        "max_metric_drop": ExecutionParameter(type=str),
        "max_p99_ms": ExecutionParameter(type=float),
        # Overrides benchmark_settings' time_budget_s: a run parameter on Kubeflow/Vertex.
        "time_budget_s": ExecutionParameter(type=float, optional=True),
        # JSON {kind: reason} of the kinds the pipeline left out on this hardware.
        "skipped_variants": ExecutionParameter(type=str),
        "package_version": ExecutionParameter(type=str),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        **{
            key: ChannelParameter(type=artifact_type, optional=True)
            for key, artifact_type in VARIANT_INPUT_TYPES.items()
        },
    }
    OUTPUTS = {
        "report": ChannelParameter(type=BenchmarkReport),
        "blessing": ChannelParameter(type=VariantBlessing),
        # The same report as KFP visualization types, so the Kubeflow UI shows it.
        "report_html": ChannelParameter(type=HTML),
        "report_markdown": ChannelParameter(type=Markdown),
    }


class Benchmarker(base_beam_component.BaseBeamComponent):
    """Measures the baseline model and every variant, and blesses the best one.

    benchmarker = Benchmarker(
        model=trainer.outputs["model"],
        examples=example_gen.outputs["examples"],
        variants={"frozen_graph": freezer.outputs["frozen_graph"]},
    )
    """

    SPEC_CLASS = BenchmarkerSpec
    # A Beam executor spec, so the pipeline's beam_pipeline_args reach the accuracy pass.
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        model: channel.BaseChannel,
        examples: channel.BaseChannel,
        variants: dict[str, channel.BaseChannel],
        benchmark_settings: dict[str, Any] | None = None,
        objective: str = "p50",
        max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
        max_p99_ms: float = 0.0,
        max_metric_drop: str = "",
        skipped_variants: dict[str, str] | None = None,
    ) -> None:
        unknown = sorted(set(variants) - set(VARIANT_INPUT_TYPES))
        if unknown:
            raise ValueError(
                f"unknown variant inputs {unknown}; known: {sorted(VARIANT_INPUT_TYPES)}"
            )
        try:
            check_run_parameters(
                {
                    "objective": objective,
                    "max_accuracy_drop": max_accuracy_drop,
                    "max_p99_ms": max_p99_ms,
                }
            )
        except UserInputError as error:
            raise ValueError(str(error)) from None
        if max_metric_drop:
            parse_metric_budget(max_metric_drop)  # Refuse a malformed budget now.
        settings_json = json.dumps(benchmark_settings or {}, sort_keys=True)
        executor.parse_settings(settings_json)  # Refuse unknown keys at pipeline-build time.
        spec = BenchmarkerSpec(
            model=model,
            examples=examples,
            benchmark_settings=settings_json,
            objective=objective,
            max_accuracy_drop=float(max_accuracy_drop),
            max_metric_drop=max_metric_drop,
            max_p99_ms=float(max_p99_ms),
            skipped_variants=json.dumps(skipped_variants or {}, sort_keys=True),
            package_version=__version__,
            report=channel.Channel(type=BenchmarkReport),
            blessing=channel.Channel(type=VariantBlessing),
            report_html=channel.Channel(type=HTML),
            report_markdown=channel.Channel(type=Markdown),
            **variants,
        )
        super().__init__(spec=spec)
