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
                   "dtype": "float32", "shape": [null, 10], "activation": "softmax"}]
    }

Two optional keys say what the graph alone cannot:
  * `encoding` on an input: `tf_example` when the input takes serialized `tf.Example`
    strings (it feeds a ParseExample op), so it is fed the Examples' records as they are;
  * `activation` on an output: `softmax` or `sigmoid` when the output is a probability,
    which tells a binary classifier's 0.5 threshold from a logit's 0.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

SIGNATURE_FILENAME = "signature.json"
# `TensorDescription.encoding` of an input that takes serialized tf.Example strings.
ENCODING_TF_EXAMPLE = "tf_example"


@dataclasses.dataclass(frozen=True)
class TensorDescription:
    """One input or output: its signature name, graph tensor name, dtype and shape."""

    name: str
    tensor_name: str
    dtype: str
    shape: tuple[int | None, ...]
    # Inputs: ENCODING_TF_EXAMPLE for serialized tf.Example strings, else None.
    encoding: str | None = None
    # Outputs: "softmax" or "sigmoid" when the graph ends in one, else None.
    activation: str | None = None

    @property
    def op_name(self) -> str:
        """The graph node that produces this tensor (`Identity:0` -> `Identity`)."""
        return self.tensor_name.split(":")[0]

    @property
    def takes_tf_example(self) -> bool:
        return self.encoding == ENCODING_TF_EXAMPLE

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "name": self.name,
            "tensor_name": self.tensor_name,
            "dtype": self.dtype,
            "shape": list(self.shape),
        }
        if self.encoding:
            value["encoding"] = self.encoding
        if self.activation:
            value["activation"] = self.activation
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> TensorDescription:
        return cls(
            name=value["name"],
            tensor_name=value["tensor_name"],
            dtype=value["dtype"],
            shape=tuple(value["shape"]),
            encoding=value.get("encoding"),
            activation=value.get("activation"),
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

    def output(self, name: str) -> TensorDescription:
        """The output called `name`; raises KeyError naming the outputs there are."""
        for tensor in self.outputs:
            if tensor.name == name:
                return tensor
        raise KeyError(f"no output {name!r}; outputs: {', '.join(self.output_names)}")

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

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
