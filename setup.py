"""Packaging for tfx-inference-optimizer.

The declared ranges here are the source of truth; `requirements.lock` is compiled
from them with `make lock` (uv) and is what every install path uses.
"""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
# One version, kept in components/version.py (it also keys the pipeline cache).
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "components" / "version.py").read_text()
).group(1)

setup(
    name="tfx-inference-optimizer",
    version=VERSION,
    description=(
        "TFX components that freeze, optimize, quantize, XLA-compile and benchmark "
        "TensorFlow models, with every variant and measurement traced in ML Metadata."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.11",
    # `system` holds KFP's HTML/Markdown artifact types (see system/__init__.py).
    packages=find_packages(
        include=["components", "components.*", "pipelines", "pipelines.*", "system"]
    ),
    # Non-Python files the installed package needs (the Docker image installs it
    # non-editable): the XLA AOT C entry point and the report schema.
    package_data={
        "components.benchmarker": ["*.md"],
        "components.xla_compiler": ["aot_runtime/*.cc"],
        "pipelines.lineage": ["*.md"],
    },
    install_requires=[
        # tfx 1.16.0 is the newest full TFX that installs (see shared/KNOWLEDGE.md).
        "tfx[kfp]==1.16.0",
        # Kubernetes platform config (node selectors) for the compiled KFP package.
        "kfp-kubernetes>=1.0,<2",
        # Newer Beam drops `dill`, which tfx-bsl 1.16 still imports.
        "apache-beam[gcp]>=2.59,<2.61",
        # The embedded default model is trained on scikit-learn's bundled digits.
        "scikit-learn>=1.3,<1.6",
        "pyyaml>=6",
    ],
    extras_require={
        # Peer runtimes for the OpenVINO and ONNX Runtime variant kinds. They are in the
        # lock (the one install path installs them); a user who installs without them
        # gets those kinds skipped, with the extra to install named. Versions: the
        # newest that resolve beside tfx 1.16's protobuf 3.20 (shared/KNOWLEDGE.md).
        "openvino": ["openvino>=2026.4,<2026.5", "nncf>=3.4,<3.5"],
        "onnx": ["onnxruntime>=1.23,<1.24", "tf2onnx>=1.17,<1.18", "onnx>=1.17,<1.18"],
        # The GPU image: CUDA and cuDNN from NVIDIA's wheels, TF's supported route
        # (requirements-gpu.lock; scripts/check-image-install.sh checks the versions).
        "gpu": ["tensorflow[and-cuda]==2.16.2"],
        "dev": [
            "pytest>=8,<9",
            "ruff>=0.6",
        ],
    },
    entry_points={
        "console_scripts": [
            "inference-optimizer=pipelines.cli:main",
        ],
    },
)
