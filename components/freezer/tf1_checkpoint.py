"""Freezing a TF1 graph plus checkpoint into a constant-only GraphDef (TF1's `freeze_graph`).

A TF1 model on disk is a graph (a `.meta` MetaGraphDef written by
`tf.compat.v1.train.Saver`, or a `graph.pbtxt`/`graph.pb` GraphDef) plus checkpoint
files holding the variable values (`model.ckpt-N.index`, `model.ckpt-N.data-*`, and the
`checkpoint` state file naming the latest one). Neither file says which tensors are the
model's inputs and outputs, so the caller names the output nodes; the inputs are the
placeholders those outputs need, unless named too.

>>> checkpoint = find_tf1_checkpoint("/models/mnist_tf1")
>>> frozen = freeze_tf1_checkpoint(checkpoint, output_nodes=["softmax"])
>>> baseline = tf1_checkpoint_function(checkpoint, output_nodes=["softmax"])
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from components.common.errors import UserInputError
from components.common.signature import GraphSignature, TensorDescription

if TYPE_CHECKING:
    import tensorflow as tf

    from components.freezer.freezing import FrozenModel

DEFAULT_SIGNATURE_KEY = "serving_default"
# The state file `tf.compat.v1.train.Saver` keeps beside its checkpoints.
CHECKPOINT_STATE_FILENAME = "checkpoint"
META_GRAPH_SUFFIX = ".meta"
# GraphDefs written beside checkpoints (Estimators write graph.pbtxt), in preference order.
GRAPH_FILENAMES = ("graph.pbtxt", "graph.pb")

_VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp"})
_PLACEHOLDER = "Placeholder"
# Ops that save, restore, initialize or update state: never a model output.
_BOOKKEEPING_OPS = frozenset(
    {
        "Assert",
        "Assign",
        "AssignAdd",
        "AssignAddVariableOp",
        "AssignSub",
        "AssignSubVariableOp",
        "AssignVariableOp",
        "IsVariableInitialized",
        "MergeSummary",
        "MergeV2Checkpoints",
        "NoOp",
        "Print",
        "PrintV2",
        "Restore",
        "RestoreSlice",
        "RestoreV2",
        "Save",
        "SaveSlices",
        "SaveV2",
        "ScalarSummary",
        "HistogramSummary",
        "ImageSummary",
        "VarIsInitializedOp",
        "WriteSummary",
    }
)
# Optimizer updates (ApplyAdam, ResourceApplyAdam, ResourceSparseApplyAdagrad, ...).
_UPDATE_OP_PATTERN = re.compile(r"^(Resource)?(Sparse)?Apply")
# Scopes the Saver, initializers and gradients live in: `save`, `save_1`, `gradients_2`...
_BOOKKEEPING_SCOPE_PATTERN = re.compile(
    r"^(save|gradients|init|init_all_tables|report_uninitialized_variables)(_\d+)?$"
)
_NOT_OUTPUT_OPS = _VARIABLE_OPS | {
    "Const",
    _PLACEHOLDER,
    "PlaceholderWithDefault",
    "ReadVariableOp",
}
_SHOWN_NAMES = 10


@dataclasses.dataclass(frozen=True)
class Tf1Checkpoint:
    """Where a TF1 model's graph and variable values are."""

    #: A `.meta` MetaGraphDef, or a binary (`.pb`) or text (`.pbtxt`) GraphDef.
    graph_path: str
    #: The checkpoint prefix: `{prefix}.index` and `{prefix}.data-*` hold the values.
    checkpoint_prefix: str

    def describe(self) -> str:
        """One line for logs and reports: which checkpoint and which graph file."""
        return f"TF1 checkpoint {self.checkpoint_prefix} with graph {self.graph_path}"


@dataclasses.dataclass(frozen=True)
class Tf1CheckpointFunction:
    """The un-frozen TF1 model as a graph-mode function, with the signature it takes.

    Call it (or `function`) with the inputs positionally in `signature.inputs` order; it
    returns a list of tensors in `signature.outputs` order. It reads its variables,
    restored from the checkpoint, on every call, as the original Session did.
    """

    function: tf.types.experimental.ConcreteFunction
    signature: GraphSignature
    #: Owned here because the function only captures their handles.
    variables: tuple[tf.Variable, ...]

    def __call__(self, *inputs: Any) -> list[tf.Tensor]:
        return self.function(*inputs)


@dataclasses.dataclass(frozen=True)
class _Variable:
    """A variable node the outputs read, and where its value sits in the checkpoint."""

    node: str
    op: str
    key: str
    #: "" for a whole tensor; for one part of a partitioned variable, the part's slice
    #: in `RestoreV2`'s format ("6 2 3,3:0,2": full shape, then offset,length per axis).
    slice_spec: str
    full_shape: tuple[int, ...] | None
    offsets: tuple[int, ...]
    lengths: tuple[int, ...]
    dtype: tf.dtypes.DType

    @property
    def is_resource(self) -> bool:
        return self.op == "VarHandleOp"


@dataclasses.dataclass(frozen=True)
class _InferenceGraph:
    """The part of a TF1 graph that computes the outputs, cut off at the fed tensors.

    `graph_def` still has its variables (not constant-folded); `fed_nodes` are the nodes
    a fed tensor replaced (placeholders), which nothing but a feed ever reaches.
    """

    graph_def: tf.compat.v1.GraphDef
    signature: GraphSignature
    variables: tuple[_Variable, ...]
    fed_nodes: frozenset[str]
    output_node_names: tuple[str, ...]


