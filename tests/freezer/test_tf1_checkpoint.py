"""TF1 graph + checkpoint in, frozen graph out: same outputs, clear errors for bad input."""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.graph_io import graph_def_callable
from components.freezer.tf1_checkpoint import (
    Tf1Checkpoint,
    find_tf1_checkpoint,
    freeze_tf1_checkpoint,
    tf1_checkpoint_function,
)

OUTPUTS = ["probabilities", "scores"]
STATE_OPS = {
    "VariableV2",
    "Variable",
    "VarHandleOp",
    "ReadVariableOp",
    "Assign",
    "AssignVariableOp",
    "RestoreV2",
    "SaveV2",
    "ResourceApplyAdam",
    "ApplyAdam",
    "NoOp",
}


@dataclasses.dataclass(frozen=True)
class Tf1Model:
    """A TF1 checkpoint directory and what its Session computed for `features`/`token_ids`."""

    directory: str
    prefix: str
    features: np.ndarray
    token_ids: np.ndarray
    expected: dict[str, np.ndarray]


def write_tf1_model(
    directory: str,
    *,
    write_meta_graph: bool = True,
    write_pbtxt: bool = False,
    saved_variables: tuple[str, ...] | None = None,
    partitioned: bool = False,
) -> Tf1Model:
    """Builds, trains (a few Adam steps) and saves a small TF1 graph the way TF1 code did.

    Two inputs (float features [None, 4], int token ids [None]), a ref variable (the
    TF1 kind) and resource variables, an embedding lookup, and a loss + Adam training op
    whose nodes freezing must drop. `saved_variables` saves only those variables.
    """
    import tensorflow as tf

    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        # A graph-level seed: the initializers are random, and a test process that has
        # switched op determinism on (the embedded default's training) refuses unseeded ones.
        tf.compat.v1.set_random_seed(7)
        features = tf.compat.v1.placeholder(tf.float32, [None, 4], name="features")
        token_ids = tf.compat.v1.placeholder(tf.int32, [None], name="token_ids")
        labels = tf.compat.v1.placeholder(tf.float32, [None, 3], name="labels")
        kernel = tf.compat.v1.get_variable("dense/kernel", [4, 3], use_resource=False)
        bias = tf.compat.v1.get_variable("dense/bias", [3], initializer=tf.ones_initializer())
        partitioner = tf.compat.v1.fixed_size_partitioner(2) if partitioned else None
        embedding = tf.compat.v1.get_variable("embedding", [6, 3], partitioner=partitioner)
        hidden = tf.nn.relu(tf.matmul(features, kernel) + bias, name="hidden")
        scores = tf.identity(hidden + tf.nn.embedding_lookup(embedding, token_ids), name="scores")
        probabilities = tf.nn.softmax(scores, name="probabilities")
        loss = tf.reduce_mean(tf.square(scores - labels), name="loss")
        step = tf.compat.v1.train.get_or_create_global_step()
        train = tf.compat.v1.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
        var_list = None
        if saved_variables is not None:
            var_list = [v for v in tf.compat.v1.global_variables() if v.op.name in saved_variables]
        saver = tf.compat.v1.train.Saver(var_list=var_list)
        rng = np.random.default_rng(7)
        batch = {
            features: rng.normal(size=(16, 4)).astype(np.float32),
            token_ids: rng.integers(0, 6, size=16).astype(np.int32),
            labels: rng.normal(size=(16, 3)).astype(np.float32),
        }
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for _ in range(3):
                session.run(train, batch)
            prefix = saver.save(
                session,
                os.path.join(directory, "model.ckpt"),
                global_step=step,
                write_meta_graph=write_meta_graph,
            )
            feed = {features: batch[features][:5], token_ids: batch[token_ids][:5]}
            expected = dict(
                zip(
                    ["hidden", *OUTPUTS],
                    session.run([hidden, probabilities, scores], feed),
                    strict=True,
                )
            )
        if write_pbtxt:
            tf.io.write_graph(graph.as_graph_def(), directory, "graph.pbtxt")
    return Tf1Model(directory, prefix, feed[features], feed[token_ids], expected)


@pytest.fixture(scope="module")
def tf1_model(tmp_path_factory: pytest.TempPathFactory) -> Tf1Model:
    return write_tf1_model(str(tmp_path_factory.mktemp("tf1_model")))


@pytest.fixture(scope="module")
def frozen(tf1_model):
    return freeze_tf1_checkpoint(find_tf1_checkpoint(tf1_model.directory), OUTPUTS)


def run_frozen(frozen_model, *inputs: np.ndarray) -> list[np.ndarray]:
    return graph_def_callable(frozen_model.graph_def, frozen_model.signature)(*inputs)


