"""Turning `tf.Example` records into model inputs: one plan per signature input.

Every consumer that feeds a model from Examples (Quantizer calibration, the Benchmarker's
timing and accuracy passes, the CLI's pre-flight check) goes through this module, so a
variant is always fed what the baseline was fed. Which feature feeds which input:

  * an input whose `encoding` is `tf_example` takes the serialized record itself (a
    TFX Trainer's `serving_default` parses it);
  * any other input takes the feature of the same name, or the one
    `FeedSettings.feature_map` names for it (`--feature-map input=feature`):
      - `float_list` feeds a float input; `int64_list` an int input, or a float input
        (cast: CSV columns of whole numbers often feed float inputs);
      - `bytes_list` feeds a string input as raw bytes, or an image input (a numeric
        input of rank 3 or 4) by decoding PNG/JPEG and resizing (`ImageDecoding`);
      - the values must fill the input's non-batch shape exactly, in every record.

    >>> plans = plan_inputs(signature.inputs, FeedSettings(), records.first, where=uri)
    >>> arrays = decode_inputs(records, plans)      # one array per input, batch first

Errors are `UserInputError`s that name the input, the features found and the flag to
use. Decoding happens outside every timed region.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from components.common.errors import UserInputError
from components.common.signature import GraphSignature, TensorDescription

if TYPE_CHECKING:
    from components.common.preprocessing import Preprocessing

KIND_TF_EXAMPLE = "tf_example"
KIND_FLOAT = "float"
KIND_INT = "int"
KIND_BYTES = "bytes"
KIND_IMAGE = "image"

RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "mitchellcubic")
# none: pixel values 0..255 as they are; unit: [0, 1]; symmetric: [-1, 1].
SCALINGS = ("auto", "none", "unit", "symmetric")
_IMAGE_CHANNELS = (1, 3, 4)


@dataclasses.dataclass(frozen=True)
class ImageDecoding:
    """How encoded image bytes become an image input; recorded in the report.

    `size` None takes the height and width from the input's shape. `scaling` "auto"
    keeps 0..255 for integer inputs (uint8 models scale inside) and maps to [0, 1] for
    float inputs.
    """

    resize_method: str = "bilinear"
    size: tuple[int, int] | None = None
    scaling: str = "auto"

    def __post_init__(self) -> None:
        if self.resize_method not in RESIZE_METHODS:
            raise UserInputError(
                f"Unknown image resize method {self.resize_method!r}; choose one of "
                f"{', '.join(RESIZE_METHODS)} (--image-resize)."
            )
        if self.scaling not in SCALINGS:
            raise UserInputError(
                f"Unknown image scaling {self.scaling!r}; choose one of {', '.join(SCALINGS)} "
                f"(--image-scaling)."
            )
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise UserInputError(
                f"Image size must be HEIGHTxWIDTH with positive sides, got {self.size}."
            )

    def scaling_for(self, dtype: str) -> str:
        if self.scaling != "auto":
            return self.scaling
        return "unit" if np.issubdtype(np.dtype(dtype), np.floating) else "none"

    def to_json(self) -> dict[str, Any]:
        return {
            "resize_method": self.resize_method,
            "size": list(self.size) if self.size else None,
            "scaling": self.scaling,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ImageDecoding:
        _refuse_unknown_keys(value, ("resize_method", "size", "scaling"), "image decoding")
        size = value.get("size")
        return cls(
            resize_method=value.get("resize_method", "bilinear"),
            size=(int(size[0]), int(size[1])) if size else None,
            scaling=value.get("scaling", "auto"),
        )


@dataclasses.dataclass(frozen=True)
class FeedSettings:
    """Which feature feeds which model input, and how images are decoded."""

    # Model input name -> Example feature name, where they differ.
    feature_map: Mapping[str, str] = dataclasses.field(default_factory=dict)
    image: ImageDecoding = dataclasses.field(default_factory=ImageDecoding)

    def feature_for(self, input_name: str) -> str:
        return self.feature_map.get(input_name, input_name)

    def to_json(self) -> dict[str, Any]:
        return {
            "feature_map": dict(sorted(self.feature_map.items())),
            "image": self.image.to_json(),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> FeedSettings:
        value = value or {}
        _refuse_unknown_keys(value, ("feature_map", "image"), "feed settings")
        return cls(
            feature_map=dict(value.get("feature_map") or {}),
            image=ImageDecoding.from_json(value.get("image") or {}),
        )


def parse_feature_map(text: str) -> dict[str, str]:
    """`input=feature,input2=feature2` -> a dict; the CLI's `--feature-map`."""
    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, feature = item.partition("=")
        if not sep or not name.strip() or not feature.strip():
            raise UserInputError(
                f"--feature-map takes INPUT=FEATURE pairs separated by commas, got {item!r}."
            )
        mapping[name.strip()] = feature.strip()
    return mapping


