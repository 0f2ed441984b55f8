"""Removing debug checks and training left-overs from a frozen inference graph.

What goes, and why it is safe for inference:

* `CheckNumerics`, `Identity`, `StopGradient`, `Snapshot`, `Print`, ... pass their
  input through unchanged; consumers are rewired to that input ("spliced").
* `IdentityN` passes input *i* through as output *i*; spliced the same way.
* `PlaceholderWithDefault` that is not a signature input always yields its default
  (e.g. a Keras 2 `keras_learning_phase` or a `keep_prob`), so it is spliced too;
  constant folding can then resolve the training branches it switched.
* `Assert`, `PrintV2` and `NoOp` have no data outputs; they only gate other nodes
  through control edges, which are dropped. So is the `If` "AssertGuard" that
  `tf.debugging.Assert` builds inside a `tf.function` (its branches hold only
  Assert/NoOp/Identity), when its output feeds nothing but control edges.
* Dropout left-overs that survive freezing as `x * 1`, `x / 1`, `x + 0`, `x - 0`
  (scalar constants, so no broadcasting changes the shape) are spliced.
* Control edges from stateless nodes are dropped: ordering a stateless computation
  cannot change any value. Edges from *stateful* nodes are kept, and when a removed
  node carried such an edge its consumers inherit it.

What stays: the signature's input and output nodes (never removed or renamed), and
pass-through nodes right after TF1 control-flow ops (Switch, Merge, Enter, ...),
which are the pivots of TF1 `cond` / `while_loop` frames.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from components.inference_optimizer.graph_rewriting import (
    const_value,
    node_map,
    parse_input,
    prune_function_library,
    replace_nodes,
)

if TYPE_CHECKING:
    import tensorflow as tf
    from tensorflow.core.framework import node_def_pb2

# Ops whose output 0 is their input 0, unchanged.
PASS_THROUGH_OPS = frozenset(
    {
        "Identity",
        "CheckNumerics",
        "CheckNumericsV2",
        "StopGradient",
        "PreventGradient",
        "Snapshot",
        "Print",
        "PlaceholderWithDefault",
        "DebugIdentity",
        "DebugIdentityV2",
    }
)
# Ops without data outputs: they matter only through the control edges they gate.
NO_OUTPUT_OPS = frozenset({"NoOp", "Assert", "PrintV2"})
_V1_CONTROL_FLOW_OPS = frozenset(
    {"Switch", "RefSwitch", "Merge", "RefMerge", "Enter", "RefEnter", "Exit", "RefExit"}
    | {"NextIteration", "RefNextIteration", "LoopCond"}
)
# What the branches of a `tf.debugging.Assert` guard (an `If` op) may contain.
_CHECK_ONLY_FUNCTION_OPS = NO_OUTPUT_OPS | PASS_THROUGH_OPS | {"Const"}
# Binary ops that are the identity when their constant operand is this scalar.
_NEUTRAL_RIGHT = {"Mul": 1, "RealDiv": 1, "Div": 1, "Add": 0, "AddV2": 0, "Sub": 0}
_NEUTRAL_LEFT = {"Mul": 1, "Add": 0, "AddV2": 0}


def strip_debug_and_training_nodes(
    graph_def: tf.compat.v1.GraphDef,
    protected: Collection[str],
    fold_trivial_arithmetic: bool = True,
) -> tuple[tf.compat.v1.GraphDef, dict[str, Any]]:
    """Returns the stripped graph and counts of what was spliced, removed and dropped.

    `protected` holds node names that must stay (the signature's inputs and outputs).
    """
    nodes = node_map(graph_def)
    forward: dict[str, Callable[[int], str]] = {}
    removed: set[str] = set()
    guards: list[str] = []
    functions = {f.signature.name: f for f in graph_def.library.function}
    for node in graph_def.node:
        if node.name in protected:
            continue
        data_inputs = _data_inputs(node)
        if node.op in NO_OUTPUT_OPS:
            removed.add(node.name)
        elif (
            node.op in PASS_THROUGH_OPS
            and data_inputs
            and not _after_v1_control_flow(data_inputs[0], nodes)
        ):
            forward[node.name] = functools.partial(_first_input, data_inputs)
        elif node.op == "IdentityN":
            forward[node.name] = data_inputs.__getitem__
        elif _is_assert_guard(node, functions):
            guards.append(node.name)
    if fold_trivial_arithmetic:
        # A second sweep, so that `x / keep_prob` sees the spliced default's constant.
        for node in graph_def.node:
            if node.name not in protected and node.name not in forward:
                kept = _neutral_operand(node, _data_inputs(node), nodes, forward)
                if kept is not None:
                    forward[node.name] = functools.partial(_first_input, [kept])
    for guard in guards:
        forwarders = _control_only_forwarders(guard, nodes, forward, protected)
        if forwarders is not None:
            removed.add(guard)
            removed.update(forwarders)
            for name in forwarders:
                del forward[name]

    stateful = _statefulness_checker()

    @functools.cache
    def control_sources(name: str) -> frozenset[str]:
        """Kept stateful nodes that a removed/spliced node waited for, directly or not."""
        sources: set[str] = set()
        for reference in nodes[name].input:
            source, _, _ = parse_input(reference)
            if source in forward or source in removed:
                sources |= control_sources(source)
            elif source in nodes and stateful(nodes[source].op):
                sources.add(source)
        return frozenset(sources)

    def resolve(reference: str) -> tuple[str, set[str]]:
        """Follows spliced nodes back to a kept tensor; collects their control sources."""
        controls: set[str] = set()
        seen: set[str] = set()
        name, index, _ = parse_input(reference)
        while name in forward:
            if name in seen:
                raise ValueError(f"Cycle of pass-through nodes through {name!r}.")
            seen.add(name)
            controls |= control_sources(name)
            reference = forward[name](index)
            name, index, _ = parse_input(reference)
        return reference, controls

    kept_nodes: list[node_def_pb2.NodeDef] = []
    dropped_control_edges = 0
    gone = removed | set(forward)
    for node in graph_def.node:
        if node.name in gone:
            continue
        new_node = type(node)()
        new_node.CopyFrom(node)
        new_inputs: list[str] = []
        controls: set[str] = set()
        for reference in node.input:
            source, _, is_control = parse_input(reference)
            if not is_control:
                resolved, extra = resolve(reference)
                new_inputs.append(resolved)
                controls |= extra
            elif source in gone:
                controls |= control_sources(source)
            elif source in nodes and stateful(nodes[source].op):
                controls.add(source)
            else:
                dropped_control_edges += 1
        data_sources = {parse_input(i)[0] for i in new_inputs}
        del new_node.input[:]
        new_node.input.extend(new_inputs)
        new_node.input.extend(f"^{c}" for c in sorted(controls - data_sources - {node.name}))
        _drop_colocation_with(new_node, gone)
        kept_nodes.append(new_node)

    details = {
        "spliced": dict(collections.Counter(nodes[n].op for n in forward)),
        "removed": dict(collections.Counter(nodes[n].op for n in removed)),
        "control_edges_dropped": dropped_control_edges,
    }
    stripped = replace_nodes(graph_def, kept_nodes)
    prune_function_library(stripped)  # E.g. the branches of removed assert guards.
    return stripped, details


def _first_input(inputs: list[str], output_index: int) -> str:
    del output_index  # Pass-through ops have a single output.
    return inputs[0]


def _after_v1_control_flow(reference: str, nodes: dict[str, node_def_pb2.NodeDef]) -> bool:
    """Whether `reference` comes out of a TF1 control-flow op.

    Identities right after Switch/Merge/Enter/... act as the pivots of TF1 `cond` and
    `while_loop` frames; splicing them could break the frame structure, so they stay.
    """
    source = nodes.get(parse_input(reference)[0])
    return source is not None and source.op in _V1_CONTROL_FLOW_OPS


def _data_inputs(node: node_def_pb2.NodeDef) -> list[str]:
    return [i for i in node.input if not i.startswith("^")]


def _neutral_operand(
    node: node_def_pb2.NodeDef,
    data_inputs: list[str],
    nodes: dict[str, node_def_pb2.NodeDef],
    forward: dict[str, Callable[[int], str]],
) -> str | None:
    """For `x * 1`, `x / 1`, `x + 0`, `x - 0` with a scalar constant, the input `x`."""
    if len(data_inputs) != 2:
        return None

    def is_scalar(reference: str, value: int) -> bool:
        name, index, _ = parse_input(reference)
        while name in forward:  # See through spliced nodes, e.g. a keep_prob default.
            name, index, _ = parse_input(forward[name](index))
        array = const_value(nodes, f"{name}:{index}")
        return array is not None and array.shape == () and array == value

    left, right = data_inputs
    if node.op in _NEUTRAL_RIGHT and is_scalar(right, _NEUTRAL_RIGHT[node.op]):
        return left
    if node.op in _NEUTRAL_LEFT and is_scalar(left, _NEUTRAL_LEFT[node.op]):
        return right
    return None


def _is_assert_guard(node: node_def_pb2.NodeDef, functions: dict[str, Any]) -> bool:
    """Whether `node` is a TF2 `tf.debugging.Assert` guard: an If whose branches only check."""
    if node.op not in ("If", "StatelessIf"):
        return False
    branches = [node.attr[key].func.name for key in ("then_branch", "else_branch")]
    return all(
        branch in functions
        and all(n.op in _CHECK_ONLY_FUNCTION_OPS for n in functions[branch].node_def)
        for branch in branches
    )


def _control_only_forwarders(
    guard: str,
    nodes: dict[str, node_def_pb2.NodeDef],
    forward: dict[str, Callable[[int], str]],
    protected: Collection[str],
) -> set[str] | None:
    """Pass-through nodes carrying `guard`'s output, if that output only feeds control edges.

    None when some real computation reads the guard's output as data (then it stays).
    """
    data_consumers = collections.defaultdict(list)
    for node in nodes.values():
        for source in {parse_input(i)[0] for i in _data_inputs(node)}:
            data_consumers[source].append(node.name)
    forwarders: set[str] = set()
    pending = [guard]
    while pending:
        for consumer in data_consumers[pending.pop()]:
            if consumer not in forward or consumer in protected:
                return None
            if consumer not in forwarders:
                forwarders.add(consumer)
                pending.append(consumer)
    return forwarders


def _statefulness_checker() -> Callable[[str], bool]:
    from tensorflow.python.framework import op_def_registry

    @functools.cache
    def is_stateful(op: str) -> bool:
        op_def = op_def_registry.get(op)
        # An op this process does not know (a custom kernel) might have side effects.
        return op_def is None or op_def.is_stateful

    return is_stateful


def _drop_colocation_with(node: node_def_pb2.NodeDef, gone: set[str]) -> None:
    """Removes `_class: loc:@x` hints naming removed nodes (import would reject them)."""
    if "_class" not in node.attr:
        return
    kept = [
        value
        for value in node.attr["_class"].list.s
        if not (value.startswith(b"loc:@") and value[5:].decode() in gone)
    ]
    if kept:
        del node.attr["_class"].list.s[:]
        node.attr["_class"].list.s.extend(kept)
    else:
        del node.attr["_class"]