def test_directory_is_found_through_the_checkpoint_state_file(tf1_model):
    checkpoint = find_tf1_checkpoint(tf1_model.directory)

    assert checkpoint == Tf1Checkpoint(
        graph_path=f"{tf1_model.prefix}.meta", checkpoint_prefix=tf1_model.prefix
    )
    assert tf1_model.prefix.endswith("model.ckpt-3")
    assert tf1_model.prefix in checkpoint.describe()


def test_frozen_graph_gives_the_sessions_outputs(tf1_model, frozen):
    probabilities, scores = run_frozen(frozen, tf1_model.features, tf1_model.token_ids)

    np.testing.assert_allclose(probabilities, tf1_model.expected["probabilities"], atol=1e-6)
    np.testing.assert_allclose(scores, tf1_model.expected["scores"], atol=1e-6)


def test_frozen_graph_keeps_no_variable_saver_or_training_nodes(frozen):
    ops = {node.op for node in frozen.graph_def.node}
    names = {node.name for node in frozen.graph_def.node}

    assert not ops & STATE_OPS
    assert {"MatMul", "Relu", "Softmax", "Const"} <= ops
    assert not {"labels", "loss", "global_step"} & names
    assert not any(name.startswith(("save/", "Adam", "gradients/")) for name in names)


def test_signature_inputs_are_the_placeholders_the_outputs_need(frozen):
    signature = frozen.signature

    assert signature.signature_key == "serving_default"
    assert [(t.name, t.tensor_name, t.dtype, t.shape) for t in signature.inputs] == [
        ("features", "features:0", "float32", (None, 4)),
        ("token_ids", "token_ids:0", "int32", (None,)),
    ]
    assert [(t.name, t.tensor_name, t.dtype, t.shape) for t in signature.outputs] == [
        ("probabilities", "probabilities:0", "float32", (None, 3)),
        ("scores", "scores:0", "float32", (None, 3)),
    ]


def test_an_output_that_needs_one_placeholder_takes_one_input(tf1_model):
    checkpoint = find_tf1_checkpoint(tf1_model.directory)

    hidden_only = freeze_tf1_checkpoint(checkpoint, ["hidden:0"])

    assert [t.name for t in hidden_only.signature.inputs] == ["features"]
    assert [t.tensor_name for t in hidden_only.signature.outputs] == ["hidden:0"]
    (hidden,) = run_frozen(hidden_only, tf1_model.features)
    np.testing.assert_allclose(hidden, tf1_model.expected["hidden"], atol=1e-6)


def test_checkpoint_prefix_finds_the_meta_graph_beside_it(tf1_model):
    checkpoint = find_tf1_checkpoint(tf1_model.prefix)

    from_prefix = freeze_tf1_checkpoint(checkpoint, OUTPUTS)

    assert checkpoint.graph_path == f"{tf1_model.prefix}.meta"
    # Compared before anything runs them: importing a GraphDef adds default attrs to it.
    from_directory = freeze_tf1_checkpoint(find_tf1_checkpoint(tf1_model.directory), OUTPUTS)
    assert from_prefix.signature == from_directory.signature
    assert from_prefix.graph_def == from_directory.graph_def


def test_checkpoint_function_runs_the_unfrozen_model_with_the_same_outputs(tf1_model, frozen):
    import tensorflow as tf

    baseline = tf1_checkpoint_function(find_tf1_checkpoint(tf1_model.directory), OUTPUTS)

    outputs = baseline(tf.constant(tf1_model.features), tf.constant(tf1_model.token_ids))
    assert baseline.signature == frozen.signature
    assert sorted(v.name for v in baseline.variables) == [
        "dense/bias:0",
        "dense/kernel:0",
        "embedding:0",
    ]
    assert "ReadVariableOp" in {op.type for op in baseline.function.graph.get_operations()}
    frozen_outputs = run_frozen(frozen, tf1_model.features, tf1_model.token_ids)
    for actual, expected in zip(outputs, frozen_outputs, strict=True):
        np.testing.assert_allclose(actual.numpy(), expected, atol=1e-6)


def test_graph_pbtxt_beside_the_checkpoint_serves_when_there_is_no_meta_graph(tmp_path):
    model = write_tf1_model(str(tmp_path), write_meta_graph=False, write_pbtxt=True)
    checkpoint = find_tf1_checkpoint(model.directory)

    frozen_model = freeze_tf1_checkpoint(checkpoint, OUTPUTS)

    assert checkpoint.graph_path == os.path.join(model.directory, "graph.pbtxt")
    probabilities, scores = run_frozen(frozen_model, model.features, model.token_ids)
    np.testing.assert_allclose(scores, model.expected["scores"], atol=1e-6)
    np.testing.assert_allclose(probabilities, model.expected["probabilities"], atol=1e-6)


