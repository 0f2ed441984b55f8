"""The preprocessing part of a serialized-Example signature, stored and run on its own.

A TFX Trainer's `serving_default` parses serialized tf.Examples and runs the Transform
graph before the Keras model. The Freezer splits that signature (see
`components/freezer/serialized_split.py`); this module holds the first part. On disk,
inside the `FrozenGraph` artifact::

    {uri}/preprocessing/
      graph.pb           # serialized tf.Example strings in -> the model core's inputs out
      signature.json     # inputs: the signature's string inputs; outputs: named as the
                         # core's inputs, in the same order
      tables.json        # the lookup tables the graph reads: placeholder, dtypes, size
      tables.npz         # their contents: keys_<i>, values_<i>

Why tables beside the graph: a TF lookup table is a resource, which no GraphDef can hold
as a constant. Its contents are exported at freeze time and rebuilt as a
`tf.lookup.StaticHashTable` at load time; the table's handle is fed to the placeholder
the frozen graph reads it from.

    >>> preprocessing = Preprocessing.load(frozen_graph_uri)   # None without a split
    >>> core_inputs = preprocessing.run(records)               # arrays, core input order
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from components.common.graph_io import graph_def_function, load_graph_def, save_graph_def
from components.common.signature import GraphSignature

if TYPE_CHECKING:
    import tensorflow as tf

    from components.common.feeds import ExampleRecords

PREPROCESSING_DIRNAME = "preprocessing"
TABLES_JSON = "tables.json"
TABLES_NPZ = "tables.npz"


@dataclasses.dataclass
class LookupTable:
    """One lookup table's contents and the graph placeholder that reads it."""

    placeholder: str  # tensor name in the preprocessing graph, e.g. "unknown:0"
    key_dtype: str
    value_dtype: str
    keys: np.ndarray
    values: np.ndarray

    def describe(self) -> dict[str, Any]:
        return {
            "placeholder": self.placeholder,
            "key_dtype": self.key_dtype,
            "value_dtype": self.value_dtype,
            "size": int(len(self.keys)),
        }


@dataclasses.dataclass
class PreprocessingGraph:
    """The preprocessing part as the Freezer writes it."""

    graph_def: tf.compat.v1.GraphDef
    signature: GraphSignature
    tables: list[LookupTable]

    def save(self, frozen_graph_dir: str) -> str:
        """Writes `preprocessing/` inside a FrozenGraph directory; returns that folder."""
        import tensorflow as tf

        directory = os.path.join(frozen_graph_dir, PREPROCESSING_DIRNAME)
        save_graph_def(self.graph_def, directory)
        self.signature.save(directory)
        with tf.io.gfile.GFile(os.path.join(directory, TABLES_JSON), "w") as f:
            f.write(json.dumps([t.describe() for t in self.tables], indent=2) + "\n")
        buffer = io.BytesIO()
        arrays = {}
        for index, table in enumerate(self.tables):
            arrays[f"keys_{index}"] = table.keys
            arrays[f"values_{index}"] = table.values
        np.savez(buffer, **arrays)
        with tf.io.gfile.GFile(os.path.join(directory, TABLES_NPZ), "wb") as f:
            f.write(buffer.getvalue())
        return directory


def has_preprocessing(frozen_graph_dir: str) -> bool:
    import tensorflow as tf

    return tf.io.gfile.exists(os.path.join(frozen_graph_dir, PREPROCESSING_DIRNAME, TABLES_JSON))


def read_preprocessing_graph(frozen_graph_dir: str) -> PreprocessingGraph:
    """Reads `preprocessing/` back (graph, signature, tables)."""
    import tensorflow as tf

    directory = os.path.join(frozen_graph_dir, PREPROCESSING_DIRNAME)
    with tf.io.gfile.GFile(os.path.join(directory, TABLES_JSON)) as f:
        described = json.loads(f.read())
    with tf.io.gfile.GFile(os.path.join(directory, TABLES_NPZ), "rb") as f:
        contents = np.load(io.BytesIO(f.read()), allow_pickle=False)
        tables = [
            LookupTable(
                placeholder=d["placeholder"],
                key_dtype=d["key_dtype"],
                value_dtype=d["value_dtype"],
                keys=contents[f"keys_{i}"],
                values=contents[f"values_{i}"],
            )
            for i, d in enumerate(described)
        ]
    return PreprocessingGraph(
        graph_def=load_graph_def(directory),
        signature=GraphSignature.load(directory),
        tables=tables,
    )


class Preprocessing:
    """The preprocessing graph, ready to run: records in, the core's inputs out."""

    def __init__(self, stored: PreprocessingGraph) -> None:
        import tensorflow as tf

        self.signature = stored.signature
        self.tables = [t.describe() for t in stored.tables]
        # Kept alive with the function: the graph reads them through their handles.
        self._tables = [_static_table(t) for t in stored.tables]
        bound = {
            table.placeholder: handle.resource_handle
            for table, handle in zip(stored.tables, self._tables, strict=True)
        }
        self.function = graph_def_function(stored.graph_def, stored.signature, bound)
        self._tf = tf

    @classmethod
    def load(cls, frozen_graph_dir: str) -> Preprocessing | None:
        """The preprocessing of a FrozenGraph artifact, or None when it has none."""
        if not has_preprocessing(frozen_graph_dir):
            return None
        return cls(read_preprocessing_graph(frozen_graph_dir))

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.signature.outputs]

    def run(self, records: ExampleRecords) -> list[np.ndarray]:
        """The core's inputs for these records, in core input order."""
        from components.common.feeds import FeedSettings, decode_inputs, plan_inputs

        arrays = decode_inputs(records, plan_inputs(self.signature.inputs, FeedSettings(), records))
        return self.run_arrays(arrays)

    def run_arrays(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        tf = self._tf
        outputs = self.function(*[tf.constant(a) for a in arrays])
        return [o.numpy() for o in outputs]


def _static_table(table: LookupTable) -> Any:
    import tensorflow as tf

    key_dtype = tf.as_dtype(table.key_dtype)
    value_dtype = tf.as_dtype(table.value_dtype)
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(table.keys, dtype=key_dtype), tf.constant(table.values, dtype=value_dtype)
    )
    # The graph's own LookupTableFind passes its default value; this one is never used.
    default = "" if value_dtype == tf.string else 0
    return tf.lookup.StaticHashTable(initializer, tf.constant(default, dtype=value_dtype))
