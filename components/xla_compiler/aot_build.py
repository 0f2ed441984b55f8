"""Building `libmodel.so`: tfcompile's object file, a C entry point and the XLA runtime.

The TF wheel ships the XLA AOT runtime as C++ sources (`tensorflow/xla_aot_runtime_src`,
whose CMakeLists builds all of them: about 6 minutes on 2 cores). A model needs only a
few: the core (`XlaCompiledCpuFunction` and what it calls) plus the Eigen kernels its
object file calls by name (`__xla_cpu_runtime_*`, e.g. `EigenSingleThreadedConv2DF32`).
So this compiles only those, with the CMakeLists' flags plus the target's `-march`, and
keeps each object in a cache keyed by the runtime sources, TF's version header, the
compiler and the flags. A first build of the digits CNN took 26 s on an idle 2-core
machine (75-110 s on a busy one; the AVX-512 Eigen convolution is most of it); later
builds reuse the objects and take 4-8 s (the per-model entry point and the link).

Cache layout (`runtime_cache_dir`, default $INFERENCE_OPTIMIZER_XLA_RUNTIME_CACHE or
~/.cache/inference_optimizer/xla_aot_runtime)::

    {cache}/{key}/xla/service/cpu/runtime_single_threaded_conv2d.o
    {cache}/{key}/tensorflow/compiler/tf2xla/xla_compiled_cpu_function.o
    ...
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable

from components.common.isolation import SHARED_TMPDIR_ENV
from components.runtimes.xla_aot import SHARED_LIBRARY_FILENAME
from components.xla_compiler.target import CpuTarget

RUNTIME_CACHE_ENV = "INFERENCE_OPTIMIZER_XLA_RUNTIME_CACHE"
ENTRY_SOURCE = os.path.join(os.path.dirname(__file__), "aot_runtime", "model_entry.cc")

# What every model links, whichever kernels it calls.
CORE_RUNTIME_SOURCES = (
    "tensorflow/compiler/tf2xla/xla_compiled_cpu_function.cc",
    "xla/cpu_function_runtime.cc",
    "xla/executable_run_options.cc",
    "xla/service/custom_call_status.cc",
    "xla/service/cpu/runtime_custom_call_status.cc",
)
# The flags of the wheel's xla_aot_runtime_src/CMakeLists.txt (Release), plus -std.
RUNTIME_CXXFLAGS = (
    "-O3",
    "-DNDEBUG",
    "-fPIC",
    "-std=c++17",
    "-ftemplate-backtrace-limit=0",
    "-Wno-ignored-attributes",
    "-Wno-deprecated-copy",
    "-Wno-cast-qual",
    "-Wno-sign-compare",
)
_RUNTIME_SYMBOL = re.compile(r"__xla_cpu_runtime_\w+")
# A definition, not a call: the name is not preceded by `return` on its line.
_RUNTIME_DEFINITION = re.compile(r"^(?![ \t]*return\b)[^/\n]*?\b(__xla_cpu_runtime_\w+)\(", re.M)
COMPILE_TIMEOUT_S = 900


class AotBuildError(RuntimeError):
    """The C++ toolchain failed to build the shared library (the message has its output)."""


@dataclasses.dataclass(frozen=True)
class SharedLibraryBuild:
    """What building `libmodel.so` did and took."""

    path: str
    build_time_s: float
    runtime_sources: tuple[str, ...]
    runtime_objects_built: int
    runtime_cache_dir: str
    compiler: str


def tensorflow_dir() -> str:
    """The installed `tensorflow` package folder, found without importing TensorFlow."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise AotBuildError("TensorFlow is not installed; XLA AOT needs its wheel.")
    return list(spec.submodule_search_locations)[0]


def runtime_source_dir() -> str:
    return os.path.join(tensorflow_dir(), "xla_aot_runtime_src")


def runtime_include_dir() -> str:
    return os.path.join(tensorflow_dir(), "include")