@dataclasses.dataclass(frozen=True)
class InputPlan:
    """How one model input is fed: from which feature, as what kind of value."""

    input: TensorDescription
    feature: str | None  # None: the serialized record itself.
    kind: str
    image: ImageDecoding | None = None

    @property
    def item_shape(self) -> tuple[int | None, ...]:
        return tuple(self.input.shape[1:])

    def describe(self) -> dict[str, Any]:
        """What the report says this input was fed."""
        value: dict[str, Any] = {
            "input": self.input.name,
            "dtype": self.input.dtype,
            "shape": list(self.input.shape),
            "feature": self.feature if self.feature is not None else "(serialized tf.Example)",
            "kind": self.kind,
        }
        if self.image is not None:
            height, width = self.image_size
            value["image"] = {
                "resize_method": self.image.resize_method,
                "size": [height, width],
                "scaling": self.image.scaling_for(self.input.dtype),
            }
        return value

    @property
    def image_size(self) -> tuple[int, int]:
        assert self.image is not None
        if self.image.size:
            return self.image.size
        height, width = self.item_shape[0], self.item_shape[1]
        if height is None or width is None:
            raise UserInputError(
                f"The image input {self.input.name!r} has an unknown size "
                f"{list(self.input.shape)}; pass --image-size HEIGHTxWIDTH."
            )
        return int(height), int(width)


class ExampleRecords:
    """Serialized tf.Example records and their parsed form, parsed once.

    Raises UserInputError when a record is not a serialized tf.Example.
    """

    def __init__(self, records: Sequence[bytes], where: str) -> None:
        import tensorflow as tf
        from google.protobuf.message import DecodeError

        self.raw = [bytes(r) for r in records]
        self.where = where
        self.examples = []
        for index, record in enumerate(self.raw):
            try:
                example = tf.train.Example.FromString(record)
            except DecodeError as error:
                raise UserInputError(
                    f"Record #{index} of the Examples at {where!r} is not a serialized "
                    f"tf.Example ({error}). The tool reads TFX Examples: GZIP TFRecord files of "
                    f"tf.train.Example, as every TFX ExampleGen writes them."
                ) from error
            self.examples.append(example)
        if not self.raw:
            raise UserInputError(f"The Examples at {where!r} hold no records.")

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def first(self) -> Any:  # tf.train.Example
        return self.examples[0]

    def feature_names(self) -> list[str]:
        return sorted(self.first.features.feature)

    def head(self, count: int) -> ExampleRecords:
        """The first `count` records (repeated when there are fewer), without re-parsing."""
        picked = ExampleRecords.__new__(ExampleRecords)
        indices = [i % len(self.raw) for i in range(count)]
        picked.raw = [self.raw[i] for i in indices]
        picked.examples = [self.examples[i] for i in indices]
        picked.where = self.where
        return picked


