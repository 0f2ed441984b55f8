"""Kubernetes placement for one executor: node selectors, tolerations and resource quantities.

TFX's KubeflowV2DagRunner never writes the `platforms` document, so this module builds it
the way the kfp compiler does: a second YAML document

    platforms:
      kubernetes:
        deploymentSpec:
          executors:
            Benchmarker_executor:
              nodeSelector: {labels: {cloud.google.com/gke-accelerator: nvidia-l4}}
              tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]

KFP honours `nodeSelector` from backend 2.0 and `tolerations` from 2.1. kfp-kubernetes 1.0.0
has no `add_toleration`, so tolerations are written here in the backend's field names
(`tolerationSeconds` is an int64, hence a string in JSON).

Everything here is plain Python: no TFX, no kfp import at module level.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from components.common.errors import UserInputError

TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
DEFAULT_ACCELERATOR = "nvidia.com/gpu"

# Kubernetes label keys: optional DNS-subdomain prefix and '/', then a name of at most 63
# characters; values: at most 63 characters, alphanumeric at both ends, or empty.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL_KEY_RE = re.compile(rf"^({_DNS_SUBDOMAIN}/)?{_LABEL_NAME}$")
_LABEL_VALUE_RE = re.compile(rf"^({_LABEL_NAME})?$")
_QUANTITY_RE = re.compile(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)([a-zA-Z]*)$")
_MEMORY_SUFFIXES = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
}


@dataclasses.dataclass(frozen=True)
class Toleration:
    """One Kubernetes toleration, as the KFP backend reads it from the PlatformSpec."""

    key: str
    effect: str
    operator: str = "Exists"  # "Equal" when a value is given.
    value: str = ""
    toleration_seconds: int | None = None  # Only meaningful with effect NoExecute.

    def to_platform_json(self) -> dict[str, Any]:
        """The PlatformSpec form: camelCase fields, tolerationSeconds as a string (int64)."""
        result: dict[str, Any] = {"key": self.key, "operator": self.operator}
        if self.value:
            result["value"] = self.value
        result["effect"] = self.effect
        if self.toleration_seconds is not None:
            result["tolerationSeconds"] = str(self.toleration_seconds)
        return result


@dataclasses.dataclass(frozen=True)
class SecretEnv:
    """One key of a Kubernetes Secret as an environment variable (`NAME=SECRET:KEY`)."""

    env_var: str
    secret_name: str
    secret_key: str


@dataclasses.dataclass(frozen=True)
class SecretVolume:
    """A Kubernetes Secret mounted as files (`SECRET:/path`)."""

    secret_name: str
    mount_path: str


@dataclasses.dataclass(frozen=True)
class PodCredentials:
    """What every executor's pod gets: secrets as env or files, and image pull secrets."""

    secret_env: tuple[SecretEnv, ...] = ()
    secret_volumes: tuple[SecretVolume, ...] = ()
    image_pull_secrets: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.secret_env or self.secret_volumes or self.image_pull_secrets)


@dataclasses.dataclass(frozen=True)
class ExecutorPlacement:
    """Where one executor's pod may run (node selector labels, tolerations) and the
    credentials it gets."""

    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    credentials: PodCredentials = PodCredentials()

    def is_empty(self) -> bool:
        return not self.node_selector and not self.tolerations and self.credentials.is_empty()


