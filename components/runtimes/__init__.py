"""Model runtimes: one module per format, each with its format constant, loader,
Benchmarker backend and thread/stream settings.

    from components.runtimes import backend_for
    variant = backend_for("tflite").load(uri, ThreadSettings(), "CPU:0")

Producers (Quantizer, XlaCompiler, RuntimeConverter) write a format; the Benchmarker
reads it back through the backend registered for it here, so the Benchmarker depends
on artifacts, common and runtimes only. Adding a runtime is one module in this package
(registering its backend with `@register_backend`) plus its test: every module here is
imported when the registry is first read.
"""

from __future__ import annotations

import importlib
import pkgutil

from components.runtimes.base import (
    DEFAULT_SIGNATURE_KEY,
    DEVICE_AUTO,
    Backend,
    LoadedVariant,
    MissingRuntime,
    ThreadSettings,
    missing_runtime,
    register_backend,
    registered_backends,
    require_module,
    select_device,
    visible_gpus,
)

__all__ = [
    "DEFAULT_SIGNATURE_KEY",
    "DEVICE_AUTO",
    "Backend",
    "LoadedVariant",
    "MissingRuntime",
    "ThreadSettings",
    "backend_for",
    "known_formats",
    "missing_runtime",
    "register_backend",
    "require_module",
    "select_device",
    "visible_gpus",
]

# Shared code, not runtimes of their own.
_NOT_RUNTIMES = {"base", "tensorflow_function"}
_loaded = False


def _load_runtime_modules() -> None:
    """Imports every runtime module once, so that each registers its backend."""
    global _loaded
    if _loaded:
        return
    for module in pkgutil.iter_modules(__path__):
        if module.name not in _NOT_RUNTIMES and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    _loaded = True


def backend_for(model_format: str) -> Backend:
    """The backend registered for a format; raises naming the known formats."""
    _load_runtime_modules()
    try:
        return registered_backends()[model_format]
    except KeyError:
        raise ValueError(
            f"no benchmark backend for format {model_format!r}; known: {known_formats()}"
        ) from None


def model_size_bytes(uri: str, model_format: str) -> int:
    """A variant's size as its runtime counts it (Backend.model_bytes); the one size the
    producers publish to MLMD and the Benchmarker reports. A format no runtime loads (a
    failed or skipped variant) counts every file."""
    from components.common.sizes import directory_size_bytes

    _load_runtime_modules()
    backend = registered_backends().get(model_format)
    return backend.model_bytes(uri) if backend is not None else directory_size_bytes(uri)


def known_formats() -> list[str]:
    _load_runtime_modules()
    return sorted(registered_backends())