def find_tf1_checkpoint(path: str) -> Tf1Checkpoint | None:
    """Finds a TF1 graph and checkpoint at `path`, a checkpoint directory or prefix.

    A directory is read the way `tf.compat.v1.train.Saver` wrote it: its `checkpoint`
    state file names the latest prefix (else the `*.index` files do), and the graph is
    `{prefix}.meta`, else `graph.pbtxt` or `graph.pb` there. A prefix
    (`dir/model.ckpt-100`, or one of its `.meta`/`.index`/`.data-*` files) takes
    `{prefix}.meta`, else a graph file in its directory.

    Returns None when `path` holds no checkpoint at all (a SavedModel, a Keras file, a
    frozen graph), so callers can try other model forms. Raises UserInputError when it
    plainly is a checkpoint but a part is missing.
    """
    import tensorflow as tf

    if tf.io.gfile.isdir(path):
        return _find_in_directory(path.rstrip("/") or path)
    return _find_from_prefix(path)


def freeze_tf1_checkpoint(
    checkpoint: Tf1Checkpoint,
    output_nodes: Sequence[str],
    input_nodes: Sequence[str] | None = None,
    signature_key: str = DEFAULT_SIGNATURE_KEY,
) -> FrozenModel:
    """Restores a TF1 checkpoint's variables and folds them into a constant-only graph.

    `output_nodes` are node names (`softmax`) or tensor names (`split:1`). Without
    `input_nodes`, the inputs are the placeholders the outputs need (placeholders with a
    default keep it); with them, exactly those tensors are fed, even ones that are not
    placeholders (say `IteratorGetNext:0`, to cut off an input pipeline), and the graph
    above them is dropped. Saver, initializer and training nodes are dropped too: the
    result holds only what computes the outputs.
    """
    import tensorflow as tf
    from tensorflow.python.util import deprecation

    from components.freezer.freezing import FrozenModel

    inference = _inference_graph(checkpoint, output_nodes, input_nodes, signature_key)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(inference.graph_def, name="")
        restore_ops = _restore_ops(graph, inference.variables, checkpoint.checkpoint_prefix)
    # The restore runs on the CPU: a Session would otherwise claim all of a GPU's memory.
    config = tf.compat.v1.ConfigProto(device_count={"GPU": 0})
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        if restore_ops:
            try:
                session.run(restore_ops)
            except tf.errors.OpError as error:
                raise UserInputError(
                    f"Could not restore the variables of {checkpoint.graph_path!r} from the "
                    f"checkpoint {checkpoint.checkpoint_prefix!r}: {type(error).__name__}: "
                    f"{_first_line(error)}. The checkpoint files look corrupt, or were written "
                    f"for another graph; pass the checkpoint written with this graph."
                ) from error
        output_names = list(inference.output_node_names)
        with deprecation.silence():  # The v1 API is the point here; its warning is noise.
            graph_def = tf.compat.v1.graph_util.convert_variables_to_constants(
                session, inference.graph_def, output_names
            )
            graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, output_names)
    return FrozenModel(graph_def=graph_def, signature=inference.signature)


def tf1_checkpoint_function(
    checkpoint: Tf1Checkpoint,
    output_nodes: Sequence[str],
    input_nodes: Sequence[str] | None = None,
    signature_key: str = DEFAULT_SIGNATURE_KEY,
) -> Tf1CheckpointFunction:
    """The original TF1 model, variables and all, as a function: the benchmark baseline.

    Same graph, inputs and outputs as `freeze_tf1_checkpoint` gives (arguments alike), but
    the variables stay variables, restored from the checkpoint into eager variables that
    the function reads on every call. Graph mode (`tf.compat.v1.wrap_function`).
    """
    import tensorflow as tf

    inference = _inference_graph(checkpoint, output_nodes, input_nodes, signature_key)
    reader = _checkpoint_reader(checkpoint)
    variables = {
        variable.node: tf.Variable(
            _checkpoint_value(reader, variable),
            dtype=variable.dtype,
            name=variable.node,
            trainable=False,
        )
        for variable in inference.variables
    }
    # Every reference to a fed or variable node is mapped below, so those nodes can go.
    removed = inference.fed_nodes | set(variables)
    graph_def = tf.compat.v1.GraphDef()
    graph_def.versions.CopyFrom(inference.graph_def.versions)
    graph_def.library.CopyFrom(inference.graph_def.library)
    graph_def.node.extend(n for n in inference.graph_def.node if n.name not in removed)
    signature = inference.signature

    def run_graph(*inputs: tf.Tensor) -> list[tf.Tensor]:
        input_map: dict[str, tf.Tensor] = dict(
            zip(signature.input_tensor_names, inputs, strict=True)
        )
        for variable in inference.variables:
            value = variables[variable.node]
            # A resource variable's node yields its handle; a TF1 ref variable's, its value.
            input_map[f"{variable.node}:0"] = (
                tf.identity(value.handle) if variable.is_resource else value.read_value()
            )
        return tf.compat.v1.import_graph_def(
            graph_def,
            input_map=input_map,
            return_elements=signature.output_tensor_names,
            name="",
        )

    input_specs = [
        tf.TensorSpec(shape=t.shape, dtype=tf.as_dtype(t.dtype), name=t.name)
        for t in signature.inputs
    ]
    function = tf.compat.v1.wrap_function(run_graph, input_specs)
    owned = tuple(variables.values())
    # Keep the variables alive as long as the function: it only holds their handles.
    function._inference_optimizer_owner = owned  # noqa: SLF001 - lifetime anchor only.
    return Tf1CheckpointFunction(function=function, signature=signature, variables=owned)