def plan_inputs(
    inputs: Sequence[TensorDescription], settings: FeedSettings, records: ExampleRecords
) -> list[InputPlan]:
    """One plan per input, checked against the first record; raises UserInputError."""
    return [_plan_input(tensor, settings, records) for tensor in inputs]


def check_feature_map(settings: FeedSettings, inputs: Sequence[TensorDescription]) -> None:
    """Refuses a feature map that names inputs the model does not have (a typo, usually)."""
    unknown = sorted(set(settings.feature_map) - {t.name for t in inputs})
    if unknown:
        raise UserInputError(
            f"--feature-map names inputs the model does not have: {', '.join(unknown)} "
            f"(its inputs: {', '.join(t.name for t in inputs)})."
        )


def _plan_input(
    tensor: TensorDescription, settings: FeedSettings, records: ExampleRecords
) -> InputPlan:
    if tensor.takes_tf_example:
        return InputPlan(tensor, None, KIND_TF_EXAMPLE)
    feature_name = settings.feature_for(tensor.name)
    features = records.first.features.feature
    present = ", ".join(f"{n} ({_feature_kind(features[n])})" for n in sorted(features))
    described = f"{tensor.dtype} {list(tensor.shape)}"
    if feature_name not in features:
        hint = ""
        if tensor.dtype == "string":
            hint = (
                " The input takes strings but feeds no ParseExample op, so it is not fed the "
                "serialized Examples; it needs a bytes feature."
            )
        raise UserInputError(
            f"The model input {tensor.name!r} ({described}) is fed from the Example feature "
            f"{feature_name!r}, but the Examples at {records.where!r} have no such feature "
            f"(present: {present or 'none'}).{hint} Map the input to a feature with "
            f"--feature-map {tensor.name}=FEATURE, or use Examples made for this model."
        )
    kind = _feature_kind(features[feature_name])
    dtype = np.dtype(tensor.dtype) if tensor.dtype != "string" else None
    rank = len(tensor.shape)

    def mismatch(why: str) -> UserInputError:
        return UserInputError(
            f"The Example feature {feature_name!r} holds {kind} values, but the model input "
            f"{tensor.name!r} is {described}: {why} Map the input to a feature of the right "
            f"kind with --feature-map {tensor.name}=FEATURE (features: {present})."
        )

    if kind == "float_list":
        if dtype is None or not np.issubdtype(dtype, np.floating):
            raise mismatch("float values cannot feed it without losing their meaning.")
        return InputPlan(tensor, feature_name, KIND_FLOAT)
    if kind == "int64_list":
        if dtype is None:
            raise mismatch("a string input needs a bytes feature.")
        return InputPlan(tensor, feature_name, KIND_INT)
    if kind == "bytes_list":
        if dtype is None:
            return InputPlan(tensor, feature_name, KIND_BYTES)
        item = tuple(tensor.shape[1:])
        channels = item[2] if rank == 4 else 1
        if rank in (3, 4) and (channels is None or channels in _IMAGE_CHANNELS):
            return InputPlan(tensor, feature_name, KIND_IMAGE, image=settings.image)
        raise mismatch(
            "bytes feed only string inputs, or image inputs of shape [batch, height, width] "
            "or [batch, height, width, channels] (PNG or JPEG bytes)."
        )
    raise mismatch("the feature is empty in the first record.")


def _feature_kind(feature: Any) -> str:
    return feature.WhichOneof("kind") or "empty"


def decode_inputs(records: ExampleRecords, plans: Sequence[InputPlan]) -> list[np.ndarray]:
    """One array per plan with the records on the first axis, in the inputs' dtypes."""
    return [_decode_input(records, plan) for plan in plans]


