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

from components.benchmarker.backends import FORMAT_NULL, FORMAT_SAVED_MODEL
from components.benchmarker.harness import (
    BenchmarkRequest,
    BenchmarkSettings,
    VariantSpec,
    run_benchmark_in_subprocess,
)
from components.common.artifact_utils import STATUS_OK, set_custom_property, single_artifact
from components.common.errors import UserInputError

BASELINE_NAME = "baseline_saved_model"
NULL_VARIANT_NAME = "null_harness_overhead"
BASELINE_INPUT_KEYS = ("model", "examples")


def parse_settings(settings_json: str) -> BenchmarkSettings:
    """BenchmarkSettings from JSON; unknown keys are refused with the valid ones listed."""
    values = json.loads(settings_json or "{}")
    known = {f.name for f in dataclasses.fields(BenchmarkSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown benchmark settings {unknown}; valid: {sorted(known)}")
    if "throughput_batch_sizes" in values:
        values["throughput_batch_sizes"] = tuple(values["throughput_batch_sizes"])
    return BenchmarkSettings(**values)


def variant_specs(
    model: Artifact, input_dict: dict[str, list[Artifact]]
) -> tuple[list[VariantSpec], str]:
    """The baseline, every variant artifact, and the null backend (harness overhead)."""
    specs = [VariantSpec(BASELINE_NAME, FORMAT_SAVED_MODEL, model.uri, artifact_id=model.id)]
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
        settings = parse_settings(exec_properties["benchmark_settings"])
        specs, baseline_name = variant_specs(model, input_dict)
        started_at = datetime.datetime.now(datetime.timezone.utc).isoformat()

        with tempfile.TemporaryDirectory(prefix="benchmark-") as workdir:
            raw = run_benchmark_in_subprocess(
                BenchmarkRequest(
                    specs,
                    baseline_name,
                    examples.uri,
                    settings,
                    # The pipeline's beam_pipeline_args scale the accuracy pass out.
                    beam_pipeline_args=list(self._beam_pipeline_args or []),
                ),
                workdir,
            )
        finished_at = datetime.datetime.now(datetime.timezone.utc).isoformat()
        baseline_raw = next(v for v in raw["variants"] if v["name"] == baseline_name)
        if baseline_raw["status"] != STATUS_OK:
            raise UserInputError(
                f"The baseline model at {model.uri!r} could not be benchmarked: "
                f"{baseline_raw['failure_reason']}"
            )
        results = [selection.VariantResult.from_harness_json(v) for v in raw["variants"]]
        chosen = selection.choose_best_variant(
            [r for r in results if r.format != FORMAT_NULL],
            baseline_name=baseline_name,
            objective=exec_properties["objective"],
            max_accuracy_drop=float(exec_properties["max_accuracy_drop"]),
            max_p99_ms=float(exec_properties["max_p99_ms"]) or None,
        )
        # Taken in the benchmark process, where TF is loaded and the threads were set.
        machine = fingerprint.HardwareFingerprint.from_json(raw["fingerprint"])
        content = report.build_report(
            variants=results,
            selection=chosen,
            fingerprint=machine,
            settings={**settings.to_json(), **_selection_settings(exec_properties)},
            started_at=started_at,
            finished_at=finished_at,
            warnings=fingerprint.hardware_warnings(hardware_requirements(specs), machine),
            inputs={
                "model_uri": model.uri,
                "examples_uri": examples.uri,
                "eval_examples": raw["eval_examples"],
                "benchmark_process_peak_rss_bytes": raw["process_peak_rss_bytes"],
            },
            tool_version=exec_properties.get("package_version"),
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
        _write_blessing(blessing_artifact, chosen, specs, exec_properties)


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
        "max_p99_ms": float(exec_properties["max_p99_ms"]) or None,
    }


def _write_blessing(
    artifact: Artifact, chosen: Any, specs: list[VariantSpec], exec_properties: dict[str, Any]
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
