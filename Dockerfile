# Runtime image for the Kubeflow pipeline: every step's container runs in it, as
#   python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...
# so `python` on PATH must be the environment holding tfx, this project and its executors.
#
#   docker build -t REGISTRY/tfx-inference-optimizer:0.1.0 .
#   docker push REGISTRY/tfx-inference-optimizer:0.1.0
#   inference-optimizer compile --image REGISTRY/tfx-inference-optimizer:0.1.0 ...
#
# GPU-capable through TF's own supported route: requirements-gpu.lock adds the
# `tensorflow[and-cuda]` wheels (CUDA 12.3 runtime, cuDNN 8.9.7, cuBLAS, ..., and ptxas in
# nvidia-cuda-nvcc-cu12 for XLA's GPU JIT), pinned like every other dependency, so the
# base is plain Ubuntu and the node's NVIDIA container runtime supplies only the driver.
# scripts/check-image-install.sh checks that the lock resolves and that its CUDA and cuDNN
# are what tf.sysconfig.get_build_info() names. On a node without a GPU the same image
# runs everything on the CPU.
FROM ubuntu:22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# - python3.10 (+venv): the only Python tfx 1.16 supports, and Ubuntu 22.04's own;
# - g++, cmake, make: build the XLA AOT runtime library (XlaCompiler, mode aot).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.10 python3.10-venv python3-pip ca-certificates \
        g++ cmake make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/tfx-inference-optimizer
# Dependencies first, through the one install path and the one lock, so editing the code
# does not invalidate this (3 GB) layer.
COPY requirements.lock requirements-gpu.lock setup.py README.md ./
COPY scripts/install-env.sh scripts/install-env.sh
COPY components/version.py components/version.py
RUN VENV=/opt/venv PYTHON=python3.10 INSTALL_EDITABLE=0 INSTALL_PROJECT=0 \
        LOCK=requirements-gpu.lock bash scripts/install-env.sh

# The project itself, installed (not editable) into the same environment: the compiled
# pipeline imports executors (components.benchmarker.executor.Executor) and artifact types
# (components.BenchmarkReport) by these names, from any working directory.
COPY components/ components/
COPY system/ system/
COPY pipelines/ pipelines/
RUN VENV=/opt/venv PYTHON=python3.10 INSTALL_EDITABLE=0 LOCK=requirements-gpu.lock \
        bash scripts/install-env.sh
ENV PATH=/opt/venv/bin:$PATH

# The embedded default (digits CNN and its eval Examples, trained in seconds on CPU), so
# a package compiled without --model-uri/--examples-uri runs the demo on the cluster.
# Must match pipelines/kubeflow/config.py: IMAGE_DEMO_DIR.
RUN python -c "from pipelines.embedded_default import ensure_embedded_default as e; \
print(e('/opt/tfx-inference-optimizer/demo'))"

# The image checks itself: compile the default package with this environment and import
# every executor and artifact type it names, as the pods will.
RUN cd /tmp \
    && inference-optimizer compile --output /tmp/check/pipeline.yaml \
    && python -m pipelines.kubeflow.image_check /tmp/check/pipeline.yaml \
    && rm -rf /tmp/check

RUN useradd --create-home --uid 1000 optimizer
USER 1000
WORKDIR /home/optimizer
# KFP sets each step's command; this default only answers `docker run IMAGE`.
ENTRYPOINT []
CMD ["inference-optimizer", "--help"]
