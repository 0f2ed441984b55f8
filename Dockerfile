# Runtime image for the Kubeflow pipeline: every component's executor runs in it.
#
# GPU-capable: the CUDA 12.3 + cuDNN 9 runtime base is what TF 2.16.2's pip wheel
# links against, so the Benchmarker uses a GPU when the pod has one (and the CPU
# otherwise). Ubuntu 22.04 ships Python 3.10, the only Python tfx 1.16 supports.
#
#   docker build -t REGISTRY/tfx-inference-optimizer:0.1.0 .
FROM nvidia/cuda:12.3.2-cudnn9-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# python3.10-venv for the virtualenv; g++/cmake/make build the XLA AOT runtime library.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.10 python3.10-venv python3-pip ca-certificates g++ cmake make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/tfx-inference-optimizer
# The lock and the install script first, so code edits do not invalidate this layer.
COPY requirements.lock setup.py README.md ./
COPY scripts/install-env.sh scripts/install-env.sh
COPY components/version.py components/version.py
RUN VENV=/opt/venv PYTHON=python3.10 INSTALL_EDITABLE=0 INSTALL_PROJECT=0 \
        bash scripts/install-env.sh

# The project itself: `components` and `pipelines` must import by the names the
# compiled pipeline uses (executor class paths, artifact schema titles).
COPY components/ components/
COPY pipelines/ pipelines/
RUN VENV=/opt/venv PYTHON=python3.10 INSTALL_EDITABLE=0 bash scripts/install-env.sh

ENV PATH=/opt/venv/bin:$PATH
RUN useradd --create-home --uid 1000 optimizer
USER optimizer
WORKDIR /home/optimizer
ENTRYPOINT []
CMD ["inference-optimizer", "--help"]
