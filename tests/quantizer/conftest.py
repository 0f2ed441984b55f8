"""Quantizer fixtures: every TFLite conversion the tests need, run once and in parallel.

Each conversion is a subprocess that pays TensorFlow's import (5-10 s), so they all
start together in one session fixture and the tests only read the results.
"""

from __future__ import annotations

import concurrent.futures

import pytest

from tests.quantizer.quantizer_helpers import SmallGraph, freeze_function, top1


@pytest.fixture(scope="session")
def two_io_graph() -> SmallGraph:
    """Two inputs and two outputs of different widths, so a wrong order cannot go unseen.

    The placeholders are named against alphabetical order (`zz` feeds the first input).
    """
    import tensorflow as tf

    return freeze_function(
        lambda a, b: (a * 2.0, b + 1.0),
        tf.TensorSpec([None, 3], tf.float32, name="zz"),
        tf.TensorSpec([None, 5], tf.float32, name="aa"),
    )


@pytest.fixture(scope="session")
def tflite_results(frozen_digits, digits_eval, tmp_path_factory):
    """Per case, a QuantizationResult, or the QuantizationFailed a case is meant to raise.

    Cases: each quantized mode on the digits CNN, int8 with int8 io, and a graph with an
    op TFLite lacks. Mode float32 gets no case of its own: every conversion also
    converts float32 to report its size, and float16 runs the same float kernels.
    """
    import tensorflow as tf

    from components.quantizer.tflite_quantization import QuantizationFailed, quantize_to_tflite

    root = tmp_path_factory.mktemp("tflite")
    digits = (frozen_digits.graph_def, frozen_digits.signature)
    determinant = freeze_function(tf.linalg.det, tf.TensorSpec([None, 4, 4], tf.float32))
    cases = {
        "float16": (digits, {"mode": "float16", "extra_batch_sizes": (4,)}),
        "dynamic_range": (digits, {"mode": "dynamic_range"}),
        "int8": (digits, {"mode": "int8", "calibration_inputs": digits_eval.images}),
        "int8_io": (
            digits,
            {
                "mode": "int8",
                "calibration_inputs": digits_eval.images,
                "inference_io_type": "int8",
            },
        ),
        "unsupported_op": (
            (determinant.graph_def, determinant.signature),
            {"mode": "float32"},
        ),
    }

    def convert(name: str):
        graph, kwargs = cases[name]
        try:
            return quantize_to_tflite(*graph, output_dir=str(root / name), **kwargs)
        except QuantizationFailed as failure:
            return failure

    # Each case is a subprocess paying TensorFlow's import; run them side by side.
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(cases, pool.map(convert, cases), strict=True))


@pytest.fixture(scope="session")
def frozen_top1(frozen_digits, digits_eval) -> float:
    """Top-1 of the frozen graph on the digits eval set, the accuracy reference."""
    from components.common.graph_io import graph_def_callable

    run = graph_def_callable(frozen_digits.graph_def, frozen_digits.signature)
    return top1(run(digits_eval.images)[0], digits_eval.labels)
