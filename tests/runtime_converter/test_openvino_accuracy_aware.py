"""Accuracy-aware OpenVINO int8 (openvino_int8_aa): TF names for the IR's convolutions,
and the whole search on the outlier digits CNN (naive int8 loses far more than 2
points; the search must come back within 1 by NNCF's ignored_scope)."""

from __future__ import annotations

import os

import pytest

from tests.runtime_converter.tiny_classifier import requires_openvino

pytestmark = requires_openvino


def _conv_graph(tmp_path):
    import tensorflow as tf

    from components.common.graph_io import save_graph_def
    from tests.quantizer.quantizer_helpers import freeze_function

    first = tf.constant(tf.random.stateless_normal([3, 3, 1, 4], seed=[1, 2]))
    second = tf.constant(tf.random.stateless_normal([3, 3, 4, 2], seed=[3, 4]))

    def model(x):
        hidden = tf.nn.relu(tf.nn.conv2d(x, first, 1, "SAME", name="first_conv"))
        return tf.nn.conv2d(hidden, second, 1, "SAME", name="second_conv")

    graph = freeze_function(model, tf.TensorSpec([None, 8, 8, 1], tf.float32))
    save_graph_def(graph.graph_def, str(tmp_path))
    return graph.graph_def, str(tmp_path)


def ir_convolution_names(graph_path: str, layers: list) -> dict:
    """In a child process (OpenVINO's TF frontend must not share a process with the
    TensorFlow the test suite has loaded, as in the kinds themselves)."""
    import openvino as ov

    from components.runtime_converter.openvino_accuracy_aware import name_weighted_ops

    model = ov.convert_model(graph_path)
    renamed = name_weighted_ops(model, layers)
    names = [
        o.get_friendly_name() for o in model.get_ordered_ops() if o.get_type_name() == "Convolution"
    ]
    return {"renamed": renamed, "names": names}


def test_the_ir_convolutions_get_their_tf_names_only_when_the_weights_agree(tmp_path):
    from components.common.graph_io import GRAPH_FILENAME
    from components.common.isolation import run_isolated
    from components.runtime_converter.openvino_accuracy_aware import tf_contractions

    graph_def, graph_dir = _conv_graph(tmp_path / "graph")
    layers = tf_contractions(graph_def)
    assert [(layer["op"], layer["weights"]) for layer in layers] == [
        ("Conv2D", [3, 3, 1, 4]),
        ("Conv2D", [3, 3, 4, 2]),
    ]
    graph_path = os.path.join(graph_dir, GRAPH_FILENAME)

    def named(given):
        outcome = run_isolated(
            f"{__name__}:ir_convolution_names",
            {"graph_path": graph_path, "layers": given},
            str(tmp_path / "work"),
            timeout_s=300,
        )
        assert outcome.ok, outcome.failure("naming")
        return outcome.result

    paired = named(layers)
    assert paired == {"renamed": 2, "names": [layer["name"] for layer in layers]}
    # Shapes that do not pair up are not guessed at.
    swapped = [dict(layers[0], weights=[3, 3, 4, 2]), dict(layers[1], weights=[3, 3, 1, 4])]
    assert named(swapped)["renamed"] == 0


@pytest.mark.slow
def test_naive_openvino_int8_fails_and_the_search_restores_it_within_one_point(outlier, tmp_path):
    outcome, record = outlier.search("openvino_int8_aa", str(tmp_path))
    search = record["search"]
    assert search["steps"][0]["excluded"] == [] and search["steps"][0]["metric_drop"] > 0.02
    assert search["reachable"] and search["stop_reason"] == "within_budget", search
    assert search["steps"][search["chosen_step"]]["metric_drop"] <= 0.01
    # The layer names are the model's own, and the reader of the outlier channel is in float.
    assert record["layers_named_from_tf"] == 3
    assert any("conv_reader" in name for name in search["fallback_layers"]), search
    assert outcome.properties["fake_quantize_ops"] > 0  # The rest stayed int8.
    assert outcome.properties["fallback_layer_count"] == len(search["fallback_layers"])
