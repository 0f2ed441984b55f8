"""Small helpers for rewriting GraphDef protos: node maps, consumers, constants."""

from __future__ import annotations

import collections
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

import numpy as np

from components.common.signature import GraphSignature

if TYPE_CHECKING:
    import tensorflow as tf
    from tensorflow.core.framework import node_def_pb2


def parse_input(reference: str) -> tuple[str, int, bool]:
    """Splits a NodeDef input (`name`, `name:1` or `^name`) into (node, output, is_control)."""
    if reference.startswith("^"):
        return reference[1:], -1, True
    name, _, index = reference.partition(":")
    return name, int(index) if index else 0, False


def tensor_reference(node_name: str, output_index: int) -> str:
    """The NodeDef input string for output `output_index` of `node_name`."""
    return node_name if output_index == 0 else f"{node_name}:{output_index}"


def node_map(graph_def: tf.compat.v1.GraphDef) -> dict[str, node_def_pb2.NodeDef]:
    """Node name -> NodeDef (the protos themselves, so edits apply to the graph)."""
    return {node.name: node for node in graph_def.node}


def consumer_map(graph_def: tf.compat.v1.GraphDef) -> dict[str, list[str]]:
    """Node name -> names of nodes that read any of its outputs (data edges only)."""
    consumers: dict[str, list[str]] = collections.defaultdict(list)
    for node in graph_def.node:
        for reference in node.input:
            source, _, is_control = parse_input(reference)
            if not is_control:
                consumers[source].append(node.name)
    return consumers


def const_value(nodes: dict[str, node_def_pb2.NodeDef], reference: str) -> np.ndarray | None:
    """The value behind `reference` when it is a Const (through Identity), else None."""
    from tensorflow.python.framework import tensor_util

    name, index, _ = parse_input(reference)
    node = nodes.get(name)
    while node is not None and node.op == "Identity" and index == 0:
        name, index, _ = parse_input(node.input[0])
        node = nodes.get(name)
    if node is None or node.op != "Const" or index != 0:
        return None
    return tensor_util.MakeNdarray(node.attr["value"].tensor)


def make_const_node(name: str, value: np.ndarray) -> node_def_pb2.NodeDef:
    """A Const NodeDef holding `value` with its numpy dtype."""
    import tensorflow as tf
    from tensorflow.core.framework import node_def_pb2
    from tensorflow.python.framework import tensor_util

    node = node_def_pb2.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value))
    return node


def unique_name(base: str, taken: Iterable[str] | set[str]) -> str:
    """`base`, or `base_1`, `base_2`, ... whichever is not in `taken`."""
    taken = taken if isinstance(taken, set) else set(taken)
    if base not in taken:
        return base
    suffix = 1
    while f"{base}_{suffix}" in taken:
        suffix += 1
    return f"{base}_{suffix}"


def copy_graph_def(graph_def: tf.compat.v1.GraphDef) -> tf.compat.v1.GraphDef:
    """A deep copy, so transforms never edit their input."""
    import tensorflow as tf

    copy = tf.compat.v1.GraphDef()
    copy.CopyFrom(graph_def)
    return copy


def replace_nodes(
    graph_def: tf.compat.v1.GraphDef, nodes: Iterable[node_def_pb2.NodeDef]
) -> tf.compat.v1.GraphDef:
    """A GraphDef with `nodes`, keeping the original's versions and function library."""
    import tensorflow as tf

    result = tf.compat.v1.GraphDef()
    result.node.extend(nodes)
    result.versions.CopyFrom(graph_def.versions)
    result.library.CopyFrom(graph_def.library)
    return result


def protected_node_names(signature: GraphSignature) -> set[str]:
    """Nodes no transform may remove or rename: the signature's inputs and outputs."""
    return {t.op_name for t in signature.inputs} | {t.op_name for t in signature.outputs}


def remove_unreachable_nodes(
    graph_def: tf.compat.v1.GraphDef, signature: GraphSignature
) -> tf.compat.v1.GraphDef:
    """The subgraph the signature's outputs depend on, plus the signature's inputs."""
    from tensorflow.python.framework import graph_util_impl

    # Inputs are destinations too: an input no output reads must still be feedable.
    destinations = sorted(protected_node_names(signature))
    # The undecorated function: the public alias logs a TF1 deprecation warning.
    extract_sub_graph = getattr(
        graph_util_impl.extract_sub_graph, "__wrapped__", graph_util_impl.extract_sub_graph
    )
    pruned = extract_sub_graph(graph_def, destinations)
    prune_function_library(pruned)
    return pruned


def prune_function_library(graph_def: tf.compat.v1.GraphDef) -> None:
    """Deletes, in place, library functions that no node calls, directly or through others."""
    functions = {f.signature.name: f for f in graph_def.library.function}
    if not functions:
        return
    reachable: set[str] = set()
    pending = [name for node in graph_def.node for name in _called_functions(node, functions)]
    while pending:
        name = pending.pop()
        if name in reachable:
            continue
        reachable.add(name)
        for node in functions[name].node_def:
            pending.extend(_called_functions(node, functions))
    kept = [f for f in graph_def.library.function if f.signature.name in reachable]
    gradients = [g for g in graph_def.library.gradient if g.function_name in reachable]
    del graph_def.library.function[:]
    graph_def.library.function.extend(kept)
    del graph_def.library.gradient[:]
    graph_def.library.gradient.extend(gradients)


def _called_functions(node: node_def_pb2.NodeDef, functions: Collection[str]) -> list[str]:
    names = [node.op] if node.op in functions else []
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        names.extend(f.name for f in value.list.func)
    return [name for name in names if name in functions]
