"""Shared test set-up: floating-point problems raise instead of warning."""

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _fp_errors_raise():
    # Underflow (exp(-1e4) -> 0) is expected and harmless; everything else is a bug.
    with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)
