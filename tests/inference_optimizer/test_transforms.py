"""Each transform shrinks the graph the way it claims and keeps the outputs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.graph_io import graph_def_callable, op_histogram, save_graph_def
from components.inference_optimizer.optimizer import optimize_graph
from components.inference_optimizer.saved_model_export import export_graph_as_saved_model
from components.inference_optimizer.transforms import cpu_supports_native_bfloat16
from tests.conftest import requires_avx512
from tests.inference_optimizer import tiny_graphs

ATOL = 1e-4
UP_TO_FOLD_CONSTANTS = ["strip_debug_and_training", "remove_unreachable", "fold_constants"]
UP_TO_FOLD_BATCH_NORMS = [*UP_TO_FOLD_CONSTANTS, "fold_batch_norms"]
BFLOAT16 = [*UP_TO_FOLD_BATCH_NORMS, "bfloat16"]


def graph_ops(graph_def) -> set[str]:
    """Op types of the graph's own nodes (not of library functions)."""
    return {node.op for node in graph_def.node}


def run(graph_def, signature, *inputs) -> np.ndarray:
    (output,) = graph_def_callable(graph_def, signature)(*inputs)
    return output


# ---- strip_debug_and_training ---------------------------------------------------------


def test_strip_removes_identity_chains_and_noops_from_digits(
    frozen_digits, digits_eval, frozen_digits_outputs
):
    result = optimize_graph(
        frozen_digits.graph_def, frozen_digits.signature, ["strip_debug_and_training"]
    )

    ops = [node.op for node in result.graph_def.node]
    assert ops.count("Identity") == 1  # Only the signature's output node is left.
    assert "NoOp" not in ops
    assert not any(i.startswith("^") for node in result.graph_def.node for i in node.input)
    assert result.node_count_after < result.node_count_before
    actual = run(result.graph_def, frozen_digits.signature, digits_eval.images)
    np.testing.assert_allclose(actual, frozen_digits_outputs, atol=ATOL)


def test_strip_removes_check_numerics_asserts_and_training_switches():
    graph_def, signature = tiny_graphs.debug_and_training_graph()
    assert {"CheckNumerics", "Assert", "If", "PlaceholderWithDefault"} <= graph_ops(graph_def)

    result = optimize_graph(
        graph_def, signature, ["strip_debug_and_training", "remove_unreachable"]
    )

    histogram = op_histogram(result.graph_def)  # Counts library functions too.
    removed = {"CheckNumerics", "Assert", "If", "NoOp", "PlaceholderWithDefault", "StopGradient"}
    assert not removed & set(histogram)
    assert not {"RealDiv", "Mul"} & set(histogram)  # `x / keep_prob(=1)` and `x * 1`.
    assert histogram["Identity"] == 1
    assert len(result.graph_def.library.function) == 0
    expected = run(graph_def, signature, tiny_graphs.VECTORS)
    np.testing.assert_allclose(run(result.graph_def, signature, tiny_graphs.VECTORS), expected)


def test_strip_keeps_control_edges_from_stateful_nodes():
    graph_def, signature = tiny_graphs.stateful_control_graph()

    result = optimize_graph(graph_def, signature, ["strip_debug_and_training"])

    nodes = {node.name: node for node in result.graph_def.node}
    assert "waited" not in nodes  # The Identity is spliced out...
    # ...and its reader inherits the wait for the random op.
    assert "^noise/RandomUniform" in nodes["mul"].input


# ---- remove_unreachable -------------------------------------------------------------------


def test_remove_unreachable_drops_dead_branches_but_keeps_every_input():
    graph_def, signature = tiny_graphs.dead_branch_graph()

    result = optimize_graph(graph_def, signature, ["remove_unreachable"])

    names = {node.name for node in result.graph_def.node}
    assert "dead_branch" not in names
    assert "Exp" not in graph_ops(result.graph_def)
    assert {"x", "unused_input", "y"} <= names
    assert result.transform_log[0]["details"] == {"removed": 3}


