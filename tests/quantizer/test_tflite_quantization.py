"""quantize_to_tflite on the digits CNN: sizes, accuracy, reports and failures."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.warm_children import SWITCH_ENV
from components.quantizer.tflite_quantization import (
    QUANTIZATION_FILENAME,
    QuantizationFailed,
    quantize_to_tflite,
    read_quantization_report,
)
from tests.quantizer.quantizer_helpers import tflite_top1


def test_quantizer_float16_is_about_half_the_float32_tflite(tflite_results):
    result = tflite_results["float16"]

    ratio = result.size_bytes / result.float32_tflite_size_bytes

    # Weights halve exactly; the flatbuffer's fixed part keeps the file a bit above 0.5x.
    assert 0.45 <= ratio <= 0.6, ratio


@pytest.mark.parametrize("case", ["dynamic_range", "int8"])
def test_quantizer_int8_weights_shrink_to_about_a_third_of_float_weights(tflite_results, case):
    result = tflite_results[case]

    # 0.25x for the weights themselves, plus ~7 KB of flatbuffer on a 69 KB model
    # (and the <1024-element tensors dynamic range keeps in float).
    assert 0.25 <= result.size_bytes / result.float_weight_bytes <= 0.4
    assert result.size_bytes / result.float32_tflite_size_bytes <= 0.4


@pytest.mark.parametrize("case", ["float16", "dynamic_range"])
def test_quantizer_float_and_weight_modes_keep_top1_within_1_point(
    tflite_results, digits_eval, frozen_top1, case
):
    accuracy = tflite_top1(tflite_results[case].model_path, digits_eval.images, digits_eval.labels)

    assert abs(accuracy - frozen_top1) <= 0.01, (accuracy, frozen_top1)


@pytest.mark.parametrize("case", ["int8", "int8_io"])
def test_quantizer_int8_keeps_top1_within_2_points(tflite_results, digits_eval, frozen_top1, case):
    accuracy = tflite_top1(tflite_results[case].model_path, digits_eval.images, digits_eval.labels)

    assert abs(accuracy - frozen_top1) <= 0.02, (accuracy, frozen_top1)


def test_quantizer_int8_quantizes_every_compute_op_of_the_digits_cnn(tflite_results):
    result = tflite_results["int8"]

    assert result.quantized_op_fraction == 1.0
    assert result.float_ops == []
    assert result.op_coverage["CONV_2D"] == {"count": 3, "int8": 3}
    assert result.op_coverage["FULLY_CONNECTED"] == {"count": 2, "int8": 2}
    # Float io: the model quantizes its input and dequantizes its output itself.
    assert result.op_coverage["QUANTIZE"]["conversion"] == 1
    assert result.calibration_samples == 200


def test_quantizer_dynamic_range_lists_the_ops_left_in_float(tflite_results):
    result = tflite_results["dynamic_range"]

    float_op_types = {op["op"] for op in result.float_ops}
    # 2 of 3 convolutions have 1024+ weights and run hybrid; the 144-weight first conv,
    # pooling, mean and softmax stay float, and the report says so.
    assert result.op_coverage["CONV_2D"] == {"count": 3, "hybrid": 2, "float": 1}
    assert {"CONV_2D", "MAX_POOL_2D", "SOFTMAX"} <= float_op_types
    assert 0.0 < result.quantized_op_fraction < 1.0
    assert any("compute in float" in warning for warning in result.warnings)


def test_quantizer_writes_model_signature_and_report(tflite_results):
    result = tflite_results["int8_io"]

    report = read_quantization_report(result.output_dir)

    assert sorted(os.listdir(result.output_dir)) == [
        "model.tflite",
        QUANTIZATION_FILENAME,
        "signature.json",
    ]
    assert report["status"] == "ok"
    assert report["mode"] == "int8"
    assert report["inference_input_type"] == report["inference_output_type"] == "int8"
    assert report["inputs"][0]["dtype"] == "int8" and report["inputs"][0]["scale"] > 0
    assert report["sizes"]["model_bytes"] == os.path.getsize(result.model_path)
    assert report["sizes"]["frozen_graph_bytes"] > report["sizes"]["float_weight_bytes"] > 0
    assert set(report["xnnpack"]) >= {"partitions", "delegated_ops", "fully_delegated"}
    assert report["op_coverage"] and isinstance(report["float_ops"], list)
    with open(os.path.join(result.output_dir, "signature.json"), encoding="utf-8") as f:
        assert json.load(f)["inputs"][0]["shape"] == [1, 32, 32, 1]


def test_quantizer_static_batch_float_model_is_fully_delegated_to_xnnpack(tflite_results):
    result = tflite_results["float16"]

    assert result.xnnpack_partitions == 1
    assert result.fully_delegated
    assert result.report["dynamic_shape_tensors"] == 0
    # fp16 weight rounding; XNNPACK's kernels differ per ISA (5.2e-4 on an AVX2-only EPYC).
    assert result.report["max_abs_diff_vs_frozen_graph"] < 2e-3


@pytest.mark.parametrize(("case", "partitions"), [("int8_io", 1), ("int8", 2)])
def test_quantizer_int8_reports_the_op_xnnpack_leaves_out(tflite_results, case, partitions):
    result = tflite_results[case]

    not_delegated = {op["op"] for op in result.report["xnnpack"]["not_delegated_ops"]}

    # XNNPACK has no int8 softmax, so it runs on TFLite's kernels; with float io the
    # output DEQUANTIZE after it becomes a second partition.
    assert not_delegated == {"SOFTMAX"}
    assert result.xnnpack_partitions == partitions
    assert not result.fully_delegated
    assert any("XNNPACK took" in warning for warning in result.warnings)


def test_quantizer_unsupported_op_fails_with_the_converters_reason(tflite_results):
    # The case converts a frozen tf.linalg.det, which has no TFLite builtin kernel.
    failure = tflite_results["unsupported_op"]

    assert isinstance(failure, QuantizationFailed)
    assert "MatrixDeterminant" in failure.reason
    assert "TF Select" in failure.reason
    assert failure.returncode not in (0, None)  # The child exited with an error.
    report = read_quantization_report(os.path.dirname(failure.report_path))
    assert report["status"] == "failed"
    assert "MatrixDeterminant" in report["failure_reason"]


def test_quantizer_conversion_past_its_timeout_fails_with_a_reason(
    frozen_digits, tmp_path, monkeypatch
):
    # A fresh interpreter, whose TensorFlow import alone outlasts the 1 s: a child forked
    # by the warm server (TF imported already) converts this model in under a second.
    monkeypatch.setenv(SWITCH_ENV, "0")
    with pytest.raises(QuantizationFailed, match="did not finish within 1 s"):
        quantize_to_tflite(
            frozen_digits.graph_def,
            frozen_digits.signature,
            "float32",
            str(tmp_path / "slow"),
            timeout_seconds=1,
        )


def test_quantizer_int8_without_calibration_inputs_is_a_user_error(frozen_digits, tmp_path):
    with pytest.raises(UserInputError, match="needs calibration inputs"):
        quantize_to_tflite(frozen_digits.graph_def, frozen_digits.signature, "int8", str(tmp_path))


def test_quantizer_rejects_int8_io_for_float_modes_and_unknown_modes(frozen_digits, tmp_path):
    graph, signature = frozen_digits.graph_def, frozen_digits.signature

    with pytest.raises(UserInputError, match="needs mode 'int8'"):
        quantize_to_tflite(graph, signature, "float16", str(tmp_path), inference_io_type="int8")
    with pytest.raises(UserInputError, match="Unknown TFLite quantization mode"):
        quantize_to_tflite(graph, signature, "int4", str(tmp_path))


def test_quantizer_rejects_calibration_inputs_of_the_wrong_shape(frozen_digits, tmp_path):
    wrong = np.zeros((10, 28, 28, 1), np.float32)

    with pytest.raises(UserInputError, match="Calibration inputs for 'image'"):
        quantize_to_tflite(
            frozen_digits.graph_def, frozen_digits.signature, "int8", str(tmp_path), wrong
        )