def _decode_input(records: ExampleRecords, plan: InputPlan) -> np.ndarray:
    if plan.kind == KIND_TF_EXAMPLE:
        return np.array(records.raw, dtype=object)
    if plan.kind == KIND_IMAGE:
        return _decode_images(records, plan)
    rows = []
    counts = set()
    for example in records.examples:
        feature = example.features.feature.get(plan.feature)
        values = _values(feature, plan.kind) if feature is not None else []
        counts.add(len(values))
        rows.append(values)
    item_shape = _resolve_item_shape(plan, sorted(counts), records.where)
    if plan.kind == KIND_BYTES:
        flat = np.empty((len(rows), *item_shape), dtype=object)
        for index, values in enumerate(rows):
            flat[index] = np.array(values, dtype=object).reshape(item_shape)
        return flat
    dtype = np.dtype(plan.input.dtype)
    return (
        np.asarray(rows, dtype=np.float64 if plan.kind == KIND_FLOAT else np.int64)
        .reshape((len(rows), *item_shape))
        .astype(dtype)
    )


def _values(feature: Any, kind: str) -> Sequence[Any]:
    if kind == KIND_FLOAT:
        return feature.float_list.value
    if kind == KIND_INT:
        return feature.int64_list.value
    return feature.bytes_list.value


def _resolve_item_shape(plan: InputPlan, counts: list[int], where: str) -> tuple[int, ...]:
    """The non-batch shape the records fill; raises for ragged or ill-sized features."""
    shape = plan.item_shape
    described = f"{plan.input.dtype} {list(plan.input.shape)}"
    if len(counts) > 1:
        raise UserInputError(
            f"The Example feature {plan.feature!r} is variable-length: its records hold "
            f"{', '.join(map(str, counts[:6]))}{' ...' if len(counts) > 6 else ''} values, but "
            f"the model input {plan.input.name!r} ({described}) takes a fixed number per "
            f"example. Pad the feature to one length in your Examples (or in a Transform), or "
            f"feed a model whose signature parses it (serialized tf.Example input)."
        )
    count = counts[0]
    unknown = [i for i, d in enumerate(shape) if d is None]
    known = int(np.prod([d for d in shape if d is not None])) if shape else 1
    if len(unknown) == 1 and known and count % known == 0:
        resolved = list(shape)
        resolved[unknown[0]] = count // known
        return tuple(int(d) for d in resolved)
    if not unknown and count == known:
        return tuple(int(d) for d in shape)
    if unknown:
        problem = f"its shape {list(plan.input.shape)} has several unknown dimensions"
    else:
        problem = f"it needs {known} per example"
    raise UserInputError(
        f"The Examples at {where!r} do not match the model input {plan.input.name!r}: feature "
        f"{plan.feature!r} has {count} {plan.kind} values per example, but {problem}. Use "
        f"Examples made for this model, or map the input to another feature with "
        f"--feature-map {plan.input.name}=FEATURE."
    )


def _decode_images(records: ExampleRecords, plan: InputPlan) -> np.ndarray:
    import tensorflow as tf

    assert plan.image is not None
    height, width = plan.image_size
    rank = len(plan.input.shape)
    channels = int(plan.input.shape[3] or 3) if rank == 4 else 1
    scaling = plan.image.scaling_for(plan.input.dtype)
    dtype = np.dtype(plan.input.dtype)
    images = []
    for index, example in enumerate(records.examples):
        feature = example.features.feature.get(plan.feature)
        values = feature.bytes_list.value if feature is not None else []
        if len(values) != 1:
            raise UserInputError(
                f"Record #{index} of the Examples at {records.where!r} holds {len(values)} "
                f"values in the image feature {plan.feature!r}; an image input takes one encoded "
                f"image (PNG or JPEG bytes) per example."
            )
        try:
            image = tf.io.decode_image(values[0], channels=channels, expand_animations=False)
        except (tf.errors.InvalidArgumentError, ValueError) as error:
            raise UserInputError(
                f"Record #{index} of the Examples at {records.where!r}: the feature "
                f"{plan.feature!r} holds {len(values[0])} bytes that do not decode as a PNG, "
                f"JPEG, GIF or BMP image ({_tf_error_text(error)}). The image input "
                f"{plan.input.name!r} needs encoded images; map it to another feature with "
                f"--feature-map {plan.input.name}=FEATURE."
            ) from error
        resized = image.shape[0] != height or image.shape[1] != width
        if resized:
            image = tf.image.resize(image, (height, width), method=plan.image.resize_method)
        pixels = image.numpy().astype(np.float32)
        if scaling == "unit":
            pixels = pixels / 255.0
        elif scaling == "symmetric":
            pixels = pixels / 127.5 - 1.0
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            pixels = np.clip(np.round(pixels), info.min, info.max)
        images.append(pixels.astype(dtype))
    batch = np.stack(images)
    return batch[..., 0] if rank == 3 else batch


