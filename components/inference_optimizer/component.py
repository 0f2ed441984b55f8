"""InferenceOptimizer component: FrozenGraph -> OptimizedGraph (graph.pb + SavedModel)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.artifacts import FrozenGraph, OptimizedGraph
from components.inference_optimizer import executor
from components.inference_optimizer.modes import DEFAULT_MODE, MODES
from components.version import __version__


class InferenceOptimizerSpec(ComponentSpec):
    """InferenceOptimizer's inputs, outputs and parameters."""

    PARAMETERS = {
        # "" (the default transforms) or "bfloat16" (+ the bfloat16 rewrite); see modes.py.
        "mode": ExecutionParameter(type=str),
        "transforms": ExecutionParameter(type=str),  # JSON list, or null for the defaults.
        "transform_configs": ExecutionParameter(type=str),  # JSON {transform: {setting: v}}.
        "package_version": ExecutionParameter(type=str),
        # Caps the transform's children (common/memory_cap.py); unset: no cap.
        "memory_budget_bytes": ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {"frozen_graph": ChannelParameter(type=FrozenGraph)}
    OUTPUTS = {"optimized_graph": ChannelParameter(type=OptimizedGraph)}


class InferenceOptimizer(base_component.BaseComponent):
    """Strips, folds and fuses a frozen graph for inference.

    optimizer = InferenceOptimizer(frozen_graph=freezer.outputs["frozen_graph"])
    optimizer = InferenceOptimizer(..., transforms=["strip_debug_and_training",
                                                    "remove_unreachable", "fold_constants"])
    """

    SPEC_CLASS = InferenceOptimizerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        frozen_graph: channel.BaseChannel,
        transforms: Sequence[str] | None = None,
        transform_configs: dict[str, dict[str, Any]] | None = None,
        mode: str = DEFAULT_MODE,
        memory_budget_bytes: int | None = None,
    ) -> None:
        from components.inference_optimizer.optimizer import resolve_transform_names

        if mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
        if transforms is not None:
            resolve_transform_names(transforms)  # Refuse bad selections at build time.
        spec = InferenceOptimizerSpec(
            frozen_graph=frozen_graph,
            mode=mode,
            transforms=json.dumps(list(transforms) if transforms is not None else None),
            transform_configs=json.dumps(transform_configs or {}, sort_keys=True),
            package_version=__version__,
            memory_budget_bytes=memory_budget_bytes,
            optimized_graph=channel.Channel(type=OptimizedGraph),
        )
        super().__init__(spec=spec)
