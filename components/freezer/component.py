"""Freezer component: TFX `Model` (or plain SavedModel via an importer) -> FrozenGraph."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.artifacts import FrozenGraph
from components.freezer import executor
from components.freezer.freezing import DEFAULT_SIGNATURE_KEY
from components.version import __version__


class FreezerSpec(ComponentSpec):
    """Freezer's inputs, outputs and parameters."""

    PARAMETERS = {
        "signature_key": ExecutionParameter(type=str),
        # TF1 checkpoints only: JSON lists of the nodes to fetch and to feed.
        "output_nodes": ExecutionParameter(type=str),
        "input_nodes": ExecutionParameter(type=str),
        # Part of the cache key: a new release never reuses an old release's output.
        "package_version": ExecutionParameter(type=str),
    }
    INPUTS = {"model": ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = {"frozen_graph": ChannelParameter(type=FrozenGraph)}


class Freezer(base_component.BaseComponent):
    """Freezes one function of a model into a constant-only GraphDef.

    freezer = Freezer(model=trainer.outputs["model"])
    freezer.outputs["frozen_graph"]

    The model is a SavedModel or TFX `Model` (`signature_key` picks the signature), a
    `.keras`/`.h5` file, or a TF1 checkpoint (`output_nodes`, and `input_nodes` when the
    inputs are not the graph's placeholders). A serialized-Example signature is split
    into its preprocessing part and a model core (see components/artifacts.py).
    """

    SPEC_CLASS = FreezerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: channel.BaseChannel,
        signature_key: str = DEFAULT_SIGNATURE_KEY,
        output_nodes: Sequence[str] = (),
        input_nodes: Sequence[str] = (),
    ) -> None:
        if not signature_key:
            raise ValueError("signature_key must be a non-empty signature name")
        spec = FreezerSpec(
            model=model,
            signature_key=signature_key,
            output_nodes=json.dumps(list(output_nodes)),
            input_nodes=json.dumps(list(input_nodes)),
            package_version=__version__,
            frozen_graph=channel.Channel(type=FrozenGraph),
        )
        super().__init__(spec=spec)