def test_partitioned_variable_is_restored_slice_by_slice_from_the_meta_graph(tmp_path):
    import tensorflow as tf

    model = write_tf1_model(str(tmp_path), partitioned=True)
    checkpoint = find_tf1_checkpoint(model.directory)

    frozen_model = freeze_tf1_checkpoint(checkpoint, ["scores"])
    baseline = tf1_checkpoint_function(checkpoint, ["scores"])

    assert "embedding/part_1" in {node.name for node in frozen_model.graph_def.node}
    (scores,) = run_frozen(frozen_model, model.features, model.token_ids)
    np.testing.assert_allclose(scores, model.expected["scores"], atol=1e-6)
    (baseline_scores,) = baseline(tf.constant(model.features), tf.constant(model.token_ids))
    np.testing.assert_allclose(baseline_scores.numpy(), model.expected["scores"], atol=1e-6)


def test_listed_input_nodes_are_fed_even_when_they_are_not_placeholders(tf1_model):
    checkpoint = find_tf1_checkpoint(tf1_model.directory)

    from_hidden = freeze_tf1_checkpoint(checkpoint, ["scores"], input_nodes=["token_ids", "hidden"])

    assert [(t.name, t.dtype, t.shape) for t in from_hidden.signature.inputs] == [
        ("hidden", "float32", (None, 3)),
        ("token_ids", "int32", (None,)),
    ]
    names = {node.name for node in from_hidden.graph_def.node}
    assert "features" not in names and "dense/kernel" not in names
    (scores,) = run_frozen(from_hidden, tf1_model.expected["hidden"], tf1_model.token_ids)
    np.testing.assert_allclose(scores, tf1_model.expected["scores"], atol=1e-6)


def test_feeding_one_output_of_an_input_pipeline_node_cuts_the_pipeline_off(tmp_path):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(7)  # See write_tf1_model: determinism may be on.
        # The TF1 dataset class, as TF1 input pipelines built it (one-shot iterators).
        dataset = tf.compat.v1.data.Dataset.from_tensor_slices(
            (np.ones((8, 2), np.float32), np.zeros((8, 1), np.float32))
        ).batch(4)
        features, labels = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        weights = tf.compat.v1.get_variable("weights", [2, 1])
        logits = tf.identity(tf.matmul(features, weights), name="logits")
        tf.compat.v1.losses.mean_squared_error(labels, logits)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            weights_value = session.run(weights)
            tf.compat.v1.train.Saver().save(session, str(tmp_path / "model.ckpt"))
    checkpoint = find_tf1_checkpoint(str(tmp_path))

    frozen_model = freeze_tf1_checkpoint(checkpoint, ["logits"], input_nodes=["IteratorGetNext:0"])

    assert [(t.name, t.tensor_name) for t in frozen_model.signature.inputs] == [
        ("IteratorGetNext", "IteratorGetNext:0")
    ]
    assert not {"OneShotIterator", "IteratorGetNext"} & {n.op for n in frozen_model.graph_def.node}
    batch = np.arange(6, dtype=np.float32).reshape(3, 2)
    (logits_value,) = run_frozen(frozen_model, batch)
    np.testing.assert_allclose(logits_value, batch @ weights_value, atol=1e-6)
    # The loss also reads the labels (IteratorGetNext:1), which would be left unfed.
    with pytest.raises(UserInputError, match="also uses its outputs IteratorGetNext:1"):
        freeze_tf1_checkpoint(
            checkpoint, ["mean_squared_error/value"], input_nodes=["IteratorGetNext:0"]
        )


def test_missing_output_nodes_are_refused_listing_candidates(tf1_model):
    checkpoint = find_tf1_checkpoint(tf1_model.directory)

    with pytest.raises(UserInputError, match="No output nodes given") as error:
        freeze_tf1_checkpoint(checkpoint, [])

    message = str(error.value)
    assert "probabilities" in message and "scores" in message
    assert "save/" not in message and "dense/kernel" not in message and "Adam" not in message


def test_unknown_output_node_is_refused_with_a_close_match(tf1_model):
    checkpoint = find_tf1_checkpoint(tf1_model.directory)

    with pytest.raises(UserInputError, match="'probabilites' is not in the graph") as error:
        freeze_tf1_checkpoint(checkpoint, ["probabilites"])

    assert "Did you mean probabilities" in str(error.value)


