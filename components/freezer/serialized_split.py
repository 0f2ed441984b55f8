"""Splitting a frozen serialized-Example signature into preprocessing and a model core.

A TFX Trainer's `serving_default` takes serialized tf.Example strings, parses them
(`ParseExampleV2`), runs the Transform graph (vocabulary lookups in hash tables,
scaling), then the Keras model. Most runtimes cannot run the first two parts: TFLite
has no ParseExample and no string tables, XLA compiles no strings, int8 calibration
needs dense tensors. So the Freezer cuts the frozen graph where they end:

  * **preprocessing**: every node that is, or leads to, an op on strings, lookup tables
    or Example parsing (`ParseExample*`, `Decode*`, `LookupTable*`, and any op with a
    string or resource input or output); then the cheap elementwise, shape and sparse
    ops that read only its results and constants (the scaling Transform emits, casts,
    concatenation, sparse-to-dense), so that the Transform's arithmetic stays with it;
  * **model core**: everything else the outputs need. Each tensor that crosses the cut
    becomes a core input (a placeholder with a batch dimension); the signature's outputs
    are the core's outputs. Control edges into the preprocessing part are dropped: they
    only order stateful lookups, which now run before the core.

Core inputs are named after the Example feature they come from (`age`, or `age_xf` when
transformed), else after the op that made them.

    >>> split = split_preprocessing(graph_def, signature, tables)   # None: nothing to split
    >>> split.core_graph_def, split.core_signature, split.preprocessing.signature
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from components.common.errors import UserInputError
from components.common.preprocessing import LookupTable, PreprocessingGraph
from components.common.signature import ENCODING_TF_EXAMPLE, GraphSignature, TensorDescription

if TYPE_CHECKING:
    import tensorflow as tf

PARSE_OPS = frozenset(
    {
        "ParseExample",
        "ParseExampleV2",
        "ParseSingleExample",
        "ParseSequenceExample",
        "ParseSequenceExampleV2",
        "ParseSingleSequenceExample",
    }
)
# Ops that belong to preprocessing whatever their dtypes (tables hold string keys even
# when a lookup's own inputs are ints, e.g. LookupTableSize).
_PREPROCESSING_PREFIXES = ("Decode", "LookupTable", "InitializeTable", "Parse", "StringTo")
# Elementwise ops: their output has the broadcast shape of their inputs. The scaling
# Transform emits, casts, and out-of-vocabulary handling (`where(ids != -1, ids, oov)`).
ELEMENTWISE_OPS = frozenset(
    {
        "Identity",
        "Cast",
        "Sub",
        "Mul",
        "Add",
        "AddV2",
        "RealDiv",
        "Div",
        "DivNoNan",
        "Maximum",
        "Minimum",
        "Neg",
        "Floor",
        "Round",
        "Select",
        "SelectV2",
        "Equal",
        "NotEqual",
        "Less",
        "LessEqual",
        "Greater",
        "GreaterEqual",
        "LogicalAnd",
        "LogicalOr",
        "LogicalNot",
    }
)
# Cheap ops that join preprocessing when every non-constant input comes from it.
FOLLOWER_OPS = ELEMENTWISE_OPS | {"Reshape", "ExpandDims", "Squeeze", "ConcatV2"}
# Ops that move or name data without computing anything a runtime could speed up.
_STRUCTURAL_OPS = frozenset({"Const", "Placeholder", "NoOp", "Identity", "IdentityN"})
_STRING_DTYPES = ("string", "resource", "variant")


@dataclasses.dataclass
class SplitGraph:
    """The two parts of a serialized-Example signature."""

    core_graph_def: tf.compat.v1.GraphDef
    core_signature: GraphSignature
    preprocessing: PreprocessingGraph

    def describe(self) -> dict[str, Any]:
        return {
            "core_inputs": [t.to_json() for t in self.core_signature.inputs],
            "preprocessing_inputs": [t.to_json() for t in self.preprocessing.signature.inputs],
            "preprocessing_nodes": len(self.preprocessing.graph_def.node),
            "core_nodes": len(self.core_graph_def.node),
            "tables": [t.describe() for t in self.preprocessing.tables],
        }


def needs_split(graph_def: tf.compat.v1.GraphDef, signature: GraphSignature) -> bool:
    """Whether the signature has a preprocessing part to split off.

    It does when an input takes strings (serialized Examples, raw text or encoded
    images) or the graph reads lookup tables. A model that only uses string ops inside,
    on dense inputs, is the model itself: the variants that cannot run them fail.
    """
    import tensorflow as tf

    if any(t.dtype == "string" for t in signature.inputs):
        return True
    resource = tf.resource.as_datatype_enum
    return any(n.op == "Placeholder" and n.attr["dtype"].type == resource for n in graph_def.node)


def tf_example_inputs(graph_def: tf.compat.v1.GraphDef, signature: GraphSignature) -> set[str]:
    """Names of the signature inputs that feed a ParseExample op: serialized tf.Examples."""
    graph = _import(graph_def)
    parsed: set[str] = set()
    for tensor in signature.inputs:
        if tensor.dtype != "string":
            continue
        reached = _consumers_closure(graph.get_tensor_by_name(tensor.tensor_name).op)
        if any(op.type in PARSE_OPS for op in reached):
            parsed.add(tensor.name)
    return parsed


def split_preprocessing(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    tables: Sequence[LookupTable] = (),
) -> SplitGraph:
    """Cuts a frozen graph into preprocessing and model core (see the module docstring).

    Raises UserInputError when the outputs are computed by preprocessing alone, or a
    tensor crossing the cut has no static rank (the core could not be described).
    """
    import tensorflow as tf

    graph = _import(graph_def)
    ops = graph.get_operations()
    constant = _constant_ops(ops)
    output_ops = {graph.get_tensor_by_name(t.tensor_name).op for t in signature.outputs}
    minimal, optional = _preprocessing_candidates(ops, constant)
    for tensor in signature.outputs:
        producer = graph.get_tensor_by_name(tensor.tensor_name).op
        if producer.name in minimal:
            raise UserInputError(
                f"The signature's output {tensor.name!r} is computed by the preprocessing part "
                f"alone (parsing, lookups and scaling), so there is no model core to optimize. "
                f"Pass --signature with a signature that runs the model."
            )
    needed = {op for op in _ancestors(output_ops) if op.name not in constant}
    preprocessing = _latest_minimum_cut(ops, minimal, optional, needed, constant, output_ops)
    cut: dict[str, Any] = {}  # tensor name -> tf.Tensor, in discovery order
    for op in ops:
        if op.name in preprocessing or op not in needed:
            continue
        for tensor in op.inputs:
            if tensor.op.name in preprocessing:
                cut.setdefault(tensor.name, tensor)
    if not cut:
        raise UserInputError(
            "The signature reads strings or lookup tables, but no tensor passes from that "
            "part to the outputs; the graph cannot be split. Pass --signature with a "
            "signature that takes dense tensors."
        )
    names = _core_input_names(list(cut.values()), graph, preprocessing)
    core_inputs = []
    shapes: dict[str, Any] = {}
    for tensor_name, tensor in cut.items():
        static = _static_shape(tensor, shapes)
        if static.rank is None or static.rank == 0:
            raise UserInputError(
                f"The tensor {tensor_name!r}, which the preprocessing part hands to the model, "
                f"has no batch dimension (shape {static}); the model core cannot be "
                f"described. Pass --signature with a signature that takes dense tensors."
            )
        shape = [None, *static.as_list()[1:]]
        core_inputs.append(
            TensorDescription(
                names[tensor_name], f"{names[tensor_name]}:0", tensor.dtype.name, tuple(shape)
            )
        )
    core_def = _core_graph_def(graph_def, preprocessing, cut, names, core_inputs, signature)
    by_name = dict(zip(cut, core_inputs, strict=True))
    ordered = sorted(cut, key=lambda t: by_name[t].name)
    core_signature = GraphSignature(
        signature_key=signature.signature_key,
        inputs=tuple(sorted(core_inputs, key=lambda t: t.name)),
        outputs=signature.outputs,
    )
    if not {n.op for n in core_def.node} - FOLLOWER_OPS - _STRUCTURAL_OPS:
        raise UserInputError(
            "The signature's outputs are computed by the preprocessing part alone (parsing, "
            "lookups and scaling), so there is no model core to optimize. Pass --signature "
            "with a signature that runs the model."
        )
    leftovers = sorted({n.op for n in core_def.node if _is_seed_node(n)})
    if leftovers:
        raise UserInputError(
            f"After the split the model core still holds preprocessing ops ({', '.join(leftovers)}"
            f"); the graph mixes parsing into the model. Pass --signature with a signature "
            f"that takes dense tensors."
        )
    tf_examples = tf_example_inputs(graph_def, signature)
    preprocessing_inputs = tuple(
        dataclasses.replace(t, encoding=ENCODING_TF_EXAMPLE if t.name in tf_examples else None)
        for t in signature.inputs
        if t.op_name in preprocessing
    )
    preprocessing_outputs = tuple(
        TensorDescription(by_name[t].name, t, by_name[t].dtype, by_name[t].shape) for t in ordered
    )
    preprocessing_def = tf.compat.v1.graph_util.extract_sub_graph(
        _without_foreign_control_inputs(graph_def, preprocessing),
        sorted({t.split(":")[0] for t in cut}),
    )
    return SplitGraph(
        core_graph_def=core_def,
        core_signature=core_signature,
        preprocessing=PreprocessingGraph(
            graph_def=preprocessing_def,
            signature=GraphSignature(
                signature_key=signature.signature_key,
                inputs=preprocessing_inputs,
                outputs=preprocessing_outputs,
            ),
            tables=list(tables),
        ),
    )


def _static_shape(tensor: Any, memo: dict[str, Any]) -> Any:
    """The tensor's static shape, re-derived where graph import lost it.

    An imported GraphDef's lookup-table placeholders carry no handle data, so TF's shape
    functions leave every `LookupTableFind` output, and what follows it, unknown. A
    lookup's values have its keys' shape; elementwise ops broadcast their inputs.
    """
    import tensorflow as tf

    if tensor.name in memo:
        return memo[tensor.name]
    shape = tensor.shape
    if shape.rank is None:
        op = tensor.op
        if op.type in ("LookupTableFindV2", "LookupTableFind"):
            shape = _static_shape(op.inputs[1], memo)
        elif op.type in ELEMENTWISE_OPS and op.inputs:
            shape = tf.TensorShape(None)
            inputs = [_static_shape(t, memo) for t in op.inputs]
            if all(s.rank is not None for s in inputs):
                shape = tf.TensorShape([])
                for other in inputs:
                    shape = tf.broadcast_static_shape(shape, other)
    memo[tensor.name] = shape
    return shape


def _import(graph_def: tf.compat.v1.GraphDef) -> tf.Graph:
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    return graph


def _is_seed(op: Any) -> bool:
    if op.type in PARSE_OPS or op.type.startswith(_PREPROCESSING_PREFIXES):
        return True
    return any(t.dtype.name in _STRING_DTYPES for t in (*op.inputs, *op.outputs))


def _is_seed_node(node: Any) -> bool:
    """`_is_seed` for a NodeDef (no dtype information: op types and dtype attrs only)."""
    if node.op in PARSE_OPS or node.op.startswith(_PREPROCESSING_PREFIXES):
        return True
    import tensorflow as tf

    string_types = {tf.string.as_datatype_enum, tf.resource.as_datatype_enum}
    return any(value.type in string_types for value in node.attr.values())


def _constant_ops(ops: Sequence[Any]) -> set[str]:
    """Ops that depend on no placeholder: constants and what is computed from them alone."""
    constant: set[str] = set()
    for op in ops:  # get_operations() is in topological order.
        if op.type == "Placeholder":
            continue
        if all(t.op.name in constant for t in op.inputs) and (op.inputs or op.type == "Const"):
            constant.add(op.name)
    return constant


def _preprocessing_candidates(ops: Sequence[Any], constant: set[str]) -> tuple[set[str], set[str]]:
    """(ops that must be preprocessing, ops that may be: followers reading only those)."""
    seeds = [op for op in ops if _is_seed(op)]
    minimal = {op.name for op in _ancestors(seeds)} - constant
    optional: set[str] = set()
    for op in ops:  # Topological order: followers of followers join in one pass.
        if op.name in minimal or op.name in constant or op.type not in FOLLOWER_OPS:
            continue
        variable = [t for t in op.inputs if t.op.name not in constant]
        if variable and all(t.op.name in minimal or t.op.name in optional for t in variable):
            optional.add(op.name)
    return minimal, optional


def _latest_minimum_cut(
    ops: Sequence[Any],
    minimal: set[str],
    optional: set[str],
    needed: set[Any],
    constant: set[str],
    output_ops: set[Any],
) -> set[str]:
    """The preprocessing ops: `minimal`, plus the followers that make the cut smallest.

    The model core should take as few tensors as possible (one concatenated feature
    vector rather than its thirty columns, one looked-up id rather than the id and the
    three things Keras computes from it). This is a minimum vertex cut on tensors,
    solved as a max-flow: every tensor costs 1 when it crosses, a follower may join
    preprocessing only with its inputs, and among minimum cuts the latest is taken.
    """
    infinite = 1 << 30
    capacity: dict[tuple[str, str], int] = collections.defaultdict(int)
    source, sink = "source", "sink"

    def op_node(name: str) -> str:
        return source if name in minimal else f"op:{name}"

    for op in ops:
        if op.name not in minimal and op.name not in optional:
            continue
        for tensor in op.outputs:
            consumers = [c for c in tensor.consumers() if c in needed]
            if not consumers:
                continue
            capacity[(op_node(op.name), f"in:{tensor.name}")] = infinite
            capacity[(f"in:{tensor.name}", f"out:{tensor.name}")] = 1
            for consumer in consumers:
                if consumer.name in optional:
                    capacity[(f"out:{tensor.name}", op_node(consumer.name))] = infinite
                elif consumer.name not in minimal:
                    capacity[(f"out:{tensor.name}", sink)] = infinite
        if op.name in optional:
            if op in output_ops:
                capacity[(op_node(op.name), sink)] = infinite
            for tensor in op.inputs:  # A follower joins only together with its inputs.
                if tensor.op.name in optional:
                    capacity[(op_node(op.name), op_node(tensor.op.name))] = infinite
    residual = _max_flow_residual(capacity, source, sink)
    reaches_sink = _reaching(residual, sink)
    return minimal | {name for name in optional if f"op:{name}" not in reaches_sink}


def _max_flow_residual(
    capacity: dict[tuple[str, str], int], source: str, sink: str
) -> dict[str, dict[str, int]]:
    """Edmonds-Karp; returns the residual capacities (graphs here have hundreds of nodes)."""
    residual: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for (tail, head), value in capacity.items():
        residual[tail][head] = residual[tail].get(head, 0) + value
        residual[head].setdefault(tail, 0)
    while True:
        parents = {source: source}
        queue = collections.deque([source])
        while queue and sink not in parents:
            node = queue.popleft()
            for head, value in residual[node].items():
                if value > 0 and head not in parents:
                    parents[head] = node
                    queue.append(head)
        if sink not in parents:
            return residual
        path = []
        node = sink
        while node != source:
            path.append((parents[node], node))
            node = parents[node]
        pushed = min(residual[tail][head] for tail, head in path)
        for tail, head in path:
            residual[tail][head] -= pushed
            residual[head][tail] += pushed


def _reaching(residual: dict[str, dict[str, int]], target: str) -> set[str]:
    """Nodes with a residual path to `target`."""
    incoming: dict[str, list[str]] = collections.defaultdict(list)
    for tail, heads in residual.items():
        for head, value in heads.items():
            if value > 0:
                incoming[head].append(tail)
    seen = {target}
    stack = [target]
    while stack:
        for tail in incoming[stack.pop()]:
            if tail not in seen:
                seen.add(tail)
                stack.append(tail)
    return seen


def _ancestors(ops: Iterable[Any]) -> set[Any]:
    """The ops and everything their data inputs come from."""
    seen: set[Any] = set()
    stack = list(ops)
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        stack.extend(t.op for t in op.inputs)
    return seen


def _consumers_closure(op: Any) -> set[Any]:
    seen: set[Any] = set()
    stack = [op]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        for output in current.outputs:
            stack.extend(output.consumers())
    return seen


def _core_input_names(tensors: Sequence[Any], graph: Any, part: set[str]) -> dict[str, str]:
    """Readable, unique names for the tensors crossing the cut."""
    features = _features_by_tensor(graph, part)
    taken = {op.name for op in graph.get_operations()}
    counts: collections.Counter[str] = collections.Counter()
    names: dict[str, str] = {}
    for tensor in tensors:
        sources = sorted(features.get(tensor.name, set()))
        if len(sources) == 1:
            base = sources[0] if tensor.op.type in PARSE_OPS else f"{sources[0]}_xf"
        elif 1 < len(sources) <= 3:
            base = "_".join(sources) + "_xf"
        elif sources:  # A concatenation of many scaled columns, say.
            base = f"{sources[0]}_plus_{len(sources) - 1}_more_xf"
        else:
            base = tensor.op.name.split("/")[-1] or "core_input"
        base = re.sub(r"[^A-Za-z0-9_.\-]", "_", base)
        if not re.match(r"[A-Za-z]", base):
            base = f"input_{base}"
        name = base
        while name in taken or name in names.values():
            counts[base] += 1
            name = f"{base}_{counts[base]}"
        names[tensor.name] = name
    return names


def _features_by_tensor(graph: Any, part: set[str]) -> dict[str, set[str]]:
    """For each preprocessing tensor, the Example features it is computed from."""
    from tensorflow.python.framework import tensor_util

    features: dict[str, set[str]] = {}
    for op in graph.get_operations():
        if op.name not in part:
            continue
        if op.type in ("ParseExampleV2", "ParseExample"):
            keys = _parse_keys(op, tensor_util)
            for tensor, key in zip(op.outputs, keys, strict=False):
                features[tensor.name] = {key} if key else set()
            continue
        sources: set[str] = set()
        for tensor in op.inputs:
            sources |= features.get(tensor.name, set())
        for tensor in op.outputs:
            features[tensor.name] = sources
    return features


def _parse_keys(op: Any, tensor_util: Any) -> list[str | None]:
    """The feature key of each ParseExample output, in output order."""

    def constant_strings(tensor: Any) -> list[str]:
        if tensor.op.type != "Const":
            return []
        values = tensor_util.MakeNdarray(tensor.op.get_attr("value")).reshape(-1)
        return [v.decode() if isinstance(v, bytes) else str(v) for v in values]

    if op.type == "ParseExampleV2":
        sparse = constant_strings(op.inputs[2])
        dense = constant_strings(op.inputs[3])
        ragged = constant_strings(op.inputs[4])
    else:  # ParseExample: serialized, names, sparse_keys..., dense_keys..., defaults...
        num_sparse = op.get_attr("Nsparse")
        num_dense = op.get_attr("Ndense")
        sparse = [constant_strings(t)[0] for t in op.inputs[2 : 2 + num_sparse]]
        dense = [
            constant_strings(t)[0] for t in op.inputs[2 + num_sparse : 2 + num_sparse + num_dense]
        ]
        ragged = []
    # Outputs: sparse indices, values, shapes (one each per sparse key), dense values,
    # ragged values and row splits.
    return [*sparse, *sparse, *sparse, *dense, *ragged, *ragged]


def _core_graph_def(
    graph_def: tf.compat.v1.GraphDef,
    preprocessing: set[str],
    cut: dict[str, Any],
    names: dict[str, str],
    core_inputs: list[TensorDescription],
    signature: GraphSignature,
) -> tf.compat.v1.GraphDef:
    import tensorflow as tf

    replaced = {}
    for tensor_name in cut:
        op_name, _, index = tensor_name.partition(":")
        replaced[tensor_name] = names[tensor_name]
        if index == "0":
            replaced[op_name] = names[tensor_name]
    rewired = tf.compat.v1.GraphDef()
    rewired.versions.CopyFrom(graph_def.versions)
    rewired.library.CopyFrom(graph_def.library)
    for description in core_inputs:
        placeholder = rewired.node.add(name=description.name, op="Placeholder")
        placeholder.attr["dtype"].type = tf.as_dtype(description.dtype).as_datatype_enum
        shape = tf.TensorShape(list(description.shape)).as_proto()
        placeholder.attr["shape"].shape.CopyFrom(shape)
    for node in graph_def.node:
        if node.name in preprocessing:
            continue
        copy = rewired.node.add()
        copy.CopyFrom(node)
        del copy.input[:]
        for source in node.input:
            if source.startswith("^"):
                if source[1:] not in preprocessing:
                    copy.input.append(source)
                continue
            copy.input.append(replaced.get(source, source))
    return tf.compat.v1.graph_util.extract_sub_graph(rewired, signature.output_op_names)


def _without_foreign_control_inputs(
    graph_def: tf.compat.v1.GraphDef, keep: set[str]
) -> tf.compat.v1.GraphDef:
    """The graph with control edges from outside `keep` into it removed."""
    import tensorflow as tf

    cleaned = tf.compat.v1.GraphDef()
    cleaned.CopyFrom(graph_def)
    for node in cleaned.node:
        if node.name not in keep:
            continue
        inputs = [i for i in node.input if not (i.startswith("^") and i[1:] not in keep)]
        del node.input[:]
        node.input.extend(inputs)
    return cleaned


def export_lookup_tables(
    function: Any, frozen_function: Any, graph_def: tf.compat.v1.GraphDef
) -> list[LookupTable]:
    """The contents of every lookup table the frozen graph still reads through a placeholder.

    `convert_variables_to_constants_v2` folds variables but leaves other captured
    resources (lookup tables) as placeholders; their eager handles are the original
    function's captured inputs, which are exported here while they are still alive.
    """
    import tensorflow as tf

    graph = _import(graph_def)
    captured = dict(
        zip(
            [
                t.name
                for t in function.inputs[len(function.inputs) - len(function.captured_inputs) :]
            ],
            function.captured_inputs,
            strict=True,
        )
    )
    tables = []
    for op in graph.get_operations():
        if op.type != "Placeholder" or op.outputs[0].dtype != tf.resource:
            continue
        name = op.outputs[0].name
        lookups = [c for c in _consumers_closure(op) if c.type.startswith("LookupTable")]
        finds = [c for c in lookups if c.type in ("LookupTableFindV2", "LookupTableFind")]
        if not finds or name not in captured:
            kinds = ", ".join(sorted({c.type for c in _consumers_closure(op)} - {"Placeholder"}))
            raise UserInputError(
                f"The signature reads a resource ({name}, used by {kinds or 'nothing'}) that is "
                f"neither a variable nor a lookup table, so it cannot be frozen. Pass "
                f"--signature with a signature that does not need it."
            )
        key_dtype = finds[0].get_attr("Tin")
        value_dtype = finds[0].get_attr("Tout")
        keys, values = tf.raw_ops.LookupTableExportV2(
            table_handle=captured[name], Tkeys=key_dtype, Tvalues=value_dtype
        )
        tables.append(
            LookupTable(
                placeholder=name,
                key_dtype=key_dtype.name,
                value_dtype=value_dtype.name,
                keys=_storable(keys.numpy()),
                values=_storable(values.numpy()),
            )
        )
    return tables


def _storable(array: Any) -> Any:
    """Object arrays of bytes become fixed-width bytes, which np.savez stores without pickle."""
    import numpy as np

    if array.dtype == object:
        return np.array([bytes(v) for v in array.reshape(-1)], dtype=bytes).reshape(array.shape)
    return array
