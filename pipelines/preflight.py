"""The CLI's pre-flight check: everything about the inputs that can be known in seconds.

A missing path, a file that is not a model, an unknown signature, or Examples that do
not fit the signature are refused here, before any component runs or publishes
anything. The components check again (on Kubeflow there is no CLI), so this is a fast
path to the same messages, not a second set of rules: it calls the same functions.

    check_run_inputs(model_uri, examples_uri, settings)   # raises UserInputError

The order is cheapest first: paths (no TensorFlow import), the model's form, its
signature, a few records fed to it, its outputs against the labels.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from components.common.errors import UserInputError

# Enough records to see a variable-length feature, few enough to stay well under a second.
PREFLIGHT_RECORDS = 8


@dataclasses.dataclass(frozen=True)
class PreflightResult:
    """What the check found, for the CLI to print."""

    model_form: str
    model_path: str
    inputs: list[dict[str, Any]]
    task: str
    labels: str | None


def check_paths(model_uri: str, examples_uri: str, eval_split: str) -> None:
    """Local paths that do not exist are refused without importing TensorFlow."""
    if "://" not in model_uri and not os.path.exists(model_uri):
        raise UserInputError(
            f"Model path {model_uri!r} does not exist. Pass --model a SavedModel directory "
            f"(holding saved_model.pb), a TFX Model artifact (holding "
            f"Format-Serving/saved_model.pb), a .keras/.h5 file, or a TF1 checkpoint "
            f"directory or prefix with its .meta graph."
        )
    if "://" in examples_uri:
        return
    if not os.path.isdir(examples_uri):
        raise UserInputError(
            f"Examples path {examples_uri!r} is not a directory. Pass --examples a TFX "
            f"Examples artifact directory holding Split-{eval_split}/ with GZIP TFRecords."
        )
    if not os.path.isdir(os.path.join(examples_uri, f"Split-{eval_split}")):
        present = sorted(os.listdir(examples_uri))
        raise UserInputError(
            f"Examples at {examples_uri!r} have no split folder 'Split-{eval_split}' "
            f"(found: {', '.join(present) or 'nothing'}). Pass --split one of the splits "
            f"there, or an Examples artifact directory."
        )


def check_run_inputs(model_uri: str, examples_uri: str, settings: Any) -> PreflightResult:
    """Checks a run's model and Examples against each other; raises UserInputError.

    `settings` is a pipelines.pipeline.PipelineSettings.
    """
    check_paths(model_uri, examples_uri, settings.eval_split)

    from components.common.examples_io import read_records, resolve_calibration
    from components.common.feeds import (
        ExampleRecords,
        ModelFeeder,
        check_feature_map,
    )
    from components.common.tasks import plan_evaluation
    from components.freezer.model_forms import (
        ModelSelection,
        mark_tf_example_inputs,
        original_function,
        resolve_model,
    )

    source = resolve_model(model_uri)
    selection = ModelSelection(
        settings.signature_key, tuple(settings.output_nodes), tuple(settings.input_nodes)
    )
    function, signature, keyword_names = original_function(source, selection)
    if keyword_names is not None:  # A SavedModel signature: which inputs parse Examples.
        signature = mark_tf_example_inputs(function, signature)
    feed = settings.feed_settings()
    check_feature_map(feed, signature.inputs)
    records = ExampleRecords(
        read_records(examples_uri, settings.eval_split, limit=PREFLIGHT_RECORDS), examples_uri
    )
    feeder = ModelFeeder(feed)
    inputs = feeder.inputs(signature, records)
    outputs = _run_once(function, signature, keyword_names, inputs, source.path)
    _check_output_shapes(signature, outputs)
    plan = plan_evaluation(signature.outputs, settings.label_settings(), records)
    if any(kind.needs_calibration for kind in settings.kind_selection().built):
        calibration = resolve_calibration(
            examples_uri, settings.eval_split, settings.calibration_split
        )
        read_records(examples_uri, calibration.split, limit=1, part=calibration.calibration_part)
    return PreflightResult(
        model_form=source.form,
        model_path=source.path,
        inputs=feeder.describe(),
        task=plan.primary.task_name,
        labels=plan.primary.label_feature,
    )


def _run_once(
    function: Any, signature: Any, keyword_names: list[str] | None, inputs: list, path: str
) -> list:
    import tensorflow as tf

    tensors = [tf.constant(x) for x in inputs]
    try:
        if keyword_names is None:
            outputs = function(*tensors)
        else:
            outputs = function(**dict(zip(keyword_names, tensors, strict=True)))
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
        first = str(error).strip().splitlines()[0][:400] if str(error).strip() else ""
        raise UserInputError(
            f"The model at {path!r} could not run on the Examples: {type(error).__name__}: "
            f"{first}. When the signature parses tf.Examples, the Examples must carry every "
            f"feature it parses, with the dtypes and lengths it expects; use the Examples "
            f"the model was trained on (an ExampleGen's output), or pass --signature."
        ) from error
    if isinstance(outputs, dict):
        outputs = [outputs[name] for name in sorted(outputs)]
    return [o.numpy() if hasattr(o, "numpy") else o for o in outputs]


def _check_output_shapes(signature: Any, outputs: list) -> None:
    if len(outputs) != len(signature.outputs):
        raise UserInputError(
            f"The model returned {len(outputs)} outputs, but its signature names "
            f"{len(signature.outputs)}; re-export it with a consistent signature."
        )
