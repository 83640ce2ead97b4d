"""npdl.models.Sequential: passes, gradients, torch parity, save/load, modes, fit, summary."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from npdl.activations import ReLU, Softmax, Tanh
from npdl.core import Layer, NotReadyError, ShapeError
from npdl.gradcheck import numerical_gradient, relative_error
from npdl.layers import BatchNorm, Dense, Dropout, Flatten
from npdl.losses import MSE, CategoricalCrossEntropy, SoftmaxCrossEntropy
from npdl.metrics import accuracy, is_classification_target
from npdl.models import Callback, EarlyStopping, History, Sequential
from npdl.optimizers import SGD

torch.set_default_dtype(torch.float64)


def mlp(rng=0, dims=(5, 7, 6, 3)):
    """Dense-ReLU-Dense-Tanh-Dense, seeded."""
    seeds = np.random.default_rng(rng).integers(0, 2**31, size=3)
    return Sequential([
        Dense(dims[0], dims[1], rng=seeds[0]), ReLU(),
        Dense(dims[1], dims[2], rng=seeds[1]), Tanh(),
        Dense(dims[2], dims[3], rng=seeds[2]),
    ])


def torch_copy(model):
    """The same MLP in torch, float64, weights copied (torch stores W transposed)."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            linear = torch.nn.Linear(layer.in_features, layer.out_features)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(layer.params["W"].T.copy()))
                linear.bias.copy_(torch.from_numpy(layer.params["b"]))
            layers.append(linear)
        else:
            layers.append({ReLU: torch.nn.ReLU, Tanh: torch.nn.Tanh}[type(layer)]())
    return torch.nn.Sequential(*layers)


def data(n=8, d=5, classes=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, classes, size=n)


# ------------------------------------------------------------ construction
def test_add_rejects_non_layers_and_forward_needs_layers():
    with pytest.raises(TypeError, match="expected a npdl.core.Layer.*Received: ufunc"):
        Sequential([np.tanh])
    with pytest.raises(TypeError, match=r"Received: the class ReLU; call it first, e.g. ReLU\(\)"):
        Sequential([ReLU])
    with pytest.raises(NotReadyError, match="no layers"):
        Sequential().forward(np.zeros((1, 2)))
    model = Sequential().add(Dense(2, 3)).add(ReLU())
    assert len(model) == 2 and isinstance(model[1], ReLU)
    assert "(1): ReLU()" in repr(model)


# ------------------------------------------------------------- gradients
@pytest.mark.parametrize("with_softmax", [False, True])
def test_whole_model_gradient_check(with_softmax):
    """Finite differences through the whole stack, wrt the input and every parameter."""
    x, labels = data()
    model = Sequential([Dense(5, 6, rng=2), Tanh(), Dense(6, 3, rng=3)])
    if with_softmax:  # probabilities against one-hot targets
        model.add(Softmax())
        loss, target = CategoricalCrossEntropy(), np.eye(3)[labels]
    else:
        loss, target = SoftmaxCrossEntropy(), labels

    def f():
        return loss.forward(model.forward(x), target)

    f()
    dx = model.backward(loss.backward())
    assert relative_error(dx, numerical_gradient(f, x)) < 1e-6
    f()
    model.backward(loss.backward())
    analytic = [g.copy() for g in model.grads()]
    for p, g in zip(model.params(), analytic, strict=True):
        assert relative_error(g, numerical_gradient(f, p)) < 1e-6


