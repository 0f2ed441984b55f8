"""Calibration inputs: read from the Examples, and checked against a graph's signature.

Every calibrating producer (the Quantizer's int8 modes, the RuntimeConverter's) reads
through `read_calibration_inputs`, so all of them calibrate on the same records.

Calibration data is one array per signature input, samples on the first axis (a bare
array is accepted for a one-input model). Every int8 mode reads it through here, so a
model with several inputs of different dtypes calibrates the same way in each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from components.common.errors import UserInputError
from components.common.signature import GraphSignature

# How many examples every calibrating mode reads unless told otherwise.
DEFAULT_NUM_CALIBRATION = 200


def check_calibration_inputs(
    signature: GraphSignature,
    calibration_inputs: np.ndarray | Sequence[np.ndarray] | None,
    num_calibration: int,
    mode: str,
) -> list[np.ndarray]:
    """The first `num_calibration` samples of each input, in the inputs' dtypes.

    Raises UserInputError when the data is missing, has the wrong number of arrays, or an
    array does not fit its input's shape.
    """
    if calibration_inputs is None:
        raise UserInputError(
            f"Mode {mode!r} needs calibration inputs (a representative sample of real model "
            f"inputs, e.g. the train split's examples); pass calibration examples, or choose "
            f"a mode that needs none (float16, dynamic_range)."
        )
    if num_calibration < 1:
        raise UserInputError(f"num_calibration must be at least 1, got {num_calibration}.")
    arrays = (
        [calibration_inputs]
        if isinstance(calibration_inputs, np.ndarray)
        else list(calibration_inputs)
    )
    if len(arrays) != len(signature.inputs):
        raise UserInputError(
            f"Got {len(arrays)} calibration arrays for a model with {len(signature.inputs)} "
            f"inputs ({', '.join(t.name for t in signature.inputs)}); pass one per input."
        )
    checked = []
    for array, spec in zip(arrays, signature.inputs, strict=True):
        array = np.asarray(array)
        item_shape = tuple(spec.shape[1:])
        fits = array.ndim == len(spec.shape) and all(
            want is None or want == got
            for want, got in zip(item_shape, array.shape[1:], strict=False)
        )
        if not fits or len(array) == 0:
            raise UserInputError(
                f"Calibration inputs for {spec.name!r} have shape {list(array.shape)}, but "
                f"the input takes {list(spec.shape)} (samples on the first axis, at least one)."
            )
        dtype = object if spec.dtype == "string" else spec.dtype
        checked.append(np.ascontiguousarray(array[:num_calibration]).astype(dtype, copy=False))
    if len({len(a) for a in checked}) > 1:
        raise UserInputError(
            f"Calibration arrays hold different numbers of samples "
            f"({', '.join(str(len(a)) for a in checked)}); give each input the same samples."
        )
    return checked


def read_calibration_inputs(
    frozen_graph_uri: str,
    examples_uri: str,
    exec_properties: dict[str, Any],
    num_calibration: int,
) -> tuple[list[Any], dict[str, Any]]:
    """The calibration inputs of the frozen graph (its core, after a split), and what they were.

    Read from the calibration split (train when there is one), never the evaluation
    records (examples_io.resolve_calibration), and fed exactly as the Benchmarker feeds
    the graph: the same feature mapping and image decoding, and the preprocessing graph
    for a model core.
    """
    import json

    from components.common.examples_io import read_records, resolve_calibration
    from components.common.feeds import ExampleRecords, FeedSettings, ModelFeeder
    from components.common.preprocessing import Preprocessing

    plan = resolve_calibration(
        examples_uri, exec_properties["eval_split"], exec_properties["calibration_split"]
    )
    records = ExampleRecords(
        read_records(examples_uri, plan.split, limit=num_calibration, part=plan.calibration_part),
        examples_uri,
    )
    feeder = ModelFeeder(
        FeedSettings.from_json(json.loads(exec_properties["feed_settings"] or "{}")),
        Preprocessing.load(frozen_graph_uri),
    )
    inputs = feeder.inputs(GraphSignature.load(frozen_graph_uri), records)
    return inputs, {"calibration_data": {**plan.describe(), "records": len(records)}}
