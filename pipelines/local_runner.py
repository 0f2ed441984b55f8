"""Running the pipeline locally on TFX's BeamDagRunner, with one progress line per component."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from tfx.orchestration.beam import beam_dag_runner

METADATA_FILENAME = "metadata.sqlite"
PIPELINE_ROOT_DIRNAME = "pipeline_root"


def metadata_path(output_dir: str) -> str:
    return os.path.join(output_dir, METADATA_FILENAME)


def sqlite_connection_config(output_dir: str) -> Any:
    from tfx.orchestration import metadata

    return metadata.sqlite_metadata_connection_config(metadata_path(output_dir))


class _ProgressNodeDoFn(beam_dag_runner.PipelineNodeAsDoFn):
    """Prints `[node] running` / `[node] done in 3.2s` around each component."""

    progress_stream: TextIO = sys.stderr

    def _run_node(self) -> None:
        stream = _ProgressNodeDoFn.progress_stream
        print(f"  {self._node_id:<28} running ...", file=stream, flush=True)
        started = time.monotonic()
        try:
            super()._run_node()
        except BaseException:
            elapsed = time.monotonic() - started
            print(f"  {self._node_id:<28} FAILED after {elapsed:.1f}s", file=stream, flush=True)
            raise
        elapsed = time.monotonic() - started
        print(f"  {self._node_id:<28} done in {elapsed:.1f}s", file=stream, flush=True)


class ProgressBeamDagRunner(beam_dag_runner.BeamDagRunner):
    """BeamDagRunner that reports each component's start and elapsed time."""

    _PIPELINE_NODE_DO_FN_CLS = _ProgressNodeDoFn


def run_pipeline(pipeline: Any, progress_stream: TextIO | None = None) -> None:
    """Runs a TFX pipeline in this process; raises if any component fails."""
    if progress_stream is not None:
        _ProgressNodeDoFn.progress_stream = progress_stream
    ProgressBeamDagRunner().run(pipeline)
