"""Quantizer component: FrozenGraph (+ Examples for calibration) -> QuantizedModel."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.artifacts import FrozenGraph, QuantizedModel
from components.common.calibration import DEFAULT_NUM_CALIBRATION
from components.common.examples_io import AUTO_CALIBRATION_SPLIT
from components.common.feeds import FeedSettings
from components.common.int8_fallback import Int8SearchSettings
from components.quantizer import executor
from components.quantizer.modes import QuantizeSettings, get_mode
from components.version import __version__

IO_TYPES = ("float32", "int8")


class QuantizerSpec(ComponentSpec):
    """Quantizer's inputs, outputs and parameters."""

    PARAMETERS = {
        "mode": ExecutionParameter(type=str),
        "num_calibration": ExecutionParameter(type=int),
        "inference_io_type": ExecutionParameter(type=str),
        "batch_sizes": ExecutionParameter(type=str),  # JSON list; the first is the primary.
        # "auto": train when the Examples have it, else a hashed slice of eval_split.
        "calibration_split": ExecutionParameter(type=str),
        "eval_split": ExecutionParameter(type=str),
        "feed_settings": ExecutionParameter(type=str),  # JSON of feeds.FeedSettings.
        "package_version": ExecutionParameter(type=str),
        # Caps the transform's children (common/memory_cap.py); unset: no cap.
        "memory_budget_bytes": ExecutionParameter(type=int, optional=True),
        # JSON of int8_fallback.Int8SearchSettings: the accuracy-aware modes' search.
        "int8_search": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "frozen_graph": ChannelParameter(type=FrozenGraph),
        "examples": ChannelParameter(type=standard_artifacts.Examples, optional=True),
    }
    OUTPUTS = {"quantized_model": ChannelParameter(type=QuantizedModel)}


class Quantizer(base_component.BaseComponent):
    """Quantizes a frozen graph in one mode; use one instance per mode.

        Quantizer(frozen_graph=..., examples=..., mode="int8").with_id("Quantizer_int8")

    Modes: float16, dynamic_range, int8 (TFLite); weights_int8_graph, onednn_int8 (TF).
    Calibrating modes (int8, onednn_int8) read `num_calibration` examples from the
    calibration split (never the evaluation records), fed as `feed_settings` says.
    """

    SPEC_CLASS = QuantizerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        frozen_graph: channel.BaseChannel,
        mode: str,
        examples: channel.BaseChannel | None = None,
        num_calibration: int = DEFAULT_NUM_CALIBRATION,
        inference_io_type: str = "float32",
        batch_sizes: Sequence[int] = (1, 8, 32),
        calibration_split: str = AUTO_CALIBRATION_SPLIT,
        eval_split: str = "eval",
        feed_settings: FeedSettings | None = None,
        memory_budget_bytes: int | None = None,
        int8_search: Int8SearchSettings | None = None,
    ) -> None:
        quantize_mode = get_mode(mode)  # Refuse unknown modes at pipeline-build time.
        if quantize_mode.needs_calibration and examples is None:
            raise ValueError(f"mode {mode!r} calibrates on real examples: pass examples=...")
        if inference_io_type not in IO_TYPES:
            raise ValueError(f"inference_io_type must be one of {IO_TYPES}")
        QuantizeSettings(num_calibration, inference_io_type, tuple(batch_sizes))  # Validates.
        if quantize_mode.needs_held_out and int8_search is not None:
            # A calibration method the mode lacks is refused now, not in the run.
            int8_search.calibration_methods(
                quantize_mode.variant_name, quantize_mode.calibration_methods
            )
        spec = QuantizerSpec(
            frozen_graph=frozen_graph,
            examples=examples,
            mode=mode,
            num_calibration=num_calibration,
            inference_io_type=inference_io_type,
            batch_sizes=json.dumps(list(batch_sizes)),
            calibration_split=calibration_split,
            eval_split=eval_split,
            feed_settings=json.dumps((feed_settings or FeedSettings()).to_json(), sort_keys=True),
            package_version=__version__,
            memory_budget_bytes=memory_budget_bytes,
            int8_search=(
                json.dumps(int8_search.to_json(), sort_keys=True)
                if quantize_mode.needs_held_out and int8_search is not None
                else None
            ),
            quantized_model=channel.Channel(type=QuantizedModel),
        )
        super().__init__(spec=spec)
