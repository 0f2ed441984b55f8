"""Compile settings for Kubeflow, from flags or a YAML file a team keeps in git.

Every flag of `inference-optimizer compile` has a key of the same name here (dashes become
underscores). Precedence: built-in defaults, then `--config FILE`, then flags. Unknown keys
are refused with the valid ones listed, so a typo never silently does nothing::

    # team.yaml
    image: registry.example.com/ml/tfx-inference-optimizer:0.1.0
    pipeline_root: gs://team-bucket/inference-optimizer
    model_uri: gs://team-bucket/models/resnet50/7
    examples_uri: gs://team-bucket/examples/resnet50-eval
    gpus: 1
    gpu_node_selector: {cloud.google.com/gke-accelerator: nvidia-l4}
    gpu_tolerations: ["nvidia.com/gpu:NoSchedule"]
    secret_env: ["AWS_ACCESS_KEY_ID=s3-credentials:access-key"]
    image_pull_secrets: [registry-credentials]
    env: {AWS_REGION: eu-west-1}
    benchmarker_cpu: 4
    benchmarker_memory: 16Gi
    cpu: 2
    memory: 8Gi
    settings: {objective: p50, max_accuracy_drop: 0.01, benchmark_settings: {time_budget_s: 60}}
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from components.common.errors import UserInputError
from components.version import __version__
from pipelines.kubeflow.platform_spec import (
    DEFAULT_ACCELERATOR,
    ExecutorPlacement,
    PodCredentials,
    SecretEnv,
    SecretVolume,
    Toleration,
    check_label,
    check_secret_name,
    make_toleration,
    parse_cpu,
    parse_env,
    parse_memory_gb,
    parse_node_selector,
    parse_secret_env,
    parse_secret_volume,
    parse_toleration,
)
from pipelines.pipeline import DEFAULT_PIPELINE_NAME, HARDWARE_EACH_NODE, PipelineSettings

DEFAULT_IMAGE = f"tfx-inference-optimizer:{__version__}"
DEFAULT_OUTPUT = "pipeline.yaml"
DEFAULT_VERTEX_OUTPUT = "pipeline.json"
# The Dockerfile bakes the embedded default (digits CNN and its eval Examples) in here, so a
# package compiled without --model-uri/--examples-uri runs the demo on the cluster.
IMAGE_DEMO_DIR = "/opt/tfx-inference-optimizer/demo"
PIPELINE_ROOT_SCHEMES = ("gs://", "s3://")


@dataclasses.dataclass(frozen=True)
class CompileSettings:
    """Everything `compile` needs; the defaults compile a runnable CPU-only package."""

    output: str = DEFAULT_OUTPUT
    # kubeflow: a KFP v2 YAML package (PipelineSpec + Kubernetes PlatformSpec);
    # vertex: a Vertex AI PipelineJob JSON (vertex.py).
    target: str = "kubeflow"
    image: str = DEFAULT_IMAGE
    pipeline_name: str = DEFAULT_PIPELINE_NAME
    pipeline_root: str = ""  # "" = pass it at submit time (`--pipeline-root`).
    model_uri: str = ""  # "" = the embedded default baked into the image.
    examples_uri: str = ""
    gpu_node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    gpu_tolerations: tuple[Toleration, ...] = ()
    gpus: int = 0
    accelerator: str = DEFAULT_ACCELERATOR
    gpu_type: str = ""  # Vertex's accelerator name, e.g. NVIDIA_L4 (--target vertex)
    machine_type: str = ""  # e.g. g2-standard-8: the Benchmarker's limits on Vertex
    benchmarker_cpu: float | None = None  # cores
    benchmarker_memory_gb: float | None = None  # decimal GB, as KFP's ResourceSpec wants
    cpu: float | None = None  # every other container step
    memory_gb: float | None = None
    enable_cache: bool = True
    time_budget_s: float | None = None
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # PipelineSettings
    # On every step's container: plain variables (both targets), and on Kubeflow the
    # Secrets as variables or files and the registry credentials to pull the image.
    env: tuple[tuple[str, str], ...] = ()
    secret_env: tuple[SecretEnv, ...] = ()
    secret_volumes: tuple[SecretVolume, ...] = ()
    image_pull_secrets: tuple[str, ...] = ()

    def pod_credentials(self) -> PodCredentials:
        return PodCredentials(
            tuple(self.secret_env), tuple(self.secret_volumes), tuple(self.image_pull_secrets)
        )

    def benchmarker_resources(self) -> tuple[float | None, float | None, str]:
        """(CPU, memory GB, accelerator) of the Benchmarker: on Vertex, --machine-type's
        limits and --gpu-type; on Kubeflow, the flags and the Kubernetes resource name."""
        from pipelines.kubeflow.vertex import TARGET_VERTEX, benchmarker_limits

        if self.target == TARGET_VERTEX:
            return (*benchmarker_limits(self), self.gpu_type)
        return self.benchmarker_cpu, self.benchmarker_memory_gb, self.accelerator

    def benchmarker_placement(self) -> ExecutorPlacement:
        return ExecutorPlacement(
            dict(self.gpu_node_selector), tuple(self.gpu_tolerations), self.pod_credentials()
        )

    def step_placement(self) -> ExecutorPlacement:
        """Every other step's pod: the credentials only."""
        return ExecutorPlacement(credentials=self.pod_credentials())

    def default_model_uri(self) -> str:
        return self.model_uri or _image_demo_uris()[0]

    def default_examples_uri(self) -> str:
        return self.examples_uri or _image_demo_uris()[1]

    def pipeline_settings(self) -> PipelineSettings:
        """The shared pipeline's settings; with GPUs the Benchmarker times on `GPU:0`."""
        values = dict(self.settings)
        benchmark = dict(values.get("benchmark_settings") or {})
        if self.time_budget_s is not None:
            benchmark["time_budget_s"] = self.time_budget_s
        if self.gpus > 0:
            # Without this the Benchmarker would time the CPU of a GPU node.
            benchmark.setdefault("device", "GPU:0")
        values["benchmark_settings"] = benchmark
        # XlaCompiler and Benchmarker pods may land on different node types, so AOT
        # code must not assume the compiling node's CPU features.
        values.setdefault("xla_target_cpu", "generic")
        # The compiling machine is not where the producers run: each decides on its node
        # whether its kind applies (e.g. bf16), and publishes a skipped variant if not.
        values.setdefault("hardware", HARDWARE_EACH_NODE)
        return PipelineSettings.from_json(values)


