"""Runs tfcompile on one frozen graph, in a process of its own.

XLA reports some failures by aborting the process (CHECK failures, LLVM fatal errors),
and reads XLA_FLAGS only once per process, so aot.py runs `compile_graph` in a process
of its own (components/common/isolation.py).

The request names the graph, the tf2xla config, the target and the output files (the
keyword arguments of `_pywrap_tfcompile.Compile`) plus `tensorflow_dir`. This module
imports only the standard library and tfcompile's extension module, so the child
starts in under a second instead of importing all of TensorFlow.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import time
from types import ModuleType

_MODULE_NAME = "tensorflow.python._pywrap_tfcompile"


def _load_tfcompile(tensorflow_dir: str) -> ModuleType:
    """Loads the tfcompile extension directly; falls back to importing TensorFlow."""
    path = os.path.join(tensorflow_dir, "python", "_pywrap_tfcompile.so")
    if os.path.exists(path):
        loader = importlib.machinery.ExtensionFileLoader(_MODULE_NAME, path)
        spec = importlib.util.spec_from_file_location(_MODULE_NAME, path, loader=loader)
        if spec is not None:
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            return module
    # The slow fallback: importing all of TensorFlow finds the module wherever it lives.
    from tensorflow.python import _pywrap_tfcompile

    return _pywrap_tfcompile


def compile_graph(request: dict) -> dict:
    """In the isolated child: runs tfcompile; raises whatever tfcompile raises."""
    request = dict(request)
    tfcompile = _load_tfcompile(request.pop("tensorflow_dir"))
    start = time.perf_counter()
    tfcompile.Compile(**request)
    return {"compile_time_s": time.perf_counter() - start}
