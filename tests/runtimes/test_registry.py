"""Backend registry and device selection (GPU paths forced: no GPU is lent here)."""

from __future__ import annotations

import numpy as np
import pytest

from components.runtimes import (
    Backend,
    LoadedVariant,
    ThreadSettings,
    backend_for,
    known_formats,
    register_backend,
    select_device,
)


def test_auto_takes_the_first_gpu_when_one_is_visible():
    assert select_device("auto", ["/physical_device:GPU:0", "/physical_device:GPU:1"]) == "GPU:0"


def test_auto_falls_back_to_the_cpu_without_gpus():
    assert select_device("auto", []) == "CPU:0"


def test_explicit_devices_are_normalised():
    assert select_device("cpu:0", []) == "CPU:0"
    assert select_device("GPU:1", ["a", "b"]) == "GPU:1"


def test_a_missing_gpu_is_an_error_not_a_silent_cpu_run():
    with pytest.raises(ValueError, match="0 GPU"):
        select_device("GPU:0", [])


def test_nonsense_device_is_refused():
    with pytest.raises(ValueError, match="auto"):
        select_device("TPU", [])


def test_every_runtime_module_registers_its_format():
    import importlib

    for model_format, module in (
        ("saved_model", "saved_model"),
        ("graphdef", "graphdef"),
        ("xla_jit_saved_model", "xla_jit"),
        ("xla_aot", "xla_aot"),
        ("tflite", "tflite"),
        ("null", "null"),
        ("preprocessing", "preprocessing"),
        ("keras", "original_forms"),
        ("tf1_checkpoint", "original_forms"),
    ):
        backend = backend_for(model_format)
        assert backend.format == model_format
        assert type(backend).__module__ == f"components.runtimes.{module}"
        # Each module keeps its own format constant.
        constants = vars(importlib.import_module(f"components.runtimes.{module}"))
        assert model_format in {v for k, v in constants.items() if k.startswith("FORMAT_")}


def test_unknown_format_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: .*graphdef"):
        backend_for("coreml")
    assert "graphdef" in known_formats()


def test_the_runtimes_import_without_any_runtime_loaded():
    """The registry is read by the CLI and the pipeline builder: no TF at import."""
    import subprocess
    import sys

    code = (
        "import sys; from components.runtimes import known_formats; known_formats(); "
        "heavy = [m for m in ('tensorflow', 'openvino', 'onnxruntime') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registering_a_format_twice_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):

        @register_backend("graphdef")
        class AnotherGraphDefBackend(Backend):
            def load(self, uri, settings, device) -> LoadedVariant:
                raise NotImplementedError


def test_null_variant_returns_output_shaped_zeros(frozen_digits, tmp_path):
    frozen_digits.signature.save(str(tmp_path))
    variant = backend_for("null").load(str(tmp_path), ThreadSettings(), "CPU:0")
    (output,) = variant.run(variant.prepare([np.zeros((3, 32, 32, 1), np.float32)]))
    assert output.shape == (3, 10)