# ---- fold_constants -----------------------------------------------------------------------


def test_fold_constants_computes_batch_norm_constants_on_digits(
    frozen_digits, digits_eval, frozen_digits_outputs
):
    result = optimize_graph(frozen_digits.graph_def, frozen_digits.signature, UP_TO_FOLD_CONSTANTS)

    entry = result.transform_log[-1]
    assert entry["node_count_after"] < entry["node_count_before"]
    assert not {"Rsqrt", "Sub"} & set(entry["op_histogram_after"])
    actual = run(result.graph_def, frozen_digits.signature, digits_eval.images)
    np.testing.assert_allclose(actual, frozen_digits_outputs, atol=ATOL)


# ---- fold_batch_norms ---------------------------------------------------------------------


def test_fold_batch_norms_leaves_no_batch_norm_arithmetic_on_digits(
    frozen_digits, digits_eval, frozen_digits_outputs
):
    result = optimize_graph(
        frozen_digits.graph_def, frozen_digits.signature, UP_TO_FOLD_BATCH_NORMS
    )

    entry = result.transform_log[-1]
    assert entry["node_count_after"] < entry["node_count_before"]
    assert not {"Rsqrt", "Mul", "Sub", "AddV2"} & set(entry["op_histogram_after"])
    # The batch norm after Dense+ReLU has nothing before it to fold into; it goes forward.
    assert entry["details"]["affines_folded_into_following_matmul"] == 1
    actual = run(result.graph_def, frozen_digits.signature, digits_eval.images)
    np.testing.assert_allclose(actual, frozen_digits_outputs, atol=ATOL)


def test_fold_batch_norms_handles_depthwise_dense_and_forward_folds():
    graph_def, signature = tiny_graphs.keras_batch_norm_graph()

    result = optimize_graph(graph_def, signature, UP_TO_FOLD_BATCH_NORMS)

    details = result.transform_log[-1]["details"]
    assert details["scales_folded_into_weights"] == 2  # Depthwise and Dense.
    assert details["affines_folded_into_following_matmul"] == 1
    assert not {"Rsqrt", "Mul", "Sub", "AddV2"} & graph_ops(result.graph_def)
    expected = run(graph_def, signature, tiny_graphs.IMAGES)
    np.testing.assert_allclose(
        run(result.graph_def, signature, tiny_graphs.IMAGES), expected, atol=ATOL
    )


def test_fold_batch_norms_folds_fused_batch_norm_ops():
    graph_def, signature = tiny_graphs.fused_batch_norm_graph()

    result = optimize_graph(graph_def, signature, UP_TO_FOLD_BATCH_NORMS)

    assert "FusedBatchNormV3" not in graph_ops(result.graph_def)
    assert result.transform_log[-1]["details"]["fused_batch_norms_folded"] == 1
    expected = run(graph_def, signature, tiny_graphs.IMAGES)
    np.testing.assert_allclose(
        run(result.graph_def, signature, tiny_graphs.IMAGES), expected, atol=ATOL
    )


# ---- fuse_ops -----------------------------------------------------------------------------


def test_fuse_ops_writes_fused_ops_that_still_run(
    optimized_digits, frozen_digits, digits_eval, frozen_digits_outputs
):
    histogram = optimized_digits.transform_log[-1]["op_histogram_after"]

    assert histogram["_FusedConv2D"] == 3
    assert histogram["_FusedMatMul"] == 2
    assert not {"Conv2D", "MatMul", "BiasAdd", "Relu"} & set(histogram)
    actual = run(optimized_digits.graph_def, frozen_digits.signature, digits_eval.images)
    np.testing.assert_allclose(actual, frozen_digits_outputs, atol=ATOL)


