"""Accuracy-aware oneDNN int8: each chain's error from the quantized-against-float graph,
then float fallback (chains left unquantized) until the task metric fits the budget.

    result = search_onednn_int8(graph_def, signature, calibration, held_out, settings)
    result.int8, result.search.fallback_layers  # OneDnnInt8Result, chain heads in float

How:
1. One calibration (onednn_int8.prepare_onednn_int8): canonical graph, chains, ranges.
2. Each chain's sensitivity is the model's output error with that chain alone in int8:
   the quantized-against-float graph, one rewrite per chain, scored on calibration
   examples as the per-channel normalized MSE of the primary output
   (tflite_accuracy_aware.ChannelErrors). Its MACs come from its weights and its
   output's shape.
3. The shared policy (common/int8_fallback.py) picks the chains to leave in float; each
   step rewrites the graph without them (onednn_int8.build_onednn_int8) and scores it with
   the task's metric on the held-out examples.

A chain is one int8 kernel (conv or matmul with its bias, residual add and activation),
so it needs no group: the rewrite keeps activations int8 only between int8 kernels.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from components.common.held_out import HeldOut
from components.common.int8_fallback import (
    FallbackSearch,
    Int8SearchSettings,
    LayerSensitivity,
    StepMeasurement,
    excluded_layers,
    search_fallback,
    search_record,
)
from components.common.signature import GraphSignature
from components.quantizer.tflite_accuracy_aware import ChannelErrors

if TYPE_CHECKING:
    import tensorflow as tf

    from components.quantizer.onednn_int8 import OneDnnInt8Result, PreparedGraph

MODE = "onednn_int8"
ERROR_METRIC = "output_channel_normalized_mse"
SENSITIVITY_SAMPLES = 64
EVALUATION_BATCH = 32  # The TF graph takes any batch: score the held-out set in batches.


@dataclasses.dataclass(frozen=True)
class OneDnnSearchResult:
    int8: OneDnnInt8Result  # The chosen graph, its kernels checked.
    search: FallbackSearch
    sensitivity: list[LayerSensitivity]
    float_metric: float
    float_latency_ms: float
    max_drop: float
    held_out_examples: int
    sensitivity_samples: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return search_record(
            MODE,
            ERROR_METRIC,
            self.float_metric,
            self.float_latency_ms,
            self.max_drop,
            self.held_out_examples,
            self.sensitivity_samples,
            self.sensitivity,
            self.search,
            self.seconds,
        )


def search_onednn_int8(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    calibration: Sequence[np.ndarray],
    held_out: HeldOut,
    settings: Int8SearchSettings,
    num_calibration: int,
) -> OneDnnSearchResult:
    """Calibrates once, ranks the chains, and searches the float fallback (module doc)."""
    from components.common.graph_io import graph_def_callable
    from components.quantizer.onednn_int8 import build_onednn_int8, prepare_onednn_int8

    started = time.monotonic()
    prepared = prepare_onednn_int8(graph_def, signature, calibration, num_calibration)
    measured = [s[:SENSITIVITY_SAMPLES] for s in prepared.samples]
    sensitivity = chain_sensitivity(prepared, measured, held_out.output_index)
    user_excluded = excluded_layers(settings.exclude, sensitivity, MODE)
    float_run = graph_def_callable(graph_def, signature)
    float_metric = held_out.metric(float_run, EVALUATION_BATCH)
    budget = settings.budget(held_out.plan.task_name, float_metric)
    float_latency = held_out.latency_ms(float_run)

    def evaluate(excluded: tuple[str, ...]) -> StepMeasurement:
        built = build_onednn_int8(prepared, excluded, check_kernels=False)
        run = graph_def_callable(built.graph_def, signature)
        metric = held_out.metric(run, EVALUATION_BATCH)
        return StepMeasurement(
            metric_drop=held_out.drop(float_metric, metric),
            metric=metric,
            latency_ms=held_out.latency_ms(run),
        )

    search = search_fallback(sensitivity, evaluate, budget, user_excluded=user_excluded)
    return OneDnnSearchResult(
        # Rebuilt with the kernel check (which kernels and ISA really run), once.
        int8=build_onednn_int8(prepared, search.chosen.excluded, check_kernels=True),
        search=search,
        sensitivity=sensitivity,
        float_metric=float_metric,
        float_latency_ms=float_latency,
        max_drop=budget.max_drop,
        held_out_examples=len(held_out.labels),
        sensitivity_samples=len(measured[0]),
        seconds=time.monotonic() - started,
    )


def chain_sensitivity(
    prepared: PreparedGraph, samples: Sequence[np.ndarray], output_index: int
) -> list[LayerSensitivity]:
    """Each chain's output error alone in int8 (all others float), and its MACs."""
    from components.common.graph_io import graph_def_callable
    from components.quantizer.onednn.calibration import run_graph
    from components.quantizer.onednn_int8 import build_onednn_int8

    signature = prepared.signature
    canonical = prepared.canonical.graph_def
    reference = graph_def_callable(canonical, signature)(*samples)[output_index]
    feed = {t.tensor_name: s[:1] for t, s in zip(signature.inputs, samples, strict=True)}
    tails = run_graph(canonical, feed, [f"{c.head}:0" for c in prepared.chains])
    heads = [c.head for c in prepared.chains]
    layers = []
    for chain, tail in zip(prepared.chains, tails, strict=True):
        alone = build_onednn_int8(
            prepared, [h for h in heads if h != chain.head], check_kernels=False
        )
        outputs = graph_def_callable(alone.graph_def, signature)(*samples)[output_index]
        errors = ChannelErrors()
        errors.add(reference, outputs, 1.0, 0)  # Both float: no dequantization to do.
        layers.append(
            LayerSensitivity(
                name=chain.head,
                op=chain.op,
                error=errors.normalized_mse(),
                macs=chain_macs(chain.op, chain.weights.shape, tail.shape),
                error_metric=ERROR_METRIC,
            )
        )
    return layers


def chain_macs(op: str, weights: Sequence[int], output: Sequence[int]) -> int:
    """MACs per example of a TF contraction: weights HWIO (convs) or [in, out] (MatMul)."""
    outputs = int(np.prod(output[1:])) if len(output) > 1 else 1
    if op == "Conv2D" and len(weights) == 4:
        return outputs * int(weights[0] * weights[1] * weights[2])
    if op == "DepthwiseConv2dNative" and len(weights) == 4:
        return outputs * int(weights[0] * weights[1])
    if op == "MatMul" and len(weights) == 2:
        return outputs * int(weights[0])
    return 0