# Finding the files.


def _find_in_directory(directory: str) -> Tf1Checkpoint | None:
    import tensorflow as tf

    names = {name.rstrip("/") for name in tf.io.gfile.listdir(directory)}
    if "saved_model.pb" in names:
        return None  # A SavedModel: its variables/ folder is a checkpoint, but not TF1's.
    index_prefixes = sorted(n[: -len(".index")] for n in names if n.endswith(".index"))
    meta_graphs = sorted(n for n in names if n.endswith(META_GRAPH_SUFFIX))
    has_state_file = CHECKPOINT_STATE_FILENAME in names
    if not (index_prefixes or meta_graphs or has_state_file):
        return None
    prefix = _latest_checkpoint(directory) if has_state_file else None
    if prefix is None:
        prefix = _newest_listed_prefix(directory, index_prefixes)
    _check_checkpoint_files(prefix)
    graph_path = _graph_for_prefix(prefix, directory, names)
    return Tf1Checkpoint(graph_path=graph_path, checkpoint_prefix=prefix)


def _latest_checkpoint(directory: str) -> str | None:
    """The prefix the `checkpoint` state file names, if its files are there."""
    import tensorflow as tf

    try:
        return tf.train.latest_checkpoint(directory)
    except Exception as error:  # A corrupt text proto raises protobuf's ParseError.
        raise UserInputError(
            f"The checkpoint state file {os.path.join(directory, CHECKPOINT_STATE_FILENAME)!r} "
            f"is unreadable: {type(error).__name__}: {_first_line(error)}. Delete it (the "
            f"newest *.index file is then used) or pass the checkpoint prefix itself, e.g. "
            f"{os.path.join(directory, 'model.ckpt-100')}."
        ) from error


def _newest_listed_prefix(directory: str, index_prefixes: list[str]) -> str:
    """The checkpoint to use when the state file names none that exists here.

    That happens when checkpoints were copied from elsewhere (the state file keeps the
    paths they were written at) or when only the checkpoint files were copied.
    """
    import tensorflow as tf

    if not index_prefixes:
        raise UserInputError(
            f"{directory!r} looks like a TF1 checkpoint directory (it holds a "
            f"'{CHECKPOINT_STATE_FILENAME}' state file or *.meta graphs) but has no "
            f"checkpoint data: no *.index and *.data-* files. Copy those files, written by "
            f"tf.compat.v1.train.Saver.save, into it."
        )
    state = tf.train.get_checkpoint_state(directory)  # Parsed fine by _latest_checkpoint.
    if state is not None:
        named = os.path.basename(state.model_checkpoint_path)
        if named in index_prefixes:
            return os.path.join(directory, named)
    if len(index_prefixes) > 1 and not all(re.search(r"-\d+$", p) for p in index_prefixes):
        raise UserInputError(
            f"{directory!r} holds several checkpoints ({', '.join(index_prefixes)}) and no "
            f"'{CHECKPOINT_STATE_FILENAME}' state file saying which is the latest. Pass the "
            f"prefix of the one to freeze, e.g. {os.path.join(directory, index_prefixes[0])}."
        )
    return os.path.join(directory, max(index_prefixes, key=_step_then_name))


def _find_from_prefix(path: str) -> Tf1Checkpoint | None:
    import tensorflow as tf

    prefix, graph_path = _prefix_of(path)
    directory = os.path.dirname(prefix)
    has_index = tf.io.gfile.exists(f"{prefix}.index")
    has_data = bool(_data_files(prefix))
    has_meta = tf.io.gfile.exists(prefix + META_GRAPH_SUFFIX)
    if not (has_index or has_data or has_meta):
        if not tf.io.gfile.exists(path) and _looks_like_checkpoint_prefix(path):
            _raise_if_other_checkpoints_beside(path)
        return None
    _check_checkpoint_files(prefix)
    if graph_path is None:
        names = {n.rstrip("/") for n in tf.io.gfile.listdir(directory or ".")}
        graph_path = _graph_for_prefix(prefix, directory, names)
    return Tf1Checkpoint(graph_path=graph_path, checkpoint_prefix=prefix)


def _prefix_of(path: str) -> tuple[str, str | None]:
    """The checkpoint prefix a path names, and the graph when the path is a `.meta` file."""
    if path.endswith(META_GRAPH_SUFFIX):
        return path[: -len(META_GRAPH_SUFFIX)], path
    if path.endswith(".index"):
        return path[: -len(".index")], None
    data = re.match(r"^(.*)\.data-\d+-of-\d+$", path)
    if data:
        return data.group(1), None
    return path, None


def _data_files(prefix: str) -> list[str]:
    import tensorflow as tf

    try:
        return tf.io.gfile.glob(f"{prefix}.data-*")
    except tf.errors.NotFoundError:
        return []


def _looks_like_checkpoint_prefix(path: str) -> bool:
    name = os.path.basename(path)
    return "ckpt" in name or re.search(r"-\d+$", name) is not None


