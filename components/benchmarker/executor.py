"""Benchmarker executor: runs the harness, writes the report, records the blessing."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
from typing import Any

from tfx.dsl.components.base import base_beam_executor
from tfx.types.artifact import Artifact

from components.benchmarker.harness import (
    BenchmarkRequest,
    BenchmarkSettings,
    VariantSpec,
    run_benchmark_in_subprocess,
)
from components.benchmarker.progress import ProgressDisplay
from components.benchmarker.report_int8_search import read_searches
from components.benchmarker.run_parameters import check_run_parameters
from components.benchmarker.selection import (
    FAITHFULNESS_AGREEMENT,
    FAITHFULNESS_RELATIVE_ERROR,
    Gate,
)
from components.common.artifact_utils import (
    STATUS_OK,
    STATUS_SKIPPED,
    set_custom_property,
    single_artifact,
)
from components.common.errors import UserInputError
from components.common.executor_output import records_user_errors
from components.common.tasks import metric_budget
from components.runtimes.null import FORMAT_NULL
from components.runtimes.preprocessing import FORMAT_PREPROCESSING
from components.runtimes.saved_model import FORMAT_SAVED_MODEL

BASELINE_NAME = "baseline"
# The Freezer's variant: after a split, the fp32 model core that core speedups refer to.
FROZEN_GRAPH_VARIANT = "frozen_graph"
NULL_VARIANT_NAME = "null_harness_overhead"
PREPROCESSING_VARIANT_NAME = "preprocessing"
BASELINE_INPUT_KEYS = ("model", "examples")


def parse_settings(settings_json: str) -> BenchmarkSettings:
    """BenchmarkSettings from JSON; unknown keys are refused with the valid ones listed."""
    try:
        return BenchmarkSettings.from_json(json.loads(settings_json or "{}"))
    except UserInputError as error:
        raise ValueError(str(error)) from None


def build_gate(
    evaluation: dict[str, Any],
    degenerate_outputs: list[str],
    max_accuracy_drop: float,
    max_metric_drop: str = "",
) -> Gate:
    """The selection gate for the evaluated task (see selection.Gate).

    The budget is tasks.metric_budget's (the int8 search keeps to the same rule).
    """
    metric = evaluation["primary_metric"] if evaluation.get("labels") else None
    budget, relative = metric_budget(evaluation["task"], max_accuracy_drop, max_metric_drop)
    degenerate = evaluation["primary_output"] in degenerate_outputs
    return Gate(
        metric=metric,
        higher_is_better=bool(evaluation["higher_is_better"][evaluation["primary_metric"]]),
        max_drop=budget,
        relative=relative,
        faithfulness=(
            FAITHFULNESS_AGREEMENT if evaluation.get("decides") else FAITHFULNESS_RELATIVE_ERROR
        ),
        faithfulness_established=not degenerate,
        not_established_reason=(
            f"the baseline's output {evaluation['primary_output']!r} hardly varies across the "
            f"evaluation inputs (random weights?), so no difference could show"
            if degenerate
            else ""
        ),
    )


def frozen_graph_artifact(input_dict: dict[str, list[Artifact]]) -> Artifact | None:
    artifacts = input_dict.get("frozen_graph") or []
    return artifacts[0] if artifacts else None


def variant_specs(
    model: Artifact,
    input_dict: dict[str, list[Artifact]],
    baseline_format: str = FORMAT_SAVED_MODEL,
    skipped: dict[str, str] | None = None,
) -> tuple[list[VariantSpec], str]:
    """The baseline, every variant artifact, the preprocessing (when the Freezer split the
    signature) and the null backend (harness overhead)."""
    from components.common.preprocessing import has_preprocessing

    specs = [VariantSpec(BASELINE_NAME, baseline_format, model.uri, artifact_id=model.id)]
    signature_uri = ""
    for key in sorted(input_dict):
        if key in BASELINE_INPUT_KEYS:
            continue
        for artifact in input_dict[key]:
            properties = {
                name: artifact.get_custom_property(name)
                for name in artifact.mlmd_artifact.custom_properties
            }
            status = str(properties.get("status", STATUS_OK))
            specs.append(
                VariantSpec(
                    name=str(properties.get("variant_name") or key),
                    model_format=str(properties["format"]),
                    uri=artifact.uri,
                    status=status,
                    failure_reason=str(properties.get("failure_reason", "")),
                    artifact_id=artifact.id,
                    properties=_json_safe(properties),
                )
            )
            if status == STATUS_OK and not signature_uri:
                signature_uri = artifact.uri
    # Kinds the pipeline left out on this hardware: rows with the reason, nothing to load.
    for name, reason in sorted((skipped or {}).items()):
        specs.append(VariantSpec(name, "none", "", status=STATUS_SKIPPED, failure_reason=reason))
    frozen = frozen_graph_artifact(input_dict)
    if frozen is not None and has_preprocessing(frozen.uri):
        specs.append(
            VariantSpec(
                PREPROCESSING_VARIANT_NAME, FORMAT_PREPROCESSING, frozen.uri, artifact_id=frozen.id
            )
        )
    if signature_uri:
        # The null backend only needs an output shape, which any variant's signature has.
        specs.append(VariantSpec(NULL_VARIANT_NAME, FORMAT_NULL, signature_uri))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"two variants share the names {duplicates}; set distinct variant_name")
    return specs, BASELINE_NAME


def _json_safe(properties: dict[str, Any]) -> dict[str, Any]:
    safe = {}
    for key, value in properties.items():
        safe[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return safe


class Executor(base_beam_executor.BaseBeamExecutor):
    """Benchmarks in a child process, then writes report.json/md/html and the blessing."""

    @records_user_errors
    def Do(
        self,
        input_dict: dict[str, list[Artifact]],
        output_dict: dict[str, list[Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        from components.benchmarker import fingerprint, report, selection

        model = single_artifact(input_dict["model"], "model")
        examples = single_artifact(input_dict["examples"], "examples")
        report_artifact = single_artifact(output_dict["report"], "report")
        blessing_artifact = single_artifact(output_dict["blessing"], "blessing")
        from components.freezer.model_forms import resolve_model

        # On Kubeflow and Vertex these are the run's parameters: checked only now.
        run_parameters = check_run_parameters(exec_properties)
        settings = parse_settings(exec_properties["benchmark_settings"])
        if "time_budget_s" in run_parameters:
            settings = dataclasses.replace(settings, time_budget_s=run_parameters["time_budget_s"])
        if settings.memory_budget_bytes is not None:
            # The pipeline's budget covers what already runs: this process (the local
            # run's: the pipeline itself) and its children, the warm server the
            # harness forks from among them (PSS: their shared pages counted once).
            # The benchmark processes get what is left. ResNet50 under a 6 GiB budget
            # peaked at 6.46 GiB when only this process's RSS was taken off.
            from components.common.memory_watch import release_memory, tree_pss_bytes

            release_memory()
            held, _ = tree_pss_bytes(os.getpid())
            settings = dataclasses.replace(
                settings, memory_budget_bytes=max(1, settings.memory_budget_bytes - held)
            )
        # The baseline is the original model in its own form (SavedModel, Keras, TF1).
        specs, baseline_name = variant_specs(
            model,
            input_dict,
            resolve_model(model.uri).form,
            skipped=json.loads(exec_properties.get("skipped_variants") or "{}"),
        )
        frozen = frozen_graph_artifact(input_dict)
        started_at = datetime.datetime.now(datetime.timezone.utc).isoformat()

        from components.common.preprocessing import has_preprocessing
        from components.freezer.freezing import load_source_signature

        with tempfile.TemporaryDirectory(prefix="benchmark-") as workdir:
            raw = run_benchmark_in_subprocess(
                BenchmarkRequest(
                    specs,
                    baseline_name,
                    examples.uri,
                    settings,
                    # The pipeline's beam_pipeline_args scale the accuracy pass out.
                    beam_pipeline_args=list(self._beam_pipeline_args or []),
                    baseline_signature=load_source_signature(frozen.uri) if frozen else None,
                    preprocessing_uri=(
                        frozen.uri if frozen is not None and has_preprocessing(frozen.uri) else ""
                    ),
                ),
                workdir,
                display=ProgressDisplay(),
            )
        finished_at = datetime.datetime.now(datetime.timezone.utc).isoformat()
        baseline_raw = next(v for v in raw["variants"] if v["name"] == baseline_name)
        if baseline_raw["status"] != STATUS_OK:
            raise UserInputError(
                f"The baseline model at {model.uri!r} could not be benchmarked: "
                f"{baseline_raw['failure_reason']}"
            )
        evaluation = raw["evaluation"]
        gate = build_gate(
            evaluation,
            baseline_raw.get("degenerate_baseline_outputs") or [],
            float(exec_properties["max_accuracy_drop"]),
            exec_properties.get("max_metric_drop") or "",
        )
        results = [
            selection.VariantResult.from_harness_json(v, evaluation["primary_output"])
            for v in raw["variants"]
        ]
        candidates = [r for r in results if r.format not in (FORMAT_NULL, FORMAT_PREPROCESSING)]
        chosen = selection.choose_best_variant(
            candidates,
            baseline_name=baseline_name,
            objective=exec_properties["objective"],
            gate=gate,
            max_p99_ms=float(exec_properties["max_p99_ms"]) or None,
            objective_offsets_ms=_core_offsets(results, baseline_name),
        )
        # Taken in the benchmark process, where TF is loaded and the threads were set.
        machine = fingerprint.HardwareFingerprint.from_json(raw["fingerprint"])
        warnings = fingerprint.hardware_warnings(hardware_requirements(specs), machine)
        if not gate.faithfulness_established:
            warnings.append(
                f"faithfulness not established: {gate.not_established_reason}; agreement and "
                f"output differences cannot show whether a variant is faithful, so none is "
                f"blessed over the baseline"
            )
        content = report.build_report(
            variants=results,
            selection=chosen,
            fingerprint=machine,
            settings={**settings.to_json(), **_selection_settings(exec_properties)},
            started_at=started_at,
            finished_at=finished_at,
            warnings=warnings,
            inputs={
                "model_uri": model.uri,
                "examples_uri": examples.uri,
                "eval_examples": raw["eval_examples"],
                "benchmark_process_peak_rss_bytes": raw["process_peak_rss_bytes"],
                "benchmark_timing_groups": raw["timing_groups"],
            },
            tool_version=exec_properties.get("package_version"),
            evaluation={**evaluation, "gate": gate.describe()},
            data={**raw["data"], "preprocessing": raw.get("preprocessing")},
            core_reference=FROZEN_GRAPH_VARIANT if raw.get("preprocessing") else None,
            accuracy_aware=read_searches(specs),
        )
        report.write_report(content, report_artifact.uri)
        # Value artifacts (a file at the URI): KFP's UI renders these types inline.
        single_artifact(output_dict["report_html"], "report_html").write(
            report.render_html(content)
        )
        single_artifact(output_dict["report_markdown"], "report_markdown").write(
            report.render_markdown(content)
        )
        for key, value in report.report_custom_properties(content).items():
            set_custom_property(report_artifact, key, value)
        set_custom_property(report_artifact, "selection_reason", chosen.reason)
        _write_blessing(blessing_artifact, chosen, specs, exec_properties, gate)


def _core_offsets(results: list[Any], baseline_name: str) -> dict[str, float]:
    """Preprocessing p50 for every model-core variant: their end-to-end estimate's addend."""
    preprocessing = next((r for r in results if r.format == FORMAT_PREPROCESSING), None)
    if preprocessing is None or not preprocessing.ok or preprocessing.summary is None:
        return {}
    return {
        r.name: preprocessing.summary.p50_ms
        for r in results
        if r.name != baseline_name and r.format not in (FORMAT_NULL, FORMAT_PREPROCESSING)
    }


