"""npdl.optimizers against torch.optim: update rules, defaults, state, dtypes, errors."""

import inspect

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npdl.core import ShapeError
from npdl.gradcheck import relative_error
from npdl.optimizers import SGD, AdaGrad, Adam, AdamW, Optimizer, RMSprop, clip_grad_norm

SHAPES = [(3, 4), (4,), (2, 3, 2), (1,)]
STEPS = 20
TORCH = {SGD: torch.optim.SGD, AdaGrad: torch.optim.Adagrad, RMSprop: torch.optim.RMSprop,
         Adam: torch.optim.Adam, AdamW: torch.optim.AdamW}

CASES = [
    (SGD, {}),
    (SGD, dict(lr=0.1, momentum=0.9)),
    (SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (SGD, dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.1)),
    (AdaGrad, {}),
    (AdaGrad, dict(lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.2,
                   eps=1e-6)),
    (RMSprop, {}),
    (RMSprop, dict(momentum=0.5)),
    (RMSprop, dict(centered=True)),
    (RMSprop, dict(lr=0.005, alpha=0.9, eps=1e-6, weight_decay=0.01, momentum=0.9,
                   centered=True)),
    (Adam, {}),
    (Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, amsgrad=True)),
    (AdamW, {}),
    (AdamW, dict(lr=0.01, betas=(0.85, 0.995), eps=1e-7, weight_decay=0.1, amsgrad=True)),
]


def _grad_sequence(rng, shapes, steps=STEPS):
    # Varying scales so amsgrad's max and the moving averages really matter.
    return [[rng.normal(size=s) * rng.uniform(0.1, 3.0) for s in shapes] for _ in range(steps)]


def _torch_trajectory(cls, kwargs, params0, grad_seq):
    tparams = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params0]
    opt = TORCH[cls](tparams, **kwargs)
    out = []
    for grads in grad_seq:
        for tp, g in zip(tparams, grads, strict=True):
            tp.grad = torch.tensor(g)
        opt.step()
        out.append([tp.detach().numpy().copy() for tp in tparams])
    return out


def _npdl_trajectory(opt, params0, grad_seq):
    params = [p.copy() for p in params0]
    out = []
    for grads in grad_seq:
        opt.step(params, grads)
        out.append([p.copy() for p in params])
    return out


