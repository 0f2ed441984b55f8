"""The RuntimeConverter's modes: a frozen graph converted for another runtime.

    mode = get_mode("openvino_int8")
    outcome = mode.run(graph_dir, signature, calibration, output_dir, settings)

A mode is one class registered with `@register_mode` in a module of this package;
every module here is imported when the registry is first read, so adding a runtime's
modes is one module (plus the runtime's module in components/runtimes/). Each mode is
also a variant kind (components/variant_kinds.py): its `name` is the kind's name, the
Benchmarker's input key and the report's row.

`graph_dir` holds `graph.pb` and `signature.json` (a FrozenGraph artifact: the model
core, after a serialized-Example split). `calibration` holds one array per signature
input, read from the calibration split exactly as the Quantizer reads it, or None for
modes that do not calibrate. A mode writes its files into `output_dir` and returns the
facts its artifact records; it raises when it cannot convert the model, and the
executor publishes a failed variant with the reason. Conversions run in a process of
their own (components/common/isolation.py): converters may abort the process, and a
conversion's memory is returned only when its process ends.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import pkgutil
from typing import Any

import numpy as np

from components.common.calibration import DEFAULT_NUM_CALIBRATION
from components.common.errors import UserInputError
from components.common.int8_fallback import Int8SearchSettings
from components.common.signature import GraphSignature

PRODUCER = "RuntimeConverter"
ARTIFACT_TYPE = "ConvertedModel"


@dataclasses.dataclass(frozen=True)
class ConvertSettings:
    """Knobs shared by the modes; each mode reads the ones it needs."""

    num_calibration: int = DEFAULT_NUM_CALIBRATION
    timeout_s: float = 1800.0
    # The accuracy-aware modes' search (common/int8_fallback.py).
    int8_search: Int8SearchSettings = dataclasses.field(default_factory=Int8SearchSettings)

    def __post_init__(self) -> None:
        if self.num_calibration < 1:
            raise UserInputError(f"num_calibration must be at least 1, got {self.num_calibration}")
        if self.timeout_s <= 0:
            raise UserInputError(f"timeout_s must be positive, got {self.timeout_s}")


@dataclasses.dataclass
class ConversionOutcome:
    """What a mode produced: the artifact format and the facts to record."""

    model_format: str
    size_bytes: int
    calibration_samples: int = 0
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)


class ConvertMode(abc.ABC):
    """One conversion mode (and variant kind)."""

    name: str = ""
    model_format: str = ""
    needs_calibration: bool = False
    #: Scores its work on held-out labelled examples (the accuracy-aware modes): `run`
    #: then takes `held_out=` (common/held_out.py), and `settings.int8_search` is set.
    needs_held_out: bool = False
    #: The activation-range methods its quantizer offers (int8_fallback.CALIBRATION_METHODS).
    calibration_methods: tuple[str, ...] = ("minmax",)
    description: str = ""
    #: The optional package the mode needs, and the setup.py extra that installs it.
    required_module: str = ""
    extra: str = ""
    #: The mode applies only where the CPU has at least one of these /proc/cpuinfo flags.
    cpu_any_of: tuple[str, ...] = ()
    #: Why those flags (shown when the kind is skipped).
    hardware_note: str = ""
    #: False: built only when asked for by name (the peers' reference kinds).
    default: bool = True

    @property
    def variant_name(self) -> str:
        return self.name

    @abc.abstractmethod
    def run(
        self,
        graph_dir: str,
        signature: GraphSignature,
        calibration: list[np.ndarray] | None,
        output_dir: str,
        settings: ConvertSettings,
    ) -> ConversionOutcome:
        """Converts the graph in `graph_dir` into `output_dir`."""


_MODES: dict[str, ConvertMode] = {}
_INFRASTRUCTURE = {"modes", "component", "executor"}
_loaded = False


def register_mode(cls: type[ConvertMode]) -> type[ConvertMode]:
    """Class decorator adding a mode to the registry; a second `name` is an error."""
    if not cls.name or not cls.model_format:
        raise ValueError(f"{cls.__name__} must set name and model_format")
    if cls.name in _MODES:
        raise ValueError(f"conversion mode {cls.name!r} registered twice")
    _MODES[cls.name] = cls()
    return cls


def _load_mode_modules() -> None:
    global _loaded
    if _loaded:
        return
    package = importlib.import_module("components.runtime_converter")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _INFRASTRUCTURE and not module.name.startswith("_"):
            importlib.import_module(f"components.runtime_converter.{module.name}")
    _loaded = True


def mode_names() -> list[str]:
    _load_mode_modules()
    return list(_MODES)


def get_mode(name: str) -> ConvertMode:
    _load_mode_modules()
    try:
        return _MODES[name]
    except KeyError:
        raise UserInputError(
            f"Unknown conversion mode {name!r}; choose from {', '.join(_MODES)}."
        ) from None


def variant_kinds() -> list:  # -> list[components.variant_kinds.VariantKind]
    """One variant kind per mode, in registry order."""
    from components.variant_kinds import VariantKind

    return [
        VariantKind(
            name=mode.name,
            producer=PRODUCER,
            mode=mode.name,
            artifact_type=ARTIFACT_TYPE,
            model_format=mode.model_format,
            output_key="converted_model",
            needs_calibration=mode.needs_calibration,
            description=mode.description,
            cpu_any_of=mode.cpu_any_of,
            hardware_note=mode.hardware_note,
            required_module=mode.required_module,
            extra=mode.extra,
            default=mode.default,
        )
        for mode in (get_mode(name) for name in mode_names())
    ]