def default_runtime_cache_dir() -> str:
    """$INFERENCE_OPTIMIZER_XLA_RUNTIME_CACHE, else ~/.cache/..., else the temp folder."""
    configured = os.environ.get(RUNTIME_CACHE_ENV)
    if configured:
        return configured
    home_cache = os.path.join(os.path.expanduser("~"), ".cache", "inference_optimizer")
    parent = home_cache if os.access(os.path.dirname(home_cache), os.W_OK) else None
    # In a run_isolated child, TMPDIR is the child's own folder, removed when it ends:
    # the cache belongs in the temp folder the parent had.
    shared_tmp = os.environ.get(SHARED_TMPDIR_ENV) or tempfile.gettempdir()
    return os.path.join(parent or shared_tmp, "xla_aot_runtime")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AotBuildError(
            f"XLA AOT needs {name!r} on PATH to build libmodel.so; install it "
            f"(Debian: apt-get install g++ binutils)."
        )
    return path


@functools.cache
def compiler_version(compiler: str) -> str:
    result = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.splitlines()[0] if result.stdout else compiler


@functools.cache
def runtime_symbol_sources(source_dir: str) -> dict[str, str]:
    """Maps each `__xla_cpu_runtime_*` function to the runtime source defining it."""
    symbols: dict[str, str] = {}
    for root, _, files in os.walk(source_dir):
        for filename in sorted(files):
            if not filename.endswith(".cc"):
                continue
            path = os.path.join(root, filename)
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            for symbol in _RUNTIME_DEFINITION.findall(text):
                symbols.setdefault(symbol, os.path.relpath(path, source_dir))
    return symbols


def undefined_runtime_symbols(objects: list[str]) -> set[str]:
    """The `__xla_cpu_runtime_*` functions the objects call but do not define."""
    result = subprocess.run(
        [_tool("nm"), "-u", *objects], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AotBuildError(f"nm failed on {objects}: {result.stderr.strip()}")
    return set(_RUNTIME_SYMBOL.findall(result.stdout))


def _cache_key(source_dir: str, compiler: str, flags: tuple[str, ...]) -> str:
    """Changes whenever the runtime's sources, TF's version, the compiler or flags do."""
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(source_dir)):
        for filename in sorted(files):
            path = os.path.join(root, filename)
            digest.update(f"{os.path.relpath(path, source_dir)}:{os.path.getsize(path)}\n".encode())
    version_header = os.path.join(runtime_include_dir(), "tensorflow/core/public/version.h")
    if os.path.exists(version_header):
        with open(version_header, "rb") as f:
            digest.update(f.read())
    digest.update(json.dumps([compiler_version(compiler), list(flags)]).encode())
    return digest.hexdigest()[:16]


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=COMPILE_TIMEOUT_S
    )
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise AotBuildError(
            f"Building {what} failed (exit {result.returncode}):\n"
            f"  {shlex.join(command)}\n{output[-4000:]}"
        )


