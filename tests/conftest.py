"""Shared fixtures: the embedded default model and data, trained once per session."""

from __future__ import annotations

import os

# Quieter TF logs in test output; set before TensorFlow is imported anywhere.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402 - after the environment tweak above.


@pytest.fixture(scope="session")
def embedded_default(tmp_path_factory: pytest.TempPathFactory):
    """The digits CNN as a TFX Model artifact plus its eval Examples (trained once)."""
    from pipelines.embedded_default import ensure_embedded_default

    cache = os.environ.get("INFERENCE_OPTIMIZER_TEST_CACHE") or str(
        tmp_path_factory.mktemp("embedded_default_cache")
    )
    return ensure_embedded_default(cache)


@pytest.fixture(scope="session")
def frozen_digits(embedded_default):
    """The digits CNN frozen: a FrozenModel with `.graph_def` and `.signature`."""
    from components.freezer.freezing import freeze_saved_model

    return freeze_saved_model(embedded_default.model_uri)


@pytest.fixture(scope="session")
def digits_eval(embedded_default, frozen_digits):
    """The held-out digits as LabelledImages shaped for the model input."""
    from components.common.examples_io import read_labelled_images

    return read_labelled_images(embedded_default.examples_uri, frozen_digits.signature.inputs[0])
