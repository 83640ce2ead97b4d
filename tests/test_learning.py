"""End-to-end learning: small seeded problems that a correct framework must solve."""

import numpy as np

from npdl.activations import ReLU, Sigmoid, Tanh
from npdl.data import load_breast_cancer, load_digits, standardize, train_test_split
from npdl.layers import Dense
from npdl.losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy
from npdl.models import EarlyStopping, Sequential
from npdl.optimizers import SGD, Adam


def test_xor_reaches_full_accuracy():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0])
    model = Sequential([Dense(2, 8, rng=0), Tanh(), Dense(8, 2, rng=1)])
    history = model.fit(x, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(lr=0.1, momentum=0.9),
                        epochs=200, batch_size=4, verbose=0, rng=0)
    assert history.history["accuracy"][-1] == 1.0
    assert model.evaluate(x, y, SoftmaxCrossEntropy())["accuracy"] == 1.0
    np.testing.assert_array_equal(model.predict(x).argmax(axis=1), y)


def test_xor_binary_sigmoid_output():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    model = Sequential([Dense(2, 8, rng=3), Tanh(), Dense(8, 1, rng=4), Sigmoid()])
    model.fit(x, y, loss=BinaryCrossEntropy(), optimizer=Adam(lr=0.05), epochs=300,
              batch_size=4, verbose=0, rng=0)
    assert model.evaluate(x, y, BinaryCrossEntropy())["accuracy"] == 1.0  # threshold 0.5


def test_digits_mlp_reaches_97_percent_held_out():
    x, y = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, rng=2, stratify=y)
    x_train, mean, std = standardize(x_train)
    x_test, _, _ = standardize(x_test, mean, std)
    model = Sequential([Dense(64, 128, rng=0), ReLU(), Dense(128, 10, rng=9)])
    history = model.fit(
        x_train, y_train, loss=SoftmaxCrossEntropy(),
        optimizer=SGD(lr=0.05, momentum=0.9, weight_decay=1e-3),
        epochs=20, batch_size=32, validation_data=(x_test, y_test), verbose=0, rng=0,
    )
    assert history.history["loss"][-1] < history.history["loss"][0] / 5
    assert model.evaluate(x_test, y_test, SoftmaxCrossEntropy())["accuracy"] >= 0.97


def test_breast_cancer_logistic_mlp_with_early_stopping():
    x, y = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, rng=0, stratify=y)
    x_train, mean, std = standardize(x_train)
    x_test, _, _ = standardize(x_test, mean, std)
    y_train, y_test = y_train[:, None].astype(np.float64), y_test[:, None].astype(np.float64)
    model = Sequential([Dense(30, 16, rng=0), ReLU(), Dense(16, 1, rng=1)])
    loss = BinaryCrossEntropy(from_logits=True)  # accuracy thresholds logits at 0
    early = EarlyStopping(patience=3)
    history = model.fit(x_train, y_train, loss=loss, optimizer=SGD(lr=0.05, momentum=0.9),
                        epochs=50, validation_data=(x_test, y_test), callbacks=[early],
                        verbose=0, rng=0)
    assert early.stopped_epoch == len(history) - 1 < 49  # stopped early
    result = model.evaluate(x_test, y_test, loss)
    assert result["loss"] == early.best  # the best epoch's weights were restored
    assert result["accuracy"] >= 0.95


def test_regression_fits_a_sine():
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, size=(256, 1))
    y = np.sin(x)
    model = Sequential([Dense(1, 32, rng=0), Tanh(), Dense(32, 1, rng=1)])
    history = model.fit(x, y, loss=MSE(), optimizer=Adam(lr=0.01), epochs=100, batch_size=32,
                        verbose=0, rng=0)
    assert "accuracy" not in history.history
    assert model.evaluate(x, y, MSE())["loss"] < 1e-2  # Var(sin x) is about 0.5
