"""Running named transforms over a frozen graph, logging each, and writing the result.

    >>> result = optimize_graph(frozen.graph_def, frozen.signature)  # the default transforms
    >>> result.node_count_before, result.node_count_after
    (112, 22)
    >>> write_optimized_graph(result, frozen.signature, "/tmp/digits_optimized")

Three fixed steps, as TFX's model rewriters do: validate the input (the signature's
tensors exist), rewrite (each transform, checking after each that the signature's
nodes survived), validate the output (it imports into a fresh graph and the
signature's tensors resolve).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from components.common.errors import UserInputError
from components.common.graph_io import SERVABLE_SAVED_MODEL_DIRNAME, op_histogram, save_graph_def
from components.common.signature import GraphSignature

# Importing the module registers the transforms.
from components.inference_optimizer import transforms as _transforms  # noqa: F401
from components.inference_optimizer.fusion import is_portable
from components.inference_optimizer.registry import (
    TransformConfig,
    default_transform_names,
    get_transform,
    transform_names,
)
from components.inference_optimizer.saved_model_export import export_graph_as_saved_model

if TYPE_CHECKING:
    import tensorflow as tf

TRANSFORM_LOG_FILENAME = "transform_log.json"
SAVED_MODEL_DIRNAME = SERVABLE_SAVED_MODEL_DIRNAME


@dataclasses.dataclass
class OptimizationResult:
    """The optimized graph and, per transform run, what it changed and how long it took.

    Each `transform_log` entry is JSON-serialisable: `transform`, `implementation`,
    `config`, `node_count_before`, `node_count_after`, `op_histogram_before`,
    `op_histogram_after`, `seconds`, `details` (transform-specific counts).
    """

    graph_def: tf.compat.v1.GraphDef
    transform_log: list[dict[str, Any]]
    node_count_before: int

    @property
    def transforms(self) -> list[str]:
        return [entry["transform"] for entry in self.transform_log]

    @property
    def node_count_after(self) -> int:
        return len(self.graph_def.node)

    @property
    def seconds(self) -> float:
        return sum(entry["seconds"] for entry in self.transform_log)

    @property
    def hardware_requirements(self) -> list[str]:
        """What the graph needs to run well: `onednn` (oneDNN-only fused ops), `bf16`.

        `onednn` is a hard requirement (the graph fails without oneDNN); `bf16` means
        native bfloat16 (AVX512-BF16/AMX) for speed, as elsewhere it is emulated.
        """
        requirements = []
        if not all(is_portable(node) for node in self.graph_def.node):
            requirements.append("onednn")
        if "bfloat16" in self.transforms:
            requirements.append("bf16")
        return requirements


@dataclasses.dataclass(frozen=True)
class OptimizedGraphFiles:
    """Where `write_optimized_graph` put each file."""

    graph_path: str
    signature_path: str
    transform_log_path: str
    saved_model_dir: str


def resolve_transform_names(transforms: Sequence[str] | None) -> list[str]:
    """Checks a transform selection; None means the defaults. Returns canonical order.

    Raises UserInputError for unknown names, duplicates, an order other than the
    canonical one, conflicting transforms, or a transform without the ones it requires.
    """
    if transforms is None:
        return default_transform_names()
    if isinstance(transforms, str):
        raise UserInputError(f"Transforms must be a list of names, got the string {transforms!r}.")
    names = list(transforms)
    for name in names:
        get_transform(name)  # Raises, listing the valid names.
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UserInputError(f"Transforms {duplicates} are listed more than once; list each once.")
    canonical = [name for name in transform_names() if name in names]
    if names != canonical:
        raise UserInputError(
            f"Transforms must be listed in the order they can soundly run: {canonical} "
            f"(you gave {names}). The full order is: {', '.join(transform_names())}."
        )
    for name in names:
        for other, reason in get_transform(name).conflicts.items():
            if other in names:
                raise UserInputError(
                    f"Transforms {name!r} and {other!r} cannot be combined: {reason} "
                    f"Drop one of them."
                )
        missing = [needed for needed in get_transform(name).requires if needed not in names]
        if missing:
            raise UserInputError(
                f"Transform {name!r} needs {missing} to run before it (it has nothing to "
                f"work on otherwise); add {missing} to the transforms."
            )
    return names


def optimize_graph(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    transforms: Sequence[str] | None = None,
    configs: Mapping[str, Mapping[str, Any] | TransformConfig] | None = None,
) -> OptimizationResult:
    """Runs the chosen transforms (default: all but `bfloat16`) in canonical order.

    `configs` maps a transform name to its settings, e.g.
    `{"fold_batch_norms": {"fold_into_following_matmul": False}}`.
    """
    names = resolve_transform_names(transforms)
    configs = dict(configs or {})
    unused = sorted(set(configs) - set(names))
    if unused:
        raise UserInputError(
            f"Settings were given for {unused}, which are not among the transforms to run "
            f"({names}). Remove them or add those transforms."
        )
    check_signature_tensors(graph_def, signature, "input graph", UserInputError)

    current = graph_def
    log: list[dict[str, Any]] = []
    for name in names:
        transform_class = get_transform(name)
        config = configs.get(name)
        if not isinstance(config, TransformConfig):
            config = transform_class.config_type.from_mapping(config)
        transform = transform_class(config)
        histogram_before = op_histogram(current)
        started = time.perf_counter()
        outcome = transform.apply(current, signature)
        seconds = time.perf_counter() - started
        check_signature_tensors(outcome.graph_def, signature, f"graph after {name!r}", RuntimeError)
        log.append(
            {
                "transform": name,
                "implementation": transform_class.implementation,
                "config": config.to_json(),
                "node_count_before": len(current.node),
                "node_count_after": len(outcome.graph_def.node),
                "op_histogram_before": histogram_before,
                "op_histogram_after": op_histogram(outcome.graph_def),
                "seconds": round(seconds, 6),
                "details": outcome.details,
            }
        )
        current = outcome.graph_def
    check_graph_imports(current, signature)
    return OptimizationResult(
        graph_def=current, transform_log=log, node_count_before=len(graph_def.node)
    )


def write_optimized_graph(
    result: OptimizationResult, signature: GraphSignature, output_dir: str
) -> OptimizedGraphFiles:
    """Writes `graph.pb`, `signature.json`, `transform_log.json` and `saved_model/`."""
    import tensorflow as tf

    graph_path = save_graph_def(result.graph_def, output_dir)
    signature_path = signature.save(output_dir)
    log_path = os.path.join(output_dir, TRANSFORM_LOG_FILENAME)
    with tf.io.gfile.GFile(log_path, "w") as f:
        f.write(json.dumps(result.transform_log, indent=2) + "\n")
    saved_model_dir = export_graph_as_saved_model(
        result.graph_def, signature, os.path.join(output_dir, SAVED_MODEL_DIRNAME)
    )
    return OptimizedGraphFiles(graph_path, signature_path, log_path, saved_model_dir)


def check_signature_tensors(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    what: str,
    error: type[Exception],
) -> None:
    """Raises `error` unless every signature input/output node is in the graph."""
    present = {node.name for node in graph_def.node}
    tensors = (*signature.inputs, *signature.outputs)
    missing = [t.tensor_name for t in tensors if t.op_name not in present]
    if missing:
        raise error(
            f"The {what} lacks the signature's tensors {missing}; the graph and "
            f"signature.json do not belong together."
        )


def check_graph_imports(graph_def: tf.compat.v1.GraphDef, signature: GraphSignature) -> None:
    """Raises RuntimeError unless the graph imports and the signature's tensors resolve."""
    import tensorflow as tf

    try:
        with tf.Graph().as_default():
            tf.graph_util.import_graph_def(
                graph_def,
                return_elements=signature.input_tensor_names + signature.output_tensor_names,
                name="",
            )
    except (ValueError, tf.errors.OpError) as error:
        raise RuntimeError(f"The optimized graph does not import: {error}") from error
