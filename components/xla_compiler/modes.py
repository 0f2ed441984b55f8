"""The XlaCompiler's modes and the variant kinds they produce (TFX-free, for the registry)."""

from __future__ import annotations

from components.runtimes.xla_aot import FORMAT_XLA_AOT
from components.runtimes.xla_jit import FORMAT_XLA_JIT

# mode -> (variant name, format, description)
MODES: dict[str, tuple[str, str, str]] = {
    "jit": ("xla_jit", FORMAT_XLA_JIT, "TF SavedModel with jit_compile=True (XLA JIT)"),
    "aot": ("xla_aot", FORMAT_XLA_AOT, "XLA ahead-of-time machine code, one batch size"),
}


def variant_kinds() -> list:  # -> list[components.variant_kinds.VariantKind]
    from components.variant_kinds import VariantKind

    return [
        VariantKind(
            name=variant_name,
            producer="XlaCompiler",
            mode=mode,
            artifact_type="XlaCompiledModel",
            model_format=model_format,
            output_key="compiled_model",
            description=description,
        )
        for mode, (variant_name, model_format, description) in MODES.items()
    ]
