"""XLA AOT: the shared library computes what the frozen graph does, and says what it took."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from components.common.errors import UserInputError
from components.common.graph_io import graph_def_callable
from components.runtimes.xla_aot import AotModel, AotResult
from components.xla_compiler import aot
from components.xla_compiler.aot import AotCompileError, compile_aot

# Enough rows to cover every class, few enough to keep batch-1 calls quick.
BATCH_1_ROWS = 64


@pytest.fixture(scope="module")
def expected_digits(frozen_digits, digits_eval):
    """The frozen graph's probabilities on the eval digits (TF's own kernels)."""
    run_frozen = graph_def_callable(frozen_digits.graph_def, frozen_digits.signature)
    return run_frozen(digits_eval.images)[0]


@pytest.fixture(scope="module")
def aot_digits_b1(frozen_digits, aot_runtime_cache, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("aot_b1"))
    compile_aot(
        frozen_digits.graph_def,
        frozen_digits.signature,
        output_dir,
        batch_size=1,
        runtime_cache_dir=aot_runtime_cache,
    )
    return output_dir


@pytest.fixture(scope="module")
def aot_digits_b8(frozen_digits, aot_runtime_cache, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("aot_b8"))
    compile_aot(
        frozen_digits.graph_def,
        frozen_digits.signature,
        output_dir,
        batch_size=8,
        runtime_cache_dir=aot_runtime_cache,
    )
    return output_dir


@pytest.mark.slow
def test_aot_library_matches_frozen_graph_at_batch_1(aot_digits_b1, digits_eval, expected_digits):
    model = AotModel(aot_digits_b1)

    actual = np.concatenate(
        [model.run(digits_eval.images[i : i + 1])[0] for i in range(BATCH_1_ROWS)]
    )

    assert model.batch_size == 1 and model.num_threads == 1
    assert model.input_shapes == [(1, 32, 32, 1)] and model.output_shapes == [(1, 10)]
    np.testing.assert_allclose(actual, expected_digits[:BATCH_1_ROWS], atol=1e-4)


@pytest.mark.slow
def test_aot_library_matches_frozen_graph_at_batch_8(aot_digits_b8, digits_eval, expected_digits):
    model = AotModel(aot_digits_b8)

    # 449 rows: 56 full batches and a zero-padded last one.
    [actual] = model.run_any_batch(digits_eval.images)

    assert model.batch_size == 8 and model.input_shapes == [(8, 32, 32, 1)]
    np.testing.assert_allclose(actual, expected_digits, atol=1e-4)
    assert (actual.argmax(axis=1) == expected_digits.argmax(axis=1)).all()


@pytest.mark.slow
def test_aot_json_records_compile_facts(aot_digits_b1):
    with open(os.path.join(aot_digits_b1, "aot.json")) as f:
        recorded = json.load(f)
    result = AotResult.load(aot_digits_b1)

    assert recorded["batch_size"] == 1
    assert recorded["compile_time_s"] > 0 and recorded["shared_library_build_time_s"] > 0
    assert recorded["target_triple"] == "x86_64-pc-linux"
    assert recorded["target_cpu"].startswith("x86-64")
    assert "avx2" in recorded["required_cpu_flags"] or recorded["target_cpu"] == "x86-64"
    assert recorded["object_size_bytes"] == os.path.getsize(os.path.join(aot_digits_b1, "model.o"))
    assert recorded["multithreaded"] is False
    assert result.shared_library_size_bytes > 0
    for filename in ("libmodel.so", "model.h", "model_metadata.o", "signature.json"):
        assert os.path.exists(os.path.join(aot_digits_b1, filename)), filename
    with open(os.path.join(aot_digits_b1, recorded["hlo_file"])) as f:
        hlo = f.read()
    assert hlo.startswith("HloModule") and "f32[1,32,32,1]" in hlo


@pytest.mark.slow
def test_aot_second_build_reuses_cached_runtime(
    aot_digits_b1, aot_digits_b8, frozen_digits, aot_runtime_cache
):
    # Both fixtures built with the same cache; whichever ran second compiled nothing.
    results = [AotResult.load(d) for d in (aot_digits_b1, aot_digits_b8)]

    assert min(r.runtime_objects_built for r in results) == 0


@pytest.mark.slow
def test_aot_model_rejects_inputs_of_another_batch_size(aot_digits_b1, digits_eval):
    model = AotModel(aot_digits_b1)

    with pytest.raises(ValueError, match=r"\(1, 32, 32, 1\)"):
        model.run(digits_eval.images[:2])


@pytest.mark.slow
def test_aot_model_refuses_more_threads_than_a_single_threaded_build(aot_digits_b1):
    with pytest.raises(UserInputError, match="multithreaded=True"):
        AotModel(aot_digits_b1, num_threads=2)


@pytest.mark.slow
def test_aot_model_refuses_code_for_cpu_features_this_machine_lacks(aot_digits_b1, tmp_path):
    copy = str(tmp_path / "aot_copy")
    shutil.copytree(aot_digits_b1, copy)
    result = AotResult.load(copy)
    changed = dataclasses.replace(result, required_cpu_flags=("avx9000",))
    with open(os.path.join(copy, "aot.json"), "w") as f:
        json.dump(changed.to_json(), f)

    with pytest.raises(UserInputError, match="avx9000"):
        AotModel(copy)


def test_aot_rejects_unknown_non_batch_dimension(frozen_digits, tmp_path):
    [image] = frozen_digits.signature.inputs
    signature = dataclasses.replace(
        frozen_digits.signature, inputs=(dataclasses.replace(image, shape=(None, None, 32, 1)),)
    )

    with pytest.raises(UserInputError, match=r"dimension\(s\) \[1\] are unknown"):
        compile_aot(frozen_digits.graph_def, signature, str(tmp_path / "aot"))


def test_aot_rejects_batch_size_the_graph_does_not_have(frozen_digits, tmp_path):
    [image] = frozen_digits.signature.inputs
    signature = dataclasses.replace(
        frozen_digits.signature, inputs=(dataclasses.replace(image, shape=(4, 32, 32, 1)),)
    )

    with pytest.raises(UserInputError, match="fixed batch dimension of 4"):
        compile_aot(frozen_digits.graph_def, signature, str(tmp_path / "aot"), batch_size=8)


def test_aot_rejects_ops_xla_cannot_compile(string_op_graph, tmp_path):
    graph_def, signature = string_op_graph

    with pytest.raises(UserInputError, match="AsString"):
        compile_aot(graph_def, signature, str(tmp_path / "aot"))


def test_aot_compiler_crash_raises_in_the_caller(frozen_digits, tmp_path, monkeypatch):
    (tmp_path / "crashing_worker.py").write_text(
        "import os\n\ndef compile_graph(request):\n    os.abort()\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(aot, "TFCOMPILE_FUNCTION", "crashing_worker:compile_graph")

    with pytest.raises(AotCompileError, match="killed by signal 6"):
        compile_aot(frozen_digits.graph_def, frozen_digits.signature, str(tmp_path / "aot"))
