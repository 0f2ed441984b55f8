"""The Benchmarker settings a scheduled run may change without a recompile.

On Kubeflow and Vertex these are pipeline parameters (pipelines/kubeflow/compiler.py:
`submit --param max_accuracy_drop=0.02`), so their values arrive only at run time. One
check serves the three places that see them: the component at pipeline-build time, the
`submit`/`schedule` commands before they connect, and the executor when the run starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.common.errors import UserInputError

OBJECTIVES = ("p50", "throughput")
# Name -> type, in the order `compile` lists them.
RUN_PARAMETERS: dict[str, type] = {
    "objective": str,
    "max_accuracy_drop": float,
    "max_p99_ms": float,
    "time_budget_s": float,
}


def check_run_parameters(values: Mapping[str, Any]) -> dict[str, Any]:
    """The run parameters among `values`, converted to their types; names outside
    RUN_PARAMETERS are left alone. Raises UserInputError naming every bad value."""
    checked, problems = run_parameter_problems(values)
    if problems:
        raise UserInputError("Invalid Benchmarker parameter(s): " + "; ".join(problems) + ".")
    return checked


def run_parameter_problems(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the run parameters among `values`, converted; what is wrong with them): the one
    set of range rules, which PipelineSettings also applies to its own fields."""
    problems: list[str] = []
    checked: dict[str, Any] = {}
    for name, kind in RUN_PARAMETERS.items():
        if name not in values or values[name] is None:
            continue
        try:
            checked[name] = kind(values[name])
        except (TypeError, ValueError):
            problems.append(f"{name} must be a {kind.__name__}, got {values[name]!r}")
    objective = checked.get("objective")
    if objective is not None and objective not in OBJECTIVES:
        problems.append(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    drop = checked.get("max_accuracy_drop")
    if drop is not None and not 0 <= drop <= 1:
        problems.append(f"max_accuracy_drop is a fraction (0.01 = 1 point), got {drop}")
    ceiling = checked.get("max_p99_ms")
    if ceiling is not None and ceiling < 0:
        problems.append(f"max_p99_ms cannot be negative (0: no ceiling), got {ceiling}")
    budget = checked.get("time_budget_s")
    if budget is not None and not budget > 0:
        problems.append(f"time_budget_s must be more than 0 seconds, got {budget}")
    return checked, problems
