"""The default pipeline keeps the outputs; transform selections that make no sense are refused."""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.graph_io import graph_def_callable
from components.inference_optimizer.optimizer import optimize_graph, resolve_transform_names
from components.inference_optimizer.registry import (
    Transform,
    TransformConfig,
    default_transform_names,
    register_transform,
    transform_names,
)

DEFAULTS = [
    "strip_debug_and_training",
    "remove_unreachable",
    "fold_constants",
    "fold_batch_norms",
    "fuse_ops",
]


def test_default_pipeline_matches_the_frozen_graph_on_digits(
    optimized_digits, frozen_digits, digits_eval, frozen_digits_outputs
):
    (actual,) = graph_def_callable(optimized_digits.graph_def, frozen_digits.signature)(
        digits_eval.images
    )

    np.testing.assert_allclose(actual, frozen_digits_outputs, atol=1e-4)
    assert (actual.argmax(1) == frozen_digits_outputs.argmax(1)).all()
    assert optimized_digits.transforms == DEFAULTS
    assert optimized_digits.node_count_after < optimized_digits.node_count_before / 3


def test_transform_log_records_counts_histograms_and_time_per_transform(optimized_digits):
    log = json.loads(json.dumps(optimized_digits.transform_log))  # JSON-serialisable.

    assert [entry["transform"] for entry in log] == DEFAULTS
    for before, after in zip(log, log[1:], strict=False):
        assert after["node_count_before"] == before["node_count_after"]
    for entry in log:
        assert entry["seconds"] >= 0
        assert sum(entry["op_histogram_after"].values()) >= entry["node_count_after"]
        assert entry["implementation"]
        assert isinstance(entry["config"], dict)
    assert log[0]["node_count_before"] == optimized_digits.node_count_before
    assert log[-1]["node_count_after"] == optimized_digits.node_count_after


def test_defaults_are_every_transform_but_bfloat16_in_canonical_order():
    assert default_transform_names() == DEFAULTS
    assert transform_names() == [*DEFAULTS, "bfloat16"]
    assert resolve_transform_names(None) == DEFAULTS


def test_the_bfloat16_mode_drops_the_transforms_bfloat16_conflicts_with():
    """On a bf16 CPU its kind ran the defaults plus bfloat16, and fuse_ops refused it."""
    from components.inference_optimizer.modes import BFLOAT16_MODE, transforms_for

    chosen = transforms_for(BFLOAT16_MODE, None)
    assert resolve_transform_names(chosen) == chosen  # A selection that validates.
    assert chosen[-1] == "bfloat16" and "fuse_ops" not in chosen
    assert "fold_batch_norms" in chosen
    assert transforms_for(BFLOAT16_MODE, ["fold_constants", "fuse_ops"]) == [
        "fold_constants",
        "bfloat16",
    ]


def test_empty_selection_returns_the_graph_unchanged(frozen_digits):
    result = optimize_graph(frozen_digits.graph_def, frozen_digits.signature, [])

    assert result.graph_def == frozen_digits.graph_def
    assert result.transform_log == []


def test_unknown_transform_name_is_refused_with_the_valid_names(frozen_digits):
    with pytest.raises(UserInputError) as error:
        optimize_graph(frozen_digits.graph_def, frozen_digits.signature, ["fold_constant"])

    message = str(error.value)
    assert "Unknown transform 'fold_constant'" in message
    for name in transform_names():
        assert name in message


@pytest.mark.parametrize(
    ("transforms", "expected"),
    [
        (["fuse_ops", "strip_debug_and_training"], "in the order they can soundly run"),
        (["fuse_ops", "fuse_ops"], "more than once"),
        (["fold_batch_norms"], "needs ['fold_constants']"),
        (["fuse_ops", "bfloat16"], "cannot be combined"),
        ("fuse_ops", "must be a list of names"),
    ],
)
def test_nonsense_selections_are_refused(transforms, expected):
    with pytest.raises(UserInputError) as error:
        resolve_transform_names(transforms)

    assert expected in str(error.value)


def test_unknown_or_mistyped_settings_are_refused(frozen_digits):
    graph_def, signature = frozen_digits.graph_def, frozen_digits.signature

    with pytest.raises(UserInputError, match="Unknown setting"):
        optimize_graph(graph_def, signature, ["fuse_ops"], {"fuse_ops": {"portable": True}})
    with pytest.raises(UserInputError, match="must be bool"):
        optimize_graph(
            graph_def, signature, ["fuse_ops"], {"fuse_ops": {"allow_onednn_only_fusions": 1}}
        )
    with pytest.raises(UserInputError, match="not among the transforms to run"):
        optimize_graph(graph_def, signature, ["fuse_ops"], {"bfloat16": {}})


def test_graph_without_the_signature_tensors_is_refused(frozen_digits):
    signature = dataclasses.replace(
        frozen_digits.signature,
        outputs=(dataclasses.replace(frozen_digits.signature.outputs[0], tensor_name="nope:0"),),
    )

    with pytest.raises(UserInputError, match="nope:0"):
        optimize_graph(frozen_digits.graph_def, signature)


def test_registering_a_taken_name_is_an_error():
    class Duplicate(Transform):
        name = "fuse_ops"
        stage = 999
        implementation = "none"
        config_type: ClassVar[type[TransformConfig]] = TransformConfig

        def apply(self, graph_def, signature):
            raise NotImplementedError

    with pytest.raises(ValueError, match="already registered"):
        register_transform(Duplicate)