def hardware_requirements(specs: list[VariantSpec]) -> dict[str, list[str]]:
    """What each variant needs to be fast (its `hardware_requirements` property, JSON list)."""
    requirements = {}
    for spec in specs:
        value = spec.properties.get("hardware_requirements")
        if value:
            requirements[spec.name] = json.loads(value) if isinstance(value, str) else list(value)
    return requirements


def _selection_settings(exec_properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "objective": exec_properties["objective"],
        "max_accuracy_drop": float(exec_properties["max_accuracy_drop"]),
        "max_metric_drop": exec_properties.get("max_metric_drop") or None,
        "max_p99_ms": float(exec_properties["max_p99_ms"]) or None,
    }


def _write_blessing(
    artifact: Artifact,
    chosen: Any,
    specs: list[VariantSpec],
    exec_properties: dict[str, Any],
    gate: Gate,
) -> None:
    import tensorflow as tf

    winner = next((s for s in specs if s.name == chosen.winner), None)
    content = {
        "blessed": chosen.blessed,
        "winner": chosen.winner,
        "winner_uri": winner.uri if winner else None,
        "winner_format": winner.model_format if winner else None,
        "winner_artifact_id": winner.artifact_id if winner else None,
        "reason": chosen.reason,
        # Which metric and faithfulness rule judged the variants, in their own terms.
        "gate": gate.describe(),
        "gated_by": gate.budget_text(),
        **_selection_settings(exec_properties),
    }
    tf.io.gfile.makedirs(artifact.uri)
    marker = "BLESSED" if chosen.blessed else "NOT_BLESSED"
    with tf.io.gfile.GFile(os.path.join(artifact.uri, marker), "w") as f:
        f.write("")
    with tf.io.gfile.GFile(os.path.join(artifact.uri, "blessing.json"), "w") as f:
        f.write(json.dumps(content, indent=2) + "\n")
    artifact.set_int_custom_property("blessed", int(chosen.blessed))
    artifact.set_string_custom_property("winner", chosen.winner or "")
    artifact.set_string_custom_property("winner_uri", content["winner_uri"] or "")
    artifact.set_string_custom_property("winner_format", content["winner_format"] or "")
    artifact.set_string_custom_property("reason", chosen.reason)
    artifact.set_string_custom_property("gated_by", content["gated_by"])
