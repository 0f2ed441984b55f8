"""A content fingerprint of an input folder, so a model re-exported in place is a new input.

TFX's Importer registers an artifact per URI and reuses it while the URI and the given
properties match; TFX's cache then keys on that artifact. A model overwritten in the
same folder would therefore get the old artifact, the old cached Freezer output and
the old numbers and blessing. Passing this fingerprint as the importers' custom
properties makes changed contents a new artifact and a cache miss downstream (the
Importer compares custom properties: tfx/dsl/components/common/importer.py).

    fingerprint = fingerprint_input("/models/resnet/7", cache_path=cache_path_for("runs/x"))
    fingerprint.describe()
    # 'num_files:4,total_bytes:107374182,xor_checksum:1764..,sum_checksum:7058..,sha256:9f2c..'

The first four fields are TFX ExampleGen's `input_fingerprint` (tfx/utils/io_utils.py,
mtimes in whole seconds); `sha256` hashes, file by file in sorted order, each relative
path, size, mtime (ns) and the file's contents, read in 1 MiB chunks. A second digest,
`content_sha256`, leaves the mtimes out, so `lineage diff` can tell "the same bytes,
touched" from "different bytes".

Cost: every byte is read once. On a multi-GB model that is seconds per run, so a small
JSON cache (in the run's output directory) keeps each file's content digest under its
(path, size, mtime_ns); a file whose three are unchanged is not read again. The risk
accepted: a file rewritten with the same size and the very same nanosecond mtime would
be missed; `run --no-cache` re-reads everything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

FINGERPRINT_PROPERTY = "input_fingerprint"
CONTENT_SHA256_PROPERTY = "input_content_sha256"
CACHE_FILENAME = ".input_fingerprints.json"
_CHUNK_BYTES = 1 << 20
_CACHE_VERSION = 1
_NANOS_PER_SECOND = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class FileFacts:
    relative_path: str
    size: int
    mtime_ns: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class InputFingerprint:
    num_files: int
    total_bytes: int
    xor_checksum: int
    sum_checksum: int
    sha256: str
    content_sha256: str

    def describe(self) -> str:
        """TFX ExampleGen's fingerprint fields, then the sha256 of paths, sizes, mtimes, bytes."""
        return (
            f"num_files:{self.num_files},total_bytes:{self.total_bytes},"
            f"xor_checksum:{self.xor_checksum},sum_checksum:{self.sum_checksum},"
            f"sha256:{self.sha256}"
        )

    def custom_properties(self) -> dict[str, str]:
        """What the importers attach to their artifact (strings: the Importer's rule)."""
        return {FINGERPRINT_PROPERTY: self.describe(), CONTENT_SHA256_PROPERTY: self.content_sha256}


def fingerprint_input(uri: str, cache_path: str | None = None) -> InputFingerprint:
    """Fingerprints every file under `uri` (a folder, or one file such as model.keras).

    `cache_path` names the JSON cache of per-file digests (None: read every byte). A
    missing `uri` gives the fingerprint of no files: saying that it is missing is the
    Freezer's job (and the CLI's pre-flight check's), with a better message.
    """
    files = sorted(_list_files(uri))
    cache = _read_cache(cache_path)
    facts = {path: _file_facts(relative, path, cache) for relative, path in files}
    if cache_path:
        _write_cache(cache_path, uri, facts, cache)
    return combine(facts.values())


def combine(facts: Iterable[FileFacts]) -> InputFingerprint:
    """The fingerprint of files already described (sorted by relative path)."""
    facts = sorted(facts, key=lambda f: f.relative_path)
    full, content = hashlib.sha256(), hashlib.sha256()
    xor_checksum = sum_checksum = 0
    for fact in facts:
        seconds = fact.mtime_ns // _NANOS_PER_SECOND  # As TFX: whole seconds.
        xor_checksum ^= seconds
        sum_checksum += seconds
        # NUL-separated fields: no path can contain NUL, so no two listings collide.
        content.update(f"{fact.relative_path}\0{fact.size}\0{fact.sha256}\0".encode())
        full.update(f"{fact.relative_path}\0{fact.size}\0{fact.mtime_ns}\0{fact.sha256}\0".encode())
    return InputFingerprint(
        num_files=len(facts),
        total_bytes=sum(f.size for f in facts),
        xor_checksum=xor_checksum,
        sum_checksum=sum_checksum,
        sha256=full.hexdigest(),
        content_sha256=content.hexdigest(),
    )


