"""Tasks: inference from shapes and labels, metrics from mergeable counts, faithfulness."""

from __future__ import annotations

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.feeds import ExampleRecords
from components.common.signature import TensorDescription
from components.common.tasks import (
    AUC_BINS,
    LABEL_FLOAT,
    LABEL_INT,
    Counts,
    LabelSettings,
    infer_task,
    is_degenerate,
    make_task,
    plan_evaluation,
)
from tests.common.test_feeds import example


def output(shape: tuple, activation: str | None = None, name: str = "out") -> TensorDescription:
    return TensorDescription(name, f"{name}:0", "float32", shape, activation=activation)


def test_task_is_inferred_from_output_shape_activation_and_label_kind():
    assert infer_task(output((None, 10), "softmax"), LABEL_INT).name == "multiclass"
    assert infer_task(output((None, 1), "sigmoid"), LABEL_INT).name == "binary"
    assert infer_task(output((None, 1), "sigmoid"), None).name == "binary"
    assert infer_task(output((None, 1)), LABEL_INT).name == "binary"  # A logit.
    assert infer_task(output((None, 1)), LABEL_FLOAT).name == "regression"
    assert infer_task(output((None, 1)), None).name == "regression"
    assert infer_task(output((None, 10)), LABEL_INT, requested="regression").name == "regression"


def test_top5_is_never_below_top1_when_scores_tie():
    task = make_task("multiclass", output((None, 1000)))
    scores = np.full((4, 1000), 0.001)  # Random-weight MobileNetV2: every class the same.
    labels = np.array([0, 3, 999, 4])

    metrics = task.metrics(task.count(scores, labels, None))

    # Ties go to the lower class index, as argmax does: labels 0, 3 and 4 are in the top 5.
    assert metrics == {"top1": 0.25, "top5": 0.75}


def test_multiclass_metrics_and_agreement_merge_across_batches():
    rng = np.random.default_rng(0)
    task = make_task("multiclass", output((None, 6)))
    scores = rng.normal(size=(50, 6))
    baseline = scores + rng.normal(scale=0.3, size=scores.shape)
    labels = rng.integers(0, 6, 50)

    whole = task.count(scores, labels, baseline)
    merged = task.count(scores[:20], labels[:20], baseline[:20]).merge(
        task.count(scores[20:], labels[20:], baseline[20:])
    )

    assert task.metrics(merged) == pytest.approx(task.metrics(whole))
    expected_agreement = np.mean(scores.argmax(1) == baseline.argmax(1))
    assert task.faithfulness(merged)["agreement"] == pytest.approx(expected_agreement)
    expected_top1 = np.mean(scores.argmax(1) == labels)
    assert task.metrics(whole)["top1"] == pytest.approx(expected_top1)


def test_binary_auc_matches_the_exact_rank_statistic():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    probabilities = np.clip(0.3 * labels + rng.uniform(0, 0.7, 400), 0, 1)
    task = make_task("binary", output((None, 1), "sigmoid"))

    metrics = task.metrics(task.count(probabilities[:, None], labels, None))

    positive, negative = probabilities[labels == 1], probabilities[labels == 0]
    exact = np.mean(positive[:, None] > negative[None, :]) + 0.5 * np.mean(
        positive[:, None] == negative[None, :]
    )
    assert metrics["auc"] == pytest.approx(exact, abs=2.0 / AUC_BINS * 10)
    assert metrics["accuracy"] == pytest.approx(np.mean((probabilities >= 0.5) == labels))


def test_binary_logits_are_thresholded_at_zero():
    task = make_task("binary", output((None, 1)))  # No sigmoid: the output is a logit.
    logits = np.array([[-2.0], [0.5], [3.0], [-0.1]])

    metrics = task.metrics(task.count(logits, np.array([0, 1, 1, 1]), None))

    assert metrics["accuracy"] == 0.75


def test_regression_reports_mae_and_rmse_and_relative_error():
    task = make_task("regression", output((None, 1)))
    predictions = np.array([[1.0], [2.0], [4.0]])
    labels = np.array([1.5, 2.0, 2.0], np.float32)
    baseline = np.array([[1.0], [2.0], [5.0]])

    counts = task.count(predictions, labels, baseline)

    assert task.metrics(counts) == pytest.approx({"mae": 2.5 / 3, "rmse": np.sqrt(4.25 / 3)})
    faithful = task.faithfulness(counts)
    assert faithful["max_abs_diff"] == 1.0
    assert faithful["relative_error"] == pytest.approx(1.0 / np.sqrt(30.0))
    assert "agreement" not in faithful


def test_float_labels_for_a_classifier_are_refused():
    task = make_task("multiclass", output((None, 10), "softmax"))

    with pytest.raises(UserInputError, match="holds float values, but the task is multiclass"):
        task.check_labels(np.array([0.5, 1.0], np.float32), "price")


def test_labels_outside_the_classes_or_not_0_1_are_refused():
    with pytest.raises(UserInputError, match="scores 10 classes"):
        make_task("multiclass", output((None, 10))).check_labels(np.array([3, 12]), "label")
    with pytest.raises(UserInputError, match="besides 0 and 1"):
        make_task("binary", output((None, 1))).check_labels(np.array([0, 2]), "label")


def test_near_constant_baseline_outputs_are_degenerate():
    rng = np.random.default_rng(2)
    task = make_task("multiclass", output((None, 1000)))
    flat = np.full((30, 1000), 0.001) + rng.normal(scale=1e-9, size=(30, 1000))

    assert is_degenerate(task.count(flat, None, None))
    assert not is_degenerate(task.count(rng.random((30, 1000)), None, None))
    assert not is_degenerate(Counts())


def test_evaluation_plan_finds_labels_and_allows_none():
    labelled = ExampleRecords([example(x=[1.0], label=[1]), example(x=[2.0], label=[0])], "m")
    unlabelled = ExampleRecords([example(x=[1.0])], "m")
    outputs = (output((None, 1), "sigmoid", "p"),)

    plan = plan_evaluation(outputs, LabelSettings(), labelled)
    assert (plan.primary.task_name, plan.primary.label_feature) == ("binary", "label")
    assert not plan_evaluation(outputs, LabelSettings(), unlabelled).has_labels
    assert plan_evaluation(outputs, LabelSettings(), unlabelled).describe()["labels"] is None


def test_evaluation_plan_refuses_an_absent_label_feature_or_unknown_output():
    records = ExampleRecords([example(x=[1.0], y=[2.0])], "/data")
    outputs = (output((None, 1), name="price"),)

    with pytest.raises(
        UserInputError, match=r"label feature 'target' is not in .* \(features: x, y\)"
    ):
        plan_evaluation(outputs, LabelSettings(label_feature="target"), records)
    with pytest.raises(UserInputError, match="no output 'score'"):
        plan_evaluation(outputs, LabelSettings(label_map={"score": "y"}), records)
    plan = plan_evaluation(outputs, LabelSettings(label_feature="y"), records)
    assert plan.primary.task_name == "regression"
