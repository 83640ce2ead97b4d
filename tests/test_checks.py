"""The feedback library: correct code passes, each classic bug fails with the right diagnosis.

The "students" here are tiny standalone classes; the references are `npdl`'s.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import npdl.activations as A
import npdl.initializers as I
import npdl.layers as L
import npdl.losses as Lo
import npdl.optimizers as O
import npdl.schedules as S
from autograder.checks.activations import check_activation
from autograder.checks.compare import CheckFailed, check_gradient, compare_arrays, passed
from autograder.checks.diagnose import diagnose
from autograder.checks.initializers import check_function, check_initializer
from autograder.checks.layers import check_layer
from autograder.checks.losses import check_loss
from autograder.checks.optimizers import check_optimizer
from autograder.checks.schedules import check_schedule

# ----------------------------------------------------------------- student activations


class ReLU:
    def forward(self, x):
        self.x = x
        return np.maximum(x, 0)

    def backward(self, g):
        return g * (self.x > 0)


class ReLUTimesInput(ReLU):
    def backward(self, g):
        return g * self.x


class ReLUInPlace(ReLU):
    def forward(self, x):
        self.x = x.copy()
        x[x < 0] = 0
        return x


class ReLUPassThrough(ReLU):
    def backward(self, g):
        return g


class ReLUSubclassResult(ReLU):
    class Rigged(np.ndarray):
        def __eq__(self, other):
            return True

    def forward(self, x):
        return np.zeros_like(x).view(self.Rigged)


class ReLUNotDone(ReLU):
    def backward(self, g):
        raise NotImplementedError()


class ReLUCrashes(ReLU):
    def forward(self, x):
        return x @ np.ones((7, 7))


class Sigmoid:
    def forward(self, x):
        self.y = 0.5 * (1 + np.tanh(0.5 * x))
        return self.y

    def backward(self, g):
        return g * self.y * (1 - self.y)


class SigmoidNaive(Sigmoid):
    def forward(self, x):
        self.y = 1 / (1 + np.exp(-x))
        return self.y


class SigmoidUpcast(Sigmoid):
    def forward(self, x):
        return super().forward(x.astype(np.float64))


class SigmoidSignFlipped(Sigmoid):
    def backward(self, g):
        return -super().backward(g)


class Softmax:
    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        e = np.exp(x - x.max(axis=self.axis, keepdims=True))
        self.y = e / e.sum(axis=self.axis, keepdims=True)
        return self.y

    def backward(self, g):
        return self.y * (g - np.sum(g * self.y, axis=self.axis, keepdims=True))


class SoftmaxAxis0(Softmax):
    def __init__(self, axis=-1):
        super().__init__(axis=0)


@pytest.mark.parametrize("student, parts, expected", [
    (ReLUTimesInput, ("backward",), "multiplied by the input instead of a 0/1 mask"),
    (ReLUInPlace, ("forward",), "modified its input x in place"),
    (ReLUPassThrough, ("backward",), "passed through unchanged"),
    (ReLUSubclassResult, ("forward",), "plain NumPy array"),
    (ReLUNotDone, ("backward",),
     r"ReLUNotDone.backward \(on random input, shape \(4, 3\)\) is not implemented yet"),
    (ReLUCrashes, ("forward",), r"ReLUCrashes.forward \(on .*\) raised ValueError"),
])
def test_relu_bugs_are_named(student, parts, expected):
    check_activation(ReLU, A.ReLU)
    with pytest.raises(CheckFailed, match=expected):
        check_activation(student, A.ReLU, parts=parts)


def test_relu_message_locates_the_error():
    with pytest.raises(CheckFailed) as info:
        check_activation(ReLUTimesInput, A.ReLU, parts=("backward",))
    message = str(info.value)
    for piece in ["ReLUTimesInput.backward is wrong for input shape (4, 3) (float64)",
                  "max abs error", "max rel error", "at index (", "expected", "got"]:
        assert piece in message


@pytest.mark.parametrize("student, expected", [
    (SigmoidNaive, "floating-point error"),
    (SigmoidUpcast, "float32 input was upcast to float64"),
    (SigmoidSignFlipped, "the sign is flipped"),
])
def test_sigmoid_bugs_are_named(student, expected):
    check_activation(Sigmoid, A.Sigmoid)
    with pytest.raises(CheckFailed, match=expected):
        check_activation(student, A.Sigmoid)


def test_softmax_wrong_axis_forward_and_backward():
    check_activation(Softmax, A.Softmax)
    for part in ("forward", "backward"):
        with pytest.raises(CheckFailed, match="softmax over the wrong axis"):
            check_activation(SoftmaxAxis0, A.Softmax, parts=(part,))


# ----------------------------------------------------------------- student layers

class Dense:
    def __init__(self, in_features, out_features, weight_init=None, rng=None, dtype=np.float64):
        rng, shape = np.random.default_rng(rng), (in_features, out_features)
        w = weight_init(shape, rng=rng) if weight_init else rng.standard_normal(shape)
        self.params = {"W": w.astype(dtype), "b": np.zeros(out_features, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.training = True

    def forward(self, x):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, g):
        self.grads["W"][...] = self.x.T @ g
        self.grads["b"][...] = g.sum(axis=0)
        return g @ self.params["W"].T


class DenseTransposedGrad(Dense):
    def backward(self, g):
        self.grads["W"] = g.T @ self.x
        self.grads["b"][...] = g.sum(axis=0)
        return g @ self.params["W"].T


class DenseBiasNotSummed(Dense):
    def backward(self, g):
        self.grads["W"][...] = self.x.T @ g
        self.grads["b"] = g
        return g @ self.params["W"].T


class DenseAccumulates(Dense):
    def backward(self, g):
        self.grads["W"] += self.x.T @ g
        self.grads["b"] += g.sum(axis=0)
        return g @ self.params["W"].T


class DenseMeanGrad(Dense):
    def backward(self, g):
        dx = super().backward(g)
        self.grads["W"] /= len(g)
        return dx


class DenseNoTranspose(Dense):
    def backward(self, g):
        super().backward(g)
        return g @ self.params["W"]


class DenseSquareTransposedGrad(Dense):
    def backward(self, g):
        dx = super().backward(g)
        self.grads["W"][...] = g.T @ self.x
        return dx


@pytest.mark.parametrize("student, expected", [
    (DenseNoTranspose, r"W is used where W.T belongs"),
    (DenseSquareTransposedGrad, "the weight gradient is transposed"),
])
def test_square_dense_bugs_are_named(student, expected):
    check_layer(Dense, L.Dense, args=(3, 3))
    with pytest.raises(CheckFailed, match=expected):
        check_layer(student, L.Dense, args=(3, 3), parts=("backward",))


@pytest.mark.parametrize("student, expected", [
    (DenseTransposedGrad, "transposed and its transpose is correct"),
    (DenseBiasNotSummed, r"not summed over the batch \(its sum over axis 0 is correct\)"),
    (DenseAccumulates, "grads accumulate across backward calls"),
    (DenseMeanGrad, "divided by the batch size N = 4 one time too many"),
])
def test_dense_bugs_are_named(student, expected):
    check_layer(Dense, L.Dense, args=(4, 3))
    with pytest.raises(CheckFailed, match=expected):
        check_layer(student, L.Dense, args=(4, 3), parts=("backward",))


def test_dense_init_part_compares_the_drawn_weights():
    check_layer(Dense, L.Dense, args=(4, 3), kwargs={"weight_init": I.RandomNormal(std=1.0)},
                parts=("init",))
    with pytest.raises(CheckFailed, match=r"Dense.__init__: params\['W'\] is wrong"):
        check_layer(Dense, L.Dense, args=(4, 3), parts=("init",))


class BatchNorm:
    def __init__(self, num_features, momentum=0.1, eps=1e-5, dtype=np.float64, unbiased=True):
        self.m, self.eps, self.unbiased, self.training = momentum, eps, unbiased, True
        self.params = {"gamma": np.ones(num_features, dtype), "beta": np.zeros(num_features, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers = {"running_mean": np.zeros(num_features, dtype),
                        "running_var": np.ones(num_features, dtype)}

    def forward(self, x):
        if self.training:
            mean, var, n = x.mean(axis=0), x.var(axis=0), len(x)
            running = self.buffers
            running["running_mean"][...] = (1 - self.m) * running["running_mean"] + self.m * mean
            unbiased = var * n / (n - 1) if self.unbiased else var
            running["running_var"][...] = (1 - self.m) * running["running_var"] + self.m * unbiased
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        self.std = np.sqrt(var + self.eps)
        self.xhat = (x - mean) / self.std
        return self.params["gamma"] * self.xhat + self.params["beta"]

    def backward(self, g):
        self.grads["gamma"][...] = np.sum(g * self.xhat, axis=0)
        self.grads["beta"][...] = np.sum(g, axis=0)
        scale = self.params["gamma"] / self.std
        if not self.training:
            return g * scale
        return scale * (g - g.mean(axis=0) - self.xhat * np.mean(g * self.xhat, axis=0))

    def train(self):
        self.training = True

    def eval(self):
        self.training = False


class BatchNormBiasedRunningVar(BatchNorm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, unbiased=False, **kwargs)


class BatchNormConstantStats(BatchNorm):
    def backward(self, g):
        super().backward(g)
        return g * self.params["gamma"] / self.std


def test_batchnorm_bugs_are_named():
    check_layer(BatchNorm, L.BatchNorm, args=(3,))
    with pytest.raises(CheckFailed, match="UNBIASED batch variance"):
        check_layer(BatchNormBiasedRunningVar, L.BatchNorm, args=(3,), parts=("forward",))
    with pytest.raises(CheckFailed, match="treats the batch mean and variance as constants"):
        check_layer(BatchNormConstantStats, L.BatchNorm, args=(3,), parts=("backward",))


class Dropout:
    def __init__(self, rate, rng=None, scale=True, keep_rate=False):
        self.rate, self.rng, self.training = rate, np.random.default_rng(rng), True
        self.scale, self.keep_rate = scale, keep_rate

    def forward(self, x):
        if not self.training:
            return x
        u = self.rng.random(x.shape)
        keep = u < self.rate if self.keep_rate else u >= self.rate
        self.mask = (keep / (1 - self.rate) if self.scale else keep).astype(x.dtype)
        return x * self.mask

    def backward(self, g):
        return g * self.mask


def test_dropout_bugs_are_named():
    check_layer(Dropout, L.Dropout, args=(0.3,))
    with pytest.raises(CheckFailed, match="dropout without rescaling"):
        check_layer(lambda rate, rng=None: Dropout(rate, rng, scale=False), L.Dropout, args=(0.3,))
    with pytest.raises(CheckFailed, match="KEPT with probability rate"):
        check_layer(lambda rate, rng=None: Dropout(rate, rng, keep_rate=True), L.Dropout,
                    args=(0.3,))


# ----------------------------------------------------------------- student losses

class MSE:
    def forward(self, pred, target):
        self.diff = pred - target
        return float(np.mean(self.diff**2))

    def backward(self):
        return 2 * self.diff / self.diff.size


class MSESignFlipped(MSE):
    def backward(self):
        return -super().backward()


class MSESum(MSE):
    def forward(self, pred, target):
        return super().forward(pred, target) * pred.size


class MSEPerRow(MSE):
    def backward(self):
        return super().backward().mean(axis=-1)


class SoftmaxCE:
    def forward(self, logits, target):
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.p, self.n = np.exp(log_p), len(logits)
        self.y = np.eye(logits.shape[1], dtype=logits.dtype)[target] if target.ndim == 1 else target
        return float(-np.sum(self.y * log_p) / self.n)

    def backward(self):
        return (self.p - self.y) / self.n


class SoftmaxCENoMean(SoftmaxCE):
    def backward(self):
        return self.p - self.y


@pytest.mark.parametrize("student, part, expected", [
    (MSESignFlipped, "backward", "the sign is flipped"),
    (MSESum, "forward", "missing the mean over all 12 elements"),
    (MSEPerRow, "backward", r"wrong shape: expected \(4, 3\), got \(4,\)"),
])
def test_mse_bugs_are_named(student, part, expected):
    check_loss(MSE, Lo.MSE, target="regression")
    with pytest.raises(CheckFailed, match=expected):
        check_loss(student, Lo.MSE, target="regression", parts=(part,))


@pytest.mark.parametrize("target", ["labels", "onehot"])
def test_cross_entropy_missing_one_over_n(target):
    check_loss(SoftmaxCE, Lo.SoftmaxCrossEntropy, target=target)
    with pytest.raises(CheckFailed, match=r"missing the 1/N average over the batch \(N = 4\)"):
        check_loss(SoftmaxCENoMean, Lo.SoftmaxCrossEntropy, target=target, parts=("backward",))


def test_loss_must_return_a_number():
    class ReturnsArray(MSE):
        def forward(self, pred, target):
            super().forward(pred, target)
            return np.array([1.0])

    with pytest.raises(CheckFailed, match=r"single number.*Received: ndarray of shape \(1,\)"):
        check_loss(ReturnsArray, Lo.MSE, target="regression")


# ----------------------------------------------------------------- initializers

class HeNormal:
    def __init__(self, fan="in", dist="normal", use_rng=True):
        self.fan, self.dist, self.use_rng = fan, dist, use_rng

    def __call__(self, shape, rng=None):
        rng = np.random.default_rng(rng) if self.use_rng else np.random.default_rng()
        std = np.sqrt(2 / shape[0 if self.fan == "in" else 1])
        if self.dist == "uniform":
            return rng.uniform(-np.sqrt(3) * std, np.sqrt(3) * std, size=shape)
        return rng.standard_normal(shape) * std


@pytest.mark.parametrize("student, expected", [
    (HeNormal(fan="out"), "fan_out is used where fan_in belongs"),
    (HeNormal(dist="uniform"), "look uniformly distributed, expected normally"),
    (HeNormal(use_rng=False), "ignores the rng argument"),
])
def test_initializer_bugs_are_named(student, expected):
    check_initializer(HeNormal(), I.HeNormal)
    with pytest.raises(CheckFailed, match=expected):
        check_initializer(student, I.HeNormal)


def test_orthogonal_needs_orthogonality():
    class NotOrthogonal:
        def __call__(self, shape, rng=None):
            return np.random.default_rng(rng).standard_normal(shape) / np.sqrt(shape[0])

    with pytest.raises(CheckFailed, match="not \\(semi-\\)orthogonal"):
        check_initializer(NotOrthogonal, I.Orthogonal)


# ----------------------------------------------------------------- optimizers and schedules

class Adam:
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, correct=True, by_shape=False):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.correct, self.by_shape = correct, by_shape
        self.state = {}

    def step(self, params, grads):
        b1, b2 = self.betas
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            key = p.shape if self.by_shape else i
            m, v, t = self.state.get(key, (0 * p, 0 * p, 0))
            m, v, t = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g, t + 1
            self.state[key] = (m, v, t)
            m_hat = m / (1 - b1**t) if self.correct else m
            v_hat = v / (1 - b2**t) if self.correct else v
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class AdamNotInPlace(Adam):
    def step(self, params, grads):
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            params[i] = p - self.lr * g


@pytest.mark.parametrize("student, expected", [
    (lambda **kw: Adam(correct=False, **kw), "Adam without bias correction"),
    (lambda **kw: Adam(by_shape=True, **kw), "state is shared between parameters"),
    (AdamNotInPlace, "not updated in place"),
])
def test_adam_bugs_are_named(student, expected):
    check_optimizer(Adam, O.Adam, kwargs={"lr": 0.01})
    with pytest.raises(CheckFailed, match=expected):
        check_optimizer(student, O.Adam, kwargs={"lr": 0.01})


def test_sgd_ignoring_nesterov_is_named():
    class SGD:
        def __init__(self, lr=0.01, momentum=0.0, nesterov=False):
            self.lr, self.mu, self.v = lr, momentum, {}

        def step(self, params, grads):
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                self.v[i] = self.mu * self.v.get(i, 0) + g
                p -= self.lr * self.v[i]

    kwargs = {"lr": 0.1, "momentum": 0.9}
    check_optimizer(SGD, O.SGD, kwargs=kwargs)
    with pytest.raises(CheckFailed, match="nesterov=True is ignored"):
        check_optimizer(SGD, O.SGD, kwargs={**kwargs, "nesterov": True})


class StepLR:
    def __init__(self, optimizer, step_size, gamma=0.1, lag=0, frozen=False):
        self.opt, self.base, self.size, self.gamma = optimizer, optimizer.lr, step_size, gamma
        self.epoch, self.lag, self.frozen = 0, lag, frozen

    def step(self):
        self.epoch += 1
        if not self.frozen:
            self.opt.lr = self.base * self.gamma ** (max(self.epoch - self.lag, 0) // self.size)


def test_schedule_bugs_are_named():
    check_schedule(StepLR, S.StepLR, kwargs={"step_size": 3})
    with pytest.raises(CheckFailed, match="one epoch behind"):
        check_schedule(lambda opt, **kw: StepLR(opt, lag=1, **kw), S.StepLR,
                       kwargs={"step_size": 3})
    with pytest.raises(CheckFailed, match="never changes optimizer.lr"):
        check_schedule(lambda opt, **kw: StepLR(opt, frozen=True, **kw), S.StepLR,
                       kwargs={"step_size": 3})


# ----------------------------------------------------------------- building blocks

def test_check_gradient_uses_finite_differences(capsys):
    x = np.random.default_rng(0).standard_normal((3, 4))
    check_gradient(lambda: np.sum(np.sin(x)), x, np.cos(x), where="sin")
    assert "✔ sin matches finite differences" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="the sign is flipped"):
        check_gradient(lambda: np.sum(np.sin(x)), x, -np.cos(x), where="sin")


def test_passed_prints_a_tick(capsys):
    passed("ReLU.forward")
    assert capsys.readouterr().out == "✔ ReLU.forward\n"


def test_compare_arrays_defeats_a_rigged_eq():
    class Liar(np.ndarray):
        def __eq__(self, other):
            return True

    with pytest.raises(CheckFailed, match="ndarray subclass"):
        compare_arrays(np.zeros(3).view(Liar), np.ones(3), where="f")
    with pytest.raises(CheckFailed, match="plain NumPy array"):
        compare_arrays([1.0, 1.0], np.ones(2), where="f")


@pytest.mark.parametrize("actual, context, expected", [
    (lambda e: -e, {}, "the sign is flipped"),
    (lambda e: 4 * e, {"batch_size": 4}, "missing the 1/N average"),
    (lambda e: e[None].repeat(5, 0), {}, "not summed over the batch"),
    (lambda e: e.T, {}, "transposed"),
    (lambda e: e.astype(np.float64), {"dtype": np.float32}, "upcast"),
    (lambda e: e.ravel()[:3], {}, "wrong shape"),
    (lambda e: 0.7 * e, {"rate": 0.3}, "dropout without rescaling"),
])
def test_diagnose_recognises(actual, context, expected):
    e = np.arange(1.0, 7.0, dtype=np.float32).reshape(2, 3)
    assert expected in diagnose(actual(e), e, context=context)


def test_diagnose_returns_none_for_unrelated_arrays():
    rng = np.random.default_rng(1)
    assert diagnose(rng.standard_normal((3, 3)), rng.standard_normal((3, 3))) is None


finite = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                    elements=st.floats(-1e4, 1e4, allow_nan=False))


@settings(max_examples=30, deadline=None)
@given(finite)
def test_compare_arrays_accepts_equal_arrays(e):
    compare_arrays(e.copy(), e, where="f")


@settings(max_examples=30, deadline=None)
@given(finite, st.sampled_from([np.float32, np.float64]))
def test_any_wrong_array_fails_with_location(e, dtype):
    e = e.astype(dtype)
    wrong = e.copy()
    wrong.flat[-1] += dtype(1.0) + abs(wrong.flat[-1])
    with pytest.raises(CheckFailed, match="max abs error .* at index"):
        compare_arrays(wrong, e, where="f", rtol=1e-4)


def test_check_function_names_swapped_values():
    check_function(I.compute_fans, I.compute_fans, inputs=[((3, 4),), ((5,),), ((3, 3, 4, 5),)])
    with pytest.raises(CheckFailed, match=r"compute_fans\(\(3, 4\)\) returned \(4, 3\).*swapped"):
        check_function(lambda s: (s[1], s[0]), I.compute_fans, inputs=[((3, 4),)],
                       where="compute_fans")


@pytest.mark.parametrize("check, reference, kwargs", [
    (check_activation, A.Softmax, {"kwargs": {"axis": 0}}),
    (check_activation, A.GELU, {"kwargs": {"approximate": "tanh"}}),
    (check_activation, A.Softplus, {}),
    (check_activation, A.ELU, {}),
    (check_layer, L.Dense, {"args": (4, 3), "parts": ("init", "forward", "backward")}),
    (check_layer, L.Flatten, {"input_shapes": [(3, 2, 2), (1, 4)]}),
    (check_layer, L.BatchNorm, {"args": (3,), "kwargs": {"momentum": 0.3}}),
    (check_loss, Lo.BinaryCrossEntropy, {"target": "binary"}),
    (check_loss, Lo.BinaryCrossEntropy, {"target": "binary", "kwargs": {"from_logits": True}}),
    (check_loss, Lo.CategoricalCrossEntropy, {"target": "onehot"}),
    (check_loss, Lo.Huber, {"kwargs": {"delta": 0.3}}),
    (check_loss, Lo.Hinge, {"target": "pm1"}),
    (check_loss, Lo.KLDivergence, {"target": "probs"}),
    (check_initializer, I.XavierUniform, {}),
    (check_initializer, I.Orthogonal, {}),
    (check_initializer, I.Zeros, {}),
    (check_optimizer, O.SGD, {"kwargs": {"lr": 0.1, "momentum": 0.9, "nesterov": True,
                                          "weight_decay": 0.01}}),
    (check_optimizer, O.RMSprop, {}),
    (check_optimizer, O.AdamW, {}),
    (check_schedule, S.CosineAnnealingLR, {"kwargs": {"T_max": 10}}),
    (check_schedule, S.ReduceLROnPlateau, {"kwargs": {"patience": 2}}),
])
def test_reference_passes_its_own_check(check, reference, kwargs, capsys):
    check(reference, reference, **kwargs)
    assert capsys.readouterr().out.startswith("✔ ")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_correct_students_pass_for_any_seed(seed):
    check_activation(Softmax, A.Softmax, seed=seed)
    check_layer(Dense, L.Dense, args=(4, 3), seed=seed)
    check_loss(SoftmaxCE, Lo.SoftmaxCrossEntropy, target="labels", seed=seed)
    check_optimizer(Adam, O.Adam, seed=seed, steps=5)
