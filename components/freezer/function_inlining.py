"""Inlining function calls that freezing left in a GraphDef, so one graph can be cut in two.

`convert_variables_to_constants_v2` inlines most calls through Grappler, but not all: a
TFX model's Transform layer is a TF1 function imported into TF2 (`__inference_pruned_*`,
with manual control dependencies), which Grappler specializes instead. Its lookup table
ops then sit inside a library function, behind a `StatefulPartitionedCall`, where the
preprocessing split (`serialized_split.py`) cannot see them. This module splices each
called function's body into the graph in place of the call:

  * the body's nodes are copied under the call's name (`call/node`);
  * the body's argument placeholders are replaced by the call's inputs;
  * readers of the call's outputs read the body's return tensors instead, and control
    dependencies on the call become dependencies on the body's returned nodes.

    >>> graph_def = inline_function_calls(frozen_graph_def)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

CALL_OPS = ("StatefulPartitionedCall", "PartitionedCall")
# Nested calls inside inlined bodies are inlined too, to this depth.
_MAX_ROUNDS = 8


def inline_function_calls(graph_def: tf.compat.v1.GraphDef) -> tf.compat.v1.GraphDef:
    """The graph with every call of a library function replaced by the function's body."""
    import tensorflow as tf

    result = tf.compat.v1.GraphDef()
    result.CopyFrom(graph_def)
    for _ in range(_MAX_ROUNDS):
        functions = {f.signature.name: f for f in result.library.function}
        calls = [n for n in result.node if n.op in CALL_OPS and n.attr["f"].func.name in functions]
        if not calls:
            break
        for call in calls:
            result = _inline_call(result, call.name, functions[call.attr["f"].func.name])
    used = _called_functions(result)
    kept = [f for f in result.library.function if f.signature.name in used]
    del result.library.function[:]
    result.library.function.extend(kept)
    return result


def _inline_call(
    graph_def: tf.compat.v1.GraphDef, call_name: str, function: object
) -> tf.compat.v1.GraphDef:
    import tensorflow as tf
    from tensorflow.python.framework import function_def_to_graph

    call = next(n for n in graph_def.node if n.name == call_name)
    body, flat_names = function_def_to_graph.function_def_to_graph_def(function)
    data_inputs = [i for i in call.input if not i.startswith("^")]
    control_inputs = [i for i in call.input if i.startswith("^")]
    arguments = {arg.name: data_inputs[i] for i, arg in enumerate(function.signature.input_arg)}
    prefix = f"{call_name}/"

    def outer_name(tensor: str) -> str:
        """A body tensor or control reference, as the outer graph now names it."""
        control = tensor.startswith("^")
        name = tensor[1:] if control else tensor
        node, _, index = name.partition(":")
        if node in arguments:
            source = arguments[node]
            return "^" + source.split(":")[0] if control else source
        renamed = prefix + node
        if control:
            return "^" + renamed
        return f"{renamed}:{index}" if index else renamed

    inlined = []
    for node in body.node:
        if node.name in arguments:
            continue
        copy = tf.compat.v1.NodeDef()
        copy.CopyFrom(node)
        copy.name = prefix + node.name
        del copy.input[:]
        copy.input.extend(outer_name(i) for i in node.input)
        if not node.input:
            copy.input.extend(control_inputs)  # The call's own ordering still holds.
        copy.device = call.device
        inlined.append(copy)

    returns = [
        outer_name(flat_names[function.ret[arg.name]]) for arg in function.signature.output_arg
    ]
    returned_nodes = [prefix + node for node in function.control_ret.values()]
    returned_nodes += [name.split(":")[0] for name in returns]

    def replace(tensor: str) -> list[str]:
        if tensor.startswith("^"):
            if tensor[1:] == call_name:
                return ["^" + name for name in dict.fromkeys(returned_nodes)]
            return [tensor]
        node, _, index = tensor.partition(":")
        if node == call_name:
            return [returns[int(index or 0)]]
        return [tensor]

    result = tf.compat.v1.GraphDef()
    result.versions.CopyFrom(graph_def.versions)
    result.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.name == call_name:
            continue
        copy = result.node.add()
        copy.CopyFrom(node)
        del copy.input[:]
        for tensor in node.input:
            copy.input.extend(replace(tensor))
    result.node.extend(inlined)
    return result


def _called_functions(graph_def: tf.compat.v1.GraphDef) -> set[str]:
    """Library functions still referenced by a node (directly or from another function)."""
    names: set[str] = set()
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes += list(function.node_def)
    for node in nodes:
        for value in node.attr.values():
            if value.HasField("func"):
                names.add(value.func.name)
            names.update(f.name for f in value.list.func)
    return names
