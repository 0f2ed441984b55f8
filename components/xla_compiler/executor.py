"""XlaCompiler executor: a JIT SavedModel or ahead-of-time machine code, failures recorded."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types.artifact import Artifact

from components.common.artifact_utils import single_artifact
from components.common.executor_output import records_user_errors
from components.common.graph_io import load_graph_def
from components.common.signature import GraphSignature
from components.common.variant_production import Produced, VariantJob, produce_variant
from components.runtimes import model_size_bytes
from components.runtimes.xla_aot import FORMAT_XLA_AOT
from components.runtimes.xla_jit import FORMAT_XLA_JIT
from components.xla_compiler.modes import MODES

SAVED_MODEL_DIRNAME = "saved_model"


def compile_variant(
    graph_def: Any,
    signature: GraphSignature,
    mode: str,
    output_dir: str,
    batch_size: int,
    target_cpu: str = "host",
) -> tuple[str, dict[str, Any]]:
    """Compiles one XLA variant into `output_dir`; returns (format, properties to record)."""
    if mode == "jit":
        from components.xla_compiler.jit import compile_jit_saved_model

        with _native_stderr_to_log():
            info = compile_jit_saved_model(
                graph_def, signature, os.path.join(output_dir, SAVED_MODEL_DIRNAME)
            )
        signature.save(output_dir)
        return FORMAT_XLA_JIT, {
            "compile_seconds": info.get("xla_compile_time_s") or 0.0,
            "export_seconds": info.get("export_time_s") or 0.0,
        }
    from components.xla_compiler.aot import compile_aot

    result = compile_aot(
        graph_def,
        signature,
        output_dir,
        batch_size=batch_size,
        target_cpu=target_cpu,
        # None: the shared runtime object cache ($INFERENCE_OPTIMIZER_XLA_RUNTIME_CACHE or
        # ~/.cache), so the XLA runtime is compiled once per machine, not per build.
        runtime_cache_dir=None,
    )
    return FORMAT_XLA_AOT, {
        "compile_seconds": result.compile_time_s,
        "target_cpu_features": result.target_features,
        "target_triple": result.target_triple,
        "target_cpu": result.target_cpu,
        "required_cpu_flags": list(result.required_cpu_flags),
        "object_size_bytes": result.object_size_bytes,
        "shared_library_size_bytes": result.shared_library_size_bytes,
        "shared_library_build_seconds": result.shared_library_build_time_s,
        "batch_size": batch_size,
    }


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """Routes C++ stderr (XLA's absl start-up lines) to the Python log for the block.

    XLA logs "XLA service ... initialized" through absl before TF's log level applies,
    straight to file descriptor 2, in the middle of the CLI's progress lines. The
    lines are kept, at INFO in the Python log, rather than thrown away.
    """
    import logging
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace").strip()
            if text:
                logging.getLogger(__name__).info("XLA native log:\n%s", text)


def compile_graph(
    graph_uri: str, calibration: list[Any] | None, output_uri: str, exec_properties: dict
) -> Produced:
    """The XlaCompiler's producer (common/variant_production.py runs it in a child)."""
    model_format, properties = compile_variant(
        load_graph_def(graph_uri),
        GraphSignature.load(graph_uri),
        exec_properties["mode"],
        output_uri,
        int(exec_properties["batch_size"]),
        exec_properties["target_cpu"],
    )
    return (
        model_format,
        model_size_bytes(output_uri, model_format),
        {"hardware_requirements": ["xla"], **properties},
    )


class Executor(base_executor.BaseExecutor):
    """Compiles the frozen graph with XLA; a graph XLA cannot compile becomes a failed variant."""

    @records_user_errors
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        output = single_artifact(output_dict["compiled_model"], "compiled_model")
        mode = exec_properties["mode"]
        job = VariantJob("XlaCompiler", mode, MODES[mode][0])
        produce_variant(job, input_dict, output, exec_properties, compile_graph)
