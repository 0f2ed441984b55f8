"""The transform interface and the registry that finds transforms by name.

A transform is one small class: a typed, frozen config (every field has a default,
unknown keys are refused) and one `apply` method that turns a GraphDef into a
GraphDef. Registering a class makes it selectable by name; `stage` fixes where it
runs in the canonical order, so the order is a property of the transforms rather
than of whoever lists them::

    @register_transform
    class MyTransform(Transform):
        name = "my_transform"
        stage = 35
        config_type = MyConfig

        def apply(self, graph_def, signature):
            return TransformOutcome(rewritten, details={"nodes_removed": 3})
"""

from __future__ import annotations

import abc
import dataclasses
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from components.common.errors import UserInputError
from components.common.signature import GraphSignature

if TYPE_CHECKING:
    import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class TransformConfig:
    """Base of every transform's settings; subclasses are frozen dataclasses with defaults."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> TransformConfig:
        """Builds the config from plain values (e.g. parsed JSON), refusing unknown keys."""
        values = dict(values or {})
        fields = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            valid = ", ".join(sorted(fields)) or "none"
            raise UserInputError(
                f"Unknown setting(s) {unknown} for {cls.__name__}; valid settings: {valid}."
            )
        hints = typing.get_type_hints(cls)
        for key, value in values.items():
            expected = hints[key]
            # Settings are bools, ints, floats and strings; bool is an int in Python, so
            # compare exact types to refuse e.g. `1` for a flag.
            int_for_float = expected is float and type(value) is int
            scalar = expected in (bool, int, float, str)
            if scalar and type(value) is not expected and not int_for_float:
                raise UserInputError(
                    f"Setting {key!r} of {cls.__name__} must be {expected.__name__}, got {value!r}."
                )
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TransformOutcome:
    """A transform's result: the rewritten graph and JSON-able facts about what it did."""

    graph_def: tf.compat.v1.GraphDef
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


class Transform(abc.ABC):
    """One named graph rewrite with a typed config."""

    name: ClassVar[str]
    # Position in the canonical order (lower runs first); unique across transforms.
    stage: ClassVar[int]
    config_type: ClassVar[type[TransformConfig]] = TransformConfig
    # Whether `optimize_graph` runs it when no transform list is given.
    enabled_by_default: ClassVar[bool] = True
    # Transforms that must also be selected for this one to have anything to work on.
    requires: ClassVar[tuple[str, ...]] = ()
    # Transforms that must not be selected together with this one, and why not.
    conflicts: ClassVar[Mapping[str, str]] = {}
    # Which building block does the work, recorded in the transform log.
    implementation: ClassVar[str]

    def __init__(self, config: TransformConfig | None = None) -> None:
        self.config = config if config is not None else self.config_type()
        if not isinstance(self.config, self.config_type):
            raise TypeError(
                f"{type(self).__name__} takes a {self.config_type.__name__}, "
                f"got {type(self.config).__name__}"
            )

    @abc.abstractmethod
    def apply(
        self, graph_def: tf.compat.v1.GraphDef, signature: GraphSignature
    ) -> TransformOutcome:
        """Returns a rewritten copy; never renames or removes the signature's tensors."""


_REGISTRY: dict[str, type[Transform]] = {}


def register_transform(cls: type[Transform]) -> type[Transform]:
    """Class decorator: makes `cls` selectable by `cls.name`. Duplicates are errors."""
    if cls.name in _REGISTRY:
        raise ValueError(f"A transform named {cls.name!r} is already registered.")
    clashing = [other.name for other in _REGISTRY.values() if other.stage == cls.stage]
    if clashing:
        raise ValueError(f"Transform {cls.name!r} has the same stage as {clashing[0]!r}.")
    _REGISTRY[cls.name] = cls
    return cls


def registered_transforms() -> list[type[Transform]]:
    """All registered transform classes, in canonical order."""
    return sorted(_REGISTRY.values(), key=lambda cls: cls.stage)


def transform_names() -> list[str]:
    """All registered transform names, in canonical order."""
    return [cls.name for cls in registered_transforms()]


def default_transform_names() -> list[str]:
    """The transforms `optimize_graph` runs when none are named, in canonical order."""
    return [cls.name for cls in registered_transforms() if cls.enabled_by_default]


def get_transform(name: str) -> type[Transform]:
    """The transform class registered as `name`, or UserInputError listing the valid names."""
    if name not in _REGISTRY:
        raise UserInputError(
            f"Unknown transform {name!r}. Valid transforms, in the order they run: "
            f"{', '.join(transform_names())}."
        )
    return _REGISTRY[name]
