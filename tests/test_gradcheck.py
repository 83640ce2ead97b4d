"""Tests for npdl.gradcheck: finite differences, relative error, the gradient-check report."""

import dataclasses

import numpy as np
import pytest

from npdl.core import ShapeError
from npdl.gradcheck import GradCheckResult, gradient_check, numerical_gradient, relative_error


def test_numerical_gradient_of_known_function(rng):
    x = rng.normal(size=(3, 4))
    grad = numerical_gradient(lambda: np.sum(x**3), x)
    assert grad.shape == x.shape
    assert relative_error(grad, 3 * x**2) < 1e-8


def test_numerical_gradient_leaves_x_unchanged_bit_for_bit(rng):
    x = rng.normal(size=(3, 4, 5))
    before = x.copy()
    # with eps=0.1, (x - eps) + eps != x for many elements: restoring must copy, not add back
    for eps in (1e-6, 0.1):
        numerical_gradient(lambda: np.sum(np.sin(x)), x, eps=eps)
        assert np.array_equal(x, before)


def test_numerical_gradient_works_on_views_and_scalars():
    x = np.array(2.0)
    assert numerical_gradient(lambda: x**2, x) == pytest.approx(4.0, rel=1e-8)
    m = np.arange(12.0).reshape(3, 4)
    column = m[:, 1]  # a non-contiguous view: perturbing it perturbs m
    grad = numerical_gradient(lambda: np.sum(m**2), column)
    np.testing.assert_allclose(grad, 2 * column, rtol=1e-7)


def test_numerical_gradient_rejects_integer_x():
    with pytest.raises(TypeError, match="Received"):
        numerical_gradient(lambda: 0.0, np.arange(3))


def test_relative_error_known_values():
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert relative_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)
    assert relative_error(np.array([1.0, 0.0]), np.array([-1.0, 0.0])) == pytest.approx(1.0)
    # zeros on both sides: the 1e-12 floor avoids 0/0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([0.0]), np.array([1e-13])) == pytest.approx(0.1)
    assert relative_error(np.array([]), np.array([])) == 0.0
    assert isinstance(relative_error(np.ones(2), np.ones(2)), float)


def test_relative_error_rejects_different_shapes():
    with pytest.raises(ShapeError, match=r"\(3,\).*\(3, 1\)"):
        relative_error(np.zeros(3), np.zeros((3, 1)))


def test_gradient_check_passes_correct_gradient(rng):
    x = rng.normal(size=(3, 2))
    result = gradient_check(lambda: np.sum(np.tanh(x)), x, 1 - np.tanh(x) ** 2)
    assert isinstance(result, GradCheckResult)
    assert result.passed and result.max_relative_error < 1e-8
    assert str(result).startswith("gradient check passed: max relative error")


def test_gradient_check_reports_worst_index_of_wrong_gradient(rng):
    x = rng.normal(size=(3, 4))
    analytic = 2 * x
    analytic[2, 1] = -analytic[2, 1]  # the planted bug
    result = gradient_check(lambda: np.sum(x**2), x, analytic)
    assert not result.passed
    assert result.worst_index == (2, 1)
    assert result.max_relative_error == pytest.approx(1.0)
    assert result.analytic_value == pytest.approx(-2 * x[2, 1])
    assert result.numeric_value == pytest.approx(2 * x[2, 1], rel=1e-6)
    text = str(result)
    assert "FAILED" in text and "(2, 1)" in text and "analytic" in text and "numeric" in text


def test_gradient_check_tolerance_and_frozen_result(rng):
    x = rng.normal(size=4)
    slightly_off = 2 * x * (1 + 1e-4)
    assert not gradient_check(lambda: np.sum(x**2), x, slightly_off).passed
    assert gradient_check(lambda: np.sum(x**2), x, slightly_off, tol=1e-3).passed
    result = gradient_check(lambda: np.sum(x**2), x, 2 * x)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.passed = False


def test_gradient_check_rejects_wrong_shape():
    x = np.zeros((2, 3))
    with pytest.raises(ShapeError, match=r"\(2, 3\).*\(3, 2\)"):
        gradient_check(lambda: np.sum(x), x, np.zeros((3, 2)))
