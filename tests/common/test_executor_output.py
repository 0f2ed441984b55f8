"""Executors' extra output: execution properties, and user errors recorded as failures."""

from __future__ import annotations

import json

import pytest

from components.common.errors import UserInputError, find_user_error
from components.common.executor_output import (
    executor_output,
    failed_executor_output,
    failure_reason,
    records_user_errors,
)


class _Context:
    def __init__(self, executor_output_uri: str | None) -> None:
        self.executor_output_uri = executor_output_uri


class _Executor:
    def __init__(self, output_uri: str | None) -> None:
        self._context = _Context(output_uri)

    @records_user_errors
    def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 - TFX's name.
        raise UserInputError("Examples at '/x' lack the feature 'age'. Pass --feature-map.")


def test_a_user_error_under_the_portable_launcher_becomes_a_failed_result_with_its_message():
    from google.protobuf import json_format

    output = _Executor("/tmp/executor_output.pb").Do({}, {}, {})

    assert output.execution_result.code != 0
    stored = json_format.MessageToJson(output.execution_result)  # As TFX stores it in MLMD.
    assert failure_reason(stored) == "Examples at '/x' lack the feature 'age'. Pass --feature-map."
    relaunched = RuntimeError(
        f"Execution 4 failed with error message {output.execution_result.result_message}"
    )
    assert str(find_user_error(relaunched)).startswith("Examples at '/x' lack")


def test_a_user_error_elsewhere_is_raised_so_the_container_fails():
    with pytest.raises(UserInputError, match="lack the feature"):
        _Executor(None).Do({}, {}, {})


def test_execution_properties_are_typed_and_structures_become_json():
    output = executor_output(
        {}, {"signature_key": "serving_default"}, {"form": "keras", "n": 3, "x": [1]}
    )

    properties = output.execution_properties
    assert properties["signature_key"].string_value == "serving_default"
    assert properties["fact:form"].string_value == "keras"
    assert properties["fact:n"].int_value == 3
    assert json.loads(properties["fact:x"].string_value) == [1]


def test_failure_reason_ignores_results_without_a_message():
    assert failure_reason("{}") is None
    assert failure_reason("not json") is None
    assert failed_executor_output(UserInputError("m")).execution_result.result_message.endswith("m")