def test_torch_parity_forward_backward():
    model = mlp()
    x, labels = data(n=16)
    loss = SoftmaxCrossEntropy()
    out = model.forward(x)
    value = loss.forward(out, labels)
    dx = model.backward(loss.backward())

    net = torch_copy(model)
    xt = torch.from_numpy(x).requires_grad_(True)
    out_t = net(xt)
    value_t = torch.nn.functional.cross_entropy(out_t, torch.from_numpy(labels))
    value_t.backward()
    assert relative_error(out, out_t.detach().numpy()) < 1e-7
    assert abs(value - value_t.item()) / abs(value_t.item()) < 1e-7
    assert relative_error(dx, xt.grad.numpy()) < 1e-7
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    for layer, linear in zip(dense, linears, strict=True):
        assert relative_error(layer.grads["W"], linear.weight.grad.numpy().T) < 1e-7
        assert relative_error(layer.grads["b"], linear.bias.grad.numpy()) < 1e-7


def test_torch_parity_twenty_sgd_momentum_steps():
    model = mlp(rng=4)
    net = torch_copy(model)
    opt_t = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    opt = SGD(lr=0.05, momentum=0.9)
    loss = SoftmaxCrossEntropy()
    rng = np.random.default_rng(5)
    for _ in range(20):
        x, labels = rng.normal(size=(10, 5)), rng.integers(0, 3, size=10)
        loss.forward(model.forward(x), labels)
        model.backward(loss.backward(), need_input_grad=False)
        opt.step(model.params(), model.grads())
        opt_t.zero_grad()
        logits = net(torch.from_numpy(x))
        torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)).backward()
        opt_t.step()
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    for layer, linear in zip(dense, linears, strict=True):
        assert relative_error(layer.params["W"], linear.weight.detach().numpy().T) < 1e-7
        assert relative_error(layer.params["b"], linear.bias.detach().numpy()) < 1e-7


class _Exploding(Layer):
    """A parameter-free layer whose backward must never run."""

    def forward(self, x):
        return x

    def backward(self, grad_output):
        raise AssertionError("backward of a layer before the first parametrized layer was called")


def test_backward_without_input_grad_skips_leading_layers():
    model = Sequential([_Exploding(), Flatten(), Dense(6, 4, rng=0), ReLU(), Dense(4, 2, rng=1)])
    x = np.random.default_rng(0).normal(size=(3, 2, 3))
    out = model.forward(x)
    assert model.backward(np.ones_like(out), need_input_grad=False) is None
    skipped = [g.copy() for g in model.grads()]
    model.layers[0] = Flatten()  # now a full backward may run through it
    model.forward(x)
    dx = model.backward(np.ones_like(out))
    assert dx.shape == x.shape
    for a, b in zip(skipped, model.grads(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert Sequential([ReLU()]).backward(np.ones((1, 1)), need_input_grad=False) is None


def test_params_and_grads_are_stable_aligned_objects():
    model = Sequential([Dense(4, 3, rng=0), ReLU(), BatchNorm(3), Dense(3, 2, rng=1)])
    params, grads = model.params(), model.grads()
    assert [p.shape for p in params] == [(4, 3), (3,), (3,), (3,), (3, 2), (2,)]
    assert [g.shape for g in grads] == [p.shape for p in params]
    assert params[0] is model.layers[0].params["W"] and params[2] is model.layers[2].params["gamma"]
    x, labels = data(n=6, d=4, classes=2)
    model.fit(x, labels, loss=SoftmaxCrossEntropy(), optimizer=SGD(lr=0.1), epochs=2,
              batch_size=3, verbose=0, rng=0)
    assert all(a is b for a, b in zip(params, model.params(), strict=True))
    assert all(a is b for a, b in zip(grads, model.grads(), strict=True))
    assert model.num_params() == sum(p.size for p in params) == 29


# -------------------------------------------------------------- save/load
def _trained_bn_model(seed=0):
    model = Sequential([Dense(4, 5, rng=seed), BatchNorm(5), ReLU(), Dense(5, 3, rng=seed + 1)])
    x, labels = data(n=20, d=4, seed=seed)
    model.fit(x, labels, loss=SoftmaxCrossEntropy(), optimizer=SGD(lr=0.1, momentum=0.9),
              epochs=2, batch_size=5, verbose=0, rng=seed)
    return model, x


def test_save_load_exact_round_trip_with_batchnorm_stats(tmp_path):
    model, x = _trained_bn_model()
    assert not np.all(model.layers[1].buffers["running_mean"] == 0)  # stats really moved
    path = tmp_path / "weights"  # no .npz suffix: the exact name is kept
    model.save(path)
    assert path.exists()
    fresh = Sequential([Dense(4, 5, rng=9), BatchNorm(5), ReLU(), Dense(5, 3, rng=8)])
    own_arrays = list(fresh.state_dict().values())
    assert fresh.load(path) is fresh
    assert sorted(fresh.state_dict()) == sorted(
        ["0.W", "0.b", "1.gamma", "1.beta", "1.running_mean", "1.running_var", "3.W", "3.b"])
    for key, array in model.state_dict().items():
        loaded = fresh.state_dict()[key]
        assert loaded.tobytes() == array.tobytes() and loaded.dtype == array.dtype  # bitwise
    assert all(a is b for a, b in zip(own_arrays, fresh.state_dict().values(), strict=True))
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))