def _write_atomically(build: Callable[[str], None], final_path: str) -> None:
    """Runs `build(tmp_path)` and moves the result into place, so readers never see half."""
    os.makedirs(os.path.dirname(final_path), exist_ok=True)
    tmp_path = f"{final_path}.{uuid.uuid4().hex}.tmp"
    try:
        build(tmp_path)
        os.replace(tmp_path, final_path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def _cached_runtime_objects(
    sources: list[str],
    compiler: str,
    flags: tuple[str, ...],
    cache_dir: str,
    commands: list[list[str]],
) -> tuple[list[str], int]:
    """Compiles the runtime sources missing from the cache, two at a time; returns the objects."""
    source_dir = runtime_source_dir()
    objects = [os.path.join(cache_dir, os.path.splitext(s)[0] + ".o") for s in sources]
    todo = [(s, o) for s, o in zip(sources, objects, strict=True) if not os.path.exists(o)]

    def compile_one(source: str, obj: str) -> None:
        def build(tmp_path: str) -> None:
            command = [
                compiler,
                *flags,
                f"-I{runtime_include_dir()}",
                "-c",
                os.path.join(source_dir, source),
                "-o",
                tmp_path,
            ]
            commands.append([*command[:-1], obj])
            _run(command, f"the XLA runtime source {source}")

        _write_atomically(build, obj)

    workers = max(1, min(len(todo), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(compile_one, s, o) for s, o in todo]:
            future.result()
    return objects, len(todo)


def build_shared_library(
    model_dir: str,
    build_dir: str,
    cpp_class: str,
    num_results: int,
    multithreaded: bool,
    target: CpuTarget,
    runtime_cache_dir: str | None = None,
) -> SharedLibraryBuild:
    """Links `model_dir/libmodel.so` from model.o (+ model_metadata.o), the entry point
    and the runtime objects the model calls. Raises AotBuildError with the tool's output.

    `build_dir` receives the entry point's object, the export map and
    `build_commands.sh`, which repeats the build by hand.
    """
    start = time.perf_counter()
    compiler = _tool("g++")
    flags = (*RUNTIME_CXXFLAGS, *target.gcc_flags)
    source_dir = runtime_source_dir()
    if not os.path.isdir(source_dir):
        raise AotBuildError(
            f"The TensorFlow wheel has no XLA AOT runtime sources at {source_dir!r}; "
            f"XLA AOT needs a TF wheel that ships tensorflow/xla_aot_runtime_src."
        )
    cache_root = runtime_cache_dir or default_runtime_cache_dir()
    cache_dir = os.path.join(cache_root, _cache_key(source_dir, compiler, flags))
    os.makedirs(build_dir, exist_ok=True)
    commands: list[list[str]] = []

    model_objects = [os.path.join(model_dir, "model.o")]
    metadata_object = os.path.join(model_dir, "model_metadata.o")
    if os.path.exists(metadata_object):
        model_objects.append(metadata_object)

    entry_object = os.path.join(build_dir, "model_entry.o")
    result_sizes = ",".join(f"(m).result{i}_size()" for i in range(num_results))
    entry_command = [
        compiler,
        *flags,
        "-fvisibility=hidden",
        f"-I{runtime_include_dir()}",
        "-include",
        os.path.join(model_dir, "model.h"),
        f"-DXLA_AOT_CLASS={cpp_class}",
        f"-DXLA_AOT_MULTITHREADED={int(multithreaded)}",
        f"-DXLA_AOT_RESULT_SIZES(m)={{{result_sizes}}}",
        "-c",
        ENTRY_SOURCE,
        "-o",
        entry_object,
    ]
    commands.append(entry_command)
    _run(entry_command, "the model's C entry point")

    # The kernels the model calls may call further kernels: follow them to a fixed point.
    symbol_sources = runtime_symbol_sources(source_dir)
    sources = list(CORE_RUNTIME_SOURCES)
    runtime_objects, built = _cached_runtime_objects(sources, compiler, flags, cache_dir, commands)
    while True:
        needed = undefined_runtime_symbols([*model_objects, entry_object, *runtime_objects])
        unknown = sorted(s for s in needed if s not in symbol_sources)
        if unknown:
            raise AotBuildError(
                f"The model calls XLA runtime functions that the wheel's runtime sources do "
                f"not define: {', '.join(unknown)}."
            )
        new_sources = sorted({symbol_sources[s] for s in needed} - set(sources))
        if not new_sources:
            break
        objects, count = _cached_runtime_objects(new_sources, compiler, flags, cache_dir, commands)
        sources.extend(new_sources)
        runtime_objects.extend(objects)
        built += count

    exports = os.path.join(build_dir, "exports.map")
    with open(exports, "w") as f:
        # Only the C API is exported; the runtime's symbols stay private to this library,
        # so TensorFlow's own copies in the same process cannot interpose them.
        f.write("{ global: model_*; local: *; };\n")
    library = os.path.join(model_dir, SHARED_LIBRARY_FILENAME)

    def link(tmp_path: str) -> None:
        command = [
            compiler,
            "-shared",
            "-o",
            tmp_path,
            "-Wl,-Bsymbolic",
            "-Wl,--no-undefined",
            f"-Wl,--version-script={exports}",
            entry_object,
            *model_objects,
            *runtime_objects,
            "-lpthread",
            "-lm",
        ]
        commands.append([*command[:3], library, *command[4:]])
        _run(command, SHARED_LIBRARY_FILENAME)

    _write_atomically(link, library)
    with open(os.path.join(build_dir, "build_commands.sh"), "w") as f:
        f.write("#!/bin/sh\n# How libmodel.so was built; runtime objects come from the cache.\n")
        f.write("set -e\n")
        f.writelines(shlex.join(command) + "\n" for command in commands)
    return SharedLibraryBuild(
        path=library,
        build_time_s=time.perf_counter() - start,
        runtime_sources=tuple(sources),
        runtime_objects_built=built,
        runtime_cache_dir=cache_dir,
        compiler=compiler_version(compiler),
    )