def _raise_if_other_checkpoints_beside(path: str) -> None:
    """A mistyped prefix: say which checkpoints are there rather than 'not a model'."""
    import tensorflow as tf

    directory = os.path.dirname(path) or "."
    if not tf.io.gfile.isdir(directory):
        return
    prefixes = sorted(
        n[: -len(".index")] for n in tf.io.gfile.listdir(directory) if n.endswith(".index")
    )
    if prefixes:
        raise UserInputError(
            f"There is no checkpoint {path!r}: no {os.path.basename(path)}.index or .data-* "
            f"files. {directory!r} holds the checkpoints {_listing(prefixes)}; pass one of "
            f"those prefixes, or the directory to take the latest."
        )


def _check_checkpoint_files(prefix: str) -> None:
    """Raises naming what is there when a checkpoint lacks its index or data files."""
    import tensorflow as tf

    has_index = tf.io.gfile.exists(f"{prefix}.index")
    data_files = _data_files(prefix)
    if has_index and data_files:
        return
    found = [
        name
        for name, present in (
            (f"{prefix}.index", has_index),
            (prefix + META_GRAPH_SUFFIX, tf.io.gfile.exists(prefix + META_GRAPH_SUFFIX)),
        )
        if present
    ] + sorted(data_files)
    missing = [] if has_index else [f"{prefix}.index"]
    missing += [] if data_files else [f"{prefix}.data-00000-of-00001 (or other shards)"]
    raise UserInputError(
        f"The checkpoint {prefix!r} is incomplete: found {_listing(found) or 'nothing'}, "
        f"but not {' and '.join(missing)}. A TF1 checkpoint is the .index file plus its "
        f".data-* shards, written together by tf.compat.v1.train.Saver.save; copy all of "
        f"them (the .meta alone is only the graph)."
    )


def _graph_for_prefix(prefix: str, directory: str, names: set[str]) -> str:
    """The graph written with a checkpoint: its .meta, else a GraphDef file beside it."""
    import tensorflow as tf

    own_meta = prefix + META_GRAPH_SUFFIX
    if tf.io.gfile.exists(own_meta):
        return own_meta
    for filename in GRAPH_FILENAMES:
        if filename in names:
            return os.path.join(directory, filename)
    # Saver(write_meta_graph=False) after the first save leaves older .meta files only.
    metas = [n for n in names if n.endswith(META_GRAPH_SUFFIX)]
    if metas:
        return os.path.join(directory, max(metas, key=_step_then_name))
    hint = ""
    if tf.io.gfile.exists(os.path.join(os.path.dirname(directory), "saved_model.pb")):
        hint = (
            f" {directory!r} is the variables/ folder of a SavedModel: pass its parent "
            f"directory instead."
        )
    raise UserInputError(
        f"The checkpoint {prefix!r} has no graph: none of {os.path.basename(own_meta)}, "
        f"{' or '.join(GRAPH_FILENAMES)} is in {directory or '.'!r}. A checkpoint holds only "
        f"variable values; add the graph written with it (tf.compat.v1.train.Saver.save "
        f"writes {os.path.basename(own_meta)}, tf.io.write_graph a graph.pbtxt). A TF2 "
        f"tf.train.Checkpoint holds no graph at all: export a SavedModel instead.{hint}"
    )


def _step_then_name(name: str) -> tuple[int, str]:
    """Sort key: the global step in `model.ckpt-N` or `model.ckpt-N.meta`, then the name."""
    step = re.search(r"-(\d+)(\.meta)?$", name)
    return (int(step.group(1)) if step else -1, name)


# Reading and cutting the graph.


def _inference_graph(
    checkpoint: Tf1Checkpoint,
    output_nodes: Sequence[str],
    input_nodes: Sequence[str] | None,
    signature_key: str,
) -> _InferenceGraph:
    """Reads the graph, checks the names, and keeps only what computes the outputs."""
    import tensorflow as tf

    if isinstance(output_nodes, str) or isinstance(input_nodes, str):
        raise TypeError("output_nodes and input_nodes take a list of names, not a string")
    full_graph_def, slices = _read_graph(checkpoint.graph_path)
    nodes = {node.name: node for node in full_graph_def.node}
    if not output_nodes:
        raise UserInputError(
            f"No output nodes given for {checkpoint.describe()}: a TF1 graph does not say "
            f"which tensors are the model's outputs. Pass the output node names; possible "
            f"output nodes in this graph: {_listing(_candidate_outputs(full_graph_def))}."
        )
    outputs = _parse_tensor_names(output_nodes, "output", nodes, checkpoint, full_graph_def)
    fed = (
        None
        if input_nodes is None
        else _parse_tensor_names(input_nodes, "input", nodes, checkpoint, full_graph_def)
    )
    output_node_names = tuple(dict.fromkeys(node for node, _ in outputs))
    with _deprecation_silenced():
        upstream = tf.compat.v1.graph_util.extract_sub_graph(
            full_graph_def, list(output_node_names)
        )
    graph = _import(_without_placement(upstream), checkpoint)
    upstream_nodes = {node.name for node in upstream.node}
    for node, index in [*outputs, *(fed or [])]:
        if node in upstream_nodes:  # A fed node that is not is reported as unused below.
            _check_output_index(graph, node, index, checkpoint)
    if fed is not None:
        _check_inputs_used(upstream, fed, outputs, checkpoint)

    cut_graph_def, fed_nodes = _cut_at_feeds(upstream, graph, fed or [], outputs)
    with _deprecation_silenced():
        inference_def = tf.compat.v1.graph_util.extract_sub_graph(
            cut_graph_def, list(output_node_names)
        )
    inference_def = _without_placement(inference_def)
    placeholders = sorted(
        node.name
        for node in inference_def.node
        if node.op == _PLACEHOLDER and node.name not in fed_nodes
    )
    if fed is None:
        fed = [(name, 0) for name in placeholders]
        fed_nodes = frozenset(placeholders)
    both = [tensor for tensor in outputs if tensor in fed]
    if both:
        raise UserInputError(
            f"{_tensor_listing(both)} would be both an input and an output of "
            f"{checkpoint.graph_path!r} (a fed tensor or a placeholder). Name as outputs the "
            f"nodes that compute the model's results."
        )
    if input_nodes is not None:
        _check_placeholders_fed(placeholders, outputs, checkpoint)
        _check_inputs_used(inference_def, fed, outputs, checkpoint)

    graph = _import(inference_def, checkpoint)
    signature = GraphSignature(
        signature_key=signature_key,
        inputs=_describe(graph, fed, "input", checkpoint),
        outputs=_describe(graph, outputs, "output", checkpoint),
    )
    variables = tuple(
        _variable(node, slices) for node in inference_def.node if node.op in _VARIABLE_OPS
    )
    _check_variables_in_checkpoint(variables, checkpoint)
    return _InferenceGraph(
        graph_def=inference_def,
        signature=signature,
        variables=variables,
        fed_nodes=fed_nodes,
        output_node_names=output_node_names,
    )


