"""TFLiteModel: io order, int8 io, static batch sizes and thread pinning."""

from __future__ import annotations

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.quantizer.tflite_quantization import convert_graph, static_signature
from components.runtimes.tflite import (
    TFLiteModel,
    available_batch_sizes,
    tflite_model_path,
)


def test_tflite_model_runs_inputs_and_outputs_in_signature_order(two_io_graph, tmp_path):
    # In-process conversion of a two-op toy graph: no crash risk worth a subprocess here.
    content, _ = convert_graph(two_io_graph.graph_def, two_io_graph.signature, "float32", 1)
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    static_signature(two_io_graph.signature, 1).save(str(tmp_path))
    model = TFLiteModel(str(path), num_threads=1)
    first = np.full((1, 3), 1.0, np.float32)
    second = np.full((1, 5), 3.0, np.float32)

    doubled, incremented = model.run(first, second)

    np.testing.assert_allclose(doubled, np.full((1, 3), 2.0))
    np.testing.assert_allclose(incremented, np.full((1, 5), 4.0))
    assert model.input_shapes == [(1, 3), (1, 5)]


def test_tflite_model_int8_io_takes_floats_and_returns_dequantized_floats(
    tflite_results, digits_eval
):
    int8_io = TFLiteModel(tflite_results["int8_io"].model_path, num_threads=1)
    float_io = TFLiteModel(tflite_results["int8"].model_path, num_threads=1)
    image = digits_eval.images[:1]

    (probabilities,) = int8_io.run(image)

    assert int8_io.input_dtypes == ["int8"] and int8_io.output_dtypes == ["int8"]
    assert probabilities.dtype == np.float32
    # Same calibration, so the two io types agree to within one output step (1/256).
    np.testing.assert_allclose(probabilities, float_io.run(image)[0], atol=1 / 256 + 1e-6)


def test_tflite_model_int8_io_passes_prequantized_inputs_through(tflite_results, digits_eval):
    model = TFLiteModel(tflite_results["int8_io"].model_path, num_threads=1)
    scale, zero_point = model.interpreter.get_input_details()[0]["quantization"]
    image = digits_eval.images[:1]

    (quantized,) = model.to_model_inputs(image)

    assert quantized.dtype == np.int8
    expected = np.clip(np.round(image / scale) + zero_point, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(quantized, expected)
    np.testing.assert_array_equal(model.run(quantized)[0], model.run(image)[0])


def test_tflite_model_extra_batch_size_has_its_own_static_model(tflite_results, digits_eval):
    directory = tflite_results["float16"].output_dir
    batch_1 = TFLiteModel(tflite_model_path(directory, 1), num_threads=1)
    batch_4 = TFLiteModel(tflite_model_path(directory, 4), num_threads=1)
    images = digits_eval.images[:4]

    together = batch_4.run(images)[0]
    one_by_one = np.concatenate([batch_1.run(images[i : i + 1])[0] for i in range(4)])

    assert available_batch_sizes(directory) == [1, 4]
    assert batch_4.batch_size == 4
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert tflite_results["float16"].report["per_batch_size"]["4"]["fully_delegated"]


def test_tflite_model_path_names_the_batch_sizes_present(tflite_results):
    with pytest.raises(UserInputError, match=r"batch size 3 \(available: 1, 4\)"):
        tflite_model_path(tflite_results["float16"].output_dir, 3)


def test_tflite_model_refuses_a_batch_it_was_not_converted_for(tflite_results, digits_eval):
    model = TFLiteModel(tflite_results["float16"].model_path, num_threads=2)

    with pytest.raises(ValueError, match="static batch size"):
        model.run(digits_eval.images[:2])
    assert model.num_threads == 2


def test_tflite_model_needs_at_least_one_thread(tflite_results):
    with pytest.raises(ValueError, match="num_threads"):
        TFLiteModel(tflite_results["float16"].model_path, num_threads=0)
