"""The variant-kind registry: what it declares, and what the pipeline builds from it."""

from __future__ import annotations

import dataclasses

import pytest

from components import variant_kinds
from components.common.cpu_facts import parse_cpuinfo
from components.variant_kinds import VariantKind, all_kinds, get_kind, select_kinds

AVX2_ONLY = parse_cpuinfo("model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n")
SAPPHIRE_RAPIDS = parse_cpuinfo(
    "model name\t: Intel Xeon 8480+\nflags\t\t: avx2 avx512f avx512_vnni avx512_bf16 "
    "amx_tile amx_int8 amx_bf16\n"
)


def test_every_producers_modes_are_kinds_with_unique_names_and_ids():
    from components.quantizer.modes import mode_names as quantizer_modes
    from components.runtime_converter.modes import mode_names as converter_modes
    from components.xla_compiler.modes import MODES as XLA_MODES

    kinds = all_kinds()
    names = [k.name for k in kinds]
    assert len(names) == len(set(names))
    assert len({k.component_id for k in kinds}) == len(kinds)
    by_producer = {
        p: {k.mode for k in kinds if k.producer == p} for p in {k.producer for k in kinds}
    }
    assert by_producer["Quantizer"] == set(quantizer_modes())
    assert by_producer["XlaCompiler"] == set(XLA_MODES)
    assert by_producer["RuntimeConverter"] == set(converter_modes())
    assert {"openvino_fp32", "openvino_bf16", "openvino_int8", "onnx_fp32", "onnx_int8"} <= set(
        names
    )


def test_every_kind_has_a_runtime_for_its_format():
    from components.runtimes import known_formats

    for kind in all_kinds():
        assert kind.model_format in known_formats(), kind.name


def test_the_benchmarker_has_one_input_per_kind():
    from components.benchmarker.component import VARIANT_INPUT_TYPES

    assert list(VARIANT_INPUT_TYPES) == [k.name for k in all_kinds()]
    assert VARIANT_INPUT_TYPES["openvino_int8"].__name__ == "ConvertedModel"


def test_the_pipeline_builds_one_producer_per_kind():
    from pipelines.pipeline import PRODUCER_BUILDERS

    assert {k.producer for k in all_kinds() if not k.always} == set(PRODUCER_BUILDERS)


def test_a_kind_declared_twice_is_refused(monkeypatch):
    import types

    twice = types.SimpleNamespace(variant_kinds=lambda: [get_kind("tflite_int8")])
    monkeypatch.setitem(__import__("sys").modules, "tests._twice", twice)

    with pytest.raises(ValueError, match="declared twice"):
        variant_kinds._collect(("components.quantizer.modes", "tests._twice"))


def test_bf16_and_onednn_kinds_are_skipped_on_an_avx2_cpu_with_the_reason():
    selection = select_kinds(None, AVX2_ONLY)

    assert "openvino_bf16" in selection.skipped
    assert "avx512_bf16 or amx_bf16" in selection.skipped["openvino_bf16"]
    assert "AMD EPYC" in selection.skipped["openvino_bf16"]
    assert "onednn_int8" in selection.skipped
    assert "optimized_graph_bf16" in selection.skipped  # TF's oneDNN bfloat16 rewrite.
    assert "frozen_graph" in selection.built_names
    assert "optimized_graph" in selection.built_names
    assert "openvino_int8" in selection.built_names
    # Reference kinds are built only when asked for.
    assert "openvino_int8_defaults" not in selection.built_names


def test_bf16_kinds_are_built_where_the_cpu_has_bf16():
    selection = select_kinds(None, SAPPHIRE_RAPIDS)

    assert {"openvino_bf16", "onednn_int8", "optimized_graph_bf16"} <= set(selection.built_names)
    assert not selection.skipped


def test_an_unknown_cpu_defers_the_hardware_rules_to_each_node():
    """Compiling for Kubeflow: the node decides (the producer publishes a skipped row)."""
    selection = select_kinds(None, None)

    assert {"openvino_bf16", "onednn_int8"} <= set(selection.built_names)


def test_a_missing_optional_runtime_skips_its_kinds_naming_the_extra(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a),
    )

    selection = select_kinds(("onnx_fp32", "tflite_int8"), AVX2_ONLY)

    assert selection.built_names == ("frozen_graph", "tflite_int8")
    assert "'onnx' extra" in selection.skipped["onnx_fp32"]


def test_unknown_kinds_are_refused_listing_the_choices():
    with pytest.raises(ValueError, match="unknown variant kinds \\['tflite_int4'\\].*onnx_int8"):
        select_kinds(("tflite_int4",), AVX2_ONLY)


def test_a_kind_needs_its_module_and_extra_together():
    kind = get_kind("onnx_fp32")
    with pytest.raises(ValueError, match="go together"):
        dataclasses.replace(kind, extra="")


def test_producers_publish_a_skipped_variant_on_a_node_that_lacks_the_hardware(
    tmp_path, monkeypatch
):
    """The run-time half of the rule, for pipelines compiled on another machine."""
    from tfx.types import standard_artifacts

    from components import artifacts
    from components.common import cpu_facts
    from components.common.variant_production import VariantJob, produce_variant

    monkeypatch.setattr(cpu_facts, "host_cpu", lambda: AVX2_ONLY)
    output = artifacts.ConvertedModel()
    output.uri = str(tmp_path / "out")
    frozen = standard_artifacts.Model()
    frozen.uri = str(tmp_path / "unused")

    def produce(graph_uri, calibration):
        raise AssertionError("a skipped kind must not be produced")

    produce_variant(
        VariantJob("RuntimeConverter", "openvino_bf16", "openvino_bf16"),
        {"frozen_graph": [frozen]},
        output,
        {},
        produce,
    )

    assert output.get_string_custom_property("status") == "skipped"
    assert "avx512_bf16" in output.get_string_custom_property("failure_reason")
    assert (tmp_path / "out" / "SKIPPED.txt").exists()


def test_a_custom_kind_is_a_plain_frozen_record():
    kind = VariantKind("x_kind", "Quantizer", "x", "QuantizedModel", "tflite", "quantized_model")
    with pytest.raises(dataclasses.FrozenInstanceError):
        kind.name = "y"  # type: ignore[misc]
    assert kind.component_id == "Quantizer_x"
    assert kind.unavailable_reason(AVX2_ONLY) == ""


def test_every_accuracy_aware_kind_calibrates_and_is_built_only_when_asked_for():
    # Its producer then gets the Examples (calibration and held-out records alike).
    from components.quantizer import modes as quantize_modes
    from components.runtime_converter import modes as convert_modes
    from components.variant_kinds import get_kind

    searching = [m.variant_name for m in quantize_modes._MODES.values() if m.needs_held_out]
    searching += [
        name for name in convert_modes.mode_names() if convert_modes.get_mode(name).needs_held_out
    ]
    assert set(searching) >= {
        "tflite_int8_aa",
        "onednn_int8_aa",
        "onnx_int8_aa",
        "openvino_int8_aa",
    }
    for name in searching:
        kind = get_kind(name)
        assert kind.needs_calibration and not kind.default, name