def _read_graph(path: str) -> tuple[tf.compat.v1.GraphDef, dict[str, Any]]:
    """The GraphDef in a .meta, .pb or .pbtxt file, and the slices of partitioned variables.

    Only a MetaGraphDef records that `emb/part_0` is rows 0-2 of the checkpoint's `emb`
    (its variables collections carry a SaveSliceInfoDef); a bare GraphDef does not.
    """
    import tensorflow as tf
    from google.protobuf import message, text_format
    from tensorflow.core.framework import variable_pb2
    from tensorflow.core.protobuf import meta_graph_pb2

    is_meta = path.endswith(META_GRAPH_SUFFIX)
    with tf.io.gfile.GFile(path, "rb") as f:
        content = f.read()

    def parse_binary(proto: Any) -> None:
        proto.ParseFromString(content)

    def parse_text(proto: Any) -> None:
        text_format.Parse(content.decode("utf-8"), proto)

    # The suffix says binary or text, but files are often named the other way round.
    parsers = [parse_text, parse_binary] if path.endswith(".pbtxt") else [parse_binary, parse_text]
    problem = "it holds no nodes"
    for parse in parsers:
        proto = meta_graph_pb2.MetaGraphDef() if is_meta else tf.compat.v1.GraphDef()
        try:
            parse(proto)
        except (message.DecodeError, text_format.ParseError, UnicodeDecodeError) as error:
            problem = _first_line(error)
            continue
        if (proto.graph_def if is_meta else proto).node:
            break
    else:
        kind = "MetaGraphDef" if is_meta else "GraphDef"
        raise UserInputError(
            f"The graph file {path!r} is not a readable {kind}, neither as binary nor as text "
            f"protobuf ({problem}). Write it again: tf.compat.v1.train.Saver.save writes the "
            f".meta, tf.io.write_graph a GraphDef."
        )
    if not is_meta:
        return proto, {}
    slices = {}
    for collection in proto.collection_def.values():
        if collection.WhichOneof("kind") != "bytes_list":
            continue
        for value in collection.bytes_list.value:
            variable_def = variable_pb2.VariableDef()
            try:
                variable_def.ParseFromString(value)
            except message.DecodeError:
                continue  # Not a variables collection.
            if variable_def.variable_name and variable_def.HasField("save_slice_info_def"):
                node = variable_def.variable_name.split(":")[0]
                slices[node] = variable_def.save_slice_info_def
    return proto.graph_def, slices


def _import(graph_def: tf.compat.v1.GraphDef, checkpoint: Tf1Checkpoint) -> tf.Graph:
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.graph_util.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as error:
            raise UserInputError(
                f"The graph {checkpoint.graph_path!r} does not load in TensorFlow "
                f"{tf.__version__}: {_first_line(error)}. A graph using ops from tf.contrib or "
                f"a custom op library needs those ops; re-export the model with ops this "
                f"TensorFlow has, or as a SavedModel."
            ) from error
    return graph


def _without_placement(graph_def: tf.compat.v1.GraphDef) -> tf.compat.v1.GraphDef:
    """Drops device placements, colocation constraints and recorded output shapes.

    A training graph pins variables to parameter servers (`/job:ps/task:0`); its
    colocation attributes (`loc:@w`) name nodes that cutting the graph may remove, which
    fails the import ("expects to be colocated with unknown node"); and the
    `_output_shapes` a .meta records describe the graph before it was cut and frozen.
    """
    import tensorflow as tf

    stripped = tf.compat.v1.GraphDef()
    stripped.CopyFrom(graph_def)
    for node in stripped.node:
        node.device = ""
        for attr in ("_class", "_output_shapes"):
            if attr in node.attr:
                del node.attr[attr]
    return stripped