# Kubernetes object names (RFC 1123 subdomain) and POSIX-style environment variable names.
_SECRET_NAME_RE = re.compile(rf"^{_DNS_SUBDOMAIN}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_KEY_RE = re.compile(r"^[-._A-Za-z0-9]+$")


def check_secret_name(name: str, flag: str) -> str:
    if len(name) > 253 or not _SECRET_NAME_RE.match(name):
        raise UserInputError(
            f"{flag}: {name!r} is not a Kubernetes Secret name: lower-case letters, digits, "
            "'-' and '.', starting and ending with a letter or digit."
        )
    return name


def check_env_name(name: str, flag: str) -> str:
    if not _ENV_NAME_RE.match(name):
        raise UserInputError(
            f"{flag}: {name!r} is not an environment variable name: letters, digits and "
            "'_', not starting with a digit (e.g. AWS_ACCESS_KEY_ID)."
        )
    return name


def parse_env(text: str) -> tuple[str, str]:
    """`NAME=VALUE` -> (name, value): a plain environment variable for every step."""
    name, sep, value = text.partition("=")
    if not sep:
        raise UserInputError(f"--env {text!r} is not NAME=VALUE, e.g. --env AWS_REGION=eu-west-1.")
    return check_env_name(name.strip(), "--env"), value


def parse_secret_env(text: str) -> SecretEnv:
    """`NAME=SECRET:KEY` -> the Secret's KEY as the environment variable NAME."""
    name, sep, rest = text.partition("=")
    secret, colon, key = rest.partition(":")
    if not sep or not colon or not secret or not key:
        raise UserInputError(
            f"--secret-env {text!r} is not NAME=SECRET:KEY. Example: "
            "--secret-env AWS_ACCESS_KEY_ID=s3-credentials:access-key."
        )
    if not _SECRET_KEY_RE.match(key.strip()):
        raise UserInputError(
            f"--secret-env {text!r}: {key!r} is not a Secret key (letters, digits, '-', '_', '.')."
        )
    return SecretEnv(
        check_env_name(name.strip(), "--secret-env"),
        check_secret_name(secret.strip(), "--secret-env"),
        key.strip(),
    )


def parse_secret_volume(text: str) -> SecretVolume:
    """`SECRET:/path` -> the Secret's keys as files under /path."""
    secret, sep, path = text.partition(":")
    if not sep or not path.startswith("/"):
        raise UserInputError(
            f"--secret-volume {text!r} is not SECRET:/ABSOLUTE/PATH. Example: "
            "--secret-volume gcs-key:/var/secrets/google."
        )
    return SecretVolume(
        check_secret_name(secret.strip(), "--secret-volume"), path.rstrip("/") or "/"
    )


def parse_node_selector(text: str) -> tuple[str, str]:
    """`KEY=VALUE` -> (key, value), both checked against Kubernetes label syntax."""
    key, sep, value = text.partition("=")
    if not sep:
        raise UserInputError(
            f"Node selector {text!r} has no '='. Write it as KEY=VALUE, for example "
            "--gpu-node-selector cloud.google.com/gke-accelerator=nvidia-l4."
        )
    return check_label(key.strip(), value.strip())


def check_label(key: str, value: str) -> tuple[str, str]:
    """Refuses label keys and values Kubernetes would reject, naming the rule."""
    if not _LABEL_KEY_RE.match(key):
        raise UserInputError(
            f"Node selector key {key!r} is not a valid Kubernetes label key: an optional "
            "DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit."
        )
    if not _LABEL_VALUE_RE.match(value):
        raise UserInputError(
            f"Node selector value {value!r} (key {key!r}) is not a valid Kubernetes label "
            "value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a "
            "letter or digit."
        )
    return key, value


def parse_toleration(text: str) -> Toleration:
    """`KEY[=VALUE]:EFFECT` -> Toleration (operator Equal with a value, else Exists)."""
    body, sep, effect = text.rpartition(":")
    if not sep or not body:
        raise UserInputError(
            f"Toleration {text!r} is not KEY[=VALUE]:EFFECT. Example: "
            "--gpu-toleration nvidia.com/gpu:NoSchedule or "
            "--gpu-toleration dedicated=gpu:NoSchedule."
        )
    key, has_value, value = body.partition("=")
    return make_toleration(key.strip(), effect.strip(), value.strip() if has_value else None)


def make_toleration(
    key: str,
    effect: str,
    value: str | None = None,
    operator: str | None = None,
    toleration_seconds: int | None = None,
) -> Toleration:
    """A checked Toleration; `value=None` means operator Exists (any value)."""
    if effect not in TOLERATION_EFFECTS:
        raise UserInputError(
            f"Toleration effect {effect!r} (key {key!r}) is not one Kubernetes knows: use "
            f"one of {', '.join(TOLERATION_EFFECTS)}."
        )
    if not key:
        raise UserInputError(
            "A toleration needs a taint key, for example nvidia.com/gpu:NoSchedule; an empty "
            "key would tolerate every taint on the node."
        )
    check_label(key, value or "")
    operator = operator or ("Equal" if value else "Exists")
    if operator not in ("Equal", "Exists"):
        raise UserInputError(f"Toleration operator {operator!r} must be Equal or Exists.")
    if operator == "Exists" and value:
        raise UserInputError(
            f"Toleration {key!r} has operator Exists and a value {value!r}; drop the value or "
            "use operator Equal."
        )
    if toleration_seconds is not None:
        if effect != "NoExecute":
            raise UserInputError(
                f"Toleration {key!r}: toleration_seconds only applies to effect NoExecute."
            )
        if int(toleration_seconds) < 0:
            raise UserInputError(f"Toleration {key!r}: toleration_seconds must be >= 0.")
        toleration_seconds = int(toleration_seconds)
    return Toleration(key, effect, operator, value or "", toleration_seconds)


def parse_cpu(text: str | float | int, what: str = "CPU") -> float:
    """A Kubernetes CPU quantity (`2`, `1.5`, `500m`) in cores, as KFP's ResourceSpec wants."""
    raw = str(text).strip()
    match = _QUANTITY_RE.match(raw)
    if not match or match.group(3) not in ("", "m"):
        raise UserInputError(
            f"{what} {raw!r} is not a CPU quantity: use cores (2, 1.5) or millicores (500m)."
        )
    cores = float(match.group(1)) / (1000 if match.group(3) == "m" else 1)
    if cores <= 0:
        raise UserInputError(f"{what} {raw!r} must be more than zero.")
    return round(cores, 3)


def parse_memory_gb(text: str | float | int, what: str = "memory") -> float:
    """A Kubernetes memory quantity (`16Gi`, `512Mi`, `8G`) in decimal GB.

    KFP's ResourceSpec stores memory as a number the backend renders as `<n>G`, so binary
    units are converted exactly (16Gi = 17.179869184 G).
    """
    raw = str(text).strip()
    match = _QUANTITY_RE.match(raw)
    suffix = match.group(3) if match else None
    if not match or suffix not in _MEMORY_SUFFIXES:
        raise UserInputError(
            f"{what.capitalize()} {raw!r} is not a memory quantity: use a number with one of "
            "the Kubernetes suffixes Ki, Mi, Gi, Ti (binary) or k, M, G, T (decimal), e.g. 16Gi."
        )
    gigabytes = float(match.group(1)) * _MEMORY_SUFFIXES[suffix] / 10**9
    if gigabytes <= 0:
        raise UserInputError(f"{what.capitalize()} {raw!r} must be more than zero.")
    return round(gigabytes, 9)  # Byte precision; avoids float noise like 0.30000000000000004.


def platform_spec_document(placements: Mapping[str, ExecutorPlacement]) -> dict[str, Any]:
    """The second YAML document: `platforms.kubernetes.deploymentSpec.executors.<label>`.

    Secrets are written through kfp-kubernetes' own message, in the form its
    `use_secret_as_env` and `use_secret_as_volume` give; image pull secrets, which its
    1.0.0 proto lacks, in the KFP backend's field names (`imagePullSecret`, from 2.1), as
    `kfp.kubernetes.set_image_pull_secrets` writes them in later releases.
    Returns {} when no executor has any placement, so the package then has no PlatformSpec.
    """
    from google.protobuf import json_format
    from kfp.kubernetes import kubernetes_executor_config_pb2

    executors: dict[str, Any] = {}
    for label, placement in sorted(placements.items()):
        if placement.is_empty():
            continue
        # Built through kfp-kubernetes' own message, so field names match its schema;
        # tolerations are missing from kfp-kubernetes 1.0.0's proto and added as JSON.
        message = kubernetes_executor_config_pb2.KubernetesExecutorConfig()
        message.node_selector.labels.update(dict(placement.node_selector))
        credentials = placement.credentials
        by_secret: dict[str, list[SecretEnv]] = {}
        for item in credentials.secret_env:
            by_secret.setdefault(item.secret_name, []).append(item)
        for secret_name, items in by_secret.items():
            entry = message.secret_as_env.add(secret_name=secret_name)
            for item in items:
                entry.key_to_env.add(secret_key=item.secret_key, env_var=item.env_var)
        for volume in credentials.secret_volumes:
            message.secret_as_volume.add(
                secret_name=volume.secret_name, mount_path=volume.mount_path
            )
        config = json_format.MessageToDict(message)
        if placement.tolerations:
            config["tolerations"] = [t.to_platform_json() for t in placement.tolerations]
        if credentials.image_pull_secrets:
            config["imagePullSecret"] = [
                {"secretName": name} for name in credentials.image_pull_secrets
            ]
        executors[label] = config
    if not executors:
        return {}
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def tolerations_from_json(items: Iterable[Mapping[str, Any]]) -> tuple[Toleration, ...]:
    """Reads PlatformSpec toleration dicts back (used by tests and package checks)."""
    result = []
    for item in items:
        seconds = item.get("tolerationSeconds")
        result.append(
            Toleration(
                key=item.get("key", ""),
                effect=item.get("effect", ""),
                operator=item.get("operator", "Exists"),
                value=item.get("value", ""),
                toleration_seconds=int(seconds) if seconds is not None else None,
            )
        )
    return tuple(result)