@pytest.mark.parametrize(("cls", "kwargs"), CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_matches_torch_for_20_steps(cls, kwargs, rng):
    params0 = [rng.normal(size=s) for s in SHAPES]
    grad_seq = _grad_sequence(rng, SHAPES)
    opt = cls(**kwargs)
    ours = _npdl_trajectory(opt, params0, grad_seq)
    theirs = _torch_trajectory(cls, dict(kwargs, lr=opt.lr), params0, grad_seq)
    for step, (a_list, b_list) in enumerate(zip(ours, theirs, strict=True)):
        for a, b in zip(a_list, b_list, strict=True):
            assert a.dtype == np.float64
            assert relative_error(a, b) < 1e-7, f"step {step}"
    assert relative_error(ours[-1][0], params0[0]) > 1e-3  # the params really moved


@pytest.mark.parametrize("cls", [SGD, AdaGrad, RMSprop, Adam, AdamW])
def test_defaults_match_torch(cls):
    ours = inspect.signature(cls).parameters
    theirs = inspect.signature(TORCH[cls]).parameters
    for name, param in ours.items():
        if cls is SGD and name == "lr":
            assert param.default == 0.01  # the course's default; torch 2.x moved to 1e-3
        else:
            assert param.default == theirs[name].default, name


def test_state_is_per_position(rng):
    # Two params of the same shape must each get their own momentum / moments.
    shape = (3, 2)
    params0 = [rng.normal(size=shape), rng.normal(size=shape)]
    grad_seq = [[rng.normal(size=shape), 5.0 * rng.normal(size=shape)] for _ in range(STEPS)]
    for cls, kwargs in [(SGD, dict(momentum=0.9)), (Adam, {}), (RMSprop, dict(momentum=0.5))]:
        opt = cls(**kwargs)
        ours = _npdl_trajectory(opt, params0, grad_seq)
        theirs = _torch_trajectory(cls, dict(kwargs, lr=opt.lr), params0, grad_seq)
        for a, b in zip(ours[-1], theirs[-1], strict=True):
            assert relative_error(a, b) < 1e-7, cls.__name__
        assert len(opt.state) == 2
        first, second = opt.state
        for key, value in first.items():
            if isinstance(value, np.ndarray):
                assert value is not second[key]


def test_lr_is_read_every_step(rng):
    p = rng.normal(size=(4,))
    g = rng.normal(size=(4,))
    opt = SGD(lr=0.1)
    expected = p - 0.1 * g
    opt.step([p], [g])
    np.testing.assert_allclose(p, expected, rtol=1e-15)
    opt.lr = 0.5
    expected = p - 0.5 * g
    opt.step([p], [g])
    np.testing.assert_allclose(p, expected, rtol=1e-15)


@pytest.mark.parametrize(("cls", "kwargs"), CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_float32_stays_float32_and_grads_untouched(cls, kwargs, rng):
    params = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    params64 = [p.astype(np.float64) for p in params]
    opt, opt64 = cls(**kwargs), cls(**kwargs)
    for _ in range(5):
        grads = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
        saved = [g.copy() for g in grads]
        opt.step(params, grads)
        opt64.step(params64, [g.astype(np.float64) for g in grads])
        for g, s in zip(grads, saved, strict=True):
            np.testing.assert_array_equal(g, s)
    for p, p64 in zip(params, params64, strict=True):
        assert p.dtype == np.float32
        np.testing.assert_allclose(p, p64, rtol=1e-4, atol=1e-5)
    for state in opt.state:
        for value in state.values():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32


def test_params_updated_in_place(rng):
    params = [rng.normal(size=(2, 3)), rng.normal(size=(3,))]
    ids = [id(p) for p in params]
    grads = [np.ones((2, 3)), np.ones(3)]
    Adam().step(params, grads)
    assert [id(p) for p in params] == ids
    assert np.all(params[1] != 0)


def test_sgd_one_step_formula():
    p = np.array([1.0, -2.0])
    g = np.array([0.5, 0.25])
    SGD(lr=0.1, weight_decay=0.1).step([p], [g])
    np.testing.assert_allclose(p, [1.0 - 0.1 * (0.5 + 0.1), -2.0 - 0.1 * (0.25 - 0.2)])


def test_extreme_gradients_stay_finite(rng):
    for cls, kwargs in CASES:
        params = [rng.normal(size=(3, 3)) * 1e4]
        opt = cls(**kwargs)
        for sign in (1.0, -1.0, 1.0):
            opt.step(params, [np.full((3, 3), sign * 1e4)])
        assert np.all(np.isfinite(params[0])), cls.__name__


# ----- errors ---------------------------------------------------------------------------------


def test_error_list_lengths():
    with pytest.raises(ValueError, match=r"Received: 1 gradients"):
        SGD().step([np.zeros(2), np.zeros(3)], [np.zeros(2)])


def test_error_grad_shape_names_position():
    with pytest.raises(ShapeError, match=r"grads\[1\].*\(3,\).*Received: shape=\(4,\)"):
        SGD().step([np.zeros(2), np.zeros(3)], [np.zeros(2), np.zeros(4)])


def test_error_grad_dtype():
    with pytest.raises(TypeError, match=r"grads\[0\].*float32.*Received: dtype=float64"):
        Adam().step([np.zeros(2, np.float32)], [np.zeros(2)])


def test_error_integer_params():
    with pytest.raises(TypeError, match=r"params\[0\].*floating-point"):
        SGD().step([np.zeros(2, dtype=int)], [np.zeros(2, dtype=int)])


def test_error_number_of_params_changes():
    opt = Adam()
    opt.step([np.zeros(2), np.zeros(3)], [np.ones(2), np.ones(3)])
    with pytest.raises(ValueError, match=r"same 2 parameters.*Received: 3 parameters"):
        opt.step([np.zeros(2), np.zeros(3), np.zeros(1)], [np.ones(2), np.ones(3), np.ones(1)])
    with pytest.raises(ShapeError, match=r"params\[0\] of shape \(2,\).*Received: shape=\(3,\)"):
        opt.step([np.zeros(3), np.zeros(2)], [np.ones(3), np.ones(2)])
    opt.reset()
    opt.step([np.zeros(3)], [np.ones(3)])  # a fresh start accepts a new model
    assert len(opt.state) == 1


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda: SGD(lr=-0.1), r"SGD: expected lr >= 0.0. Received: lr=-0.1"),
        (lambda: SGD(momentum=-0.5), r"momentum >= 0"),
        (lambda: SGD(weight_decay=-1.0), r"weight_decay >= 0"),
        (lambda: SGD(nesterov=True), r"Nesterov.*momentum=0.0"),
        (lambda: SGD(momentum=0.9, dampening=0.1, nesterov=True), r"Nesterov.*dampening=0.1"),
        (lambda: AdaGrad(lr_decay=-1.0), r"lr_decay >= 0"),
        (lambda: AdaGrad(initial_accumulator_value=-1.0), r"initial_accumulator_value"),
        (lambda: AdaGrad(eps=-1e-10), r"eps >= 0"),
        (lambda: RMSprop(alpha=-0.1), r"alpha >= 0"),
        (lambda: RMSprop(lr=float("nan")), r"lr >= 0"),
        (lambda: Adam(betas=(1.0, 0.999)), r"0 <= betas\[0\] < 1. Received: betas\[0\]=1.0"),
        (lambda: Adam(betas=(0.9, -0.1)), r"betas\[1\]"),
        (lambda: Adam(betas=(0.9,)), r"betas=\(beta1, beta2\)"),
        (lambda: AdamW(eps=-1.0), r"AdamW: expected eps >= 0"),
        (lambda: AdamW(weight_decay=-0.01), r"weight_decay >= 0"),
    ],
)
def test_hyperparameter_errors(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_negative_lr_set_later_is_rejected_at_step():
    opt = SGD()
    opt.lr = -1.0
    with pytest.raises(ValueError, match=r"Received: lr=-1.0"):
        opt.step([np.zeros(2)], [np.ones(2)])


def test_base_class_and_repr():
    with pytest.raises(NotImplementedError):
        Optimizer(lr=0.1).step([np.zeros(2)], [np.zeros(2)])
    assert repr(SGD(lr=0.1, momentum=0.9)).startswith("SGD(lr=0.1, momentum=0.9")
    assert "amsgrad=True" in repr(Adam(amsgrad=True))


# ----- clip_grad_norm --------------------------------------------------------------------------


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e3])
def test_clip_grad_norm_matches_torch(max_norm, rng):
    grads = [rng.normal(size=s) for s in SHAPES]
    tparams = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for tp, g in zip(tparams, grads, strict=True):
        tp.grad = torch.tensor(g)
    expected_total = float(torch.nn.utils.clip_grad_norm_(tparams, max_norm))
    ids = [id(g) for g in grads]
    total = clip_grad_norm(grads, max_norm)
    assert isinstance(total, float)
    assert abs(total - expected_total) <= 1e-12 * expected_total
    assert [id(g) for g in grads] == ids  # scaled in place
    for g, tp in zip(grads, tparams, strict=True):
        assert relative_error(g, tp.grad.numpy()) < 1e-7
    clipped = np.sqrt(sum(np.sum(g**2) for g in grads))
    assert clipped <= max_norm + 1e-9


