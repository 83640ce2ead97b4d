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


def test_digits_cnn_reaches_98_percent_and_beats_the_mlp_on_the_same_split():
    """Chapter 9's capstone: on chapter 8's split, a small CNN beats chapter 8's MLP.

    359 test images make one seed's accuracy noisy (about +-2 images), so both models are
    trained from three (weight seed, shuffle seed) pairs and compared on their mean accuracy.
    """
    from threadpoolctl import threadpool_limits

    from npdl.conv import Conv2D, MaxPool2D
    from npdl.layers import Dropout, Flatten
    from npdl.models import StepSchedule
    from npdl.schedules import CosineAnnealingLR

    x, y = load_digits()
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, rng=0, stratify=y)
    x_train, _, y_train, _ = train_test_split(x_rest, y_rest, test_size=0.1, rng=0,
                                              stratify=y_rest)

    def accuracy(model, train_x, test_x, epochs, weight_decay, shuffle_seed):
        optimizer = SGD(lr=0.05, momentum=0.9, weight_decay=weight_decay)
        model.fit(train_x, y_train, loss=SoftmaxCrossEntropy(), optimizer=optimizer,
                  epochs=epochs, batch_size=32, verbose=0, rng=shuffle_seed,
                  callbacks=[StepSchedule(CosineAnnealingLR(optimizer, T_max=epochs))])
        return model.evaluate(test_x, y_test, SoftmaxCrossEntropy())["accuracy"]

    mlp_train, mean, std = standardize(x_train)
    mlp_test = standardize(x_test, mean, std)[0]
    pixel_mean, pixel_std = x_train.mean(), x_train.std()  # one scale for all pixels

    def images(flat):
        return ((flat - pixel_mean) / pixel_std).reshape(-1, 1, 8, 8)

    def cnn(seed):
        seeds = np.random.default_rng(seed)
        return Sequential([
            Conv2D(1, 32, 3, padding=1, rng=seeds), ReLU(), MaxPool2D(2),
            Conv2D(32, 64, 3, padding=1, rng=seeds), ReLU(), MaxPool2D(2),
            Flatten(), Dense(64 * 2 * 2, 128, rng=seeds), ReLU(), Dropout(0.5, rng=seeds),
            Dense(128, 10, rng=seeds),
        ])

    mlp_accuracies, cnn_accuracies = [], []
    with threadpool_limits(limits=1):  # the book's setting: same summation order, same numbers
        for seed in (0, 1, 2):  # weight seed and shuffle seed alike
            mlp = Sequential([Dense(64, 256, rng=seed), ReLU(), Dense(256, 10, rng=seed + 10)])
            mlp_accuracies.append(accuracy(mlp, mlp_train, mlp_test, 30, 1e-3, seed))
            cnn_accuracies.append(accuracy(cnn(seed), images(x_train), images(x_test), 40, 2e-3,
                                           seed))
    assert np.mean(cnn_accuracies) >= 0.98, cnn_accuracies
    assert np.mean(cnn_accuracies) > np.mean(mlp_accuracies), (cnn_accuracies, mlp_accuracies)
