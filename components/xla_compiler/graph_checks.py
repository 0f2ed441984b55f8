"""Checks that turn XLA's failure modes into errors a user can act on."""

from __future__ import annotations

import re

from components.common.errors import UserInputError
from components.common.signature import TensorDescription

_UNSUPPORTED_OP = re.compile(r"No registered '([^']+)' OpKernel for XLA_CPU_JIT")


def fixed_shape(tensor: TensorDescription, batch_size: int) -> tuple[int, ...]:
    """The shape of `tensor` with its batch (first) dimension set to `batch_size`.

    Raises UserInputError when another dimension is unknown, or when the graph fixes
    the batch dimension to another size: AOT code exists for one shape only.
    """
    shape = tuple(tensor.shape)
    if not shape:
        return ()
    unknown = [i for i, size in enumerate(shape[1:], start=1) if size is None or size < 0]
    if unknown:
        raise UserInputError(
            f"Input {tensor.name!r} ({tensor.tensor_name}) has shape {list(shape)}: "
            f"dimension(s) {unknown} are unknown, and XLA AOT compiles for one fixed "
            f"shape. Re-export the model with those dimensions fixed (e.g. a Keras Input "
            f"of a fixed size); only the batch (first) dimension may be unknown."
        )
    batch = shape[0]
    if batch is not None and batch >= 0 and batch != batch_size:
        raise UserInputError(
            f"Input {tensor.name!r} ({tensor.tensor_name}) has a fixed batch dimension of "
            f"{batch}, so it cannot be compiled for batch_size={batch_size}. Use "
            f"batch_size={batch}, or export the model with an unknown batch dimension."
        )
    return (batch_size, *(int(size) for size in shape[1:]))


def unsupported_ops(message: str) -> list[str]:
    """The op types XLA reported as uncompilable in an error message (sorted, unique)."""
    return sorted(set(_UNSUPPORTED_OP.findall(message)))


def unsupported_ops_error(ops: list[str], mode: str) -> UserInputError:
    """The error for a graph with ops that XLA's CPU backend has no kernel for."""
    return UserInputError(
        f"XLA cannot compile this graph for {mode}: it has no CPU kernel for the op(s) "
        f"{', '.join(ops)}. Drop the XLA variants for this model, or replace those ops "
        f"(string, lookup-table and Python ops are typical) before exporting."
    )
