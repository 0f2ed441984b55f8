"""TFLite: running a .tflite model on numpy arrays, and the Benchmarker's backend for it.

    >>> model = TFLiteModel("/artifacts/quantized_int8/model.tflite", num_threads=2)
    >>> model.batch_size, model.input_shapes
    (1, [(1, 32, 32, 1)])
    >>> probabilities, = model.run(images[:1])          # float in, float out

Every model file has a static batch size, and `run` refuses other batches: the Quantizer
writes one file per batch size and `tflite_model_path(directory, batch_size)` finds it.
Why not `resize_tensor_input`: a dynamic batch can leave dynamic-shaped tensors that
XNNPACK skips, and a static model's converter may fold the batch into shape constants;
one file per batch size is what was converted, analyzed (`quantization.json`) and
checked against the frozen graph. (On the digits CNN resizing happens to work and is
as fast as a batch-8 model: 0.347 against 0.348 ms, one thread.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from components.common.errors import UserInputError
from components.common.signature import SIGNATURE_FILENAME, GraphSignature
from components.runtimes.base import Backend, LoadedVariant, ThreadSettings, register_backend

if TYPE_CHECKING:
    import tensorflow as tf

FORMAT_TFLITE = "tflite"
TFLITE_FILENAME = "model.tflite"
# Extra batch sizes live beside the primary model as `batch_<n>/model.tflite`.
BATCH_DIR_PREFIX = "batch_"
# TFLite names the signature def of a converted concrete function like this.
_TFLITE_SIGNATURE_KEY = "serving_default"


def tflite_model_path(directory: str, batch_size: int) -> str:
    """The .tflite file for `batch_size` inside a Quantizer output directory.

    Raises UserInputError listing the batch sizes present when there is none for it.
    """
    for path, size in _models_by_batch_size(directory).items():
        if size == batch_size:
            return path
    available = available_batch_sizes(directory)
    raise UserInputError(
        f"{directory!r} holds no TFLite model for batch size {batch_size} (available: "
        f"{', '.join(map(str, available)) or 'none'}). Quantize again with that batch size "
        f"in extra_batch_sizes; resizing a static model's input disables XNNPACK."
    )


def available_batch_sizes(directory: str) -> list[int]:
    """Batch sizes of the .tflite files a Quantizer output directory holds."""
    return sorted(set(_models_by_batch_size(directory).values()))


def _models_by_batch_size(directory: str) -> dict[str, int]:
    """Model path -> static batch size, read from the `signature.json` beside each file."""
    import tensorflow as tf

    folders = [directory]
    if tf.io.gfile.isdir(directory):
        folders += [
            os.path.join(directory, name.rstrip("/"))
            for name in sorted(tf.io.gfile.listdir(directory))
            if name.startswith(BATCH_DIR_PREFIX)
        ]
    models = {}
    for folder in folders:
        path = os.path.join(folder, TFLITE_FILENAME)
        if tf.io.gfile.exists(path) and tf.io.gfile.exists(
            os.path.join(folder, SIGNATURE_FILENAME)
        ):
            batch = GraphSignature.load(folder).inputs[0].shape[0]
            if batch is not None:
                models[path] = int(batch)
    return models


class TFLiteModel:
    """A .tflite model behind `run(*inputs) -> [outputs]`, with a pinned thread count.

    Inputs and outputs follow the order of the `signature.json` beside the file (when
    present). Models with int8 input/output are quantized and dequantized here with
    the tensors' scale and zero point, so callers always pass and get float arrays;
    arrays already in the model's integer dtype pass through untouched.
    """

    def __init__(
        self, path: str, num_threads: int, signature: GraphSignature | None = None
    ) -> None:
        import tensorflow as tf

        if num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {num_threads}.")
        self.path = path
        self.num_threads = num_threads
        with tf.io.gfile.GFile(path, "rb") as f:
            content = f.read()
        self._interpreter = tf.lite.Interpreter(model_content=content, num_threads=num_threads)
        self._interpreter.allocate_tensors()
        if signature is None:
            signature = _load_signature_beside(path)
        self.signature = signature
        self._inputs, self._outputs = _ordered_io(self._interpreter, signature)

    @property
    def interpreter(self) -> tf.lite.Interpreter:
        return self._interpreter

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(d) for d in detail["shape"]) for detail in self._inputs]

    @property
    def input_dtypes(self) -> list[str]:
        """The dtypes stored in the model (`int8` for int8 io), not what `run` accepts."""
        return [np.dtype(detail["dtype"]).name for detail in self._inputs]

    @property
    def output_dtypes(self) -> list[str]:
        return [np.dtype(detail["dtype"]).name for detail in self._outputs]

    @property
    def batch_size(self) -> int:
        return self.input_shapes[0][0]

    def to_model_inputs(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Inputs converted to the model's stored dtypes (quantized for int8 io).

        `run` passes such arrays through untouched, so a benchmark can convert once,
        outside its timed loop (about 15 us per 32x32 image in numpy).
        """
        return [
            _to_model_dtype(array, detail)
            for array, detail in zip(inputs, self._inputs, strict=True)
        ]

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Runs one batch; float arrays in, float arrays out (int8 io handled here)."""
        if len(inputs) != len(self._inputs):
            raise ValueError(f"The model takes {len(self._inputs)} inputs, got {len(inputs)}.")
        for array, detail in zip(inputs, self._inputs, strict=True):
            if tuple(array.shape) != tuple(detail["shape"]):
                raise ValueError(
                    f"Input {detail['name']!r} needs shape {list(detail['shape'])}, got "
                    f"{list(array.shape)}. Each .tflite file has a static batch size; use "
                    f"tflite_model_path(directory, batch_size) to pick the right file."
                )
            self._interpreter.set_tensor(detail["index"], _to_model_dtype(array, detail))
        self._interpreter.invoke()
        return [
            _from_model_dtype(self._interpreter.get_tensor(detail["index"]), detail)
            for detail in self._outputs
        ]


def _to_model_dtype(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if array.dtype == dtype:
        return array
    scale, zero_point = detail["quantization"]
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        quantized = np.round(array / scale) + zero_point
        return np.clip(quantized, info.min, info.max).astype(dtype)
    return array.astype(dtype)


def _from_model_dtype(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(array.dtype, np.integer) and scale:
        return ((array.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return array


def _load_signature_beside(path: str) -> GraphSignature | None:
    import tensorflow as tf

    directory = os.path.dirname(path)
    if tf.io.gfile.exists(os.path.join(directory, SIGNATURE_FILENAME)):
        return GraphSignature.load(directory)
    return None


def _ordered_io(
    interpreter: tf.lite.Interpreter, signature: GraphSignature | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Input/output details in signature order when the model's signature def allows it.

    A model converted from a concrete function carries a `serving_default` signature def
    whose input keys are the placeholder names and whose outputs are `output_<i>` in the
    function's (= signature's) output order.
    """
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    signature_defs = interpreter._get_full_signature_list()  # noqa: SLF001 - name->index map.
    if signature is None or _TFLITE_SIGNATURE_KEY not in signature_defs:
        return inputs, outputs
    tflite_def = signature_defs[_TFLITE_SIGNATURE_KEY]
    by_index = {d["index"]: d for d in [*inputs, *outputs]}
    input_keys = [
        _first_present(tflite_def["inputs"], (t.op_name, t.name)) for t in signature.inputs
    ]
    output_keys = [
        _first_present(tflite_def["outputs"], (f"output_{i}", t.name))
        for i, t in enumerate(signature.outputs)
    ]
    if None in input_keys or None in output_keys:
        return inputs, outputs
    return (
        [by_index[tflite_def["inputs"][key]] for key in input_keys],
        [by_index[tflite_def["outputs"][key]] for key in output_keys],
    )


