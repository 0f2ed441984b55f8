"""Wrapping a frozen (or optimized) GraphDef into a servable TF2 SavedModel.

The GraphDef is imported inside a `tf.function` whose input signature is the graph's
signature, so the whole graph, constants included, becomes one function in the
SavedModel's function library. The SavedModel has no variables and no Python state:
TF Serving, `tf.saved_model.load` and `saved_model_cli` all see a `serving_default`
signature with the original input/output names, dtypes and shapes::

    export_graph_as_saved_model(graph_def, signature, "/models/digits/optimized/1")
    # saved_model_cli show --dir /models/digits/optimized/1 --all
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from components.common.signature import GraphSignature

if TYPE_CHECKING:
    import tensorflow as tf

SERVING_SIGNATURE_KEY = "serving_default"
SERVING_TAG = "serve"


def export_graph_as_saved_model(
    graph_def: tf.compat.v1.GraphDef,
    signature: GraphSignature,
    export_dir: str,
    verify: bool = True,
) -> str:
    """Writes a SavedModel serving `graph_def` under `serving_default`; returns `export_dir`.

    With `verify`, reads the written MetaGraph back (as `saved_model_cli show` does)
    and raises RuntimeError unless its signature matches `signature`.
    """
    import tensorflow as tf

    input_specs = [
        tf.TensorSpec(shape=t.shape, dtype=tf.as_dtype(t.dtype), name=t.name)
        for t in signature.inputs
    ]

    @tf.function(input_signature=input_specs, autograph=False)
    def serve(*inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = tf.graph_util.import_graph_def(
            graph_def,
            input_map=dict(zip(signature.input_tensor_names, inputs, strict=True)),
            return_elements=signature.output_tensor_names,
            name="graph",
        )
        named = {}
        for description, tensor in zip(signature.outputs, outputs, strict=True):
            output = tf.identity(tensor, name=description.name)
            # Pins the declared shape on the signature even if a rewrite lost static shapes.
            output.set_shape(description.shape)
            named[description.name] = output
        return named

    # Only the signature refers to the function: also attaching `serve` to the module
    # would make the SavedModel hold a second traced copy of the graph (constants too).
    module = tf.Module()
    function = serve.get_concrete_function()
    signatures = {SERVING_SIGNATURE_KEY: function}
    if signature.signature_key != SERVING_SIGNATURE_KEY:
        signatures[signature.signature_key] = function
    tf.saved_model.save(module, export_dir, signatures=signatures)
    if verify:
        verify_saved_model_signature(export_dir, signature)
    return export_dir


def verify_saved_model_signature(export_dir: str, signature: GraphSignature) -> None:
    """Raises RuntimeError unless `serving_default` has the signature's names, dtypes, shapes."""
    import tensorflow as tf
    from tensorflow.python.tools import saved_model_utils

    meta_graph = saved_model_utils.get_meta_graph_def(export_dir, SERVING_TAG)
    if SERVING_SIGNATURE_KEY not in meta_graph.signature_def:
        raise RuntimeError(f"{export_dir} has no {SERVING_SIGNATURE_KEY!r} signature.")
    written = meta_graph.signature_def[SERVING_SIGNATURE_KEY]
    for kind, expected, actual in (
        ("input", signature.inputs, written.inputs),
        ("output", signature.outputs, written.outputs),
    ):
        if sorted(actual) != sorted(t.name for t in expected):
            raise RuntimeError(
                f"SavedModel {kind}s {sorted(actual)} differ from the signature's "
                f"{sorted(t.name for t in expected)} in {export_dir}."
            )
        for description in expected:
            info = actual[description.name]
            dtype = tf.as_dtype(info.dtype).name
            shape = (
                None
                if info.tensor_shape.unknown_rank
                else tuple(tf.TensorShape(info.tensor_shape).as_list())
            )
            if dtype != description.dtype or shape != tuple(description.shape):
                raise RuntimeError(
                    f"SavedModel {kind} {description.name!r} is {dtype}{list(shape or [])}, "
                    f"expected {description.dtype}{list(description.shape)} in {export_dir}."
                )
