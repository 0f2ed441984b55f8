"""Fixtures shared by the InferenceOptimizer tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def optimized_digits(frozen_digits):
    """The digits CNN through the default transforms (computed once)."""
    from components.inference_optimizer.optimizer import optimize_graph

    return optimize_graph(frozen_digits.graph_def, frozen_digits.signature)


@pytest.fixture(scope="session")
def frozen_digits_outputs(frozen_digits, digits_eval):
    """The frozen digits graph's outputs on the held-out digits: the reference."""
    from components.common.graph_io import graph_def_callable

    (outputs,) = graph_def_callable(frozen_digits.graph_def, frozen_digits.signature)(
        digits_eval.images
    )
    return outputs
