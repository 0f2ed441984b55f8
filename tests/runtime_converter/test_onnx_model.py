"""The ONNX modes: files, facts, int8, failures, settings.

The classifier (two inputs and two outputs, listed in the signature opposite to the
graph's order) comes from tests/runtime_converter/tiny_classifier.py.

A conversion's child process imports TensorFlow and tf2onnx afresh (about 15 s here), so
most tests run the modes with `run_isolated` replaced by a call in this process, which
still sends the arguments and the result through JSON as the child does; the tests
marked slow run the same modes in real child processes.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys

import numpy as np
import pytest

from components.common.signature import GraphSignature
from components.runtime_converter.modes import ConvertSettings, get_mode
from components.runtimes.onnx import FORMAT_ONNX, MODEL_FILENAME, ONNX_JSON
from tests.runtime_converter.tiny_classifier import (
    CLASSES,
    build_classifier,
    export_string_graph,
    requires_onnx,
)


def _backend_outputs(uri: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from components.runtimes import ThreadSettings
    from components.runtimes.onnx import OnnxBackend

    variant = OnnxBackend().load(uri, ThreadSettings(intra_op=2), "CPU:0")
    return variant.run(variant.prepare(inputs))


def run_in_this_process(function, kwargs, workdir, *, timeout_s=None, env=None, name="child"):
    """run_isolated without the process: same JSON boundary, same ChildOutcome."""
    from components.common.isolation import ChildOutcome

    module, _, attribute = function.partition(":")
    try:
        result = getattr(importlib.import_module(module), attribute)(
            **json.loads(json.dumps(kwargs))
        )
    except Exception as error:  # What the child writes to its result file.
        return ChildOutcome(returncode=3, error_type=type(error).__name__, error_message=str(error))
    return ChildOutcome(returncode=0, result=json.loads(json.dumps(result)))


@contextlib.contextmanager
def children_in_this_process():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("components.common.isolation.run_isolated", run_in_this_process)
        yield


@pytest.fixture
def in_process():
    with children_in_this_process():
        yield


def _fp32(classifier, output: str):
    return get_mode("onnx_fp32").run(
        classifier.graph_dir, classifier.signature, None, output, ConvertSettings()
    )


def _int8(classifier, output: str):
    return get_mode("onnx_int8").run(
        classifier.graph_dir,
        classifier.signature,
        classifier.calibration,
        output,
        ConvertSettings(num_calibration=100),  # Of 120 rows: the first 100 calibrate.
    )


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return build_classifier(str(tmp_path_factory.mktemp("classifier")), calibration_rows=120)


@pytest.fixture(scope="module")
def fp32_model(classifier, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("onnx_fp32"))
    with children_in_this_process():
        return output, _fp32(classifier, output)


@pytest.fixture(scope="module")
def int8_model(classifier, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("onnx_int8"))
    with children_in_this_process():
        return output, _int8(classifier, output)


def test_the_modes_are_registered_as_onnx_variant_kinds():
    fp32, int8 = get_mode("onnx_fp32"), get_mode("onnx_int8")

    assert fp32.model_format == int8.model_format == FORMAT_ONNX
    assert (fp32.needs_calibration, int8.needs_calibration) == (False, True)
    assert fp32.required_module == int8.required_module == "onnxruntime"
    assert fp32.extra == int8.extra == "onnx"


@requires_onnx
def test_fp32_writes_the_model_signature_and_facts(fp32_model, classifier):
    output, outcome = fp32_model

    assert sorted(os.listdir(output)) == [MODEL_FILENAME, ONNX_JSON, "signature.json"]
    assert GraphSignature.load(output) == GraphSignature.load(classifier.graph_dir)
    with open(os.path.join(output, ONNX_JSON)) as f:
        facts = json.load(f)
    assert facts["mode"] == "onnx_fp32"
    assert facts["opset"] == 17
    assert facts["tf2onnx_version"] == "1.17.0"
    assert facts["dynamic_batch"] is True
    assert facts["quantization"] is None
    assert facts["validation"]["input_names"] == ["offsets:0", "images:0"]
    assert outcome.model_format == FORMAT_ONNX
    assert outcome.size_bytes == os.path.getsize(os.path.join(output, MODEL_FILENAME))
    assert outcome.calibration_samples == 0
    props = outcome.properties
    assert props["opset"] == 17
    assert props["tf2onnx_version"] == "1.17.0"
    assert props["onnxruntime_version"].startswith("1.")
    assert props["quantize_linear_ops"] == 0
    assert props["conversion_s"] > 0


@requires_onnx
def test_fp32_model_reproduces_tf_with_a_dynamic_batch(fp32_model, classifier):
    for rows in (1, 5):
        inputs = [x[:rows] for x in classifier.test_inputs]
        expected = classifier.tf_outputs(inputs)
        got = _backend_outputs(fp32_model[0], inputs)
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


@requires_onnx
def test_int8_quantizes_and_keeps_the_fp32_predictions(int8_model, fp32_model, classifier):
    from components.runtime_converter.onnx_model import int8_weight_range

    output, outcome = int8_model
    props = outcome.properties

    assert sorted(os.listdir(output)) == [MODEL_FILENAME, ONNX_JSON, "signature.json"]
    assert outcome.calibration_samples == 100
    assert props["quantize_linear_ops"] > 0
    assert props["quant_format"] == "QDQ"
    assert props["calibrate_method"] == "MinMax"
    assert props["per_channel"] is True
    assert (props["activation_type"], props["weight_type"]) == ("QUInt8", "QInt8")
    assert props["reduce_range"] is int8_weight_range()[0]
    assert props["pre_processed"] is True
    assert props["pre_process_options"] == {"auto_merge": True}
    assert props["quantized_ops"].get("Conv", 0) >= 1
    with open(os.path.join(output, ONNX_JSON)) as f:
        facts = json.load(f)
    assert facts["mode"] == "onnx_int8"
    assert facts["quantization"]["quantize_linear_ops"] == props["quantize_linear_ops"]
    assert facts["quantization"]["calibration_samples"] == 100

    # Held-out rows whose predictions vary: int8 agrees with fp32 on nearly all.
    fp32_logits = _backend_outputs(fp32_model[0], classifier.test_inputs)[0]
    int8_logits = _backend_outputs(output, classifier.test_inputs)[0]
    fp32_top1 = np.argmax(fp32_logits, axis=1)
    counts = np.bincount(fp32_top1, minlength=CLASSES)
    assert (counts > 0).sum() == CLASSES and counts.max() <= 0.6 * len(fp32_top1)
    assert np.mean(np.argmax(int8_logits, axis=1) == fp32_top1) >= 0.9
    assert np.mean(fp32_top1 == classifier.test_labels) >= 0.8  # A classifier, not noise.


def _convert_substring_graph(directory: str) -> str:
    from components.runtime_converter.onnx_model import OnnxConversionError

    graph_dir, output = os.path.join(directory, "graph"), os.path.join(directory, "out")
    signature = export_string_graph(graph_dir, "substring")
    with pytest.raises(OnnxConversionError) as raised:
        get_mode("onnx_fp32").run(graph_dir, signature, None, output, ConvertSettings())
    assert not os.path.exists(os.path.join(output, MODEL_FILENAME))
    return str(raised.value)


def _assert_names_substr_with_both_messages(message: str) -> None:
    assert message.startswith("the ONNX conversion failed: OnnxConversionError: tf2onnx ")
    assert "Tensorflow op [Substr: Substr] is not supported" in message  # tf2onnx's words.
    assert "No Op registered for Substr with domain_version of 17" in message  # ORT's.
    assert "Traceback" not in message and len(message) < 2000


@requires_onnx
def test_an_op_tf2onnx_cannot_convert_fails_the_conversion_with_both_messages(in_process, tmp_path):
    _assert_names_substr_with_both_messages(_convert_substring_graph(str(tmp_path)))


@requires_onnx
def test_a_string_round_trip_converts_and_runs(tmp_path):
    """AsString -> StringToNumber becomes Casts that ORT runs: not a failed variant.

    The root logger is silenced as a quiet CLI run leaves it: the converter's warnings
    are still recorded.
    """
    import logging

    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.CRITICAL)
    try:
        _check_string_round_trip(tmp_path)
    finally:
        root.setLevel(saved)


def _check_string_round_trip(tmp_path):
    from components.common.graph_io import graph_def_callable, load_graph_def
    from components.runtime_converter.onnx_model import convert_graph_to_onnx
    from components.runtimes import ThreadSettings
    from components.runtimes.onnx import create_session

    graph_dir = str(tmp_path / "graph")
    signature = export_string_graph(graph_dir, "round_trip")
    path = str(tmp_path / MODEL_FILENAME)

    facts = convert_graph_to_onnx(graph_dir, path)  # In-process: the child's function.

    assert any("AsString" in warning for warning in facts["converter_warnings"])
    x = np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32)
    expected = graph_def_callable(load_graph_def(graph_dir), signature)(x)[0]
    got = create_session(path, ThreadSettings(intra_op=1)).run(None, {"x:0": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_int8_without_calibration_is_refused_before_any_work(classifier, tmp_path):
    with pytest.raises(ValueError, match="needs calibration inputs"):
        get_mode("onnx_int8").run(
            classifier.graph_dir, classifier.signature, None, str(tmp_path), ConvertSettings()
        )
    with pytest.raises(ValueError, match="one calibration array per input"):
        get_mode("onnx_int8").run(
            classifier.graph_dir,
            classifier.signature,
            classifier.calibration[:1],
            str(tmp_path),
            ConvertSettings(),
        )


def test_a_missing_tf2onnx_names_the_extra(classifier, monkeypatch, tmp_path):
    from components.runtimes import MissingRuntime

    monkeypatch.setitem(sys.modules, "tf2onnx", None)

    with pytest.raises(MissingRuntime, match=r"'tf2onnx'.*tfx-inference-optimizer\[onnx\]"):
        get_mode("onnx_fp32").run(
            classifier.graph_dir, classifier.signature, None, str(tmp_path), ConvertSettings()
        )


def test_error_summaries_keep_the_first_meaningful_lines():
    from components.runtime_converter.onnx_model import summarize_error

    text = (
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "\n"
        "ValueError: first\n"
        "second\n  third\nfourth\nfifth\n"
    )
    assert summarize_error(text) == "ValueError: first | second | third | fourth"
    assert summarize_error("x" * 2000, max_chars=50).endswith("...")
    assert len(summarize_error("x" * 2000, max_chars=50)) == 50


def test_the_weight_range_follows_the_cpus_int8_dot_product(monkeypatch):
    from components.common import cpu_facts
    from components.runtime_converter import onnx_model

    def cpu(*flags):
        return lambda: cpu_facts.CpuFacts("AuthenticAMD", "EPYC", frozenset(flags))

    monkeypatch.setattr(cpu_facts, "host_cpu", cpu("avx2", "fma"))
    assert onnx_model.int8_weight_range()[0] is True
    monkeypatch.setattr(cpu_facts, "host_cpu", cpu("avx2", "avx512f", "avx512_vnni"))
    reduce_range, why = onnx_model.int8_weight_range()
    assert reduce_range is False and "avx512_vnni" in why
    monkeypatch.setattr(cpu_facts, "host_cpu", cpu())  # Unknown: the safe range.
    assert onnx_model.int8_weight_range()[0] is True


@requires_onnx
@pytest.mark.slow  # Three child processes that import TensorFlow: about 50 s here.
def test_the_modes_in_child_processes_match_the_in_process_runs(
    classifier, fp32_model, int8_model, tmp_path
):
    fp32_output, int8_output = str(tmp_path / "fp32"), str(tmp_path / "int8")

    from components.common import isolation

    assert isolation.run_isolated is not run_in_this_process
    fp32 = _fp32(classifier, fp32_output)
    int8 = _int8(classifier, int8_output)

    assert sorted(os.listdir(fp32_output)) == sorted(os.listdir(int8_output))
    # Not byte-equal: tf2onnx numbers its node names with a per-process counter.
    assert abs(fp32.size_bytes - fp32_model[1].size_bytes) < 100
    assert fp32.properties["opset"] == fp32_model[1].properties["opset"]
    assert int8.properties["quantize_linear_ops"] == int8_model[1].properties["quantize_linear_ops"]
    for isolated, in_process_output in ((fp32_output, fp32_model[0]), (int8_output, int8_model[0])):
        expected = _backend_outputs(in_process_output, classifier.test_inputs)
        got = _backend_outputs(isolated, classifier.test_inputs)
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6)
    _assert_names_substr_with_both_messages(_convert_substring_graph(str(tmp_path)))


@requires_onnx
def test_a_failed_pre_process_falls_back_and_leaves_no_files_behind(
    fp32_model, classifier, monkeypatch, tmp_path
):
    """Without auto_merge, symbolic shape inference fails on the two-input classifier
    (its inputs' batch dimensions are named apart) and saves files where it runs."""
    from components.runtime_converter import onnx_model

    cwd, work = tmp_path / "cwd", tmp_path / "work"
    cwd.mkdir()
    work.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(onnx_model, "_PRE_PROCESS_ATTEMPTS", ({}, {"skip_symbolic_shape": True}))
    calibration = str(work / "calibration.npz")
    np.savez(calibration, *[x[:32] for x in classifier.calibration])

    facts = onnx_model.quantize_onnx_model(
        model_path=os.path.join(fp32_model[0], MODEL_FILENAME),
        output_path=str(work / MODEL_FILENAME),
        calibration_path=calibration,
        signature=classifier.signature.to_json(),
        work_dir=str(work),
        reduce_range=True,
    )

    assert facts["pre_process_errors"] == ["Exception: Incomplete symbolic shape inference"]
    assert facts["pre_process_options"] == {"skip_symbolic_shape": True}
    assert facts["quantize_linear_ops"] > 0
    assert os.listdir(cwd) == []
    assert os.getcwd() == str(cwd)
