"""Measuring activation ranges by running the fp32 graph on real examples.

The min and max of every tensor are reduced inside the graph, so a calibration pass
holds one batch of activations at a time and fetches two scalars per tensor, not the
activations themselves (ResNet50 at batch 16 would otherwise fetch gigabytes).

Graphs run in a v1 Session with Grappler off: the intermediate fetches block its
fusions anyway, and on ResNet50 Grappler's copies of the constants cost ~600 MB of
peak memory and a third of the time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from components.common.errors import UserInputError

if TYPE_CHECKING:
    import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class TensorRange:
    """The observed range of one tensor over the calibration set, and its static shape."""

    min: float
    max: float
    shape: tuple[int | None, ...] | None

    @property
    def non_negative(self) -> bool:
        return self.min >= 0.0

    @property
    def magnitude(self) -> float:
        return max(abs(self.min), abs(self.max))


@dataclasses.dataclass
class Calibration:
    """Ranges keyed by tensor name (`node:0`), and the outputs of the first batch."""

    ranges: dict[str, TensorRange]
    samples: int
    first_batch_outputs: list[np.ndarray]


def collect_ranges(
    graph_def: tf.compat.v1.GraphDef,
    input_tensors: Sequence[str],
    tensors: Sequence[str],
    samples: Sequence[np.ndarray],
    output_tensors: Sequence[str] = (),
    batch_size: int = 16,
) -> Calibration:
    """Runs `graph_def` over `samples` in batches and records each tensor's min and max.

    `samples` holds one array per input tensor, samples on the first axis.

    A graph with a fixed batch dimension is fed batches of exactly that size, so a
    short final batch is skipped; `Calibration.samples` counts the examples seen.
    """
    import tensorflow as tf

    unique = list(dict.fromkeys(tensors))
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
        feeds = [graph.get_tensor_by_name(name) for name in input_tensors]
        watched = [graph.get_tensor_by_name(name) for name in unique]
        outputs = [graph.get_tensor_by_name(name) for name in output_tensors]
        with tf.name_scope("onednn_int8_calibration"):
            reductions = []
            for tensor in watched:
                reductions += [tf.reduce_min(tensor), tf.reduce_max(tensor)]

    fixed_batch = feeds[0].shape[0] if feeds[0].shape.rank else None
    step = fixed_batch or batch_size
    count = len(samples[0])
    mins = np.full(len(unique), np.inf)
    maxs = np.full(len(unique), -np.inf)
    seen = 0
    first_outputs: list[np.ndarray] = []
    with tf.compat.v1.Session(graph=graph, config=_plain_session_config()) as session:
        for start in range(0, count, step):
            batch = [s[start : start + step] for s in samples]
            if fixed_batch and len(batch[0]) < fixed_batch:
                break  # A fixed batch dimension cannot take a short final batch.
            fetches = reductions + (outputs if not first_outputs else [])
            values = session.run(fetches, dict(zip(feeds, batch, strict=True)))
            extrema = np.array(values[: len(reductions)], dtype=np.float64)
            mins = np.minimum(mins, extrema[0::2])
            maxs = np.maximum(maxs, extrema[1::2])
            if not first_outputs:
                first_outputs = list(values[len(reductions) :])
            seen += len(batch[0])
    if seen == 0:
        raise UserInputError(
            f"Calibration needs at least one full batch of {step} examples (the graph's "
            f"input has a fixed batch size), but got {count}. Pass more examples."
        )
    ranges = {
        name: TensorRange(
            min=float(lo),
            max=float(hi),
            shape=tuple(tensor.shape.as_list()) if tensor.shape.rank is not None else None,
        )
        for name, tensor, lo, hi in zip(unique, watched, mins, maxs, strict=True)
    }
    return Calibration(ranges=ranges, samples=seen, first_batch_outputs=first_outputs)


def run_graph(
    graph_def: tf.compat.v1.GraphDef,
    feeds: dict[str, np.ndarray],
    fetches: Sequence[str],
) -> list[np.ndarray]:
    """Runs a GraphDef once in a Grappler-free session and returns the fetched values."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph, config=_plain_session_config()) as session:
        return list(session.run(list(fetches), feeds))


def _plain_session_config() -> tf.compat.v1.ConfigProto:
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return config
