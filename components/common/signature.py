"""The signature description that travels with every graph variant.

A frozen GraphDef has no notion of "inputs" and "outputs"; `signature.json` beside
it records which tensors play those roles, so every later step (optimizer,
quantizer, XLA, benchmarker) feeds and fetches the same tensors.

Example `signature.json`::

    {
      "signature_key": "serving_default",
      "inputs":  [{"name": "image", "tensor_name": "image:0",
                   "dtype": "float32", "shape": [null, 32, 32, 1]}],
      "outputs": [{"name": "output_0", "tensor_name": "Identity:0",
                   "dtype": "float32", "shape": [null, 10]}]
    }
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

SIGNATURE_FILENAME = "signature.json"


@dataclasses.dataclass(frozen=True)
class TensorDescription:
    """One input or output: its signature name, graph tensor name, dtype and shape."""

    name: str
    tensor_name: str
    dtype: str
    shape: tuple[int | None, ...]

    @property
    def op_name(self) -> str:
        """The graph node that produces this tensor (`Identity:0` -> `Identity`)."""
        return self.tensor_name.split(":")[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tensor_name": self.tensor_name,
            "dtype": self.dtype,
            "shape": list(self.shape),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> TensorDescription:
        return cls(
            name=value["name"],
            tensor_name=value["tensor_name"],
            dtype=value["dtype"],
            shape=tuple(value["shape"]),
        )


@dataclasses.dataclass(frozen=True)
class GraphSignature:
    """Inputs and outputs of a graph variant, in a stable (sorted by name) order."""

    signature_key: str
    inputs: tuple[TensorDescription, ...]
    outputs: tuple[TensorDescription, ...]

    @property
    def input_tensor_names(self) -> list[str]:
        return [t.tensor_name for t in self.inputs]

    @property
    def output_tensor_names(self) -> list[str]:
        return [t.tensor_name for t in self.outputs]

    @property
    def output_op_names(self) -> list[str]:
        return [t.op_name for t in self.outputs]

    def to_json(self) -> dict[str, Any]:
        return {
            "signature_key": self.signature_key,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> GraphSignature:
        return cls(
            signature_key=value["signature_key"],
            inputs=tuple(TensorDescription.from_json(v) for v in value["inputs"]),
            outputs=tuple(TensorDescription.from_json(v) for v in value["outputs"]),
        )

    def save(self, directory: str) -> str:
        """Writes `signature.json` into `directory` and returns its path."""
        import tensorflow as tf  # gfile so that gs:// and s3:// artifact URIs work.

        path = os.path.join(directory, SIGNATURE_FILENAME)
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str) -> GraphSignature:
        """Reads `signature.json` from `directory`."""
        import tensorflow as tf

        with tf.io.gfile.GFile(os.path.join(directory, SIGNATURE_FILENAME)) as f:
            return cls.from_json(json.loads(f.read()))
