"""The named graph transforms, in canonical order, and which TF building block each uses.

Name (stage, on by default?): what does the work.

* `strip_debug_and_training` (10, on): own code, `stripping.py`.
* `remove_unreachable` (20, on): `tf.compat.v1.graph_util.extract_sub_graph`.
* `fold_constants` (30, on): Grappler `constfold` through `tf_optimizer.OptimizeGraph`,
  then the stripping code again on the `Identity(x, ^zero)` nodes it leaves.
* `fold_batch_norms` (40, on): `optimize_for_inference_lib.fold_batch_norms` for the
  fused ops; own code, `batch_norm_folding.py`, for the Mul/AddV2 form that Keras 3
  exports freeze into.
* `fuse_ops` (50, on): Grappler `remap` (Conv/MatMul + BiasAdd + activation ->
  `_FusedConv2D` / `_FusedMatMul`); own code, `fusion.py`, undoes the fusions that
  only oneDNN can run.
* `bfloat16` (60, off): Grappler `auto_mixed_precision_onednn_bfloat16`, then
  `constfold` so that the weights are stored in bfloat16.

Why this order: stripping first exposes constants hidden behind Identity/ReadVariableOp
chains; unreachable nodes are gone before anything spends time on them; constant
folding turns `gamma * rsqrt(var + eps)` into the per-channel constants that batch norm
folding needs (and already pushes some of them into Conv2D filters); fusion wants the
clean `Conv2D -> BiasAdd -> Relu` chains that folding leaves; bfloat16 comes after
the folds because its casts would hide the batch norm patterns from them.

Notes on what each leaves behind:

* `fuse_ops` writes `_FusedConv2D` / `_FusedMatMul`, TensorFlow-internal ops. By
  default only fusions the plain CPU kernels also implement are kept, so the graph
  runs with oneDNN on or off and in TF Serving of the same release; with
  `allow_onednn_only_fusions=True` it needs oneDNN. Either way it is no longer a
  public-op graph: converters such as TFLite or ONNX want the graph before `fuse_ops`.
* `bfloat16` is for CPUs with AVX512-BF16 or AMX; elsewhere bfloat16 is emulated and
  slow, so it refuses to run unless told to (`require_native_bfloat16=False`). It
  cannot be combined with `fuse_ops` (see `Bfloat16.conflicts`): select
  `strip_debug_and_training, remove_unreachable, fold_constants, fold_batch_norms,
  bfloat16`. Inputs and outputs stay float32; casts sit at the graph's edges.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from components.common.errors import UserInputError
from components.common.signature import GraphSignature
from components.inference_optimizer.batch_norm_folding import fold_batch_norms
from components.inference_optimizer.fusion import fuse_ops
from components.inference_optimizer.graph_rewriting import (
    protected_node_names,
    remove_unreachable_nodes,
)
from components.inference_optimizer.grappler import run_grappler
from components.inference_optimizer.registry import (
    Transform,
    TransformConfig,
    TransformOutcome,
    register_transform,
)
from components.inference_optimizer.stripping import strip_debug_and_training_nodes

if TYPE_CHECKING:
    import tensorflow as tf


# ---- strip_debug_and_training ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StripDebugAndTrainingConfig(TransformConfig):
    """Settings of `strip_debug_and_training`."""

    # Splice out `x * 1`, `x / 1`, `x + 0`, `x - 0` (scalar constants), which is what
    # inference-mode dropout and similar switches often freeze into.
    fold_trivial_arithmetic: bool = True


@register_transform
class StripDebugAndTraining(Transform):
    """Removes CheckNumerics, Assert, Identity chains, NoOps and control-only edges."""

    name = "strip_debug_and_training"
    stage = 10
    config_type = StripDebugAndTrainingConfig
    implementation = "own code: components/inference_optimizer/stripping.py"

    def apply(
        self, graph_def: tf.compat.v1.GraphDef, signature: GraphSignature
    ) -> TransformOutcome:
        assert isinstance(self.config, StripDebugAndTrainingConfig)
        stripped, details = strip_debug_and_training_nodes(
            graph_def,
            protected_node_names(signature),
            fold_trivial_arithmetic=self.config.fold_trivial_arithmetic,
        )
        return TransformOutcome(stripped, details)


# ---- remove_unreachable ------------------------------------------------------------


@register_transform
class RemoveUnreachable(Transform):
    """Drops nodes that none of the signature's outputs depend on."""

    name = "remove_unreachable"
    stage = 20
    implementation = "tf.compat.v1.graph_util.extract_sub_graph"

    def apply(
        self, graph_def: tf.compat.v1.GraphDef, signature: GraphSignature
    ) -> TransformOutcome:
        pruned = remove_unreachable_nodes(graph_def, signature)
        return TransformOutcome(pruned, {"removed": len(graph_def.node) - len(pruned.node)})


# ---- fold_constants ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FoldConstantsConfig(TransformConfig):
    """Settings of `fold_constants`."""

    # Constant folding rewrites e.g. `x + 0` (an untrained batch norm's offset) as
    # `Identity(x, ^zero)`; splice those and drop the constants left unused, so that
    # later patterns (and the remapper) see `Conv2D -> Relu6`, not an Identity between.
    clean_up: bool = True


