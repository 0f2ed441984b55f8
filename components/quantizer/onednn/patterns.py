"""Finding the fp32 chains that one oneDNN int8 kernel can run.

A chain starts at a contraction with a constant filter and absorbs, when each step is
the sole reader of the previous one::

    [Pad] -> Conv2D | DepthwiseConv2dNative -> [BiasAdd] -> [AddV2(summand)] -> [Relu|Relu6]
    MatMul -> [BiasAdd] -> [Relu | Relu6]

The residual add (Sum) is Conv2D only: stock TF 2.16's `_FusedQuantizedConv2D` fuses
`BiasAdd, Sum, Relu, Requantize` and nothing else with a Sum. A Sum without an activation
(MobileNetV2's linear bottlenecks) only fuses when the rewrite can carry its signed
output as an offset quint8 tensor (see rewrite.py); the planner decides that.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from components.quantizer.onednn.graph_edit import GraphIndex, get_attr, node_name, tensor_key

if TYPE_CHECKING:
    import tensorflow as tf

ACTIVATIONS = ("Relu", "Relu6")


@dataclasses.dataclass
class ContractionChain:
    """One contraction and the ops fused into its int8 kernel."""

    head: str
    op: str
    input_tensor: str  # The float tensor the int8 kernel reads (before an absorbed Pad).
    weights: np.ndarray
    bias: np.ndarray
    pad: str | None = None
    explicit_paddings: list[int] | None = None
    bias_node: str | None = None
    sum_node: str | None = None
    summand_tensor: str | None = None
    activation: str | None = None
    activation_node: str | None = None

    @property
    def members(self) -> list[str]:
        """The fp32 nodes this chain replaces, in data-flow order."""
        names = [self.pad, self.head, self.bias_node, self.sum_node, self.activation_node]
        return [n for n in names if n]

    @property
    def tail(self) -> str:
        """The node whose output the chain produces."""
        return self.members[-1]

    def without_sum(self) -> ContractionChain:
        """The chain cut before its residual add (the add and activation stay fp32)."""
        return dataclasses.replace(
            self, sum_node=None, summand_tensor=None, activation=None, activation_node=None
        )

    def calibration_tensors(self) -> list[str]:
        """Tensors whose ranges the rewrite may need, including the cut-before-sum tail."""
        tensors = [tensor_key(self.input_tensor)]
        tensors += [f"{name}:0" for name in self.members if name != self.pad]
        if self.summand_tensor:
            tensors.append(tensor_key(self.summand_tensor))
        return tensors


@dataclasses.dataclass(frozen=True)
class FloatContraction:
    """A contraction left in fp32, and why."""

    name: str
    op: str
    reason: str


def find_chains(
    graph_def: tf.compat.v1.GraphDef, protected: set[str]
) -> tuple[list[ContractionChain], list[FloatContraction]]:
    """The int8-able chains of a canonical graph, and the contractions that stay fp32."""
    index = GraphIndex(graph_def)
    claimed: set[str] = set()
    chains: list[ContractionChain] = []
    left_float: list[FloatContraction] = []
    for node in index.topological_order():
        if node.op not in ("Conv2D", "DepthwiseConv2dNative", "MatMul"):
            continue
        reason = _unsupported_reason(index, node)
        if reason:
            left_float.append(FloatContraction(node.name, node.op, reason))
            continue
        chain = _grow_chain(index, node, protected, claimed)
        claimed.update(chain.members)
        chains.append(chain)
    return chains, left_float


def _unsupported_reason(index: GraphIndex, node: tf.compat.v1.NodeDef) -> str | None:
    if get_attr(node, "T").type != 1:  # DT_FLOAT
        return "not float32"
    weights = index.const_value(node.input[1])
    if weights is None:
        return "filter is not a constant"
    if node.op == "MatMul":
        if get_attr(node, "transpose_a").b:
            return "transpose_a is not supported by QuantizedMatMul"
        return None
    if get_attr(node, "data_format").s not in (b"", b"NHWC"):
        return "only NHWC convolutions are quantized"
    strides = list(get_attr(node, "strides").list.i)
    if strides[0] != 1 or strides[3] != 1:
        return "strides over batch or channels"
    if node.op == "DepthwiseConv2dNative" and weights.shape[3] != 1:
        return "depthwise channel multiplier above 1"
    if any(d != 1 for d in get_attr(node, "dilations").list.i):
        return "dilated convolutions are not rewritten (untested with the int8 kernels)"
    return None


def _grow_chain(
    index: GraphIndex, node: tf.compat.v1.NodeDef, protected: set[str], claimed: set[str]
) -> ContractionChain:
    weights = index.const_value(node.input[1])
    assert weights is not None
    if node.op == "MatMul":
        channels = weights.shape[0] if get_attr(node, "transpose_b").b else weights.shape[1]
    elif node.op == "Conv2D":
        channels = weights.shape[3]
    else:
        channels = weights.shape[2] * weights.shape[3]
    chain = ContractionChain(
        head=node.name,
        op=node.op,
        input_tensor=node.input[0],
        weights=weights,
        bias=np.zeros(channels, np.float32),
    )
    if node.op != "MatMul":
        _absorb_pad(index, node, chain, protected, claimed)

    def next_step(current: str) -> tf.compat.v1.NodeDef | None:
        if current in protected:
            return None  # Its fp32 value is an output: it must stay visible.
        consumer = index.sole_consumer(current)
        if consumer is None or consumer.name in claimed:
            return None
        return consumer

    current = node.name
    consumer = next_step(current)
    if consumer is not None and consumer.op == "BiasAdd":
        bias = index.const_value(consumer.input[1])
        if tensor_key(consumer.input[0]) == f"{current}:0" and bias is not None:
            chain.bias, chain.bias_node = bias.astype(np.float32), consumer.name
            current = consumer.name
            consumer = next_step(current)
    if consumer is not None and consumer.op in ("AddV2", "Add") and node.op == "Conv2D":
        summand = _residual_summand(index, consumer, current)
        if summand is not None:
            chain.sum_node, chain.summand_tensor = consumer.name, summand
            after = next_step(consumer.name)
            if after is not None and after.op in ACTIVATIONS:
                chain.activation, chain.activation_node = after.op, after.name
            return chain
    if consumer is not None and consumer.op in ACTIVATIONS:
        chain.activation, chain.activation_node = consumer.op, consumer.name
    return chain


def _absorb_pad(
    index: GraphIndex,
    node: tf.compat.v1.NodeDef,
    chain: ContractionChain,
    protected: set[str],
    claimed: set[str],
) -> None:
    """Turns `Pad -> conv(VALID)` into a conv with EXPLICIT padding when the Pad is zero."""
    producer = index.producer(node.input[0])
    if (
        get_attr(node, "padding").s != b"VALID"
        or producer.op not in ("Pad", "PadV2")
        or producer.name in protected
        or producer.name in claimed
        or index.sole_consumer(producer.name) is None
    ):
        return
    paddings = zero_padding_amounts(index, producer)
    if paddings is None or paddings[0].any() or paddings[3].any():
        return
    chain.pad = producer.name
    chain.input_tensor = producer.input[0]
    chain.explicit_paddings = [int(v) for v in paddings.reshape(-1)]


def zero_padding_amounts(index: GraphIndex, pad: tf.compat.v1.NodeDef) -> np.ndarray | None:
    """The [4, 2] paddings of a constant zero-valued 4-D Pad/PadV2, else None."""
    paddings = index.const_value(pad.input[1])
    if paddings is None or paddings.shape != (4, 2):
        return None
    if pad.op == "PadV2":
        value = index.const_value(pad.input[2])
        if value is None or np.any(value != 0):
            return None
    return paddings


def _residual_summand(index: GraphIndex, add: tf.compat.v1.NodeDef, current: str) -> str | None:
    """The other input of a residual AddV2 when it is a computed (non-constant) tensor."""
    inputs = [t for t in add.input if not t.startswith("^")]
    keys = [tensor_key(t) for t in inputs]
    if len(inputs) != 2 or keys.count(f"{current}:0") != 1:
        return None
    other = inputs[1] if keys[0] == f"{current}:0" else inputs[0]
    if index.const_value(other) is not None or node_name(other) == current:
        return None
    return other