def test_load_rejects_mismatches_and_changes_nothing(tmp_path):
    model, _ = _trained_bn_model()
    path = tmp_path / "m.npz"
    model.save(path)
    other = Sequential([Dense(4, 5), ReLU(), Dense(5, 3)])
    before = [a.copy() for a in other.state_dict().values()]
    with pytest.raises(ValueError, match=r"missing \['2.W', '2.b'\], unexpected \['1.beta'"):
        other.load(path)
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['3.W', '3.b'\]"):
        Sequential([Dense(4, 5), BatchNorm(5)]).load(path)
    with pytest.raises(ValueError, match=r"missing \['2.W', '2.b'\], unexpected \['3.W', '3.b'\]"):
        Sequential([Dense(4, 5), BatchNorm(5), Dense(5, 3), ReLU()]).load(path)
    wide = Sequential([Dense(4, 5), BatchNorm(5), ReLU(), Dense(5, 4)])
    with pytest.raises(ShapeError, match=r"'3.W' of shape \(5, 4\). Received: shape=\(5, 3\)"):
        wide.load(path)
    single = Sequential([Dense(4, 5, dtype=np.float32), BatchNorm(5, dtype=np.float32), ReLU(),
                         Dense(5, 3, dtype=np.float32)])
    with pytest.raises(TypeError, match="dtype float32. Received: dtype=float64"):
        single.load(path)
    for a, b in zip(before, other.state_dict().values(), strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------- predict/evaluate
@pytest.mark.parametrize("start_training", [True, False])
def test_predict_and_evaluate_use_eval_mode_and_restore_it(start_training):
    model = Sequential([Dense(5, 16, rng=0), Dropout(0.5, rng=1), Dense(16, 3, rng=2)])
    model.train() if start_training else model.eval()
    x, labels = data(n=10)
    first = model.predict(x)
    np.testing.assert_array_equal(first, model.predict(x))  # dropout is off
    np.testing.assert_allclose(model.predict(x, batch_size=3), first, rtol=1e-12)
    assert all(layer.training is start_training for layer in model.layers)
    result = model.evaluate(x, labels, SoftmaxCrossEntropy(), batch_size=4)
    assert all(layer.training is start_training for layer in model.layers)
    assert set(result) == {"loss", "accuracy"}
    assert result["loss"] == pytest.approx(SoftmaxCrossEntropy().forward(first, labels), rel=1e-12)
    assert result["accuracy"] == np.mean(first.argmax(axis=1) == labels)
    with pytest.raises(ShapeError):
        model.predict(np.zeros((2, 4)))  # wrong width: the mode is restored anyway
    assert all(layer.training is start_training for layer in model.layers)


def test_evaluate_regression_and_one_hot_targets():
    model = mlp()
    x, labels = data()
    onehot = np.eye(3)[labels]
    acc_labels = model.evaluate(x, labels, SoftmaxCrossEntropy())["accuracy"]
    assert model.evaluate(x, onehot, SoftmaxCrossEntropy())["accuracy"] == acc_labels
    result = model.evaluate(x, np.linspace(-1, 1, 24).reshape(8, 3) ** 3, MSE())
    assert set(result) == {"loss"}  # accuracy only for classification targets
    with pytest.raises(ShapeError, match=r"x.shape=\(8, 5\), y.shape=\(7,\)"):
        model.evaluate(x, labels[:7], SoftmaxCrossEntropy())
    with pytest.raises(ValueError, match="f1"):
        model.evaluate(x, labels, SoftmaxCrossEntropy(), metrics=("f1",))


# -------------------------------------------------------------------- fit
class _CountingSGD(SGD):
    def __init__(self, lr):
        super().__init__(lr=lr)
        self.steps = 0

    def step(self, params, grads):
        self.steps += 1
        super().step(params, grads)


def test_fit_covers_partial_batches_and_weights_the_mean_loss():
    model = mlp()
    x, labels = data(n=10)
    before = model.evaluate(x, labels, SoftmaxCrossEntropy())
    opt = _CountingSGD(lr=0.0)  # no update: the epoch loss must equal the full-data loss
    history = model.fit(x, labels, loss=SoftmaxCrossEntropy(), optimizer=opt, epochs=2,
                        batch_size=4, verbose=0, rng=0)
    assert opt.steps == 2 * 3  # batches of 4, 4 and 2
    assert history.history["loss"][0] == pytest.approx(before["loss"], rel=1e-12)
    assert history.history["accuracy"][1] == before["accuracy"]


def test_fit_is_seeded_and_restores_mode():
    results = []
    for _ in range(2):
        model = Sequential([Dense(5, 8, rng=0), Dropout(0.2, rng=1), Dense(8, 3, rng=2)]).eval()
        x, labels = data(n=30)
        model.fit(x, labels, loss=SoftmaxCrossEntropy(), optimizer=SGD(lr=0.1), epochs=3,
                  batch_size=7, verbose=0, rng=np.random.default_rng(3))
        assert not any(layer.training for layer in model.layers)
        results.append([p.copy() for p in model.params()])
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_fit_keeps_parameter_and_gradient_arrays_and_float32():
    # The optimizer and the layers update these arrays in place: fit never swaps them.
    model = Sequential([Dense(5, 7, rng=0, dtype=np.float32), ReLU(),
                        Dense(7, 3, rng=1, dtype=np.float32)])
    params, grads = model.params(), model.grads()
    x, y = data(n=10)
    history = model.fit(x.astype(np.float32), y, loss=SoftmaxCrossEntropy(),
                        optimizer=SGD(lr=0.1, momentum=0.9), epochs=3, batch_size=4, verbose=0,
                        rng=0)
    assert all(a is b for a, b in zip(model.params(), params, strict=True))
    assert all(a is b for a, b in zip(model.grads(), grads, strict=True))
    assert all(a.dtype == np.float32 for a in params + grads)
    assert model.forward(x.astype(np.float32)).dtype == np.float32
    assert np.isfinite(history.history["loss"]).all()


def test_fit_validates_inputs():
    model = mlp()
    x, labels = data()
    kw = dict(loss=SoftmaxCrossEntropy(), optimizer=SGD(), verbose=0)
    with pytest.raises(ShapeError, match=r"Received: x.shape=\(8, 5\), y.shape=\(6,\)"):
        model.fit(x, labels[:6], epochs=1, **kw)
    with pytest.raises(ValueError, match="epochs to be a positive integer. Received: 0"):
        model.fit(x, labels, epochs=0, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(x, labels, epochs=1, batch_size=0, **kw)
    with pytest.raises(ShapeError, match="validation_data"):
        model.fit(x, labels, epochs=1, validation_data=(x, labels[:3]), **kw)


def test_history_keys_plot_and_verbose_output(capsys):
    model = mlp()
    x, labels = data(n=12)
    history = model.fit(x, labels, loss=SoftmaxCrossEntropy(), optimizer=SGD(lr=0.1), epochs=3,
                        batch_size=5, validation_data=(x[:4], labels[:4]), verbose=1, rng=0)
    assert isinstance(history, History) and len(history) == 3
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert history.epochs == [0, 1, 2]
    assert all(len(v) == 3 for v in history.history.values())
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(x[:4], labels[:4], SoftmaxCrossEntropy())["loss"], rel=1e-12)
    ax = history.plot()
    assert len(ax.get_lines()) == 4 and ax.get_xlabel() == "epoch"
    assert "Epoch 3/3 - loss:" in capsys.readouterr().out
    reg = Sequential([Dense(5, 1, rng=0)]).fit(
        x, x[:, :1] * 2.0, loss=MSE(), optimizer=SGD(lr=0.01), epochs=2, verbose=0,
        validation_data=(x, x[:, :1] * 2.0))
    assert list(reg.history) == ["loss", "val_loss"]
    assert reg.history["loss"][1] < reg.history["loss"][0]


def test_callback_can_stop_training():
    class StopAfterTwo(Callback):
        def on_epoch_end(self, epoch, logs, model):
            self.seen = epoch
            return epoch == 1

    cb = StopAfterTwo()
    x, labels = data()
    history = mlp().fit(x, labels, loss=SoftmaxCrossEntropy(), optimizer=SGD(), epochs=10,
                        callbacks=[cb], verbose=0)
    assert len(history) == 2 and cb.seen == 1


def test_early_stopping_restores_best_weights():
    class Snapshots(Callback):
        def __init__(self):
            self.params = []

        def on_epoch_end(self, epoch, logs, model):
            self.params.append([p.copy() for p in model.params()])
            return False

    x, labels = data(n=40)
    model = mlp()
    arrays = model.params()
    snaps = Snapshots()
    # min_delta so large that nothing after epoch 0 counts as an improvement
    early = EarlyStopping(monitor="val_loss", patience=2, min_delta=1e6)
    history = model.fit(x, labels, loss=SoftmaxCrossEntropy(), optimizer=SGD(lr=0.1, momentum=0.9),
                        epochs=20, batch_size=8, validation_data=(x, labels), verbose=0, rng=0,
                        callbacks=[snaps, early])
    assert len(history) == 3 and early.stopped_epoch == 2 and early.best_epoch == 0
    assert not np.array_equal(snaps.params[2][0], snaps.params[0][0])  # training moved on
    for p, best in zip(model.params(), snaps.params[0], strict=True):
        np.testing.assert_array_equal(p, best)  # ... and the best epoch came back
    assert all(a is b for a, b in zip(arrays, model.params(), strict=True))  # same arrays


def test_early_stopping_modes_and_missing_key():
    es = EarlyStopping(monitor="val_accuracy", patience=1)
    assert es.mode == "max"
    model = mlp()
    assert es.on_epoch_end(0, {"val_accuracy": 0.5}, model) is False
    assert es.on_epoch_end(1, {"val_accuracy": 0.7}, model) is False
    assert es.on_epoch_end(2, {"val_accuracy": 0.6}, model) is True
    assert es.best == 0.7 and es.best_epoch == 1
    with pytest.raises(KeyError, match="Pass validation_data"):
        EarlyStopping().on_epoch_end(0, {"loss": 1.0}, model)


# ---------------------------------------------------------------- summary
def test_summary_counts_and_shapes(capsys):
    model = Sequential([Flatten(), Dense(64, 32), ReLU(), BatchNorm(32), Dense(32, 10)])
    table = model.summary(input_shape=(8, 8))
    assert table == capsys.readouterr().out.rstrip("\n")
    lines = table.splitlines()
    assert lines[0].split() == ["#", "Layer", "Output", "shape", "Params"]
    assert "(None, 64)" in lines[2] and "(None, 10)" in lines[6]
    assert lines[3].split()[-1] == "2,080" and lines[5].split()[-1] == "64"
    assert lines[-1] == "Total params: 2,474" and model.num_params() == 2474
    model.forward(np.zeros((2, 8, 8)))
    assert model.summary() == table  # input shape remembered from forward
    assert "(None, 3)" in Sequential([Dense(4, 3)]).summary()  # from in_features


# ------------------------------------------------------- dtypes, properties
def test_float32_model_trains_and_predicts_in_float32():
    model = Sequential([Dense(5, 8, rng=0, dtype=np.float32), ReLU(),
                        Dense(8, 3, rng=1, dtype=np.float32)])
    x, labels = data(n=20)
    history = model.fit(x.astype(np.float32), labels, loss=SoftmaxCrossEntropy(),
                        optimizer=SGD(lr=0.1, momentum=0.9), epochs=2, batch_size=8, verbose=0)
    assert all(p.dtype == np.float32 for p in model.params() + model.grads())
    assert model.predict(x.astype(np.float32)).dtype == np.float32
    assert model.predict(x).dtype == np.float32  # Dense(dtype=float32) casts float64 input
    assert isinstance(history.history["loss"][0], float)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), batch_size=st.integers(1, 50), scale=st.sampled_from([1.0, 1e2, 1e4]))
