"""What an executor tells TFX besides its artifacts: execution properties and failure reasons.

TFX's portable launcher (BeamDagRunner, LocalDagRunner) publishes an `ExecutorOutput`
that `Do` returns: its `execution_properties` become custom properties of the MLMD
execution, and a non-zero `execution_result.code` marks the execution FAILED with
`result_message` stored (as `__execution_result__`), publishing no artifact. That is
how `inference-optimizer lineage show` can say why a run failed.

Kubeflow's entrypoint ignores `Do`'s return value, so there a user error is raised:
the pod fails and KFP shows the message in its log.

    class Executor(base_executor.BaseExecutor):
        @records_user_errors
        def Do(self, input_dict, output_dict, exec_properties):
            ...
            return executor_output(output_dict, exec_properties, {"source_model_form": "keras"})

The facts appear in MLMD as `fact:source_model_form`, and in `lineage show`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from components.common.errors import UserInputError

# ExecutionResult.code for a user error (any non-zero code fails the execution).
USER_ERROR_CODE = 3  # google.rpc.Code.INVALID_ARGUMENT
# TFX stores the ExecutionResult under this execution custom property, as JSON.
EXECUTION_RESULT_PROPERTY = "__execution_result__"
# Facts an execution records about itself (what it found, not what it was asked) carry
# this prefix, so that lineage keeps them apart from the parameters it compares.
EXECUTION_FACT_PREFIX = "fact:"
# The marker components.common.errors.find_user_error recognises in re-raised text.
_USER_ERROR_MARKER = "UserInputError: "


def executor_output(
    output_dict: Mapping[str, list[Any]],
    exec_properties: Mapping[str, Any],
    execution_properties: Mapping[str, Any],
) -> Any:  # -> execution_result_pb2.ExecutorOutput
    """The ExecutorOutput TFX would build itself, plus `execution_properties` as facts.

    Each fact is stored as `fact:<key>`. Values: str, int, float as they are; bool as
    int; others as JSON strings (as artifact_utils.set_custom_property stores them).
    """
    from tfx.orchestration.portable import outputs_utils
    from tfx.proto.orchestration import execution_result_pb2

    output = execution_result_pb2.ExecutorOutput()
    outputs_utils.populate_output_artifact(output, output_dict)
    outputs_utils.populate_exec_properties(output, exec_properties)
    for key, value in execution_properties.items():
        target = output.execution_properties[EXECUTION_FACT_PREFIX + key]
        if isinstance(value, bool):
            target.int_value = int(value)
        elif isinstance(value, int):
            target.int_value = value
        elif isinstance(value, float):
            target.double_value = value
        elif isinstance(value, str):
            target.string_value = value
        else:
            target.string_value = json.dumps(value, sort_keys=True)
    return output


def failed_executor_output(error: UserInputError) -> Any:
    """An ExecutorOutput that fails the execution and records the user-facing message."""
    from tfx.proto.orchestration import execution_result_pb2

    return execution_result_pb2.ExecutorOutput(
        execution_result=execution_result_pb2.ExecutionResult(
            code=USER_ERROR_CODE, result_message=f"{_USER_ERROR_MARKER}{error}"
        )
    )


def failure_reason(result_json: str) -> str | None:
    """The user-facing message of a FAILED execution's `__execution_result__`, if any."""
    try:
        message = json.loads(result_json).get("resultMessage", "")
    except (ValueError, AttributeError):
        return None
    if not message:
        return None
    return message.split(_USER_ERROR_MARKER, 1)[-1]


def records_user_errors(do: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps `Do`: a UserInputError fails the execution with its message recorded in MLMD.

    Under the portable launcher (it gives the executor an output URI) the error is
    returned as a failed ExecutorOutput; elsewhere (Kubeflow) it is raised.
    """

    @functools.wraps(do)
    def wrapper(
        self: Any,
        input_dict: dict[str, list[Any]],
        output_dict: dict[str, list[Any]],
        exec_properties: dict[str, Any],
    ) -> Any:
        try:
            return do(self, input_dict, output_dict, exec_properties)
        except UserInputError as error:
            context = getattr(self, "_context", None)
            if context is not None and getattr(context, "executor_output_uri", None):
                return failed_executor_output(error)
            raise

    return wrapper
