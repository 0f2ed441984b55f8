"""Variant kinds: every model variant the pipeline can produce, and what produces it.

A kind is one row of the benchmark table. It declares its producer (a component and
its mode), its artifact type, its runtime format, whether it calibrates on real
examples, and where it applies (CPU flags, an optional runtime package). From this
registry come:

  * the pipeline's producer instances and the Benchmarker's input keys
    (pipelines/pipeline.py, components/benchmarker/component.py);
  * the CLI's `--variants` choices and help (pipelines/run_command.py);
  * the default set on this machine: kinds whose hardware or runtime is missing are
    skipped, and the table says why (`default_kinds`, `unavailable_reason`).

Producers declare their kinds beside their modes (components/quantizer/modes.py,
components/xla_compiler/modes.py, components/runtime_converter/modes.py), so adding a
mode to a producer adds its kind here with no other change. Names are unique across
producers; a second kind of one name is refused.

Nothing here imports TensorFlow or TFX: the CLI reads the registry to build `--help`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterable

from components.common.cpu_facts import CpuFacts

# The modules whose `variant_kinds()` declare the producers' kinds, in table order.
_KIND_SOURCES = (
    "components.variant_kinds",  # The spine: the Freezer's frozen graph (below).
    "components.inference_optimizer.modes",
    "components.quantizer.modes",
    "components.xla_compiler.modes",
    "components.runtime_converter.modes",
)


@dataclasses.dataclass(frozen=True)
class VariantKind:
    """One kind of variant: its producer, artifact, format and where it applies."""

    name: str  # The row name and the Benchmarker's input key, e.g. "openvino_int8".
    producer: str  # The component class, e.g. "Quantizer".
    mode: str  # The producer's mode ("" for a single-mode producer).
    artifact_type: str  # A class name in components.artifacts.
    model_format: str  # The runtime format (components/runtimes/).
    output_key: str  # The producer's output key.
    needs_calibration: bool = False
    description: str = ""
    #: The kind applies only where the CPU has at least one of these cpuinfo flags.
    cpu_any_of: tuple[str, ...] = ()
    hardware_note: str = ""  # Why those flags, for the skip reason.
    #: An optional runtime package the kind needs, and the setup.py extra installing it.
    required_module: str = ""
    extra: str = ""
    #: False: built only when asked for by name (e.g. kinds that are slow to build).
    default: bool = True
    #: True for the kinds every pipeline has (the Freezer's frozen graph).
    always: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.producer or not self.artifact_type:
            raise ValueError(f"a variant kind needs a name, producer and artifact type: {self}")
        if bool(self.required_module) != bool(self.extra):
            raise ValueError(f"kind {self.name!r}: required_module and extra go together")

    @property
    def component_id(self) -> str:
        """The producer instance's id in the pipeline, e.g. `Quantizer_int8`."""
        return f"{self.producer}_{self.mode}" if self.mode else self.producer

    def unavailable_reason(self, cpu: CpuFacts | None) -> str:
        """'' when the kind can run here, else why not (`cpu` None: the CPU is unknown,
        as when compiling for Kubeflow; the producer then decides on its node)."""
        if self.required_module:
            from components.runtimes.base import missing_runtime

            missing = missing_runtime(self.required_module, self.extra)
            if missing:
                return missing
        if cpu is not None and cpu.known and self.cpu_any_of and not cpu.has_any(self.cpu_any_of):
            need = " or ".join(self.cpu_any_of)
            note = f" ({self.hardware_note})" if self.hardware_note else ""
            return f"needs a CPU with {need}{note}; this one is {cpu.summary()}"
        return ""


def variant_kinds() -> list[VariantKind]:
    """The spine's kind: the Freezer's frozen graph, which every other kind starts from."""
    return [
        VariantKind(
            name="frozen_graph",
            producer="Freezer",
            mode="",
            artifact_type="FrozenGraph",
            model_format="graphdef",
            output_key="frozen_graph",
            description="the signature with variables folded into constants (TF, fp32)",
            always=True,
        ),
    ]


_KINDS: dict[str, VariantKind] | None = None


def _collect(sources: Iterable[str]) -> dict[str, VariantKind]:
    kinds: dict[str, VariantKind] = {}
    for source in sources:
        for kind in importlib.import_module(source).variant_kinds():
            if kind.name in kinds:
                raise ValueError(
                    f"variant kind {kind.name!r} declared twice: by {kinds[kind.name].producer} "
                    f"and by {kind.producer}"
                )
            kinds[kind.name] = kind
    return kinds


def all_kinds() -> list[VariantKind]:
    """Every kind, in table order."""
    global _KINDS
    if _KINDS is None:
        _KINDS = _collect(_KIND_SOURCES)
    return list(_KINDS.values())


def kind_names() -> list[str]:
    return [kind.name for kind in all_kinds()]


def selectable_kinds() -> list[VariantKind]:
    """The kinds `--variants` may name (the frozen graph is always built)."""
    return [kind for kind in all_kinds() if not kind.always]


def get_kind(name: str) -> VariantKind:
    for kind in all_kinds():
        if kind.name == name:
            return kind
    raise ValueError(f"unknown variant kind {name!r}; known: {', '.join(kind_names())}")


@dataclasses.dataclass(frozen=True)
class KindSelection:
    """The kinds a pipeline builds, and the ones it leaves out with the reason."""

    built: tuple[VariantKind, ...]
    skipped: dict[str, str]  # kind name -> why it does not apply here

    @property
    def built_names(self) -> tuple[str, ...]:
        return tuple(kind.name for kind in self.built)


def select_kinds(requested: Iterable[str] | None, cpu: CpuFacts | None) -> KindSelection:
    """The kinds to build: `requested` by name (None: the default set), on `cpu`.

    Kinds that cannot run on `cpu` or lack their runtime are skipped with the reason,
    whether requested or default, so that the table shows them. `cpu=None` (compiling
    for another machine) skips only for missing runtimes; hardware is decided by each
    producer on the node it runs on (it publishes a skipped variant).
    """
    if requested is None:
        wanted = [k for k in all_kinds() if k.always or k.default]
    else:
        names = list(dict.fromkeys(requested))
        unknown = [n for n in names if n not in kind_names()]
        if unknown:
            choices = ", ".join(k.name for k in selectable_kinds())
            raise ValueError(f"unknown variant kinds {unknown}; choose from: {choices}")
        wanted = [k for k in all_kinds() if k.always or k.name in names]
    built, skipped = [], {}
    for kind in wanted:
        reason = "" if kind.always else kind.unavailable_reason(cpu)
        if reason:
            skipped[kind.name] = reason
        else:
            built.append(kind)
    return KindSelection(tuple(built), skipped)


def unavailable_here(producer: str, mode: str) -> str:
    """'' when the kind `producer`/`mode` makes can run on this machine, else why not.

    Producers call this before they work: on Kubeflow the pipeline is compiled on another
    machine than the node a producer runs on, so only the node can tell.
    """
    from components.common.cpu_facts import host_cpu

    kind = next((k for k in all_kinds() if (k.producer, k.mode) == (producer, mode)), None)
    return kind.unavailable_reason(host_cpu()) if kind is not None else ""
