"""Running the pipeline locally on TFX's BeamDagRunner, with one progress line per component.

Besides the progress lines, the runner closes three gaps TFX 1.16's portable launcher
leaves when a run does not end normally:

- it stamps every execution it starts with this process's PID, host and start time
  (pipelines/execution_owner.py), so that an execution left RUNNING by a killed
  process can be recognised as abandoned;
- on Ctrl-C (KeyboardInterrupt is not an `Exception`, so TFX's launcher neither
  removes the half-written outputs nor ends the execution) it removes the outputs and
  marks the execution CANCELED with `reason=interrupted`, then raises RunInterrupted;
- a full disk (ENOSPC) fails the execution with a message that says so, recorded in
  MLMD like any executor's failure.

BeamDagRunner runs each node's DoFn in the main thread of this process, so Ctrl-C
arrives inside the component that is running (checked: the KeyboardInterrupt surfaced
as Beam's `RuntimeError: KeyboardInterrupt [while running 'Run[Benchmarker]']`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata
from tfx.orchestration.beam import beam_dag_runner
from tfx.orchestration.portable import launcher, outputs_utils, partial_run_utils
from tfx.orchestration.portable.mlmd import execution_lib

from pipelines.execution_owner import (
    CANCEL_REASON_PROPERTY,
    REASON_INTERRUPTED,
    owner_properties,
)
from pipelines.run_failures import (
    RunInterrupted,
    disk_full_message,
    find_disk_full,
    find_interrupt,
    interrupted_message,
)

METADATA_FILENAME = "metadata.sqlite"
PIPELINE_ROOT_DIRNAME = "pipeline_root"
# google.rpc.Code.RESOURCE_EXHAUSTED: the ExecutionResult code of a full disk.
DISK_FULL_CODE = 8


def metadata_path(output_dir: str) -> str:
    return os.path.join(output_dir, METADATA_FILENAME)


def sqlite_connection_config(output_dir: str) -> Any:
    return metadata.sqlite_metadata_connection_config(metadata_path(output_dir))


def record_owner(metadata_handle: Any, execution: Any) -> None:
    """Stamps `execution` (in MLMD and in place) with the process that runs it."""
    for key, value in owner_properties().items():
        if isinstance(value, int):
            execution.custom_properties[key].int_value = value
        else:
            execution.custom_properties[key].string_value = str(value)
    metadata_handle.store.put_executions([execution])


def mark_interrupted(connection_config: Any, execution_id: int) -> bool:
    """Marks a still-active execution CANCELED, reason=interrupted; False if it had ended."""
    with metadata.Metadata(connection_config) as handle:
        [execution] = handle.store.get_executions_by_id([execution_id])
        if not execution_lib.is_execution_active(execution):
            return False  # It completed (or failed) before the interrupt landed.
        execution.last_known_state = metadata_store_pb2.Execution.CANCELED
        execution.custom_properties[CANCEL_REASON_PROPERTY].string_value = REASON_INTERRUPTED
        handle.store.put_executions([execution])
    return True


class _OwnedExecutionLauncher(launcher.Launcher):
    """TFX's Launcher that remembers its execution and cleans up after Ctrl-C or ENOSPC."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.execution_id: int | None = None

    def _register_or_reuse_execution(self, metadata_handle, contexts, *args, **kwargs):
        execution = super()._register_or_reuse_execution(metadata_handle, contexts, *args, **kwargs)
        # Every later step (the cache lookup, the executor) happens after this: the one
        # point where the execution exists in MLMD and has not started its work.
        if execution_lib.is_execution_active(execution):
            record_owner(metadata_handle, execution)
            self.execution_id = execution.id
        return execution

    def _run_executor(self, execution_info):
        try:
            return super()._run_executor(execution_info)
        except KeyboardInterrupt:
            # TFX removes the output folders only for an Exception: nothing half-written
            # may stay where a later run (or a reader of the URI) could take it as done.
            outputs_utils.remove_output_dirs(execution_info.output_dict)
            raise
        except launcher._ExecutionFailedError:  # The executor's own recorded failure.
            raise
        except Exception as error:
            full = find_disk_full(error)
            if full is None:
                raise
            outputs = [a.uri for items in execution_info.output_dict.values() for a in items]
            if full.filename is None and outputs:
                # A bare write() names no file: name the output being written, for the
                # CLI's message too (it finds this same OSError behind Beam's wrapping).
                full.filename = outputs[0]
            message = disk_full_message(full)
            # The launcher publishes this ExecutorOutput's message as the FAILED
            # execution's `__execution_result__`, which `lineage show` prints.
            raise launcher._ExecutionFailedError(
                message, self._build_error_output(DISK_FULL_CODE, message)
            ) from error