@register_transform
class FoldConstants(Transform):
    """Evaluates every subgraph that depends only on constants, once, offline."""

    name = "fold_constants"
    stage = 30
    config_type = FoldConstantsConfig
    implementation = (
        "grappler:constfold (tf_optimizer.OptimizeGraph), then the strip_debug_and_training "
        "and remove_unreachable code on the Identity nodes it leaves"
    )

    def apply(
        self, graph_def: tf.compat.v1.GraphDef, signature: GraphSignature
    ) -> TransformOutcome:
        assert isinstance(self.config, FoldConstantsConfig)
        folded = run_grappler(graph_def, signature, ["constfold"])
        details: dict[str, int] = {"node_count_after_constfold": len(folded.node)}
        if self.config.clean_up:
            folded, stripped = strip_debug_and_training_nodes(
                folded, protected_node_names(signature)
            )
            folded = remove_unreachable_nodes(folded, signature)
            details["identities_spliced"] = stripped["spliced"].get("Identity", 0)
        return TransformOutcome(folded, details)


# ---- fold_batch_norms --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FoldBatchNormsConfig(TransformConfig):
    """Settings of `fold_batch_norms`."""

    # Also fold `x * c + d` feeding a MatMul into that MatMul (BatchNorm after Dense+ReLU).
    fold_into_following_matmul: bool = True


@register_transform
class FoldBatchNorms(Transform):
    """Folds inference batch norms into the neighbouring Conv2D/Depthwise/MatMul constants."""

    name = "fold_batch_norms"
    stage = 40
    config_type = FoldBatchNormsConfig
    # The decomposed form's scale is `gamma * rsqrt(var + eps)` until constants are folded.
    requires = ("fold_constants",)
    implementation = (
        "optimize_for_inference_lib.fold_batch_norms (FusedBatchNorm*) + own code: "
        "components/inference_optimizer/batch_norm_folding.py (Mul/AddV2 form)"
    )

    def apply(
        self, graph_def: tf.compat.v1.GraphDef, signature: GraphSignature
    ) -> TransformOutcome:
        assert isinstance(self.config, FoldBatchNormsConfig)
        folded, details = fold_batch_norms(
            graph_def,
            protected_node_names(signature),
            fold_into_following_matmul=self.config.fold_into_following_matmul,
        )
        return TransformOutcome(folded, details)


# ---- fuse_ops ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FuseOpsConfig(TransformConfig):
    """Settings of `fuse_ops`."""

    # Keep fusions only oneDNN can run (`_FusedConv2D[BiasAdd,Add]`,
    # `_FusedDepthwiseConv2dNative`, ...). The graph then fails wherever oneDNN is off
    # (TF_ENABLE_ONEDNN_OPTS=0, non-x86, GPU, TF Serving built without oneDNN), and a
    # oneDNN runtime would make those fusions itself at load time anyway.
    allow_onednn_only_fusions: bool = False


@register_transform
class FuseOps(Transform):
    """Fuses Conv2D/MatMul + BiasAdd + activation into `_FusedConv2D` / `_FusedMatMul`."""

    name = "fuse_ops"
    stage = 50
    config_type = FuseOpsConfig
    implementation = (
        "grappler:remap (tf_optimizer.OptimizeGraph, nodes placed on CPU), then own code "
        "undoing oneDNN-only fusions: components/inference_optimizer/fusion.py"
    )

    def apply(
        self, graph_def: tf.compat.v1.GraphDef, signature: GraphSignature
    ) -> TransformOutcome:
        assert isinstance(self.config, FuseOpsConfig)
        fused, details = fuse_ops(
            graph_def,
            signature,
            allow_onednn_only_fusions=self.config.allow_onednn_only_fusions,
        )
        return TransformOutcome(remove_unreachable_nodes(fused, signature), details)


# ---- bfloat16 ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Bfloat16Config(TransformConfig):
    """Settings of `bfloat16`."""

    # Refuse to run on a CPU without AVX512-BF16 or AMX-BF16, where bfloat16 is emulated.
    require_native_bfloat16: bool = True


@register_transform
class Bfloat16(Transform):
    """Runs allow-listed ops (convolutions, matmuls, ...) in bfloat16 via oneDNN."""

    name = "bfloat16"
    stage = 60
    config_type = Bfloat16Config
    enabled_by_default = False
    conflicts = {
        "fuse_ops": (
            "the oneDNN bfloat16 pass leaves already-fused ops in float32, and fusing "
            "afterwards would write bfloat16 _FusedConv2D nodes, which are not valid in a "
            "GraphDef (only oneDNN's runtime-internal ops take bfloat16). TensorFlow's "
            "runtime fuses the bfloat16 ops itself when it loads the graph."
        )
    }
    implementation = "grappler:auto_mixed_precision_onednn_bfloat16 then grappler:constfold"

    def apply(
        self, graph_def: tf.compat.v1.GraphDef, signature: GraphSignature
    ) -> TransformOutcome:
        import tensorflow as tf

        assert isinstance(self.config, Bfloat16Config)
        if self.config.require_native_bfloat16 and not cpu_supports_native_bfloat16():
            raise UserInputError(
                "The bfloat16 transform needs a CPU with AVX512-BF16 or AMX-BF16 (this "
                "one reports neither in /proc/cpuinfo); elsewhere bfloat16 is emulated "
                "and slower than float32. Drop 'bfloat16' from the transforms, or set "
                "require_native_bfloat16=False to build the graph anyway."
            )
        converted = run_grappler(
            graph_def,
            signature,
            # Constant folding afterwards stores the weights in bfloat16 instead of
            # casting them on every call.
            ["auto_mixed_precision_onednn_bfloat16", "constfold"],
            place_on_cpu=True,
        )
        bfloat16 = tf.bfloat16.as_datatype_enum
        details = {
            "bfloat16_nodes": sum(
                "T" in node.attr and node.attr["T"].type == bfloat16 for node in converted.node
            ),
            "casts": sum(node.op == "Cast" for node in converted.node),
        }
        return TransformOutcome(converted, details)


def cpu_supports_native_bfloat16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU advertises AVX512-BF16 or AMX-BF16 (Linux; False when unknown)."""
    try:
        with open(cpuinfo_path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False