def test_fuse_ops_undoes_fusions_only_onednn_can_run():
    from tensorflow.python.util import _pywrap_util_port

    graph_def, signature = tiny_graphs.residual_conv_graph()
    expected = run(graph_def, signature, tiny_graphs.IMAGES)

    portable = optimize_graph(graph_def, signature, ["fuse_ops"])
    onednn = optimize_graph(
        graph_def, signature, ["fuse_ops"], {"fuse_ops": {"allow_onednn_only_fusions": True}}
    )

    fusions = portable.transform_log[0]["details"]["fusions"]
    # Grappler's other fusions depend on the CPU (an AVX2-only one also fuses the
    # projection conv's BiasAdd); what matters is that no oneDNN-only fused Add is left.
    assert fusions["_FusedConv2D[BiasAdd,Relu]"] == 1
    fused_ops = {op for name in fusions for op in name.split("[")[1].rstrip("]").split(",")}
    assert "Add" not in fused_ops, fusions
    assert portable.hardware_requirements == []
    np.testing.assert_allclose(
        run(portable.graph_def, signature, tiny_graphs.IMAGES), expected, atol=ATOL
    )
    if _pywrap_util_port.IsMklEnabled():
        onednn_fusions = onednn.transform_log[0]["details"]["fusions"]
        assert onednn_fusions["_FusedConv2D[BiasAdd,Add,Relu]"] == 1
        assert onednn.hardware_requirements == ["onednn"]
        actual = run(onednn.graph_def, signature, tiny_graphs.IMAGES)
        np.testing.assert_allclose(actual, expected, atol=ATOL)


@pytest.mark.slow  # A fresh TensorFlow process: 10-30 s on a busy machine.
def test_fused_digits_graph_runs_with_onednn_switched_off(
    optimized_digits, frozen_digits, tmp_path
):
    # oneDNN is chosen when TensorFlow starts, so the check needs a fresh process.
    save_graph_def(optimized_digits.graph_def, str(tmp_path))
    frozen_digits.signature.save(str(tmp_path))
    script = (
        "import numpy as np\n"
        "from components.common.graph_io import graph_def_callable, load_graph_def\n"
        "from components.common.signature import GraphSignature\n"
        f"d = {str(tmp_path)!r}\n"
        "run = graph_def_callable(load_graph_def(d), GraphSignature.load(d))\n"
        "print(run(np.zeros((2, 32, 32, 1), np.float32))[0].shape)\n"
    )
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    completed = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().endswith("(2, 10)")


# ---- bfloat16 -----------------------------------------------------------------------------


@requires_avx512  # Grappler's oneDNN bfloat16 pass converts nothing on an AVX2-only CPU.
def test_bfloat16_keeps_top1_agreement_on_digits(
    frozen_digits, digits_eval, frozen_digits_outputs, tmp_path
):
    result = optimize_graph(
        frozen_digits.graph_def,
        frozen_digits.signature,
        BFLOAT16,
        # Runs on any CPU for the test; without native support bfloat16 is only slow.
        {"bfloat16": {"require_native_bfloat16": False}},
    )

    details = result.transform_log[-1]["details"]
    assert details["bfloat16_nodes"] > 0
    assert result.hardware_requirements == ["bf16"]
    actual = run(result.graph_def, frozen_digits.signature, digits_eval.images)
    assert actual.dtype == np.float32  # Casts sit at the edges; the signature is unchanged.
    agreement = (actual.argmax(1) == frozen_digits_outputs.argmax(1)).mean()
    assert agreement >= 0.98
    np.testing.assert_allclose(actual, frozen_digits_outputs, atol=0.05)
    # Still exports with the float32 signature (the export verifies dtypes and shapes).
    export_graph_as_saved_model(result.graph_def, frozen_digits.signature, str(tmp_path))


def test_bfloat16_refuses_cpus_without_native_support(tmp_path, frozen_digits, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert not cpu_supports_native_bfloat16(str(cpuinfo))
    from components.inference_optimizer import transforms

    monkeypatch.setattr(transforms, "cpu_supports_native_bfloat16", lambda: False)

    with pytest.raises(UserInputError, match="AVX512-BF16 or AMX"):
        optimize_graph(frozen_digits.graph_def, frozen_digits.signature, BFLOAT16)