def _parse_tensor_names(
    names: Sequence[str],
    role: str,
    nodes: dict[str, Any],
    checkpoint: Tf1Checkpoint,
    graph_def: tf.compat.v1.GraphDef,
) -> list[tuple[str, int]]:
    """(`node`, output index) for each `node` or `node:k`; raises for unknown nodes."""
    parsed: list[tuple[str, int]] = []
    for name in names:
        match = re.fullmatch(r"\^?([^:\s]+)(?::(\d+))?", str(name).strip())
        if not match:
            raise UserInputError(
                f"{role.capitalize()} {name!r} is not a node name (`softmax`) or tensor name "
                f"(`softmax:0`). Pass names of nodes in {checkpoint.graph_path!r}."
            )
        node, index = match.group(1), int(match.group(2) or 0)
        if node not in nodes:
            close = difflib.get_close_matches(node, list(nodes), n=3)
            suggestion = f"Did you mean {_listing(close)}? " if close else ""
            if role == "output":
                suggestion += f"Possible output nodes: {_listing(_candidate_outputs(graph_def))}."
            else:
                placeholders = [n.name for n in graph_def.node if n.op == _PLACEHOLDER]
                suggestion += f"Placeholders in the graph: {_listing(placeholders) or 'none'}."
            raise UserInputError(
                f"{role.capitalize()} node {node!r} is not in the graph "
                f"{checkpoint.graph_path!r}. {suggestion}"
            )
        if (node, index) in parsed:
            raise UserInputError(
                f"{role.capitalize()} {node}:{index} is listed twice; list each tensor once."
            )
        parsed.append((node, index))
    return parsed


def _check_output_index(graph: tf.Graph, node: str, index: int, checkpoint: Tf1Checkpoint) -> None:
    operation = graph.get_operation_by_name(node)
    if index < len(operation.outputs):
        return
    raise UserInputError(
        f"Node {node!r} ({operation.type}) in {checkpoint.graph_path!r} has "
        f"{len(operation.outputs)} output(s), so {node}:{index} does not exist. "
        + (
            "It produces no tensor (an update or no-op); name a node that computes a value."
            if not operation.outputs
            else f"Use {node}:0 (or just {node})."
            if len(operation.outputs) == 1
            else f"Use {node}:0 to {node}:{len(operation.outputs) - 1}."
        )
    )


def _cut_at_feeds(
    graph_def: tf.compat.v1.GraphDef,
    graph: tf.Graph,
    fed: list[tuple[str, int]],
    outputs: list[tuple[str, int]],
) -> tuple[tf.compat.v1.GraphDef, frozenset[str]]:
    """Replaces each fed node that is not a placeholder with placeholders.

    The fed tensors keep their names: a one-output node becomes a Placeholder of that
    name; a multi-output one (an `IteratorGetNext` yielding features and labels) becomes
    an `IdentityN` of that name over one placeholder per output, so `IteratorGetNext:0`
    is still the tensor to feed. Returns the new graph and every node standing for feeds.
    `graph_def` is the part of the graph above the outputs, so only uses on the way to
    them count.
    """
    import tensorflow as tf

    fed_indices: dict[str, set[int]] = {}
    for node, index in fed:
        fed_indices.setdefault(node, set()).add(index)
    replacements: dict[str, list[Any]] = {}
    fed_nodes: set[str] = set()
    for node, indices in fed_indices.items():
        fed_nodes.add(node)
        operation = graph.get_operation_by_name(node)
        if operation.type == _PLACEHOLDER:
            continue
        if len(operation.outputs) == 1:
            replacements[node] = [_placeholder_def(node, operation.outputs[0])]
            continue
        _check_all_used_outputs_fed(graph_def, node, indices, outputs)
        parts = [
            _placeholder_def(f"{node}/fed_output_{i}", tensor)
            for i, tensor in enumerate(operation.outputs)
        ]
        identity = tf.compat.v1.NodeDef(name=node, op="IdentityN", input=[p.name for p in parts])
        identity.attr["T"].list.type.extend(
            t.dtype.base_dtype.as_datatype_enum for t in operation.outputs
        )
        replacements[node] = [identity, *parts]
        fed_nodes.update(p.name for p in parts)
    cut = tf.compat.v1.GraphDef()
    cut.versions.CopyFrom(graph_def.versions)
    cut.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        cut.node.extend(replacements.get(node.name, [node]))
    return cut, frozenset(fed_nodes)


def _placeholder_def(name: str, tensor: tf.Tensor) -> Any:
    import tensorflow as tf

    placeholder = tf.compat.v1.NodeDef(name=name, op=_PLACEHOLDER)
    placeholder.attr["dtype"].type = tensor.dtype.base_dtype.as_datatype_enum
    placeholder.attr["shape"].shape.CopyFrom(tensor.shape.as_proto())
    return placeholder


def _check_all_used_outputs_fed(
    graph_def: tf.compat.v1.GraphDef,
    node: str,
    fed_indices: set[int],
    outputs: list[tuple[str, int]],
) -> None:
    """A multi-output node fed in part must not have its other outputs used downstream."""
    used = {index for name, index in outputs if name == node}
    for consumer in graph_def.node:
        for source in consumer.input:
            name, _, index = source.partition(":")
            if name == node:
                used.add(int(index or 0))
    unfed = sorted(used - fed_indices)
    if unfed:
        raise UserInputError(
            f"Input {node!r} is fed, but the graph also uses its outputs "
            f"{', '.join(f'{node}:{i}' for i in unfed)}, which then have no value. Add them "
            f"to the input nodes as well."
        )


