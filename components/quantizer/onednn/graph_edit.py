"""Small helpers to read and build GraphDef nodes without importing them into a tf.Graph.

Tensor names follow TensorFlow's conventions: `node:0` (a node's first output, also
written `node`), `node:2`, and `^node` for a control input.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

    NodeDef = tf.compat.v1.NodeDef
    GraphDef = tf.compat.v1.GraphDef


def node_name(tensor: str) -> str:
    """`node:1` -> `node`, `^node` -> `node`."""
    return tensor.lstrip("^").split(":")[0]


def tensor_key(tensor: str) -> str:
    """The canonical `node:index` spelling of a data input (`node` -> `node:0`)."""
    name, _, index = tensor.partition(":")
    return f"{name}:{index or 0}"


def is_control(tensor: str) -> bool:
    return tensor.startswith("^")


class GraphIndex:
    """Name lookups and consumer lists of a GraphDef, computed once."""

    def __init__(self, graph_def: GraphDef) -> None:
        self.graph_def = graph_def
        self.nodes: dict[str, NodeDef] = {n.name: n for n in graph_def.node}
        # tensor key -> [(consumer node name, input position)]
        self.consumers: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
        self.control_consumers: dict[str, list[str]] = collections.defaultdict(list)
        for node in graph_def.node:
            for position, tensor in enumerate(node.input):
                if is_control(tensor):
                    self.control_consumers[node_name(tensor)].append(node.name)
                else:
                    self.consumers[tensor_key(tensor)].append((node.name, position))

    def producer(self, tensor: str) -> NodeDef:
        return self.nodes[node_name(tensor)]

    def data_consumers(self, tensor: str) -> list[tuple[str, int]]:
        return self.consumers.get(tensor_key(tensor), [])

    def sole_consumer(self, tensor: str) -> NodeDef | None:
        """The only node reading `tensor`, or None when zero or several nodes read it."""
        consumers = self.data_consumers(tensor)
        if len(consumers) != 1 or self.control_consumers.get(node_name(tensor)):
            return None
        return self.nodes[consumers[0][0]]

    def const_value(self, tensor: str) -> np.ndarray | None:
        """The value of a tensor produced by a Const node, else None."""
        node = self.nodes.get(node_name(tensor))
        if node is None or node.op != "Const":
            return None
        return const_array(node)

    def ancestors(self, name: str) -> set[str]:
        """Every node that `name` depends on, through data and control inputs."""
        seen: set[str] = set()
        stack = [node_name(t) for t in self.nodes[name].input]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(node_name(t) for t in self.nodes[current].input)
        return seen

    def topological_order(self) -> list[NodeDef]:
        """Nodes ordered so that every node follows all of its inputs."""
        pending = {n.name: len({node_name(t) for t in n.input}) for n in self.graph_def.node}
        dependents: dict[str, list[str]] = collections.defaultdict(list)
        for node in self.graph_def.node:
            for source in {node_name(t) for t in node.input}:
                dependents[source].append(node.name)
        ready = collections.deque(name for name, count in pending.items() if count == 0)
        order: list[NodeDef] = []
        while ready:
            name = ready.popleft()
            order.append(self.nodes[name])
            for dependent in dependents[name]:
                pending[dependent] -= 1
                if pending[dependent] == 0:
                    ready.append(dependent)
        if len(order) != len(self.nodes):
            raise ValueError("The graph has a cycle; only acyclic inference graphs are supported.")
        return order


def get_attr(node: NodeDef, key: str) -> Any:
    """An attribute, or an empty AttrValue when unset.

    `node.attr[key]` would insert the missing key into the NodeDef, and an attribute
    the op does not declare makes the graph fail to import.
    """
    from tensorflow.core.framework import attr_value_pb2

    return node.attr[key] if key in node.attr else attr_value_pb2.AttrValue()


def const_array(node: NodeDef) -> np.ndarray:
    from tensorflow.python.framework import tensor_util

    return tensor_util.MakeNdarray(node.attr["value"].tensor)


def make_const(name: str, value: Any, dtype: tf.dtypes.DType | None = None) -> NodeDef:
    """A Const node holding `value` (dtype inferred unless given, e.g. tf.qint8)."""
    import tensorflow as tf
    from tensorflow.python.framework import tensor_util

    proto = tensor_util.make_tensor_proto(value, dtype=dtype)
    node = tf.compat.v1.NodeDef(name=name, op="Const")
    node.attr["value"].tensor.CopyFrom(proto)
    node.attr["dtype"].type = proto.dtype
    return node


def make_node(name: str, op: str, inputs: Sequence[str], **attrs: Any) -> NodeDef:
    """A node with attributes given as Python values (see `set_attr`)."""
    import tensorflow as tf

    node = tf.compat.v1.NodeDef(name=name, op=op)
    node.input.extend(inputs)
    for key, value in attrs.items():
        set_attr(node, key, value)
    return node


def set_attr(node: NodeDef, key: str, value: Any) -> None:
    """Sets an attribute from a DType, bool, int, float, str, or a list of one of those."""
    import tensorflow as tf

    attr = node.attr[key]
    if isinstance(value, tf.dtypes.DType):
        attr.type = value.as_datatype_enum
    elif isinstance(value, bool):
        attr.b = value
    elif isinstance(value, int):
        attr.i = value
    elif isinstance(value, float):
        attr.f = value
    elif isinstance(value, (str, bytes)):
        attr.s = value.encode() if isinstance(value, str) else value
    elif isinstance(value, (list, tuple)):
        attr.list.SetInParent()  # An empty list must still be present, not unset.
        if all(isinstance(v, tf.dtypes.DType) for v in value):
            attr.list.type.extend(v.as_datatype_enum for v in value)
        elif all(isinstance(v, (str, bytes)) for v in value):
            attr.list.s.extend(v.encode() if isinstance(v, str) else v for v in value)
        elif all(isinstance(v, int) for v in value):
            attr.list.i.extend(value)
        else:
            raise TypeError(f"Unsupported list attribute {key}={value!r}")
    else:
        raise TypeError(f"Unsupported attribute {key}={value!r}")


class NameAllocator:
    """Hands out node names that collide with no existing or previously given name."""

    def __init__(self, taken: Iterable[str]) -> None:
        self._taken = set(taken)

    def reserve(self, name: str) -> None:
        self._taken.add(name)

    def fresh(self, base: str) -> str:
        name, suffix = base, 1
        while name in self._taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        self._taken.add(name)
        return name