def test_predict_in_batches_matches_one_pass_and_stays_finite(n, batch_size, scale):
    model = mlp(rng=1)
    x = np.random.default_rng(n).uniform(-scale, scale, size=(n, 5))
    full = model.predict(x)
    assert full.shape == (n, 3) and full.dtype == np.float64 and np.all(np.isfinite(full))
    batched = model.predict(x, batch_size=batch_size)
    np.testing.assert_allclose(batched, full, rtol=1e-12, atol=1e-12)
    labels = np.arange(n) % 3
    result = model.evaluate(x, labels, SoftmaxCrossEntropy(), batch_size=batch_size)
    assert np.isfinite(result["loss"]) and 0.0 <= result["accuracy"] <= 1.0


def test_verbose_2_prints_lines_without_progress_bar(capsys):
    x, labels = data()
    mlp().fit(x, labels, loss=SoftmaxCrossEntropy(), optimizer=SGD(), epochs=2, verbose=2)
    captured = capsys.readouterr()
    assert captured.out.count("Epoch ") == 2 and "batch/s" not in captured.err
    mlp().fit(x, labels, loss=SoftmaxCrossEntropy(), optimizer=SGD(), epochs=1, verbose=0)
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------- metrics
def test_accuracy_for_labels_one_hot_and_binary_outputs():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(scores, np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert accuracy(scores, np.eye(2)[[1, 0, 0]]) == pytest.approx(2 / 3)
    probs = np.array([[0.9], [0.2], [0.6]])
    assert accuracy(probs, np.array([[1.0], [0.0], [0.0]])) == pytest.approx(2 / 3)
    logits = np.array([1.5, -0.3, 0.2])
    assert accuracy(logits, np.array([1, -1, -1]), threshold=0.0) == pytest.approx(2 / 3)
    with pytest.raises(ShapeError, match="one-hot targets of shape"):
        accuracy(scores, np.eye(3)[[1, 0, 0]])
    with pytest.raises(ShapeError, match="same number of samples"):
        accuracy(scores, np.array([1, 0]))
    assert is_classification_target(np.array([0, 2, 1]))
    assert is_classification_target(np.eye(3))
    assert is_classification_target(np.array([[1.0], [-1.0]]))
    assert not is_classification_target(np.array([[0.2, 0.8]]))
    assert not is_classification_target(np.array([0.5, 1.5]))