def test_unknown_input_node_is_refused_listing_the_placeholders(tf1_model):
    checkpoint = find_tf1_checkpoint(tf1_model.directory)

    with pytest.raises(UserInputError, match="Input node 'image' is not in the graph") as error:
        freeze_tf1_checkpoint(checkpoint, OUTPUTS, input_nodes=["image"])

    assert "features" in str(error.value) and "token_ids" in str(error.value)


def test_placeholder_missing_from_the_listed_inputs_is_named(tf1_model):
    checkpoint = find_tf1_checkpoint(tf1_model.directory)

    with pytest.raises(UserInputError, match="need the placeholder\\(s\\) token_ids"):
        freeze_tf1_checkpoint(checkpoint, ["scores"], input_nodes=["features"])


def test_listed_input_the_outputs_do_not_use_is_refused(tf1_model):
    checkpoint = find_tf1_checkpoint(tf1_model.directory)

    with pytest.raises(UserInputError, match="labels:0 are not needed"):
        freeze_tf1_checkpoint(checkpoint, ["hidden"], input_nodes=["features", "labels"])


def test_output_that_is_also_an_input_is_refused(tf1_model):
    checkpoint = find_tf1_checkpoint(tf1_model.directory)

    with pytest.raises(UserInputError, match="both an input and an output"):
        freeze_tf1_checkpoint(checkpoint, ["features", "hidden"])


def test_output_node_without_tensors_is_refused(tf1_model):
    checkpoint = find_tf1_checkpoint(tf1_model.directory)

    with pytest.raises(UserInputError, match="produces no tensor"):
        freeze_tf1_checkpoint(checkpoint, ["save/restore_all"])


def test_variables_missing_from_the_checkpoint_are_named(tmp_path):
    model = write_tf1_model(str(tmp_path), saved_variables=("dense/kernel", "dense/bias"))
    checkpoint = find_tf1_checkpoint(model.directory)

    with pytest.raises(UserInputError, match="lacks the variable\\(s\\) embedding") as error:
        freeze_tf1_checkpoint(checkpoint, OUTPUTS)

    assert "dense/kernel" in str(error.value)  # What the checkpoint does hold.
    # The outputs that do not read the missing variable still freeze.
    assert freeze_tf1_checkpoint(checkpoint, ["hidden"]).signature.outputs[0].name == "hidden"


def test_prefix_with_only_a_meta_graph_is_refused_as_incomplete(tmp_path, tf1_model):
    shutil.copy(f"{tf1_model.prefix}.meta", tmp_path / "model.ckpt-3.meta")

    with pytest.raises(UserInputError, match="is incomplete") as error:
        find_tf1_checkpoint(str(tmp_path / "model.ckpt-3"))

    assert "model.ckpt-3.index" in str(error.value)
    with pytest.raises(UserInputError, match="no checkpoint data"):
        find_tf1_checkpoint(str(tmp_path))


def test_checkpoint_without_any_graph_file_is_refused(tmp_path):
    model = write_tf1_model(str(tmp_path), write_meta_graph=False)

    with pytest.raises(UserInputError, match="has no graph") as error:
        find_tf1_checkpoint(model.directory)

    assert "graph.pbtxt" in str(error.value) and "model.ckpt-3.meta" in str(error.value)


def test_checkpoint_state_file_from_another_machine_falls_back_to_the_files_here(
    tmp_path, tf1_model
):
    for name in os.listdir(tf1_model.directory):
        shutil.copy(os.path.join(tf1_model.directory, name), tmp_path / name)
    (tmp_path / "checkpoint").write_text(
        'model_checkpoint_path: "/gone/run7/model.ckpt-3"\n'
        'all_model_checkpoint_paths: "/gone/run7/model.ckpt-3"\n'
    )

    checkpoint = find_tf1_checkpoint(str(tmp_path))

    assert checkpoint.checkpoint_prefix == str(tmp_path / "model.ckpt-3")


def test_mistyped_prefix_names_the_checkpoints_that_are_there(tf1_model):
    with pytest.raises(UserInputError, match="There is no checkpoint") as error:
        find_tf1_checkpoint(os.path.join(tf1_model.directory, "model.ckpt-300"))

    assert "model.ckpt-3" in str(error.value)


def test_paths_that_are_no_checkpoint_are_left_to_other_model_forms(tmp_path):
    saved_model = tmp_path / "saved_model"
    saved_model.mkdir()
    (saved_model / "saved_model.pb").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a model")

    assert find_tf1_checkpoint(str(saved_model)) is None
    assert find_tf1_checkpoint(str(tmp_path)) is None
    assert find_tf1_checkpoint(str(tmp_path / "notes.txt")) is None
    assert find_tf1_checkpoint(str(tmp_path / "no-such-model")) is None