def _check_placeholders_fed(
    unfed_placeholders: list[str], outputs: list[tuple[str, int]], checkpoint: Tf1Checkpoint
) -> None:
    """With input nodes given, every placeholder the outputs need must be among them."""
    if unfed_placeholders:
        raise UserInputError(
            f"The outputs {_tensor_listing(outputs)} of {checkpoint.graph_path!r} need the "
            f"placeholder(s) {_listing(unfed_placeholders)}, which the input nodes do not "
            f"list. Add them to the input nodes, or leave the input nodes out to feed every "
            f"placeholder the outputs need."
        )


def _check_inputs_used(
    graph_def: tf.compat.v1.GraphDef,
    fed: list[tuple[str, int]],
    outputs: list[tuple[str, int]],
    checkpoint: Tf1Checkpoint,
) -> None:
    """Every fed tensor must be read on the way to the outputs (in `graph_def`).

    A graph variant is fed by tensor name, so an input its graph lacks cannot be fed.
    """
    used = set(outputs)
    for node in graph_def.node:
        for source in node.input:
            if not source.startswith("^"):
                name, _, index = source.partition(":")
                used.add((name, int(index or 0)))
    unused = [(node, index) for node, index in fed if (node, index) not in used]
    if unused:
        raise UserInputError(
            f"The input(s) {_tensor_listing(unused)} are not needed by the outputs "
            f"{_tensor_listing(outputs)} of {checkpoint.graph_path!r}, so nothing would read "
            f"them. Drop them from the input nodes, or name the outputs that use them."
        )


def _tensor_listing(tensors: list[tuple[str, int]]) -> str:
    return _listing([f"{node}:{index}" for node, index in tensors])


def _describe(
    graph: tf.Graph, tensors: list[tuple[str, int]], role: str, checkpoint: Tf1Checkpoint
) -> tuple[TensorDescription, ...]:
    """TensorDescriptions sorted by name; dtype and shape as the inference graph infers them."""
    descriptions = []
    for node, index in tensors:
        tensor = graph.get_tensor_by_name(f"{node}:{index}")
        if tensor.shape.rank is None:
            raise UserInputError(
                f"The {role} {tensor.name} of {checkpoint.graph_path!r} has an unknown rank, "
                f"and a graph variant needs to know how many dimensions its {role}s have. "
                + (
                    "Give the placeholder a shape (tf.compat.v1.placeholder(..., shape=[None, "
                    "...])) in the graph, or feed a tensor of known rank below it."
                    if role == "input"
                    else "Name an output of known rank, e.g. a tf.reshape of this one."
                )
            )
        descriptions.append(
            TensorDescription(
                name=node if index == 0 else f"{node}_{index}",
                tensor_name=tensor.name,
                dtype=tensor.dtype.base_dtype.name,
                shape=tuple(tensor.shape.as_list()),
            )
        )
    names = [d.name for d in descriptions]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UserInputError(
            f"Two {role}s of {checkpoint.graph_path!r} would both be called "
            f"{_listing(duplicates)}; name {role}s by distinct nodes."
        )
    return tuple(sorted(descriptions, key=lambda d: d.name))


def _candidate_outputs(graph_def: tf.compat.v1.GraphDef) -> list[str]:
    """Nodes that look like model outputs: nothing consumes them, or a person named them.

    Saver, initializer, gradient and optimizer nodes are left out, as are constants,
    placeholders, variables, their reads, and what sits in a variable's scope (`w/read`).
    A training graph's prediction usually feeds the loss, so it is found by its name:
    TF names nodes after their op (`MatMul_1`, `add`), people name outputs (`logits`).
    """
    variable_scopes = tuple(f"{n.name}/" for n in graph_def.node if n.op in _VARIABLE_OPS)
    # An optimizer's scope (`Adam/`, `train/`) is where its update ops are.
    optimizer_scopes = {
        n.name.split("/")[0] for n in graph_def.node if _UPDATE_OP_PATTERN.match(n.op)
    }
    consumed = {
        source.lstrip("^").split(":")[0] for node in graph_def.node for source in node.input
    }
    terminal, named = [], []
    for node in graph_def.node:
        if (
            node.op in _BOOKKEEPING_OPS
            or node.op in _NOT_OUTPUT_OPS
            or _UPDATE_OP_PATTERN.match(node.op)
            or _BOOKKEEPING_SCOPE_PATTERN.match(node.name.split("/")[0])
            or ("/" in node.name and node.name.split("/")[0] in optimizer_scopes)
            or node.name.startswith(variable_scopes)
        ):
            continue
        if node.name not in consumed:
            terminal.append(node.name)
        elif not _is_generated_name(node.name, node.op):
            named.append(node.name)
    return list(dict.fromkeys(terminal + named))


def _is_generated_name(name: str, op: str) -> bool:
    """Whether TF made the name up from the op type (`MatMul_2`, `add` for AddV2)."""
    base = re.sub(r"_\d+$", "", name.split("/")[-1]).replace("_", "").lower()
    return bool(base) and op.lower().startswith(base)


# Variables and the checkpoint.