def test_clip_grad_norm_float32_and_errors():
    grads = [np.full((2, 2), 3.0, dtype=np.float32)]
    total = clip_grad_norm(grads, 1.0)
    assert total == pytest.approx(6.0)
    assert grads[0].dtype == np.float32
    assert np.sqrt(np.sum(grads[0] ** 2)) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match=r"max_norm >= 0"):
        clip_grad_norm(grads, -1.0)
    with pytest.raises(TypeError, match=r"grads\[0\]"):
        clip_grad_norm([np.ones(2, dtype=int)], 1.0)
    with pytest.raises(ValueError, match=r"finite.*Received: total norm=inf"):
        clip_grad_norm([np.array([np.inf, 1.0])], 1.0)


# ----- properties ------------------------------------------------------------------------------

_arrays = st.sampled_from([np.float32, np.float64]).flatmap(
    lambda dtype: hnp.array_shapes(min_dims=1, max_dims=3, max_side=5).flatmap(
        lambda shape: st.tuples(
            hnp.arrays(dtype, shape, elements=st.floats(-1e4, 1e4, width=32)),
            hnp.arrays(dtype, shape, elements=st.floats(-1e4, 1e4, width=32)),
        )
    )
)


@settings(max_examples=40, deadline=None)
@given(pairs=st.lists(_arrays, min_size=1, max_size=3), momentum=st.sampled_from([0.0, 0.9]))
def test_sgd_with_zero_lr_leaves_params_unchanged(pairs, momentum):
    params = [p.copy() for p, _ in pairs]
    grads = [g for _, g in pairs]
    opt = SGD(lr=0.0, momentum=momentum, weight_decay=0.01)
    for _ in range(2):
        opt.step(params, grads)
    for p, (p0, _) in zip(params, pairs, strict=True):
        assert p.dtype == p0.dtype
        np.testing.assert_array_equal(p, p0)


@settings(max_examples=30, deadline=None)
@given(pairs=st.lists(_arrays, min_size=1, max_size=3),
       cls=st.sampled_from([SGD, AdaGrad, RMSprop, Adam, AdamW]))
def test_every_optimizer_keeps_dtype_and_shape(pairs, cls):
    params = [p.copy() for p, _ in pairs]
    grads = [g for _, g in pairs]
    opt = cls()
    opt.step(params, grads)
    opt.step(params, grads)
    for p, (p0, _) in zip(params, pairs, strict=True):
        assert p.dtype == p0.dtype and p.shape == p0.shape
        assert np.all(np.isfinite(p))
