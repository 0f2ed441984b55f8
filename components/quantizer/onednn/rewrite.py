"""Rewriting fp32 chains into oneDNN int8 ops that stock TF 2.16 runs with VNNI/AMX kernels.

The quantization scheme is the one these kernels implement: symmetric, zero point 0.

- Activations: `quint8` (scale = max / 255) when never negative, else `qint8`
  (scale = max(|min|, |max|) / 127). Ranges come from calibration.
- Signed conv outputs whose readers all allow it travel as "offset quint8" instead:
  value + offset, offset = -min, which is asymmetric quantization folded into the
  biases of producer and readers (see `_Rewriter.plan`).
- Conv weights: `qint8` per output channel (scale = max|w_c| / 127); MatMul weights
  per tensor (the quantized MatMul kernels take one range).
- Bias stays float32; oneDNN adds it in the float domain.

Activations stay int8 from one int8 op to the next. A `Dequantize` appears only where
an fp32 op reads an int8 tensor, and it takes the original node's name, so fp32
consumers and signature outputs keep their tensor names. A `QuantizeV2` appears only
where an int8 op reads an fp32 tensor; both are shared by all readers.

ReLU6 is fused as ReLU with the requantized range capped at 6: `quint8` saturates at
the top of its range, which is exactly the clip at 6.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from components.quantizer.onednn.calibration import TensorRange
from components.quantizer.onednn.graph_edit import (
    GraphIndex,
    NameAllocator,
    get_attr,
    make_const,
    make_node,
    node_name,
    tensor_key,
)
from components.quantizer.onednn.patterns import ContractionChain, zero_padding_amounts

if TYPE_CHECKING:
    import tensorflow as tf

# Ranges narrower than this would give infinite scales; the kernels divide by them.
_MIN_RANGE = 1e-10
RELU6_CAP = 6.0


@dataclasses.dataclass(frozen=True)
class QuantizedTensor:
    """An int8 tensor in the rewritten graph with the tensors holding its float range."""

    tensor: str
    min: str
    max: str
    dtype: str  # "quint8" | "qint8"
    offset: float = 0.0  # The int8 data encodes (real value + offset); see _Rewriter.plan.


@dataclasses.dataclass(frozen=True)
class QuantizedChain:
    """What one fp32 chain became, for the report."""

    head: str
    fp32_op: str
    int8_op: str
    int8_node: str
    fused_ops: tuple[str, ...]
    input_dtype: str
    output_dtype: str
    input_range: tuple[float, float]
    output_range: tuple[float, float] | None
    input_offset: float
    output_offset: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class KeptFloat:
    """A node the planner considered for int8 but left in fp32, and why."""

    name: str
    op: str
    reason: str


@dataclasses.dataclass
class RewriteResult:
    graph_def: tf.compat.v1.GraphDef
    chains: list[QuantizedChain]
    kept_float: list[KeptFloat]
    quantize_nodes: int
    dequantize_nodes: int
    ranges_used: dict[str, tuple[float, float]]  # calibrated (min, max) of int8 tensors


def rewrite_to_int8(
    graph_def: tf.compat.v1.GraphDef,
    chains: list[ContractionChain],
    ranges: dict[str, TensorRange],
    outputs: list[str],
    protected: set[str],
) -> RewriteResult:
    """Builds the int8 graph from a canonical fp32 graph, its chains and calibrated ranges."""
    rewriter = _Rewriter(graph_def, chains, ranges, outputs, protected)
    rewriter.plan()
    return rewriter.emit()


class _Rewriter:
    def __init__(
        self,
        graph_def: tf.compat.v1.GraphDef,
        chains: list[ContractionChain],
        ranges: dict[str, TensorRange],
        outputs: list[str],
        protected: set[str],
    ) -> None:
        self.graph_def = graph_def
        self.index = GraphIndex(graph_def)
        self.order = self.index.topological_order()
        self.chains = {c.head: c for c in chains}
        self.ranges = ranges
        self.outputs = outputs
        self.protected = protected
        self.names = NameAllocator(self.index.nodes)
        self.kept_float: list[KeptFloat] = []
        self.passthrough: set[str] = set()
        self.offsets: dict[str, float] = {}  # signed chain outputs carried as offset quint8
        # Filled by emit():
        self.nodes: list[tf.compat.v1.NodeDef] = []
        self.int8: dict[str, QuantizedTensor] = {}  # fp32 tensor key -> its int8 form
        self.fp32: dict[str, str] = {}  # fp32 tensor key -> tensor producing it now
        self.replaced_by: dict[str, str] = {}  # removed node -> node standing in for it
        self.report: list[QuantizedChain] = []
        self.ranges_used: dict[str, tuple[float, float]] = {}
        self.quantize_nodes = 0
        self.dequantize_nodes = 0

    # -- planning -------------------------------------------------------------

    def plan(self) -> None:
        """Decides, in data-flow order, which chains keep their Sum and which tensors are int8.

        A tensor's int8 dtype must be known before its readers are planned: a Sum fusion
        needs a `quint8` summand, and a QuantizedMatMul needs a `quint8` input.

        A chain without activation has a signed output. When every reader of it is an
        int8 op that can absorb a constant shift in its bias (a conv without spatial
        padding, a MatMul, or a fused Sum), the output is carried as `quint8` encoding
        `value + offset` with offset = -calibrated min: the producer adds the offset to
        its bias (and a ReLU, a no-op on the shifted range, gets it a quint8 output), and
        each reader subtracts `offset * sum(weights)` (or `offset`, for a summand) from
        its bias. This is asymmetric quantization folded into biases; it keeps MobileNetV2's
        linear-bottleneck adds and ResNet50's projection shortcuts in int8 Sum fusions.
        """
        native: dict[str, str] = {}  # tensor key -> dtype of an int8 tensor made by int8 ops
        by_sum = {c.sum_node: c for c in self.chains.values() if c.sum_node}
        by_tail = {c.tail: c for c in self.chains.values()}
        members = {m for c in self.chains.values() for m in c.members}
        for node in self.order:
            chain = by_sum.get(node.name)
            if chain is not None:
                reason = self._sum_problem(chain, native)
                if reason is None and chain.activation is None:
                    # The add is the tail: its signed output must go out as offset quint8.
                    if self._signed_output_dtype(f"{chain.tail}:0") == "quint8":
                        native[f"{chain.tail}:0"] = "quint8"
                        continue
                    reason = (
                        "residual add without activation has a reader that cannot take an "
                        "offset quint8 input (the only int8 Sum fusion ends in ReLU)"
                    )
                if reason:
                    self.kept_float.append(KeptFloat(node.name, node.op, reason))
                    del by_tail[chain.tail]
                    chain = chain.without_sum()
                    self.chains[chain.head] = chain
                    by_tail[chain.tail] = chain
                    native[f"{chain.tail}:0"] = self._signed_output_dtype(f"{chain.tail}:0")
                continue
            chain = by_tail.get(node.name)
            if chain is not None:
                if chain.op == "MatMul" and self._predicted_dtype(chain.input_tensor, native) != (
                    "quint8"
                ):
                    self.kept_float.append(
                        KeptFloat(
                            chain.head,
                            chain.op,
                            "input can be negative; QuantizedMatMul "
                            "in TF 2.16 takes quint8 inputs only",
                        )
                    )
                    del self.chains[chain.head]
                    continue
                if chain.activation:
                    native[f"{chain.tail}:0"] = "quint8"
                elif chain.op != "MatMul":
                    native[f"{chain.tail}:0"] = self._signed_output_dtype(f"{chain.tail}:0")
                continue
            if node.name not in members and self._is_int8_passthrough(node, native):
                self.passthrough.add(node.name)
                native[f"{node.name}:0"] = native[tensor_key(node.input[0])]

    def _predicted_dtype(self, tensor: str, native: dict[str, str]) -> str:
        key = tensor_key(tensor)
        if key in native:
            return native[key]
        return "quint8" if self.ranges[key].non_negative else "qint8"

    def _signed_output_dtype(self, key: str) -> str:
        """Plans a no-activation chain output: offset quint8 when its readers allow, else qint8."""
        if self._offset_absorbable(key):
            self.offsets[key] = max(0.0, -self.ranges[key].min)
            return "quint8"
        return "qint8"

    def _offset_absorbable(self, key: str) -> bool:
        """Whether every reader of `key` can take it shifted by a constant (see plan())."""
        readers = self.index.data_consumers(key)
        if not readers or node_name(key) in self.protected:
            return False
        by_sum = {c.sum_node: c for c in self.chains.values() if c.sum_node}
        for reader, position in readers:
            chain = self.chains.get(reader)
            if chain is not None and position == 0 and tensor_key(chain.input_tensor) == key:
                if chain.summand_tensor and tensor_key(chain.summand_tensor) == key:
                    return False
                if chain.op != "MatMul" and not _without_spatial_padding(
                    self.index.nodes[reader], chain
                ):
                    return False  # Zero padding would pad with -offset in real terms.
                continue
            chain = by_sum.get(reader)
            if (
                chain is not None
                and tensor_key(chain.summand_tensor or "") == key
                and self._sum_static_problem(chain) is None
            ):
                continue
            return False
        return True

    def _sum_problem(self, chain: ContractionChain, native: dict[str, str]) -> str | None:
        """Why the residual add cannot be fused into the conv, or None when it can."""
        assert chain.summand_tensor and chain.sum_node
        summand = tensor_key(chain.summand_tensor)
        if self._predicted_dtype(summand, native) != "quint8":
            # TF 2.16 forwards the summand buffer as the u8 output and reads it back as
            # u8: a qint8 summand comes out wrong, so this add stays fp32.
            return "summand can be negative (qint8); the fused Sum needs a quint8 summand"
        return self._sum_static_problem(chain)

    def _sum_static_problem(self, chain: ContractionChain) -> str | None:
        """The checks of _sum_problem that do not depend on dtypes."""
        assert chain.summand_tensor and chain.sum_node
        summand = tensor_key(chain.summand_tensor)
        summand_shape = self.ranges[summand].shape
        output_shape = self.ranges[f"{chain.sum_node}:0"].shape
        if summand_shape is None or summand_shape != output_shape:
            return "summand shape differs from the conv output (broadcasting add)"
        if node_name(summand) in self.protected:
            return "summand is a graph output"
        if tensor_key(chain.input_tensor) == summand:
            return "summand is also the conv's input; it cannot be overwritten in place"
        # The kernel writes its output into the summand's buffer: every other reader of
        # the summand must have run before this conv, i.e. be one of its ancestors.
        ancestors = self.index.ancestors(chain.sum_node)
        for reader, _ in self.index.data_consumers(summand):
            if reader != chain.sum_node and reader not in ancestors:
                return f"summand is also read by {reader}, which may run later"
        return None

    def _is_int8_passthrough(self, node: tf.compat.v1.NodeDef, native: dict[str, str]) -> bool:
        """MaxPool and zero Pad work on int8 data directly when their input is int8."""
        if not node.input or native.get(tensor_key(node.input[0])) is None:
            return False
        if node.name in self.protected:
            return False
        if node.op == "MaxPool":
            return get_attr(node, "data_format").s in (b"", b"NHWC") and (
                native[tensor_key(node.input[0])] == "quint8"
            )
        if node.op in ("Pad", "PadV2"):
            return zero_padding_amounts(self.index, node) is not None
        return False

    # -- emission -------------------------------------------------------------

    def emit(self) -> RewriteResult:
        import tensorflow as tf

        by_tail = {c.tail: c for c in self.chains.values()}
        members = {m: c for c in self.chains.values() for m in c.members}
        for node in self.order:
            chain = members.get(node.name)
            if chain is not None:
                if node.name == chain.tail:
                    self._emit_chain(by_tail[node.name])
                continue
            if node.name in self.passthrough:
                self._emit_passthrough(node)
                continue
            copy = type(node)()
            copy.CopyFrom(node)
            del copy.input[:]
            copy.input.extend(self._remap_input(t) for t in node.input)
            self.nodes.append(copy)
        for output in self.outputs:
            self._fp32(output)  # Materialize outputs that ended up int8.
        graph_def = tf.compat.v1.GraphDef()
        graph_def.versions.CopyFrom(self.graph_def.versions)
        graph_def.library.CopyFrom(self.graph_def.library)
        graph_def.node.extend(self.nodes)
        return RewriteResult(
            graph_def=graph_def,
            chains=self.report,
            kept_float=self.kept_float,
            quantize_nodes=self.quantize_nodes,
            dequantize_nodes=self.dequantize_nodes,
            ranges_used=self.ranges_used,
        )

    def _remap_input(self, tensor: str) -> str:
        if tensor.startswith("^"):
            name = tensor[1:]
            return "^" + self.replaced_by.get(name, name)
        return self._fp32(tensor)

    def _fp32(self, tensor: str) -> str:
        """The name under which an original fp32 tensor is available in the new graph."""
        key = tensor_key(tensor)
        if key in self.fp32:
            return self.fp32[key]
        if key not in self.int8:
            return tensor  # Produced by a copied node, under its original name.
        source = self.int8[key]
        # The fp32 value takes the original node's name (int8 producers are single-output).
        name = node_name(key)
        dequantize = name if not source.offset else self.names.fresh(f"{name}/dequantize")
        self.nodes.append(
            make_node(
                dequantize,
                "Dequantize",
                [source.tensor, source.min, source.max],
                T=_dtype(source.dtype),
                mode="SCALED",
                dtype=_dtype("float32"),
            )
        )
        if source.offset:  # Planning avoids this; kept so any fp32 reader stays correct.
            shift = self.names.fresh(f"{name}/offset")
            self.nodes += [
                make_const(shift, np.float32(source.offset)),
                make_node(name, "Sub", [dequantize, shift], T=_dtype("float32")),
            ]
        self.dequantize_nodes += 1
        self.fp32[key] = name
        return name

    def _int8(self, tensor: str) -> QuantizedTensor:
        """The int8 form of an fp32 tensor, adding a QuantizeV2 at its calibrated range."""
        key = tensor_key(tensor)
        if key in self.int8:
            return self.int8[key]
        value_range = self.ranges[key]
        unsigned = value_range.non_negative
        low = 0.0 if unsigned else -max(value_range.magnitude, _MIN_RANGE)
        high = max(value_range.max if unsigned else value_range.magnitude, _MIN_RANGE)
        name = self.names.fresh(f"{node_name(key)}/quantize")
        low_name = self.names.fresh(f"{name}/min")
        high_name = self.names.fresh(f"{name}/max")
        # Pin the fp32 source first: later fp32 readers must not get a Dequantize of it.
        self.fp32[key] = self._fp32(key)
        self.nodes += [
            make_const(low_name, np.float32(low)),
            make_const(high_name, np.float32(high)),
            make_node(
                name,
                "QuantizeV2",
                [self.fp32[key], low_name, high_name],
                T=_dtype("quint8" if unsigned else "qint8"),
                mode="SCALED",
                round_mode="HALF_TO_EVEN",
                # The default 0.01 would coarsen tensors whose whole range is tiny.
                ensure_minimum_range=_MIN_RANGE,
            ),
        ]
        self.quantize_nodes += 1
        quantized = QuantizedTensor(
            f"{name}:0", f"{name}:1", f"{name}:2", "quint8" if unsigned else "qint8"
        )
        self.int8[key] = quantized
        return quantized

    def _emit_chain(self, chain: ContractionChain) -> None:
        source = self._int8(chain.input_tensor)
        tail_range = self.ranges[f"{chain.tail}:0"]
        out_offset = self.offsets.get(f"{chain.tail}:0", 0.0)
        if chain.activation:
            cap = RELU6_CAP if chain.activation == "Relu6" else np.inf
            out_dtype = "quint8"
            out_low, out_high = 0.0, max(min(tail_range.max, cap), _MIN_RANGE)
        elif f"{chain.tail}:0" in self.offsets:
            out_dtype = "quint8"
            out_low, out_high = 0.0, max(tail_range.max + out_offset, _MIN_RANGE)
        else:
            out_dtype = "qint8"
            out_high = max(tail_range.magnitude, _MIN_RANGE)
            out_low = -out_high
        name = self.names.fresh(f"{chain.head}/int8")
        control = [t for m in chain.members for t in self.index.nodes[m].input if t.startswith("^")]
        consts: list[tf.compat.v1.NodeDef] = []

        def const(suffix: str, value: Any, dtype: Any = None) -> str:
            consts.append(make_const(self.names.fresh(f"{name}/{suffix}"), value, dtype))
            return consts[-1].name

        if chain.op == "MatMul":
            node, fused = self._matmul_node(
                chain, name, source, out_offset, out_low, out_high, const
            )
        else:
            node, fused = self._conv_node(
                chain, name, source, out_dtype, out_offset, out_low, out_high, const
            )
        node.input.extend(self._remap_input(t) for t in control)
        self.nodes += consts + [node]
        for member in chain.members:
            self.replaced_by[member] = node.name
        tail = f"{chain.tail}:0"
        if node.op == "QuantizedMatMulWithBiasAndDequantize":
            self.fp32[tail] = node.name  # Already fp32, under the tail's own name.
            output_range: tuple[float, float] | None = None
            out_dtype = "float32"
        else:
            self.int8[tail] = QuantizedTensor(
                f"{node.name}:0", f"{node.name}:1", f"{node.name}:2", out_dtype, out_offset
            )
            output_range = (float(out_low - out_offset), float(out_high - out_offset))
        input_range = self.ranges[tensor_key(chain.input_tensor)]
        for used in (chain.input_tensor, chain.summand_tensor, tail):
            if used:
                observed = self.ranges[tensor_key(used)]
                self.ranges_used[tensor_key(used)] = (observed.min, observed.max)
        self.report.append(
            QuantizedChain(
                head=chain.head,
                fp32_op=chain.op,
                int8_op=node.op,
                int8_node=node.name,
                fused_ops=tuple(fused),
                input_dtype=source.dtype,
                output_dtype=out_dtype,
                input_range=(input_range.min, input_range.max),
                output_range=output_range,
                input_offset=source.offset,
                output_offset=out_offset,
            )
        )

    def _conv_node(
        self,
        chain: ContractionChain,
        name: str,
        source: QuantizedTensor,
        out_dtype: str,
        out_offset: float,
        out_low: float,
        out_high: float,
        const: Any,
    ) -> tuple[tf.compat.v1.NodeDef, list[str]]:
        import tensorflow as tf

        original = self.index.nodes[chain.head]
        depthwise = chain.op == "DepthwiseConv2dNative"
        weights = chain.weights
        # Per output channel; a depthwise filter [h, w, in, multiplier] has in*multiplier.
        channel_shape = (1, 1, weights.shape[2], weights.shape[3]) if depthwise else (1, 1, 1, -1)
        magnitude = np.abs(weights).max(axis=(0, 1) if depthwise else (0, 1, 2))
        magnitude = np.maximum(magnitude.reshape(-1), _MIN_RANGE).astype(np.float32)
        scale = (magnitude / 127.0).reshape(channel_shape)
        quantized = np.clip(np.round(weights / scale), -127, 127).astype(np.int8)
        # What the kernel multiplies by, for exact offset corrections.
        effective = quantized.astype(np.float64) * scale
        per_channel_sum = (
            effective.sum(axis=(0, 1)).reshape(-1) if depthwise else (effective.sum(axis=(0, 1, 2)))
        )
        bias = chain.bias.astype(np.float64) + out_offset - source.offset * per_channel_sum

        fused = ["BiasAdd"]
        summand_dtype = out_dtype
        summand: QuantizedTensor | None = None
        if chain.sum_node:
            assert chain.summand_tensor
            summand = self._int8(chain.summand_tensor)
            summand_dtype = summand.dtype
            bias -= summand.offset
            fused.append("Sum")
        device = [
            source.tensor,
            const("filter", quantized, tf.qint8),
            const("bias", bias.astype(np.float32)),
        ]
        types = [_dtype(source.dtype), tf.qint8, tf.float32]
        host = [
            source.min,
            source.max,
            const("min_filter", -magnitude),
            const("max_filter", magnitude),
        ]
        if summand is not None:
            device.append(summand.tensor)
            types.append(_dtype(summand.dtype))
            host += [summand.min, summand.max]
        if chain.activation or out_offset or out_dtype == "quint8":
            # With an offset output, ReLU only clips below the calibrated minimum.
            fused.append("Relu")
        fused.append("Requantize")
        host += [
            const("min_output", np.float32(out_low)),
            const("max_output", np.float32(out_high)),
        ]
        types += [tf.float32] * len(host)
        attrs: dict[str, Any] = dict(
            Tinput=_dtype(source.dtype),
            Tfilter=tf.qint8,
            Tbias=tf.float32,
            Tsummand=_dtype(summand_dtype),
            out_type=_dtype(out_dtype),
            Tdevice_inputs=[],
            Tdevice_outputs=[],
            Thost_inputs=types,
            Thost_outputs=[_dtype(out_dtype), tf.float32, tf.float32],
            strides=list(get_attr(original, "strides").list.i),
            dilations=list(get_attr(original, "dilations").list.i) or [1, 1, 1, 1],
            data_format="NHWC",
            fused_ops=fused,
            is_filter_const=True,
            is_bias_const=True,
        )
        if chain.explicit_paddings is not None:
            attrs.update(padding="EXPLICIT", explicit_paddings=chain.explicit_paddings)
        else:
            attrs["padding"] = get_attr(original, "padding").s.decode()
            if attrs["padding"] == "EXPLICIT":
                attrs["explicit_paddings"] = list(get_attr(original, "explicit_paddings").list.i)
        op = "_FusedQuantizedDepthwiseConv2D" if depthwise else "_FusedQuantizedConv2D"
        return make_node(name, op, device + host, **attrs), fused

    def _matmul_node(
        self,
        chain: ContractionChain,
        name: str,
        source: QuantizedTensor,
        out_offset: float,
        out_low: float,
        out_high: float,
        const: Any,
    ) -> tuple[tf.compat.v1.NodeDef, list[str]]:
        import tensorflow as tf

        assert not out_offset, "MatMul outputs are never planned as offset tensors"
        original = self.index.nodes[chain.head]
        weights = chain.weights.T if get_attr(original, "transpose_b").b else chain.weights
        magnitude = np.float32(max(float(np.abs(weights).max()), _MIN_RANGE))
        quantized = np.clip(np.round(weights / (magnitude / 127.0)), -127, 127).astype(np.int8)
        effective = quantized.astype(np.float64) * (magnitude / 127.0)
        bias = chain.bias.astype(np.float64) - source.offset * effective.sum(axis=0)
        inputs = [
            source.tensor,
            const("weights", np.ascontiguousarray(quantized), tf.qint8),
            const("bias", bias.astype(np.float32)),
            source.min,
            source.max,
            const("min_weights", -magnitude),
            const("max_weights", magnitude),
            const("min_output", np.float32(out_low)),
            const("max_output", np.float32(out_high)),
        ]
        attrs: dict[str, Any] = dict(
            T1=tf.quint8, T2=tf.qint8, Tbias=tf.float32, input_quant_mode="SCALED"
        )
        if chain.activation:
            op, fused = (
                "QuantizedMatMulWithBiasAndReluAndRequantize",
                ["BiasAdd", "Relu", "Requantize"],
            )
            attrs["Toutput"] = tf.quint8
        else:
            # An fp32 result straight from the kernel: signed outputs have no int8 MatMul form.
            op, fused = "QuantizedMatMulWithBiasAndDequantize", ["BiasAdd", "Dequantize"]
            attrs["Toutput"] = tf.float32
            name = chain.tail
        return make_node(name, op, inputs, **attrs), fused

    def _emit_passthrough(self, node: tf.compat.v1.NodeDef) -> None:
        source = self.int8[tensor_key(node.input[0])]
        name = self.names.fresh(f"{node.name}/int8")
        control = [self._remap_input(t) for t in node.input if t.startswith("^")]
        if node.op == "MaxPool":
            new = make_node(
                name,
                "QuantizedMaxPool",
                [source.tensor, source.min, source.max],
                T=_dtype(source.dtype),
                ksize=list(get_attr(node, "ksize").list.i),
                strides=list(get_attr(node, "strides").list.i),
                padding=get_attr(node, "padding").s.decode(),
            )
            quantized = QuantizedTensor(f"{name}:0", f"{name}:1", f"{name}:2", source.dtype)
        else:  # Pad with zeros: zero is exactly representable (zero point 0).
            new = make_node(
                name,
                "Pad",
                [source.tensor, self._fp32(node.input[1])],
                T=_dtype(source.dtype),
                Tpaddings=_dtype(self.index.const_value(node.input[1]).dtype.name),
            )
            quantized = QuantizedTensor(f"{name}:0", source.min, source.max, source.dtype)
        new.input.extend(control)
        self.nodes.append(new)
        self.replaced_by[node.name] = name
        self.int8[f"{node.name}:0"] = quantized


def _dtype(name: str) -> tf.dtypes.DType:
    import tensorflow as tf

    return tf.dtypes.as_dtype(name)


def _without_spatial_padding(node: tf.compat.v1.NodeDef, chain: ContractionChain) -> bool:
    """Whether a conv never reads padding: a 1x1 kernel, VALID, or all-zero EXPLICIT pads."""
    if chain.pad is not None:
        return False
    if chain.weights.shape[0] == 1 and chain.weights.shape[1] == 1:
        return True
    padding = get_attr(node, "padding").s
    if padding == b"VALID":
        return True
    return padding == b"EXPLICIT" and not any(get_attr(node, "explicit_paddings").list.i)