def _first_present(mapping: dict[str, int], keys: tuple[str, ...]) -> str | None:
    return next((key for key in keys if key in mapping), None)


class _TFLiteVariant(LoadedVariant):
    """One interpreter per static batch size the Quantizer wrote (XNNPACK needs static shapes).

    Interpreters are created on first use of a batch size, so unused sizes cost nothing.
    TFLite runs on the CPU only; the device is recorded as such whatever was asked.
    """

    def __init__(self, directory: str, num_threads: int):
        self._directory = directory
        self._num_threads = num_threads
        self._batch_sizes = available_batch_sizes(directory)
        if not self._batch_sizes:
            raise ValueError(f"no .tflite model with a static batch size in {directory!r}")
        self._models: dict[int, TFLiteModel] = {}
        self.fixed_batch_size = self._batch_sizes[0]
        self.device = "CPU:0"
        self._model(self.fixed_batch_size)  # Fail at load time, not in the timed region.

    def _model(self, batch_size: int) -> TFLiteModel:
        if batch_size not in self._models:
            path = tflite_model_path(self._directory, batch_size)
            self._models[batch_size] = TFLiteModel(path, num_threads=self._num_threads)
        return self._models[batch_size]

    def supports_batch(self, batch_size: int) -> bool:
        return batch_size in self._batch_sizes

    def batch_size_for(self, requested: int) -> int:
        fitting = [b for b in self._batch_sizes if b <= requested]
        return max(fitting) if fitting else min(self._batch_sizes)

    def prepare(self, inputs: Sequence[np.ndarray]) -> Any:
        model = self._model(int(inputs[0].shape[0]))
        # Quantizing the inputs of an int8-io model is the caller's job, done untimed.
        return model, [np.ascontiguousarray(x) for x in model.to_model_inputs(*inputs)]

    def run(self, prepared: Any) -> list[np.ndarray]:
        model, arrays = prepared
        return model.run(*arrays)

    def describe(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "batch_sizes": self._batch_sizes,
            "num_threads": self._num_threads,
        }

    def release(self) -> None:
        self._models.clear()


@register_backend(FORMAT_TFLITE)
class TFLiteBackend(Backend):
    """A Quantizer TFLite artifact: `model.tflite` (+ `batch_<n>/model.tflite`), XNNPACK on.

    The thread budget's `intra_op` is the interpreter's `num_threads`.
    """

    # The flatbuffer is mapped, but XNNPACK packs (and for float16 dequantizes) the
    # weights, and each batch size's model gets its own arena: ResNet50 grew the harness
    # by 11.4x its artifact for float16, 7.1x for int8 and 4.7x for dynamic range, with
    # one call at batch 32 (2026-12-03, Intel AMX Xeon). 1.5x let a group overrun.
    memory_per_artifact_byte = 12.0

    def load(self, uri: str, settings: ThreadSettings, device: str) -> LoadedVariant:
        return _TFLiteVariant(uri, settings.intra_op)
