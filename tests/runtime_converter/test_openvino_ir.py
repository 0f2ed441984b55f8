"""The OpenVINO modes on tiny frozen graphs: files, int8, failures, hardware.

The classifier and the string-detour graph come from tests/runtime_converter/
tiny_classifier.py; the classifier's signature lists its inputs and outputs in an order
other than the graph's, so the IR's names must be matched to the signature.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from components.common.signature import GraphSignature
from components.runtime_converter.modes import ConvertSettings, get_mode
from components.runtimes.openvino import FORMAT_OPENVINO, OPENVINO_JSON, read_openvino_facts
from tests.runtime_converter.tiny_classifier import (
    CLASSES,
    TinyClassifier,
    build_classifier,
    export_string_graph,
    requires_openvino,
)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> TinyClassifier:
    return build_classifier(str(tmp_path_factory.mktemp("classifier")), calibration_rows=32)


@pytest.fixture(scope="module")
def fp32_ir(classifier, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("openvino_fp32"))
    outcome = get_mode("openvino_fp32").run(
        classifier.graph_dir, classifier.signature, None, output, ConvertSettings()
    )
    return output, outcome


@pytest.fixture(scope="module")
def int8_ir(classifier, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("openvino_int8"))
    outcome = get_mode("openvino_int8").run(
        classifier.graph_dir,
        classifier.signature,
        classifier.calibration,
        output,
        ConvertSettings(num_calibration=32),
    )
    return output, outcome


def _openvino_outputs(ir_dir: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from components.runtimes import ThreadSettings, backend_for

    variant = backend_for(FORMAT_OPENVINO).load(ir_dir, ThreadSettings(intra_op=2), "CPU:0")
    return variant.run(variant.prepare(inputs))


@requires_openvino
def test_fp32_writes_the_ir_signature_and_facts(fp32_ir, classifier):
    output, outcome = fp32_ir

    assert sorted(os.listdir(output)) == [
        "model.bin",
        "model.xml",
        OPENVINO_JSON,
        "signature.json",
    ]
    assert GraphSignature.load(output) == classifier.signature
    facts = read_openvino_facts(output)
    assert facts["mode"] == "openvino_fp32"
    assert facts["precision_hint"] == "f32"
    assert facts["compress_to_fp16"] is False
    assert outcome.model_format == FORMAT_OPENVINO
    assert outcome.size_bytes == sum(
        os.path.getsize(os.path.join(output, name)) for name in ("model.xml", "model.bin")
    )
    assert outcome.properties["openvino_version"].startswith("2026.")
    assert outcome.properties["precision_hint"] == "f32"
    assert outcome.properties["fake_quantize_ops"] == 0
    assert outcome.properties["conversion_s"] > 0
    assert outcome.calibration_samples == 0


@requires_openvino
def test_fp32_ir_reproduces_tf_outputs(fp32_ir, classifier):
    expected = classifier.tf_outputs(classifier.test_inputs)
    got = _openvino_outputs(fp32_ir[0], classifier.test_inputs)

    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)
    # The model is a classifier worth quantizing: its top-1 is high and its rows differ.
    logits = expected[0]
    assert np.mean(np.argmax(logits, 1) == classifier.test_labels) >= 0.9
    assert len(set(np.argmax(logits, 1))) == CLASSES


@requires_openvino
def test_int8_inserts_fake_quantize_and_keeps_top1(int8_ir, classifier):
    output, outcome = int8_ir
    facts = read_openvino_facts(output)

    assert facts["fake_quantize_ops"] > 0
    assert outcome.properties["fake_quantize_ops"] == facts["fake_quantize_ops"]
    assert facts["calibration_samples"] == outcome.calibration_samples == 32
    assert facts["nncf"]["version"] == outcome.properties["nncf_version"] == "3.4.0"
    assert facts["nncf"]["preset"] == "performance"
    assert facts["nncf"]["calibration_batch_size"] == 1
    assert facts["precision_hint"] == "f32"

    fp32_logits = classifier.tf_outputs(classifier.test_inputs)[0]
    int8_logits = _openvino_outputs(output, classifier.test_inputs)[0]
    agreement = np.mean(np.argmax(int8_logits, 1) == np.argmax(fp32_logits, 1))
    assert agreement >= 0.9
    top1 = [np.mean(np.argmax(x, 1) == classifier.test_labels) for x in (fp32_logits, int8_logits)]
    assert top1[1] >= top1[0] - 0.05
    # NNCF's activation ranges are means of per-row min/max, so the largest logits are
    # clipped by a few units; on average the logits stay within a tenth or so of their spread.
    assert np.abs(int8_logits - fp32_logits).mean() < 0.2 * fp32_logits.std()
    assert not np.allclose(int8_logits, fp32_logits, atol=1e-6)  # It really is quantized.


@requires_openvino
def test_int8_without_calibration_is_refused(classifier, tmp_path):
    with pytest.raises(ValueError, match="needs calibration"):
        get_mode("openvino_int8").run(
            classifier.graph_dir, classifier.signature, None, str(tmp_path), ConvertSettings()
        )


@requires_openvino
def test_unconvertible_ops_raise_with_the_converters_message(tmp_path):
    graph_dir = str(tmp_path / "graph")
    signature = export_string_graph(graph_dir)

    with pytest.raises(RuntimeError) as raised:
        get_mode("openvino_fp32").run(
            graph_dir, signature, None, str(tmp_path / "out"), ConvertSettings()
        )

    message = str(raised.value)
    assert "the OpenVINO conversion failed" in message
    assert "No conversion rule found for operations: AsString, StringToNumber" in message
    assert "unconverted_ops_report.cpp" not in message  # The C++ location is dropped.
    assert len(message) < 400
    assert not os.path.exists(tmp_path / "out" / "model.xml")


def test_summarize_converter_error_keeps_the_meaningful_lines():
    from components.runtime_converter.openvino_ir import summarize_converter_error

    message = (
        "Check 'false' failed at src/frontends/common_translators/src/"
        "unconverted_ops_report.cpp:151:\nFrontEnd API failed with OpConversionFailure:\n"
        "Model wasn't fully converted.\nSummary:\n-- No conversion rule found for "
        "operations: AsString, StringToNumber\nTo facilitate the conversion of unsupported "
        "operations, refer to Frontend Extension documentation: https://docs.openvino.ai/\n\n"
    )

    assert summarize_converter_error(message) == (
        "Model wasn't fully converted. -- No conversion rule found for operations: "
        "AsString, StringToNumber"
    )
    assert summarize_converter_error("\n".join(f"line {i}" for i in range(50))).endswith("5")
    assert summarize_converter_error("") == "(no message)"


def test_the_modes_and_their_hardware_rules():
    fp32, bf16, int8 = (get_mode(f"openvino_{kind}") for kind in ("fp32", "bf16", "int8"))

    assert bf16.cpu_any_of == ("avx512_bf16", "amx_bf16")
    assert "bf16" in bf16.hardware_note and "f32" in bf16.hardware_note
    assert fp32.cpu_any_of == () and int8.cpu_any_of == ()
    assert (fp32.needs_calibration, bf16.needs_calibration, int8.needs_calibration) == (
        False,
        False,
        True,
    )
    for mode in (fp32, bf16, int8):
        assert mode.model_format == FORMAT_OPENVINO
        assert (mode.required_module, mode.extra) == ("openvino", "openvino")
