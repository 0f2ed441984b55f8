"""The XlaCompiler's JIT variant: a SavedModel whose function has `jit_compile=True`.

XLA compiles on the first call, which the harness times separately (`first_call_s`).
"""

from __future__ import annotations

from components.common.signature import GraphSignature
from components.runtimes.base import DEFAULT_SIGNATURE_KEY, Backend, register_backend
from components.runtimes.saved_model import SavedModelBackend

FORMAT_XLA_JIT = "xla_jit_saved_model"
#: Where the JIT SavedModel sits inside the artifact.
SAVED_MODEL_SUBDIRECTORY = "saved_model"


@register_backend(FORMAT_XLA_JIT)
class XlaJitSavedModelBackend(SavedModelBackend):
    """`{uri}/saved_model/` with one signature, `serving_default`."""

    # XLA compiles a cluster per input shape and keeps it: ResNet50's 99 MiB grew the
    # benchmark process by 2.38 GiB (24x) at its first call, batch 1, on 2026-12-02, and
    # by 3.30 GiB (34x) with a call at batch 32 as well, on 2026-12-03.
    memory_per_artifact_byte = 36.0

    subdirectory = SAVED_MODEL_SUBDIRECTORY

    def signature(self, uri: str, signature_key: str = DEFAULT_SIGNATURE_KEY) -> GraphSignature:
        return GraphSignature.load(uri)

    def for_selection(self, selection) -> Backend:
        # The XlaCompiler's SavedModel has one signature, serving_default, whatever
        # signature the Freezer froze.
        return self