class _ProgressNodeDoFn(beam_dag_runner.PipelineNodeAsDoFn):
    """Prints `[node] running` / `[node] done in 3.2s` around each component."""

    progress_stream: TextIO = sys.stderr
    # (node id, execution id or None) of the interrupted node, for run_pipeline's
    # message. A class attribute: Beam runs a pickled copy of each DoFn instance.
    interrupted: list[tuple[str, int | None]] = []

    def _run_node(self) -> None:
        stream = _ProgressNodeDoFn.progress_stream
        print(f"  {self._node_id:<28} running ...", file=stream, flush=True)
        started = time.monotonic()
        node_launcher = self._launcher()
        try:
            node_launcher.launch()
        except KeyboardInterrupt:
            cancelled = None
            with _sigint_ignored():  # A second Ctrl-C must not cut the bookkeeping short.
                if node_launcher.execution_id is not None and mark_interrupted(
                    self._mlmd_connection_config, node_launcher.execution_id
                ):
                    cancelled = node_launcher.execution_id
            elapsed = time.monotonic() - started
            print(
                f"  {self._node_id:<28} interrupted after {elapsed:.1f}s", file=stream, flush=True
            )
            _ProgressNodeDoFn.interrupted.append((self._node_id, cancelled))
            raise RunInterrupted(interrupted_message(self._node_id, cancelled)) from None
        except BaseException:
            elapsed = time.monotonic() - started
            print(f"  {self._node_id:<28} FAILED after {elapsed:.1f}s", file=stream, flush=True)
            raise
        elapsed = time.monotonic() - started
        print(f"  {self._node_id:<28} done in {elapsed:.1f}s", file=stream, flush=True)

    def _launcher(self) -> _OwnedExecutionLauncher:
        """What PipelineNodeAsDoFn._run_node builds (TFX 1.16), with our Launcher."""
        platform_config = self._extract_platform_config(self._deployment_config, self._node_id)
        if self._pipeline_node.execution_options.run.perform_snapshot:
            with metadata.Metadata(self._mlmd_connection_config) as mlmd_handle:
                partial_run_utils.snapshot(mlmd_handle, self._pipeline)
        return _OwnedExecutionLauncher(
            pipeline_node=self._pipeline_node,
            mlmd_connection=metadata.Metadata(self._mlmd_connection_config),
            pipeline_info=self._pipeline_info,
            pipeline_runtime_spec=self._pipeline_runtime_spec,
            executor_spec=self._executor_spec,
            platform_config=platform_config,
            custom_driver_spec=self._custom_driver_spec,
        )


class ProgressBeamDagRunner(beam_dag_runner.BeamDagRunner):
    """BeamDagRunner that reports each component's start and elapsed time."""

    _PIPELINE_NODE_DO_FN_CLS = _ProgressNodeDoFn


def run_pipeline(pipeline: Any, progress_stream: TextIO | None = None) -> None:
    """Runs a TFX pipeline in this process; raises if any component fails.

    Raises RunInterrupted after Ctrl-C, with what was recorded in MLMD in its message.
    """
    if progress_stream is not None:
        _ProgressNodeDoFn.progress_stream = progress_stream
    _ProgressNodeDoFn.interrupted.clear()
    try:
        ProgressBeamDagRunner().run(pipeline)
    except BaseException as error:
        if not _ProgressNodeDoFn.interrupted and find_interrupt(error) is None:
            raise
        # Ctrl-C inside a node (recorded above), or between nodes (Beam's own code).
        node_id, execution_id = (_ProgressNodeDoFn.interrupted or [(None, None)])[-1]
        # `from None`: Beam's wrapping adds nothing the user needs after Ctrl-C.
        raise RunInterrupted(interrupted_message(node_id, execution_id)) from None


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # Only the main thread may change signal handlers (and only it gets SIGINT).
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
