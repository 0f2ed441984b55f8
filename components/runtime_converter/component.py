"""RuntimeConverter component: FrozenGraph (+ Examples to calibrate) -> ConvertedModel."""

from __future__ import annotations

import json

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.artifacts import ConvertedModel, FrozenGraph
from components.common.calibration import DEFAULT_NUM_CALIBRATION
from components.common.examples_io import AUTO_CALIBRATION_SPLIT
from components.common.feeds import FeedSettings
from components.common.int8_fallback import Int8SearchSettings
from components.runtime_converter import executor
from components.runtime_converter.modes import ConvertSettings, get_mode
from components.version import __version__


class RuntimeConverterSpec(ComponentSpec):
    """RuntimeConverter's inputs, outputs and parameters."""

    PARAMETERS = {
        "mode": ExecutionParameter(type=str),
        "num_calibration": ExecutionParameter(type=int),
        # "auto": train when the Examples have it, else a hashed slice of eval_split.
        "calibration_split": ExecutionParameter(type=str),
        "eval_split": ExecutionParameter(type=str),
        "feed_settings": ExecutionParameter(type=str),  # JSON of feeds.FeedSettings.
        "timeout_s": ExecutionParameter(type=float),
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
    OUTPUTS = {"converted_model": ChannelParameter(type=ConvertedModel)}


class RuntimeConverter(base_component.BaseComponent):
    """Converts a frozen graph for another runtime in one mode; one instance per mode.

        RuntimeConverter(frozen_graph=..., examples=..., mode="openvino_int8")
            .with_id("RuntimeConverter_openvino_int8")

    Modes (components/runtime_converter/): openvino_fp32, openvino_bf16, openvino_int8
    (NNCF), onnx_fp32, onnx_int8 (ONNX Runtime static QDQ). Calibrating modes read
    `num_calibration` examples from the same calibration split as the Quantizer.
    """

    SPEC_CLASS = RuntimeConverterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        frozen_graph: channel.BaseChannel,
        mode: str,
        examples: channel.BaseChannel | None = None,
        num_calibration: int = DEFAULT_NUM_CALIBRATION,
        calibration_split: str = AUTO_CALIBRATION_SPLIT,
        eval_split: str = "eval",
        feed_settings: FeedSettings | None = None,
        timeout_s: float = ConvertSettings.timeout_s,
        memory_budget_bytes: int | None = None,
        int8_search: Int8SearchSettings | None = None,
    ) -> None:
        convert_mode = get_mode(mode)  # Refuse unknown modes at pipeline-build time.
        if convert_mode.needs_calibration and examples is None:
            raise ValueError(f"mode {mode!r} calibrates on real examples: pass examples=...")
        ConvertSettings(num_calibration, timeout_s)  # Validates.
        searching = convert_mode.needs_held_out and int8_search is not None
        if searching:
            # A calibration method the mode lacks is refused now, not in the run.
            int8_search.calibration_methods(convert_mode.name, convert_mode.calibration_methods)
        spec = RuntimeConverterSpec(
            frozen_graph=frozen_graph,
            examples=examples,
            mode=mode,
            num_calibration=num_calibration,
            calibration_split=calibration_split,
            eval_split=eval_split,
            feed_settings=json.dumps((feed_settings or FeedSettings()).to_json(), sort_keys=True),
            timeout_s=float(timeout_s),
            package_version=__version__,
            memory_budget_bytes=memory_budget_bytes,
            int8_search=(json.dumps(int8_search.to_json(), sort_keys=True) if searching else None),
            converted_model=channel.Channel(type=ConvertedModel),
        )
        super().__init__(spec=spec)
