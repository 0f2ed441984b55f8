"""The oneDNN int8 quantizer on the digits CNN and on a residual toy graph."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.signature import GraphSignature, TensorDescription
from tests.conftest import cpu_flags, requires_avx512

NUM_CALIBRATION = 200


@pytest.fixture(scope="module")
def digits_int8(frozen_digits):
    """The digits CNN quantized once, calibrated on training digits, kernels checked."""
    from components.quantizer.onednn_int8 import quantize_onednn_int8
    from pipelines.embedded_default import load_digit_images, split_train_eval

    train_images, _, _, _ = split_train_eval(*load_digit_images())
    return quantize_onednn_int8(
        frozen_digits.graph_def,
        frozen_digits.signature,
        train_images,
        num_calibration=NUM_CALIBRATION,
        check_kernels=True,
    )


def _top1(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(predictions, axis=-1) == labels))


def test_onednn_int8_runs_convs_and_matmuls_as_quantized_ops(digits_int8):
    ops = {n.op for n in digits_int8.graph_def.node}

    assert digits_int8.int8_op_counts["_FusedQuantizedConv2D"] == 3
    assert digits_int8.int8_op_counts["QuantizedMatMulWithBiasAndReluAndRequantize"] == 1
    assert digits_int8.int8_op_counts["QuantizedMatMulWithBiasAndDequantize"] == 1
    assert digits_int8.int8_op_counts["QuantizedMaxPool"] == 2
    assert not ops & {"Conv2D", "MatMul", "MaxPool"}


@requires_avx512
def test_onednn_int8_keeps_digits_top1_within_2_points(digits_int8, frozen_digits, digits_eval):
    from components.common.graph_io import graph_def_callable

    fp32 = graph_def_callable(frozen_digits.graph_def, frozen_digits.signature)
    int8 = graph_def_callable(digits_int8.graph_def, frozen_digits.signature)

    fp32_top1 = _top1(fp32(digits_eval.images)[0], digits_eval.labels)
    int8_top1 = _top1(int8(digits_eval.images)[0], digits_eval.labels)

    assert int8_top1 >= fp32_top1 - 0.02, (fp32_top1, int8_top1)


def test_onednn_int8_info_lists_quantized_and_float_ops(digits_int8):
    info = digits_int8.info()

    assert info["quantized_op_counts"] == {"Conv2D": 3, "MatMul": 2}
    assert info["float_op_counts"] == {"Mean": 1, "Softmax": 1}
    assert info["calibration_samples"] == NUM_CALIBRATION
    assert info["folded_affine_chains"] >= 3  # Two conv batch norms and the dense one.
    assert info["canonical_max_abs_diff"] < 1e-4
    assert len(info["chains"]) == 5
    for low, high in info["activation_ranges"].values():
        assert low <= high
    json.dumps(info)  # Everything is JSON-ready.


@requires_avx512
def test_onednn_int8_selects_int8_onednn_kernels_at_run_time(digits_int8):
    kernels = digits_int8.kernels

    assert kernels is not None and kernels.error is None, kernels
    assert kernels.int8_kernels_selected
    assert sum(kernels.int8_compute.values()) == kernels.expected_int8_compute == 5
    assert kernels.fp32_compute == {}
    if _cpu_has("avx512_vnni") or _cpu_has("amx_int8"):
        assert any("vnni" in isa or "amx" in isa for isa in kernels.isa), kernels.isa


@requires_avx512
def test_write_onednn_int8_writes_a_loadable_variant(digits_int8, frozen_digits, tmp_path):
    from components.common.graph_io import graph_def_callable, load_graph_def
    from components.quantizer.onednn_int8 import write_onednn_int8

    paths = write_onednn_int8(digits_int8, frozen_digits.signature, str(tmp_path))

    assert sorted(os.listdir(tmp_path)) == ["graph.pb", "quantization.json", "signature.json"]
    with open(paths["quantization"], encoding="utf-8") as f:
        assert json.load(f)["quantized_op_counts"] == {"Conv2D": 3, "MatMul": 2}
    signature = GraphSignature.load(str(tmp_path))
    run = graph_def_callable(load_graph_def(str(tmp_path)), signature)
    assert run(np.zeros((2, 32, 32, 1), np.float32))[0].shape == (2, 10)


def test_canonicalize_folds_digits_batch_norms_without_changing_outputs(frozen_digits):
    from components.common.graph_io import graph_def_callable
    from components.quantizer.onednn.canonicalize import canonicalize

    signature = frozen_digits.signature
    protected = {signature.inputs[0].op_name, *signature.output_op_names}

    canonical = canonicalize(frozen_digits.graph_def, protected, signature.output_op_names)

    ops = [n.op for n in canonical.graph_def.node]
    assert not {"Mul", "Sub", "AddV2", "Rsqrt"} & set(ops)
    assert ops.count("BiasAdd") == 5
    images = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 1)).astype(np.float32)
    before = graph_def_callable(frozen_digits.graph_def, signature)(images)[0]
    after = graph_def_callable(canonical.graph_def, signature)(images)[0]
    np.testing.assert_allclose(after, before, atol=1e-5)


@requires_avx512
def test_onednn_int8_fuses_residual_adds_with_and_without_relu():
    """MobileNetV2's linear-bottleneck add and ResNet's projection add both stay int8."""
    from components.common.graph_io import graph_def_callable
    from components.quantizer.onednn_int8 import quantize_onednn_int8

    graph_def, signature = _residual_toy_graph()
    rng = np.random.default_rng(1)
    calibration = rng.uniform(-1, 1, (64, 8, 8, 4)).astype(np.float32)
    inputs = rng.uniform(-1, 1, (16, 8, 8, 4)).astype(np.float32)

    result = quantize_onednn_int8(graph_def, signature, calibration, check_kernels=False)

    assert "AddV2" not in result.float_op_counts
    assert [c.fused_ops for c in result.chains].count(("BiasAdd", "Sum", "Relu", "Requantize")) == 2
    assert result.quantized_op_counts == {"Conv2D": 6, "DepthwiseConv2dNative": 1, "MatMul": 1}
    assert any(c.output_offset > 0 for c in result.chains)  # Signed outputs went offset.
    expected = graph_def_callable(graph_def, signature)(inputs)[0]
    actual = graph_def_callable(result.graph_def, signature)(inputs)[0]
    assert np.linalg.norm(actual - expected) / np.linalg.norm(expected) < 0.05


def test_quantize_onednn_int8_rejects_calibration_inputs_of_the_wrong_shape(frozen_digits):
    from components.quantizer.onednn_int8 import quantize_onednn_int8

    with pytest.raises(UserInputError, match="shape"):
        quantize_onednn_int8(
            frozen_digits.graph_def,
            frozen_digits.signature,
            np.zeros((8, 28, 28, 1), np.float32),
            check_kernels=False,
        )


def test_parse_onednn_verbose_splits_int8_and_fp32_primitives():
    from components.quantizer.onednn.kernel_check import parse_onednn_verbose

    lines = [
        "onednn_verbose,primitive,exec,cpu,convolution,brgconv:avx512_core_vnni,forward_training,"
        "src_u8::blocked:acdb::f0 wei_s8:a:blocked:AcdB32a4b::f0 dst_u8::blocked:acdb::f0,"
        "attr-scales:src0:0,alg:convolution_direct,mb1_ic16oc32,0.19",
        "onednn_verbose,primitive,exec,cpu,inner_product,brgemm:avx512_core_amx,forward_training,"
        "src_s8:a:blocked:ab::f0 wei_s8:ap:blocked:AB4b16a4b::f0 dst_f32:a:blocked:ab::f0,,,"
        "mb4ic64oc10,0.02",
        "onednn_verbose,primitive,exec,cpu,convolution,brgconv:avx512_core,forward_training,"
        "src_f32::blocked:acdb::f0 wei_f32::blocked:cdba::f0 dst_f32::blocked:acdb::f0,,,"
        "mb1_ic16oc32,0.21",
        "onednn_verbose,primitive,exec,cpu,reorder,jit:uni,undef,"
        "src_f32::blocked:acdb::f0 dst_u8::blocked:acdb::f0,attr-scales:src0:0,,1x28x28x16,0.1",
        "onednn_verbose,info,cpu,isa:Intel AVX-512 with AVX512_VNNI",
    ]

    parsed = parse_onednn_verbose(lines)

    assert parsed["int8_compute"] == {
        "convolution:brgconv:avx512_core_vnni": 1,
        "inner_product:brgemm:avx512_core_amx": 1,
    }
    assert parsed["fp32_compute"] == {"convolution:brgconv:avx512_core": 1}
    assert parsed["isa"] == ("avx512_core_amx", "avx512_core_vnni")
    assert parsed["reorders"] == 1


def _residual_toy_graph():
    """A frozen graph with a ReLU-less residual add and a projection-shortcut add + ReLU.

    input -> conv3x3+BN+ReLU -> a ; p = conv1x1(a) (linear) ; e = ReLU6(conv1x1(p))
    d = ReLU6(depthwise3x3(e)) ; r = conv1x1(d) + p      (MobileNetV2 linear bottleneck)
    t = ReLU(conv1x1(r) + conv1x1(r))                     (ResNet projection block)
    logits = dense(mean(t))
    """
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants

    rng = np.random.default_rng(0)

    def he(*shape: int, fan_in: int) -> tf.Tensor:
        return tf.constant(rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(np.float32))

    def vector(size: int, scale: float = 0.1) -> tf.Tensor:
        return tf.constant(rng.normal(0, scale, size).astype(np.float32))

    w0, w1, w2 = he(3, 3, 4, 8, fan_in=36), he(1, 1, 8, 8, fan_in=8), he(1, 1, 8, 16, fan_in=8)
    wd, w4 = he(3, 3, 16, 1, fan_in=9), he(1, 1, 16, 8, fan_in=16)
    w5, w6, dense = he(1, 1, 8, 8, fan_in=8), he(1, 1, 8, 8, fan_in=8), he(8, 5, fan_in=8)
    bn_scale = tf.constant(rng.uniform(0.5, 1.5, 8).astype(np.float32))
    b = [vector(n) for n in (8, 8, 16, 16, 8, 8, 8, 5)]

    def conv(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
        return tf.nn.conv2d(x, w, 1, "SAME")

    def model(image: tf.Tensor) -> dict[str, tf.Tensor]:
        a = tf.nn.relu(conv(image, w0) * bn_scale + b[0])
        p = tf.nn.bias_add(conv(a, w1), b[1])
        e = tf.nn.relu6(tf.nn.bias_add(conv(p, w2), b[2]))
        d = tf.nn.relu6(tf.nn.depthwise_conv2d(e, wd, [1, 1, 1, 1], "SAME") + b[3])
        r = tf.nn.bias_add(conv(d, w4), b[4]) + p
        t = tf.nn.relu(tf.nn.bias_add(conv(r, w5), b[5]) + tf.nn.bias_add(conv(r, w6), b[6]))
        logits = tf.matmul(tf.reduce_mean(t, axis=[1, 2]), dense) + b[7]
        return {"logits": logits}

    spec = tf.TensorSpec([None, 8, 8, 4], tf.float32, name="image")
    concrete = tf.function(model).get_concrete_function(spec)
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
    signature = GraphSignature(
        "serving_default",
        inputs=(TensorDescription("image", frozen.inputs[0].name, "float32", (None, 8, 8, 4)),),
        outputs=(TensorDescription("logits", frozen.outputs[0].name, "float32", (None, 5)),),
    )
    return frozen.graph.as_graph_def(), signature


def _cpu_has(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return flag in f.read().split()
    except OSError:
        return False


def test_onednn_int8_graph_keeps_no_fp32_weights_behind(digits_int8, frozen_digits):
    import tensorflow as tf

    unreachable_free = tf.compat.v1.graph_util.extract_sub_graph(
        digits_int8.graph_def,
        [t.op_name for t in (*frozen_digits.signature.inputs, *frozen_digits.signature.outputs)],
    )
    assert len(unreachable_free.node) == len(digits_int8.graph_def.node)
    # int8 weights: the graph is well under the fp32 frozen graph's size.
    assert digits_int8.graph_def.ByteSize() < 0.6 * frozen_digits.graph_def.ByteSize()


@pytest.mark.skipif("avx512f" in cpu_flags(), reason="this CPU runs oneDNN int8 graphs")
def test_onednn_int8_mode_fails_with_the_cpu_reason_where_its_kernels_cannot_run(
    frozen_digits, digits_train, tmp_path
):
    from components.quantizer.modes import QuantizeSettings, get_mode

    with pytest.raises(RuntimeError, match="AVX-512") as raised:
        get_mode("onednn_int8").run(
            frozen_digits.graph_def,
            frozen_digits.signature,
            [digits_train.images],
            str(tmp_path),
            QuantizeSettings(num_calibration=32),
        )
    assert "does not run on this machine" in str(raised.value)
    assert not os.path.exists(tmp_path / "graph.pb")  # Nothing half-written is left.


def test_the_int8_kernel_isa_says_whether_amx_or_vnni_ran():
    from components.quantizer.modes import int8_isa_summary

    assert int8_isa_summary(("avx512_core_amx",)) == {
        "int8_kernel_isa": ["avx512_core_amx"],
        "amx_kernels_ran": True,
        "vnni_kernels_ran": False,
    }
    assert int8_isa_summary(("avx512_core_vnni",))["vnni_kernels_ran"] is True
    assert not any(int8_isa_summary(("avx2",))[k] for k in ("amx_kernels_ran", "vnni_kernels_ran"))
