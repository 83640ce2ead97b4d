"""Tests for npdl.initializers: fans, moments, torch.nn.init scales, orthogonality."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from npdl.initializers import (
    Constant,
    HeNormal,
    HeUniform,
    LeCunNormal,
    Ones,
    Orthogonal,
    RandomNormal,
    RandomUniform,
    XavierNormal,
    XavierUniform,
    Zeros,
    compute_fans,
)

ALL_INITS = [
    Zeros(), Ones(), Constant(0.5), RandomNormal(), RandomUniform(), XavierNormal(),
    XavierUniform(), HeNormal(), HeUniform(), LeCunNormal(), Orthogonal(),
]  # fmt: skip

N = 1000  # samples are N x N


# ---------------------------------------------------------------- compute_fans


def test_fans_1d_is_n_n():
    assert compute_fans((7,)) == (7, 7)
    assert compute_fans(7) == (7, 7)


def test_fans_2d_is_in_out_layout():
    assert compute_fans((3, 5)) == (3, 5)


def test_fans_4d_uses_receptive_field():
    # (kh, kw, in, out): receptive field 3 * 2 = 6
    assert compute_fans((3, 2, 4, 8)) == (24, 48)


def test_fans_match_torch_for_transposed_layouts():
    # torch stores Dense weights as (out, in) and conv kernels as (out, in, kh, kw).
    t_in, t_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(5, 3))
    assert compute_fans((3, 5)) == (t_in, t_out)
    t_in, t_out = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(8, 4, 3, 2))
    assert compute_fans((3, 2, 4, 8)) == (t_in, t_out)


def test_fans_empty_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"at least one dimension.*Received: shape=\(\)"):
        compute_fans(())


def test_fans_reject_non_positive_dimensions():
    with pytest.raises(ValueError, match="positive"):
        compute_fans((0, 3))


# ---------------------------------------------------------------- moments


def _check_moments(w, mean, std):
    n = w.size
    assert abs(w.mean() - mean) < 4 * std / math.sqrt(n)
    # standard error of the sample std of a normal sample: std / sqrt(2n)
    assert abs(w.std() - std) < 4 * std / math.sqrt(2 * n)


@pytest.mark.parametrize(
    "init, std",
    [
        (RandomNormal(0.0, 0.05), 0.05),
        (XavierNormal(), math.sqrt(2 / (N + N))),
        (XavierNormal(gain=2.0), 2 * math.sqrt(2 / (N + N))),
        (HeNormal(), math.sqrt(2 / N)),
        (LeCunNormal(), math.sqrt(1 / N)),
    ],
)
def test_normal_moments(init, std):
    _check_moments(init((N, N), rng=np.random.default_rng(1)), 0.0, std)


def test_random_normal_mean_is_used():
    _check_moments(RandomNormal(3.0, 0.5)((N, N), rng=np.random.default_rng(2)), 3.0, 0.5)


@pytest.mark.parametrize(
    "init, bound",
    [
        (RandomUniform(-0.05, 0.05), 0.05),
        (XavierUniform(), math.sqrt(6 / (N + N))),
        (HeUniform(), math.sqrt(6 / N)),
    ],
)
def test_uniform_bounds_and_moments(init, bound):
    w = init((N, N), rng=np.random.default_rng(3))
    assert w.min() >= -bound and w.max() <= bound
    assert w.min() < -0.99 * bound and w.max() > 0.99 * bound
    _check_moments(w, 0.0, bound / math.sqrt(3))


def test_uniform_with_asymmetric_range():
    w = RandomUniform(1.0, 3.0)((N, N), rng=np.random.default_rng(4))
    assert w.min() >= 1.0 and w.max() <= 3.0
    _check_moments(w, 2.0, 1 / math.sqrt(3))


def test_xavier_uses_both_fans():
    w = XavierNormal()((200, 2000), rng=np.random.default_rng(5))
    _check_moments(w, 0.0, math.sqrt(2 / 2200))


# ---------------------------------------------------------------- torch.nn.init parity (scales)


def _torch_std(fill, out_features, in_features):
    torch.manual_seed(0)
    t = torch.empty(out_features, in_features, dtype=torch.float64)
    fill(t)
    return t.std().item()


@pytest.mark.parametrize(
    "init, fill",
    [
        (
            HeNormal(),
            lambda t: torch.nn.init.kaiming_normal_(t, mode="fan_in", nonlinearity="relu"),
        ),
        (
            HeUniform(),
            lambda t: torch.nn.init.kaiming_uniform_(t, mode="fan_in", nonlinearity="relu"),
        ),
        (XavierNormal(), torch.nn.init.xavier_normal_),
        (XavierUniform(), torch.nn.init.xavier_uniform_),
        (XavierUniform(gain=3.0), lambda t: torch.nn.init.xavier_uniform_(t, gain=3.0)),
        (LeCunNormal(), lambda t: torch.nn.init.kaiming_normal_(t, nonlinearity="linear")),
    ],
)
def test_std_matches_torch_nn_init(init, fill):
    fan_in, fan_out = 400, 900  # npdl shape (in, out) is torch's (out, in) transposed
    ours = init((fan_in, fan_out), rng=np.random.default_rng(6)).std()
    theirs = _torch_std(fill, fan_out, fan_in)
    assert abs(ours - theirs) / theirs < 0.01


def test_conv_kernel_he_std_matches_torch():
    # npdl (kh, kw, in, out) vs torch (out, in, kh, kw): same fan_in = in * kh * kw
    ours = HeNormal()((3, 3, 64, 128), rng=np.random.default_rng(7)).std()
    t = torch.empty(128, 64, 3, 3, dtype=torch.float64)
    torch.manual_seed(0)
    theirs = torch.nn.init.kaiming_normal_(t, nonlinearity="relu").std().item()
    assert abs(ours - theirs) / theirs < 0.02
    assert abs(ours - math.sqrt(2 / (64 * 9))) / ours < 0.02


# ---------------------------------------------------------------- constants


def test_zeros_ones_constant():
    assert np.array_equal(Zeros()((2, 3)), np.zeros((2, 3)))
    assert np.array_equal(Ones()((4,)), np.ones(4))
    assert np.array_equal(Constant(2.5)((2, 2)), np.full((2, 2), 2.5))


# ---------------------------------------------------------------- orthogonal


def test_orthogonal_tall_has_orthonormal_columns():
    w = Orthogonal()((50, 20), rng=np.random.default_rng(8))
    assert w.shape == (50, 20)
    np.testing.assert_allclose(w.T @ w, np.eye(20), atol=1e-12)


def test_orthogonal_wide_has_orthonormal_rows():
    w = Orthogonal()((20, 50), rng=np.random.default_rng(9))
    assert w.shape == (20, 50)
    np.testing.assert_allclose(w @ w.T, np.eye(20), atol=1e-12)


def test_orthogonal_square_and_gain():
    w = Orthogonal(gain=2.0)((16, 16), rng=np.random.default_rng(10))
    np.testing.assert_allclose(w.T @ w, 4.0 * np.eye(16), atol=1e-12)
    np.testing.assert_allclose(w @ w.T, 4.0 * np.eye(16), atol=1e-12)


def test_orthogonal_nd_shape_is_flattened_to_rows_by_last_axis():
    w = Orthogonal()((3, 3, 4, 8), rng=np.random.default_rng(11))
    assert w.shape == (3, 3, 4, 8)
    flat = w.reshape(-1, 8)
    np.testing.assert_allclose(flat.T @ flat, np.eye(8), atol=1e-12)


def test_orthogonal_sign_correction_makes_entries_symmetric():
    # Without q *= sign(diag(r)), LAPACK's QR makes w[0, 0] negative almost always.
    rng = np.random.default_rng(12)
    first = np.array([Orthogonal()((3, 3), rng=rng)[0, 0] for _ in range(400)])
    assert 0.4 < np.mean(first > 0) < 0.6


def test_orthogonal_rejects_1d():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        Orthogonal()((5,))


# ---------------------------------------------------------------- dtype, rng, repr, errors


@pytest.mark.parametrize("init", ALL_INITS, ids=repr)
def test_float32_requested_is_float32(init):
    w = init((6, 4), rng=np.random.default_rng(0), dtype=np.float32)
    assert w.dtype == np.float32 and w.shape == (6, 4)


@pytest.mark.parametrize("init", ALL_INITS, ids=repr)
def test_default_is_float64_and_seed_reproducible(init):
    a = init((5, 3), rng=np.random.default_rng(42))
    b = init((5, 3), rng=np.random.default_rng(42))
    assert a.dtype == np.float64
    assert np.array_equal(a, b)


def test_rng_none_uses_fresh_randomness():
    a, b = HeNormal()((10, 10)), HeNormal()((10, 10))
    assert not np.array_equal(a, b)


def test_repr_shows_arguments():
    assert repr(RandomNormal(0.0, 0.1)) == "RandomNormal(mean=0.0, std=0.1)"
    assert repr(RandomUniform()) == "RandomUniform(low=-0.05, high=0.05)"
    assert repr(XavierUniform(gain=2.0)) == "XavierUniform(gain=2.0)"
    assert repr(Orthogonal()) == "Orthogonal(gain=1.0)"
    assert repr(Constant(3)) == "Constant(value=3.0)"
    assert repr(HeNormal()) == "HeNormal()"


def test_invalid_arguments():
    with pytest.raises(ValueError, match=r"std >= 0.*Received: std=-1"):
        RandomNormal(std=-1.0)
    with pytest.raises(ValueError, match="low <= high"):
        RandomUniform(1.0, 0.0)


# ---------------------------------------------------------------- hypothesis

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1))
def test_any_shape_gives_that_shape_finite_values_and_positive_fans(shape, seed):
    fan_in, fan_out = compute_fans(shape)
    assert fan_in >= 1 and fan_out >= 1
    assert fan_in * fan_out >= math.prod(shape)  # rf**2 * in * out >= rf * in * out
    for init in ALL_INITS:
        if isinstance(init, Orthogonal) and len(shape) < 2:
            continue
        w = init(shape, rng=np.random.default_rng(seed))
        assert w.shape == shape
        assert np.all(np.isfinite(w))


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 12), cols=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_orthogonal_property(rows, cols, seed):
    w = Orthogonal()((rows, cols), rng=np.random.default_rng(seed))
    small = w.T @ w if rows >= cols else w @ w.T
    np.testing.assert_allclose(small, np.eye(min(rows, cols)), atol=1e-10)