def cache_path_for(output_dir: str) -> str:
    return os.path.join(output_dir, CACHE_FILENAME)


# ------------------------------------------------------------------------------ helpers


def _is_remote(uri: str) -> bool:
    return "://" in uri


def _list_files(uri: str) -> list[tuple[str, str]]:
    """(path relative to `uri`, full path) of every regular file under `uri`."""
    if _is_remote(uri):
        import tensorflow as tf  # Only for gs://, s3://, ...: tf.io.gfile reads them.

        if not tf.io.gfile.exists(uri):
            return []
        if not tf.io.gfile.isdir(uri):
            return [(_basename(uri), uri)]
        root = uri.rstrip("/")
        return [
            (f"{folder.rstrip('/')}/{name}"[len(root) + 1 :], f"{folder.rstrip('/')}/{name}")
            for folder, _, names in tf.io.gfile.walk(uri)
            for name in names
        ]
    if os.path.isfile(uri):
        return [(_basename(uri), uri)]
    found = []
    for folder, _, names in os.walk(uri):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path):  # Not dangling links, sockets, ...
                found.append((os.path.relpath(path, uri), path))
    return found


def _basename(uri: str) -> str:
    return os.path.basename(uri.rstrip("/"))


def _stat(path: str) -> tuple[int, int]:
    if _is_remote(path):
        import tensorflow as tf

        stat = tf.io.gfile.stat(path)
        return int(stat.length), int(stat.mtime_nsec)
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _content_sha256(path: str) -> str:
    digest = hashlib.sha256()
    if _is_remote(path):
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "rb") as f:
            while chunk := f.read(_CHUNK_BYTES):
                digest.update(chunk)
        return digest.hexdigest()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _file_facts(relative: str, path: str, cache: dict[str, Any]) -> FileFacts:
    size, mtime_ns = _stat(path)
    cached = cache.get(path)
    if cached and cached.get("size") == size and cached.get("mtime_ns") == mtime_ns:
        digest = str(cached["sha256"])
    else:
        digest = _content_sha256(path)
    return FileFacts(relative, size, mtime_ns, digest)


def _read_cache(cache_path: str | None) -> dict[str, Any]:
    if not cache_path or not os.path.exists(cache_path):
        return {}
    try:
        with open(cache_path, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, ValueError):
        return {}  # A damaged cache only costs a re-read.
    if document.get("version") != _CACHE_VERSION:
        return {}
    return dict(document.get("files") or {})


def _write_cache(
    cache_path: str, uri: str, facts: dict[str, FileFacts], cache: dict[str, Any]
) -> None:
    """Replaces `uri`'s entries (files removed since drop out); others are kept."""
    prefix = uri.rstrip("/") + "/"
    entries = {p: v for p, v in cache.items() if p != uri and not p.startswith(prefix)}
    for path, fact in facts.items():
        entries[path] = {"size": fact.size, "mtime_ns": fact.mtime_ns, "sha256": fact.sha256}
    partial = f"{cache_path}.{os.getpid()}.tmp"
    try:
        with open(partial, "w", encoding="utf-8") as f:
            json.dump({"version": _CACHE_VERSION, "files": entries}, f)
        os.replace(partial, cache_path)  # Readers see the old cache or the new, never half.
    except OSError:
        # Only an optimisation (e.g. the disk is full): the next run reads the bytes again.
        with contextlib.suppress(OSError):
            os.remove(partial)
