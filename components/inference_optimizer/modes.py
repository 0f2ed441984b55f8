"""The InferenceOptimizer's modes and the variant kinds they produce (TFX-free).

The default mode runs the default transforms; `bfloat16` adds TF's oneDNN auto-mixed-
precision rewrite, a kind of its own so that it is built only where bf16 runs natively.
"""

from __future__ import annotations

import dataclasses

from components.common.cpu_facts import BF16_FLAGS
from components.runtimes.graphdef import FORMAT_GRAPHDEF

PRODUCER = "InferenceOptimizer"
DEFAULT_MODE = ""
BFLOAT16_MODE = "bfloat16"


@dataclasses.dataclass(frozen=True)
class OptimizerMode:
    variant_name: str
    description: str
    extra_transforms: tuple[str, ...] = ()
    cpu_any_of: tuple[str, ...] = ()
    hardware_note: str = ""


MODES: dict[str, OptimizerMode] = {
    DEFAULT_MODE: OptimizerMode("optimized_graph", "stripped, folded and fused (TF, fp32)"),
    BFLOAT16_MODE: OptimizerMode(
        "optimized_graph_bf16",
        "optimized graph with TF's oneDNN bfloat16 auto-mixed precision",
        extra_transforms=(BFLOAT16_MODE,),
        cpu_any_of=BF16_FLAGS,
        hardware_note=(
            "TF's oneDNN bfloat16 rewrite pays off only with native bf16; elsewhere it is "
            "emulated, and Grappler's pass rewrites nothing without AVX-512"
        ),
    ),
}


def transforms_for(mode: str, transforms: list[str] | None) -> list[str] | None:
    """The transform selection a mode runs (None: the defaults, for the default mode).

    A mode's own transforms win over the ones they conflict with: the bfloat16 mode
    drops `fuse_ops` (Bfloat16.conflicts says why), and TF's runtime fuses the bfloat16
    ops itself when it loads the graph. Without this, the bfloat16 kind failed on every
    CPU that has bf16, the only ones it is built for.
    """
    extra = list(MODES[mode].extra_transforms)
    if not extra:
        return transforms
    from components.inference_optimizer.optimizer import default_transform_names
    from components.inference_optimizer.registry import get_transform

    chosen = list(transforms) if transforms is not None else list(default_transform_names())
    conflicting = {other for name in extra for other in get_transform(name).conflicts}
    kept = [t for t in chosen if t not in conflicting]
    return kept + [t for t in extra if t not in kept]


def variant_kinds() -> list:  # -> list[components.variant_kinds.VariantKind]
    from components.variant_kinds import VariantKind

    return [
        VariantKind(
            name=mode.variant_name,
            producer=PRODUCER,
            mode=name,
            artifact_type="OptimizedGraph",
            model_format=FORMAT_GRAPHDEF,
            output_key="optimized_graph",
            description=mode.description,
            cpu_any_of=mode.cpu_any_of,
            hardware_note=mode.hardware_note,
        )
        for name, mode in MODES.items()
    ]
