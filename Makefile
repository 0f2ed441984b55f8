# The two commands a newcomer needs: `make demo` and `make test`.
# Both create the environment first if it is missing (scripts/install-env.sh, the one
# install path shared with CI and the Dockerfile).

VENV ?= .venv
PY := $(VENV)/bin/python
# Fast unit tests only: `make test PYTEST_ARGS="-m 'not slow'"`.
PYTEST_ARGS ?=
LINT_PATHS := setup.py components pipelines system tests $(wildcard benchmarks)

.PHONY: demo test env lint format lock lock-gpu clean benchmark benchmark-big benchmark-outlier

env:
	@bash scripts/install-env.sh

demo: env
	$(VENV)/bin/inference-optimizer run

test: env
	$(PY) -m pytest $(PYTEST_ARGS)

lint: env
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

format: env
	$(VENV)/bin/ruff format $(LINT_PATHS)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)

# Re-resolve the pinned set from setup.py's ranges (needs uv; about a minute).
lock: env
	$(VENV)/bin/uv pip compile setup.py --extra dev --extra openvino --extra onnx --python-version 3.10 \
		--python-platform x86_64-manylinux_2_28 -o requirements.lock

# The GPU image's lock: the same pins plus tensorflow[and-cuda]'s CUDA/cuDNN wheels.
lock-gpu: env
	$(VENV)/bin/uv pip compile setup.py --extra openvino --extra onnx --extra gpu \
		--constraint requirements.lock --python-version 3.10 \
		--python-platform x86_64-manylinux_2_28 -o requirements-gpu.lock

clean:
	rm -rf runs .pytest_cache

# Real architectures (random weights, fixed seed): `make benchmark ARCH=resnet50`.
ARCH ?= mobilenet_v2
benchmark: env
	$(PY) -m benchmarks.keras_applications --arch $(ARCH)

# Big models end to end, peak memory per component: `make benchmark-big MODEL=bert_base`
# (resnet50, resnet152, efficientnet_b4, bert_base).
MODEL ?= resnet152
benchmark-big: env
	$(PY) -m benchmarks.big_models --model $(MODEL)

# Accuracy-aware int8 against naive int8 on a model where naive int8 fails.
benchmark-outlier: env
	$(PY) -m benchmarks.outlier_int8