def _image_demo_uris() -> tuple[str, str]:
    # Imported here: embedded_default pulls in numpy, and `--help` must stay fast.
    from pipelines.embedded_default import EMBEDDED_DEFAULT_VERSION

    root = f"{IMAGE_DEMO_DIR}/embedded_default-{EMBEDDED_DEFAULT_VERSION}"
    return f"{root}/model", f"{root}/examples"


def check_pipeline_root(root: str) -> str:
    """Accepts gs:// and s3:// roots; explains why others cannot work with TFX executors."""
    root = root.strip()
    if root and not root.startswith(PIPELINE_ROOT_SCHEMES):
        raise UserInputError(
            f"Pipeline root {root!r} is not a gs:// or s3:// URI. TFX executors write their "
            "outputs straight to the artifact URI through tf.io.gfile, which cannot write "
            "KFP's default minio:// root or a path local to one pod. Pass --pipeline-root "
            "gs://BUCKET/PATH or s3://BUCKET/PATH."
        )
    return root.rstrip("/")


def _text(value: Any, key: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or str(value) == "":
        raise UserInputError(f"{key} must be a non-empty string, got {value!r}.")
    return str(value).strip()


def _count(value: Any, key: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = -1
    if isinstance(value, bool) or number < 0:
        raise UserInputError(f"{key} must be a whole number >= 0, got {value!r}.")
    return number


def _flag(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise UserInputError(f"{key} must be true or false, got {value!r}.")


def _seconds(value: Any, key: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(value, bool) or seconds <= 0:
        raise UserInputError(f"{key} must be a number of seconds > 0, got {value!r}.")
    return seconds


def _node_selector(value: Any, key: str) -> dict[str, str]:
    """A mapping {key: value}, or a list of KEY=VALUE strings (as the flag takes)."""
    if isinstance(value, Mapping):
        return dict(check_label(str(k), str(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return dict(parse_node_selector(str(item)) for item in value)
    raise UserInputError(
        f"{key} must be a mapping of label to value or a list of KEY=VALUE, got {value!r}."
    )


_TOLERATION_KEYS = {"key", "value", "effect", "operator", "toleration_seconds"}


def _tolerations(value: Any, key: str) -> tuple[Toleration, ...]:
    """A list of `KEY[=VALUE]:EFFECT` strings or {key, value, effect, operator, ...} maps."""
    if not isinstance(value, (list, tuple)):
        raise UserInputError(f"{key} must be a list, got {value!r}.")
    result = []
    for item in value:
        if isinstance(item, str):
            result.append(parse_toleration(item))
        elif isinstance(item, Mapping):
            unknown = sorted(set(item) - _TOLERATION_KEYS)
            if unknown or "key" not in item or "effect" not in item:
                raise UserInputError(
                    f"{key}: toleration {dict(item)!r} must have 'key' and 'effect' and only "
                    f"the keys {sorted(_TOLERATION_KEYS)}."
                )
            result.append(
                make_toleration(
                    str(item["key"]),
                    str(item["effect"]),
                    None if item.get("value") is None else str(item["value"]),
                    item.get("operator"),
                    item.get("toleration_seconds"),
                )
            )
        else:
            raise UserInputError(f"{key}: toleration {item!r} must be a string or a mapping.")
    return tuple(result)


def _items(parse: Callable[[str], Any]) -> Callable[[Any, str], tuple[Any, ...]]:
    """A list of strings (as the repeatable flags give), each parsed; duplicates refused."""

    def parser(value: Any, key: str) -> tuple[Any, ...]:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise UserInputError(f"{key} must be a list of strings, got {value!r}.")
        parsed = tuple(parse(str(item)) for item in value)
        if len(set(parsed)) != len(parsed):
            raise UserInputError(f"{key} lists the same entry twice: {list(value)!r}.")
        return parsed

    return parser


def _env_items(value: Any, key: str) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):  # A config file may write {NAME: VALUE}.
        value = [f"{k}={v}" for k, v in value.items()]
    items = _items(parse_env)(value, key)
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise UserInputError(f"{key} sets the same variable twice: {names!r}.")
    return items


_SETTINGS_FIELDS = {f.name for f in dataclasses.fields(PipelineSettings)}


def _pipeline_settings(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise UserInputError(f"{key} must be a mapping of pipeline settings, got {value!r}.")
    unknown = sorted(set(value) - _SETTINGS_FIELDS)
    if unknown:
        raise UserInputError(
            f"Unknown pipeline settings {unknown} under '{key}'; valid: {sorted(_SETTINGS_FIELDS)}."
        )
    return dict(value)


# Config key -> (CompileSettings field, parser). Flags go through the same parsers.
def _target(value: Any, key: str) -> str:
    from pipelines.kubeflow.vertex import TARGETS

    target = _text(value, key).lower()
    if target not in TARGETS:
        raise UserInputError(f"{key} must be one of {', '.join(TARGETS)}, got {value!r}.")
    return target


def _gpu_type(value: Any, key: str) -> str:
    from pipelines.kubeflow.vertex import check_gpu_type

    return check_gpu_type(_text(value, key))


def _machine_type(value: Any, key: str) -> str:
    from pipelines.kubeflow.vertex import machine_shape

    return machine_shape(_text(value, key)).name


_KEYS: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
    "output": ("output", _text),
    "target": ("target", _target),
    "image": ("image", _text),
    "pipeline_name": ("pipeline_name", _text),
    "pipeline_root": ("pipeline_root", lambda v, k: check_pipeline_root(_text(v, k))),
    "model_uri": ("model_uri", _text),
    "examples_uri": ("examples_uri", _text),
    "gpu_node_selector": ("gpu_node_selector", _node_selector),
    "gpu_tolerations": ("gpu_tolerations", _tolerations),
    "gpus": ("gpus", _count),
    "accelerator": ("accelerator", _text),
    "gpu_type": ("gpu_type", _gpu_type),
    "machine_type": ("machine_type", _machine_type),
    "benchmarker_cpu": ("benchmarker_cpu", lambda v, k: parse_cpu(v, k)),
    "benchmarker_memory": ("benchmarker_memory_gb", lambda v, k: parse_memory_gb(v, k)),
    "cpu": ("cpu", lambda v, k: parse_cpu(v, k)),
    "memory": ("memory_gb", lambda v, k: parse_memory_gb(v, k)),
    "enable_cache": ("enable_cache", _flag),
    "time_budget": ("time_budget_s", _seconds),
    "settings": ("settings", _pipeline_settings),
    "env": ("env", _env_items),
    "secret_env": ("secret_env", _items(parse_secret_env)),
    "secret_volumes": ("secret_volumes", _items(parse_secret_volume)),
    "image_pull_secrets": (
        "image_pull_secrets",
        _items(lambda name: check_secret_name(name.strip(), "--image-pull-secret")),
    ),
}
CONFIG_KEYS = tuple(_KEYS)


def parse_values(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Config keys -> CompileSettings fields, each value checked; unknown keys refused."""
    unknown = sorted(set(values) - set(_KEYS))
    if unknown:
        raise UserInputError(
            f"Unknown key(s) {unknown} in {source}. Valid keys: {', '.join(CONFIG_KEYS)}."
        )
    fields: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        field, parser = _KEYS[key]
        try:
            fields[field] = parser(value, key)
        except UserInputError as error:
            raise UserInputError(f"{source}: {error}") from None
    return fields


def load_config_file(path: str) -> dict[str, Any]:
    """Reads a YAML mapping of config keys; the error names the file and the problem."""
    import yaml

    if not os.path.isfile(path):
        raise UserInputError(
            f"Config file {path!r} does not exist. Pass --config a YAML file of compile "
            f"settings (keys: {', '.join(CONFIG_KEYS)})."
        )
    with open(path, encoding="utf-8") as f:
        try:
            values = yaml.safe_load(f)
        except yaml.YAMLError as error:
            raise UserInputError(f"Config file {path!r} is not valid YAML: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise UserInputError(
            f"Config file {path!r} must hold a mapping of settings (key: value), "
            f"not a {type(values).__name__}."
        )
    return parse_values(values, f"config file {path!r}")


def build_settings(
    config_path: str | None = None, overrides: Mapping[str, Any] | None = None
) -> CompileSettings:
    """Defaults, then the config file, then `overrides` (config keys; None = not given)."""
    fields: dict[str, Any] = {}
    if config_path:
        fields.update(load_config_file(config_path))
    fields.update(parse_values(overrides or {}, "the command line"))
    from pipelines.kubeflow.vertex import TARGET_VERTEX, check_vertex_settings

    if fields.get("target") == TARGET_VERTEX and "output" not in fields:
        fields["output"] = DEFAULT_VERTEX_OUTPUT
    settings = CompileSettings(**fields)
    if settings.target == TARGET_VERTEX:
        check_vertex_settings(settings)
        return settings
    if settings.gpu_type or settings.machine_type:
        raise UserInputError(
            "--gpu-type and --machine-type are Vertex AI's terms (--target vertex). On "
            "Kubeflow, request GPUs with --gpus and --accelerator, and place the Benchmarker "
            "with --gpu-node-selector and --gpu-toleration."
        )
    if settings.gpus > 0 and not settings.accelerator:
        raise UserInputError("--gpus needs an --accelerator resource name, e.g. nvidia.com/gpu.")
    return settings
