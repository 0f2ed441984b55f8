"""Int8 TF graphs that run on oneDNN's VNNI/AMX kernels in stock TensorFlow 2.16.

    >>> result = quantize_onednn_int8(frozen.graph_def, frozen.signature, [train_images])
    >>> result.int8_op_counts
    {'_FusedQuantizedConv2D': 3, 'QuantizeV2': 2, ...}
    >>> write_onednn_int8(result, frozen.signature, "/out/onednn_int8")

The steps:

1. Canonicalize: Grappler constant folding, then batch norms folded into the conv and
   dense weights (`onednn/canonicalize.py`).
2. Find the chains one int8 kernel runs: `[Pad] -> Conv2D|DepthwiseConv2dNative ->
   BiasAdd -> [AddV2 ->] ReLU|ReLU6` and `MatMul -> BiasAdd -> [ReLU]`
   (`onednn/patterns.py`).
3. Calibrate: run the fp32 graph on real examples and record each tensor's range
   (`onednn/calibration.py`).
4. Rewrite them into `_FusedQuantizedConv2D`, `_FusedQuantizedDepthwiseConv2D` and
   `QuantizedMatMulWithBias*` with per-channel int8 weights; activations stay int8
   between int8 ops (`onednn/rewrite.py`).
5. Optionally run the result in a subprocess with `ONEDNN_VERBOSE=1` and record which
   oneDNN kernels and ISA really ran (`onednn/kernel_check.py`).

The graph needs TensorFlow's oneDNN path (on by default on x86; `TF_ENABLE_ONEDNN_OPTS=0`
leaves the QuantizedMatMul ops without a kernel). Output files::

    {output_dir}/
      graph.pb            # the int8 GraphDef, same input/output tensor names as the fp32 one
      signature.json      # unchanged from the fp32 graph
      quantization.json   # OneDnnInt8Result.info(): chains, ranges, kernels that ran
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from components.common.calibration import DEFAULT_NUM_CALIBRATION
from components.common.graph_io import save_graph_def
from components.common.signature import GraphSignature

if TYPE_CHECKING:
    import tensorflow as tf

    from components.quantizer.onednn.kernel_check import KernelReport
    from components.quantizer.onednn.rewrite import KeptFloat, QuantizedChain

QUANTIZATION_FILENAME = "quantization.json"
SCHEME = (
    "symmetric (zero point 0); activations quint8 when non-negative else qint8, ranges "
    "from calibration min/max; signed conv outputs read only by int8 convs/matmuls/sums "
    "carried as quint8 of (value - min) with the offset folded into biases; conv weights "
    "qint8 per output channel, matmul weights qint8 per tensor; float32 bias"
)
# Ops that are bookkeeping, not computation, in the "what stayed float" summary.
_STRUCTURAL_OPS = {"Const", "Placeholder", "Identity", "NoOp"}
_INT8_COMPUTE_PREFIXES = ("_FusedQuantized", "QuantizedMatMul", "QuantizedMaxPool")


@dataclasses.dataclass
class OneDnnInt8Result:
    """The int8 GraphDef and what was done to get it."""

    graph_def: tf.compat.v1.GraphDef
    chains: list[QuantizedChain]
    kept_float: list[KeptFloat]
    quantized_op_counts: dict[str, int]  # fp32 op type -> how many became int8
    float_op_counts: dict[str, int]  # compute ops still in fp32 in the new graph
    int8_op_counts: dict[str, int]  # int8 and (de)quantize op types in the new graph
    calibration_samples: int
    activation_ranges: dict[str, tuple[float, float]]  # tensor -> (min, max) used
    folded_affine_chains: int  # batch norms / scales folded into weights
    canonical_max_abs_diff: float  # fp32 canonical vs input graph on calibration data
    kernels: KernelReport | None  # None when the kernel check was skipped

    def info(self) -> dict[str, Any]:
        """Everything but the graph, as JSON-ready values (written to quantization.json)."""
        import tensorflow as tf

        return {
            "method": "onednn_int8",
            "tensorflow_version": tf.__version__,
            "scheme": SCHEME,
            "requires": "TensorFlow with oneDNN on x86 (TF_ENABLE_ONEDNN_OPTS not 0)",
            "calibration_samples": self.calibration_samples,
            "quantized_op_counts": self.quantized_op_counts,
            "float_op_counts": self.float_op_counts,
            "int8_op_counts": self.int8_op_counts,
            "folded_affine_chains": self.folded_affine_chains,
            "canonical_max_abs_diff": self.canonical_max_abs_diff,
            "chains": [c.to_json() for c in self.chains],
            "kept_float": [dataclasses.asdict(k) for k in self.kept_float],
            "activation_ranges": {k: list(v) for k, v in self.activation_ranges.items()},
            "kernels": self.kernels.to_json() if self.kernels else None,
        }


@dataclasses.dataclass
class PreparedGraph:
    """The canonical fp32 graph, its int8 chains and their calibrated ranges: everything
    `build_onednn_int8` needs to rewrite any subset of the chains (the accuracy-aware
    search rewrites many subsets of one calibration)."""

    original: tf.compat.v1.GraphDef
    canonical: Any  # onednn.canonicalize.Canonical
    signature: GraphSignature
    chains: list[Any]  # onednn.patterns.ContractionChain, in graph order
    left_float: list[Any]  # What find_chains could not quantize, with why
    ranges: dict[str, Any]
    samples: list[np.ndarray]
    calibration_samples: int
    canonical_max_abs_diff: float
    protected: set[str]


def prepare_onednn_int8(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    calibration_inputs: np.ndarray | Sequence[np.ndarray],
    num_calibration: int = DEFAULT_NUM_CALIBRATION,
    *,
    batch_size: int = 16,
) -> PreparedGraph:
    """Steps 1-3 of the module doc: canonicalize, find the chains, calibrate."""
    from components.common.calibration import check_calibration_inputs
    from components.quantizer.onednn.calibration import collect_ranges
    from components.quantizer.onednn.canonicalize import canonicalize
    from components.quantizer.onednn.patterns import find_chains

    samples = check_calibration_inputs(
        signature, calibration_inputs, num_calibration, "onednn_int8"
    )
    input_names = [t.op_name for t in signature.inputs]
    protected = set(input_names) | set(signature.output_op_names)
    canonical = canonicalize(graph_def, protected, fetches=signature.output_op_names)
    chains, left_float = find_chains(canonical.graph_def, protected)

    wanted = [t for chain in chains for t in chain.calibration_tensors()]
    calibration = collect_ranges(
        canonical.graph_def,
        signature.input_tensor_names,
        wanted,
        samples,
        output_tensors=signature.output_tensor_names,
        batch_size=batch_size,
    )
    canonical_diff = _max_abs_diff(graph_def, signature, samples, calibration.first_batch_outputs)
    return PreparedGraph(
        original=graph_def,
        canonical=canonical,
        signature=signature,
        chains=chains,
        left_float=left_float,
        ranges=calibration.ranges,
        samples=samples,
        calibration_samples=calibration.samples,
        canonical_max_abs_diff=canonical_diff,
        protected=protected,
    )


def build_onednn_int8(
    prepared: PreparedGraph, float_chains: Sequence[str] = (), *, check_kernels: bool = True
) -> OneDnnInt8Result:
    """Step 4 (and 5): the int8 graph with every chain but `float_chains` (their heads)."""
    import tensorflow as tf

    from components.quantizer.onednn.kernel_check import inspect_kernels
    from components.quantizer.onednn.rewrite import KeptFloat, rewrite_to_int8

    signature = prepared.signature
    left = set(float_chains)
    chains = [c for c in prepared.chains if c.head not in left]
    rewritten = rewrite_to_int8(
        prepared.canonical.graph_def,
        chains,
        prepared.ranges,
        signature.output_tensor_names,
        prepared.protected,
    )
    # The rewrite leaves the replaced fp32 weights behind, unreachable from the outputs:
    # on MobileNetV2 that was 14 MB of float32 constants in a 17.7 MB graph.pb.
    rewritten.graph_def = tf.compat.v1.graph_util.extract_sub_graph(
        rewritten.graph_def, [t.op_name for t in (*signature.inputs, *signature.outputs)]
    )
    kernels = None
    if check_kernels:
        kernels = inspect_kernels(rewritten.graph_def, signature, [s[:1] for s in prepared.samples])

    kept_float = [KeptFloat(f.name, f.op, f.reason) for f in prepared.left_float]
    kept_float += [
        KeptFloat(c.head, c.op, "left in float by the accuracy-aware search")
        for c in prepared.chains
        if c.head in left
    ]
    kept_float += rewritten.kept_float
    return OneDnnInt8Result(
        graph_def=rewritten.graph_def,
        chains=rewritten.chains,
        kept_float=kept_float,
        quantized_op_counts=dict(collections.Counter(c.fp32_op for c in rewritten.chains)),
        float_op_counts=_float_compute_ops(rewritten.graph_def),
        int8_op_counts=_int8_ops(rewritten.graph_def),
        calibration_samples=prepared.calibration_samples,
        activation_ranges=rewritten.ranges_used,
        folded_affine_chains=prepared.canonical.folded_affine_chains,
        canonical_max_abs_diff=prepared.canonical_max_abs_diff,
        kernels=kernels,
    )


def quantize_onednn_int8(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    calibration_inputs: np.ndarray | Sequence[np.ndarray],
    num_calibration: int = DEFAULT_NUM_CALIBRATION,
    *,
    batch_size: int = 16,
    check_kernels: bool = True,
) -> OneDnnInt8Result:
    """Quantizes a frozen fp32 graph's convolutions and matmuls to oneDNN int8 ops.

    `calibration_inputs` are real examples, one array per signature input (a bare array
    for a one-input graph; the first `num_calibration` are used). With `check_kernels`,
    the result is run once in a subprocess with ONEDNN_VERBOSE=1 to record which kernels
    and ISA were selected. Raises UserInputError for unusable calibration data.
    """
    prepared = prepare_onednn_int8(
        graph_def, signature, calibration_inputs, num_calibration, batch_size=batch_size
    )
    return build_onednn_int8(prepared, check_kernels=check_kernels)


def write_onednn_int8(
    result: OneDnnInt8Result, signature: GraphSignature, output_dir: str
) -> dict[str, str]:
    """Writes graph.pb, signature.json and quantization.json; returns their paths by role."""
    import tensorflow as tf

    graph_path = save_graph_def(result.graph_def, output_dir)
    signature_path = signature.save(output_dir)
    info_path = os.path.join(output_dir, QUANTIZATION_FILENAME)
    with tf.io.gfile.GFile(info_path, "w") as f:
        f.write(json.dumps(result.info(), indent=2) + "\n")
    return {"graph": graph_path, "signature": signature_path, "quantization": info_path}


def _max_abs_diff(
    original: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    samples: Sequence[np.ndarray],
    canonical_outputs: list[np.ndarray],
) -> float:
    """How far batch-norm folding moved the fp32 outputs (a guard against folding bugs)."""
    from components.quantizer.onednn.calibration import run_graph

    rows = len(canonical_outputs[0])
    feed = {t.tensor_name: s[:rows] for t, s in zip(signature.inputs, samples, strict=True)}
    before = run_graph(original, feed, signature.output_tensor_names)
    return float(max(np.max(np.abs(a - b)) for a, b in zip(before, canonical_outputs, strict=True)))


def _is_int8(node: tf.compat.v1.NodeDef) -> bool:
    """Int8 compute, (de)quantization, or a data-movement op (Pad) working on int8 data."""
    import tensorflow as tf

    from components.quantizer.onednn.graph_edit import get_attr

    quantized_types = {tf.quint8.as_datatype_enum, tf.qint8.as_datatype_enum}
    return (
        "uantize" in node.op
        or node.op.startswith(_INT8_COMPUTE_PREFIXES)
        or get_attr(node, "T").type in quantized_types
    )


def _float_compute_ops(graph_def: tf.compat.v1.GraphDef) -> dict[str, int]:
    counts = collections.Counter(
        n.op for n in graph_def.node if n.op not in _STRUCTURAL_OPS and not _is_int8(n)
    )
    return dict(counts.most_common())


def _int8_ops(graph_def: tf.compat.v1.GraphDef) -> dict[str, int]:
    counts = collections.Counter(n.op for n in graph_def.node if _is_int8(n))
    return dict(counts.most_common())
