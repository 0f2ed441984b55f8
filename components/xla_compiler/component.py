"""XlaCompiler component: FrozenGraph -> XlaCompiledModel (JIT SavedModel or AOT library)."""

from __future__ import annotations

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.artifacts import FrozenGraph, XlaCompiledModel
from components.version import __version__
from components.xla_compiler import executor
from components.xla_compiler.modes import MODES


class XlaCompilerSpec(ComponentSpec):
    """XlaCompiler's inputs, outputs and parameters."""

    PARAMETERS = {
        "mode": ExecutionParameter(type=str),
        "batch_size": ExecutionParameter(type=int),  # AOT code is built for one batch size.
        # AOT: "host" uses this machine's AVX-512; "generic" runs on any x86-64 (use it when
        # the Benchmarker runs on another node type than the compile, as on Kubeflow).
        "target_cpu": ExecutionParameter(type=str),
        "package_version": ExecutionParameter(type=str),
        # Caps the transform's children (common/memory_cap.py); unset: no cap.
        "memory_budget_bytes": ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {"frozen_graph": ChannelParameter(type=FrozenGraph)}
    OUTPUTS = {"compiled_model": ChannelParameter(type=XlaCompiledModel)}


class XlaCompiler(base_component.BaseComponent):
    """Compiles a frozen graph with XLA; use one instance per mode.

    XlaCompiler(frozen_graph=..., mode="aot", batch_size=1).with_id("XlaCompiler_aot")
    """

    SPEC_CLASS = XlaCompilerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        frozen_graph: channel.BaseChannel,
        mode: str,
        batch_size: int = 1,
        target_cpu: str = "host",
        memory_budget_bytes: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {tuple(MODES)}, got {mode!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        spec = XlaCompilerSpec(
            frozen_graph=frozen_graph,
            mode=mode,
            batch_size=batch_size,
            target_cpu=target_cpu,
            package_version=__version__,
            memory_budget_bytes=memory_budget_bytes,
            compiled_model=channel.Channel(type=XlaCompiledModel),
        )
        super().__init__(spec=spec)