def _variable(node: Any, slices: dict[str, Any]) -> _Variable:
    import tensorflow as tf

    dtype = tf.as_dtype(node.attr["dtype"].type)
    info = slices.get(node.name)
    if info is None:
        return _Variable(
            node=node.name,
            op=node.op,
            key=node.name,
            slice_spec="",
            full_shape=_static_shape(node.attr["shape"].shape),
            offsets=(),
            lengths=(),
            dtype=dtype,
        )
    full_shape = tuple(int(d) for d in info.full_shape)
    offsets = tuple(int(d) for d in info.var_offset)
    lengths = tuple(int(d) for d in info.var_shape)
    spec = " ".join(str(d) for d in full_shape) + " "
    spec += ":".join(f"{o},{n}" for o, n in zip(offsets, lengths, strict=True))
    return _Variable(
        node=node.name,
        op=node.op,
        key=info.full_name,
        slice_spec=spec,
        full_shape=full_shape,
        offsets=offsets,
        lengths=lengths,
        dtype=dtype,
    )


def _static_shape(shape_proto: Any) -> tuple[int, ...] | None:
    if shape_proto.unknown_rank or any(d.size < 0 for d in shape_proto.dim):
        return None
    return tuple(int(d.size) for d in shape_proto.dim)


def _checkpoint_reader(checkpoint: Tf1Checkpoint) -> Any:
    import tensorflow as tf

    try:
        return tf.train.load_checkpoint(checkpoint.checkpoint_prefix)
    except (tf.errors.OpError, ValueError) as error:
        raise UserInputError(
            f"The checkpoint {checkpoint.checkpoint_prefix!r} is unreadable: "
            f"{type(error).__name__}: {_first_line(error)}. Its .index or .data-* files look "
            f"corrupt or truncated; copy them again from where they were written."
        ) from error


def _check_variables_in_checkpoint(
    variables: tuple[_Variable, ...], checkpoint: Tf1Checkpoint
) -> None:
    """Every variable the outputs read must be in the checkpoint, with the graph's shape."""
    reader = _checkpoint_reader(checkpoint)
    stored = reader.get_variable_to_shape_map()
    missing = sorted({v.key for v in variables if v.key not in stored})
    if missing:
        hints = ""
        partitioned = sorted(
            {m for m in missing if re.sub(r"/part_\d+$", "", m) in stored and "/part_" in m}
        )
        if partitioned:
            hints = (
                f" {_listing(partitioned)} look like parts of partitioned variables, which "
                f"only a .meta graph maps to the checkpoint: use the .meta written with it."
            )
        raise UserInputError(
            f"The checkpoint {checkpoint.checkpoint_prefix!r} lacks the variable(s) "
            f"{_listing(missing)} that the outputs read in {checkpoint.graph_path!r}; it holds "
            f"{_listing(sorted(stored)) or 'no variables'}. Pass the checkpoint written for "
            f"this graph (by the Saver of the same model).{hints}"
        )
    mismatched = [
        f"{v.key} (graph {list(v.full_shape)}, checkpoint {stored[v.key]})"
        for v in variables
        if v.full_shape is not None and list(v.full_shape) != list(stored[v.key])
    ]
    if mismatched:
        raise UserInputError(
            f"The checkpoint {checkpoint.checkpoint_prefix!r} was written for another graph "
            f"than {checkpoint.graph_path!r}: shapes differ for {_listing(mismatched)}. Pass "
            f"the graph and checkpoint of the same model."
        )


def _restore_ops(graph: tf.Graph, variables: tuple[_Variable, ...], prefix: str) -> list[Any]:
    """Ops that load each variable (or variable part) from the checkpoint, in `graph`.

    Also adds the `{variable}/Read/ReadVariableOp` that TF 2's
    `convert_variables_to_constants` fetches a resource variable's value from: a Python
    ResourceVariable creates it, but the inference graph may not contain it.
    """
    import tensorflow as tf

    if not variables:
        return []
    with graph.as_default():
        with tf.name_scope("restore_from_checkpoint"):
            values = tf.raw_ops.RestoreV2(
                prefix=prefix,
                tensor_names=[v.key for v in variables],
                shape_and_slices=[v.slice_spec for v in variables],
                dtypes=[v.dtype for v in variables],
            )
        restore_ops = []
        existing = {op.name for op in graph.get_operations()}
        for variable, value in zip(variables, values, strict=True):
            handle = graph.get_tensor_by_name(f"{variable.node}:0")
            if not variable.is_resource:
                restore_ops.append(tf.raw_ops.Assign(ref=handle, value=value).op)
                continue
            restore_ops.append(tf.raw_ops.AssignVariableOp(resource=handle, value=value))
            read_name = f"{variable.node}/Read/ReadVariableOp"
            if read_name not in existing:
                with tf.name_scope(f"{variable.node}/Read/"):
                    tf.raw_ops.ReadVariableOp(
                        resource=handle, dtype=variable.dtype, name="ReadVariableOp"
                    )
    return restore_ops


def _checkpoint_value(reader: Any, variable: _Variable) -> Any:
    """A variable's value from the checkpoint (its part, for a partitioned variable)."""
    value = reader.get_tensor(variable.key)
    if not variable.slice_spec:
        return value
    return value[
        tuple(slice(o, o + n) for o, n in zip(variable.offsets, variable.lengths, strict=True))
    ]


def _deprecation_silenced() -> Any:
    from tensorflow.python.util import deprecation

    return deprecation.silence()


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN_NAMES])
    more = len(names) - _SHOWN_NAMES
    return f"{shown} (and {more} more)" if more > 0 else shown


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no details"
