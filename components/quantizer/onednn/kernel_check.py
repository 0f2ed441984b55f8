"""Checking which oneDNN kernels a graph really runs, from `ONEDNN_VERBOSE=1` output.

A GraphDef full of int8 ops proves nothing about speed: TF may still pick reference
kernels, and oneDNN picks an ISA (`avx512_core_vnni`, `avx512_core_amx`, or a slow
fallback) at run time. The check runs the graph in a process of its own with oneDNN's verbose
log on (it is read once, when oneDNN loads) and parses the primitives of a steady-state
call, after a warm-up call that also builds and caches the weight reorders.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from components.common.graph_io import save_graph_def
from components.common.signature import GraphSignature

if TYPE_CHECKING:
    import tensorflow as tf

_MARKER = "@@onednn_int8_steady_state_call@@"
_COMPUTE_KINDS = ("convolution", "inner_product", "matmul", "deconvolution")
_INT8_TYPES = ("u8", "s8")


def probe_steady_state_call(directory: str) -> None:
    """In the isolated child: two calls of the graph, the marker printed after each.

    oneDNN's verbose lines between the markers are the steady-state call's primitives.
    """
    from components.common.graph_io import graph_def_callable, load_graph_def

    run = graph_def_callable(load_graph_def(directory), GraphSignature.load(directory))
    with np.load(os.path.join(directory, "sample.npz"), allow_pickle=True) as data:
        sample = [data[f"arr_{i}"] for i in range(len(data.files))]
    run(*sample)
    print(_MARKER, flush=True)
    run(*sample)
    print(_MARKER, flush=True)


@dataclasses.dataclass(frozen=True)
class KernelReport:
    """oneDNN primitives of one steady-state call of a graph."""

    int8_kernels_selected: bool
    isa: tuple[str, ...]  # ISAs of the int8 compute primitives, e.g. ("avx512_core_vnni",)
    int8_compute: dict[str, int]  # "kind:implementation" -> count, int8 source data
    fp32_compute: dict[str, int]  # the same for f32 source data
    reorders: int  # quantize/dequantize and layout conversions in that call
    expected_int8_compute: int  # int8 conv/matmul nodes in the graph
    onednn_opts_env: str | None  # TF_ENABLE_ONEDNN_OPTS as the probe saw it
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_onednn_verbose(lines: list[str]) -> dict[str, Any]:
    """Counts compute primitives by source dtype, and reorders, in verbose `exec` lines."""
    int8: collections.Counter[str] = collections.Counter()
    fp32: collections.Counter[str] = collections.Counter()
    isas: set[str] = set()
    reorders = 0
    for line in lines:
        if not line.startswith("onednn_verbose") or ",exec," not in line:
            continue
        fields = line.split(",")
        at = fields.index("exec")
        if len(fields) < at + 6:
            continue
        kind, implementation, descriptors = fields[at + 2], fields[at + 3], fields[at + 5]
        if kind == "reorder":
            reorders += 1
            continue
        source = next((d for d in descriptors.split(" ") if d.startswith("src_")), "")
        source_type = source.split(":")[0][len("src_") :]
        key = f"{kind}:{implementation}"
        if kind in _COMPUTE_KINDS and source_type in _INT8_TYPES:
            int8[key] += 1
            isas.add(implementation.split(":")[-1])
        elif kind in _COMPUTE_KINDS and source_type == "f32":
            fp32[key] += 1
    return {
        "int8_compute": dict(int8.most_common()),
        "fp32_compute": dict(fp32.most_common()),
        "isa": tuple(sorted(isas)),
        "reorders": reorders,
    }


def inspect_kernels(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    sample: list[np.ndarray],
    timeout_s: float = 600.0,
) -> KernelReport:
    """Runs the graph twice in a child process with ONEDNN_VERBOSE=1; reports the second call.

    `sample` holds one array per signature input.
    """
    expected = sum(
        1
        for n in graph_def.node
        if n.op.startswith(("_FusedQuantized", "QuantizedMatMul", "QuantizedConv2D"))
        or n.op.startswith("QuantizedDepthwiseConv2D")
    )
    from components.common.isolation import run_isolated, scratch_directory

    opts = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    with scratch_directory("onednn_int8_probe_") as directory:
        save_graph_def(graph_def, directory)
        signature.save(directory)
        np.savez(os.path.join(directory, "sample.npz"), *sample)
        completed = run_isolated(
            "components.quantizer.onednn.kernel_check:probe_steady_state_call",
            {"directory": directory},
            directory,
            timeout_s=timeout_s,
            # oneDNN reads its verbose switch once, when it loads: a process of its own.
            env={"ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"},
            name="onednn_probe",
        )
    if completed.timed_out:
        return _failed(expected, opts, f"the probe took over {timeout_s:.0f} s")
    lines = completed.stdout.splitlines()
    markers = [i for i, line in enumerate(lines) if line.strip() == _MARKER]
    if not completed.ok or len(markers) != 2:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        tail = (
            f"{completed.error_type}: {completed.error_message}"
            if completed.error_type
            else last_line
        )
        error = f"the probe failed (exit {completed.returncode}): {tail}"
        if opts == "0":
            error += (
                " (TF_ENABLE_ONEDNN_OPTS=0 turns off the oneDNN graph rewrite that gives "
                "QuantizedMatMul* its kernel; unset it)"
            )
        return _failed(expected, opts, error)
    parsed = parse_onednn_verbose(lines[markers[0] + 1 : markers[1]])
    int8_count = sum(parsed["int8_compute"].values())
    return KernelReport(
        int8_kernels_selected=expected > 0 and int8_count >= expected,
        isa=parsed["isa"],
        int8_compute=parsed["int8_compute"],
        fp32_compute=parsed["fp32_compute"],
        reorders=parsed["reorders"],
        expected_int8_compute=expected,
        onednn_opts_env=opts,
    )


def _failed(expected: int, opts: str | None, error: str) -> KernelReport:
    return KernelReport(
        int8_kernels_selected=False,
        isa=(),
        int8_compute={},
        fp32_compute={},
        reorders=0,
        expected_int8_compute=expected,
        onednn_opts_env=opts,
        error=error,
    )