class ModelFeeder:
    """Inputs for any variant's signature from the same records.

    A model core (the part of a serialized-Example signature after parsing and the
    Transform ops) is fed what the preprocessing graph makes of the records; every other
    input is fed directly from the records (see the module docstring). Plans are made
    once per signature, from the first records seen.

        feeder = ModelFeeder(settings, preprocessing)
        arrays = feeder.inputs(variant_signature, records)
    """

    def __init__(self, settings: FeedSettings, preprocessing: Preprocessing | None = None) -> None:
        self.settings = settings
        self.preprocessing = preprocessing
        self._plans: dict[tuple[Any, ...], list[InputPlan]] = {}
        self._preprocessed: tuple[ExampleRecords, dict[str, np.ndarray]] | None = None

    def plans(self, signature: GraphSignature, records: ExampleRecords) -> list[InputPlan]:
        """Plans for the inputs that are fed directly (core inputs are not among them)."""
        key = tuple(signature.inputs)
        if key not in self._plans:
            direct = [t for t in signature.inputs if not self._is_core_input(t)]
            self._plans[key] = plan_inputs(direct, self.settings, records)
        return self._plans[key]

    def inputs(self, signature: GraphSignature, records: ExampleRecords) -> list[np.ndarray]:
        """One array per signature input, in signature order."""
        direct = dict(
            zip(
                [p.input.name for p in self.plans(signature, records)],
                decode_inputs(records, self.plans(signature, records)),
                strict=True,
            )
        )
        core = self._core_inputs(records) if len(direct) < len(signature.inputs) else {}
        return [direct[t.name] if t.name in direct else core[t.name] for t in signature.inputs]

    def describe(self) -> list[dict[str, Any]]:
        """What every planned input was fed, for the report."""
        described: dict[str, dict[str, Any]] = {}
        for plans in self._plans.values():
            for plan in plans:
                described.setdefault(plan.input.name, plan.describe())
        if self.preprocessing is not None:
            for tensor in self.preprocessing.signature.outputs:
                described.setdefault(
                    tensor.name,
                    {
                        "input": tensor.name,
                        "dtype": tensor.dtype,
                        "shape": list(tensor.shape),
                        "feature": "(output of the preprocessing graph)",
                        "kind": "preprocessed",
                    },
                )
        return list(described.values())

    def _is_core_input(self, tensor: TensorDescription) -> bool:
        return self.preprocessing is not None and tensor.name in self.preprocessing.output_names

    def _core_inputs(self, records: ExampleRecords) -> dict[str, np.ndarray]:
        assert self.preprocessing is not None
        if self._preprocessed is None or self._preprocessed[0] is not records:
            outputs = self.preprocessing.run(records)
            self._preprocessed = (
                id(records),
                dict(zip(self.preprocessing.output_names, outputs, strict=True)),
            )
        return self._preprocessed[1]


def _tf_error_text(error: BaseException) -> str:
    """A TF op error's own words, without the function-node prefix and op suffix."""
    import re

    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\]$", "", text)[:200]


def _refuse_unknown_keys(value: Mapping[str, Any], known: Sequence[str], what: str) -> None:
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise UserInputError(f"Unknown {what} keys {unknown}; valid: {sorted(known)}.")
