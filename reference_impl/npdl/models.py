"""`Sequential`: a stack of layers, its training loop, and saving/loading.

    model = Sequential([Dense(64, 32), ReLU(), Dense(32, 10)])
    history = model.fit(x, y, loss=SoftmaxCrossEntropy(), optimizer=SGD(lr=0.1),
                        epochs=10, rng=0)
    model.evaluate(x_test, y_test, SoftmaxCrossEntropy())   # {"loss": ..., "accuracy": ...}

Forward runs the layers in order, backward runs them in reverse:
``dL/dx = J_1^T (J_2^T (... J_n^T dL/dy))``.
"""

from __future__ import annotations

import numpy as np

from npdl.callbacks import Callback, EarlyStopping, History, StepSchedule
from npdl.core import Layer, NotReadyError, ShapeError
from npdl.data import _as_generator, batches
from npdl.metrics import count_correct, is_classification_target

__all__ = ["Sequential", "History", "Callback", "EarlyStopping", "StepSchedule"]


def _check_samples(x, y, who: str) -> None:
    if len(x) != len(y):
        raise ShapeError(
            f"{who}: expected x and y with the same number of samples (first dimension). "
            f"Received: x.shape={np.shape(x)}, y.shape={np.shape(y)}."
        )


def _positive_int(value, who: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{who}: expected {name} to be a positive integer. Received: {value!r}.")
    return int(value)


def _binary_threshold(loss, y) -> float:
    """Decision threshold for one-column outputs: 0 for logits or +-1 targets, else 0.5."""
    if getattr(loss, "from_logits", False) or np.min(y) < 0:
        return 0.0
    return 0.5


def _progress_bar(epoch: int, epochs: int, n_batches: int):
    from tqdm import tqdm  # lazily: only for verbose runs

    return tqdm(total=n_batches, desc=f"Epoch {epoch + 1}/{epochs}", unit="batch", leave=False)


class Sequential:
    """Layers applied one after another: ``y = f_n(... f_2(f_1(x)))``.

    Args:
        layers: optional list of `npdl.core.Layer` objects (activations included).
    """

    def __init__(self, layers=None) -> None:
        self.layers: list[Layer] = []
        self._input_shape: tuple | None = None  # last forward's input shape, for summary()
        for layer in layers or ():
            self.add(layer)

    def add(self, layer: Layer) -> Sequential:
        if isinstance(layer, type) and issubclass(layer, Layer):
            raise TypeError(
                f"Sequential.add: expected a layer instance. "
                f"Received: the class {layer.__name__}; call it first, e.g. {layer.__name__}()."
            )
        if not isinstance(layer, Layer):
            raise TypeError(
                f"Sequential.add: expected a npdl.core.Layer (e.g. Dense, ReLU). "
                f"Received: {type(layer).__name__} {layer!r}."
            )
        self.layers.append(layer)
        return self

    # ------------------------------------------------------------ passes
    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (batch, ...) -> output of the last layer."""
        if not self.layers:
            raise NotReadyError(
                "Sequential.forward: the model has no layers. Add some with add(layer)."
            )
        self._input_shape = np.shape(x)[1:]
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True):
        """dL/d(output) -> dL/dx, filling every layer's ``grads`` on the way.

        With ``need_input_grad=False`` the layers before the first layer with
        parameters are skipped (nothing there needs a gradient), that layer
        computes only its parameter gradients, and None is returned.
        """
        g = grad_output
        if need_input_grad:
            for layer in reversed(self.layers):
                g = layer.backward(g)
            return g
        first = next((i for i, layer in enumerate(self.layers) if layer.params), None)
        if first is None:
            return None
        for layer in reversed(self.layers[first + 1 :]):
            g = layer.backward(g)
        self.layers[first].backward(g, need_input_grad=False)
        return None

    # ------------------------------------------------------- parameters
    def params(self) -> list[np.ndarray]:
        """Every parameter array, in layer order then key order (the arrays themselves)."""
        return [p for layer in self.layers for p in layer.params.values()]

    def grads(self) -> list[np.ndarray]:
        """The gradient arrays aligned with `params()`."""
        return [layer.grads[key] for layer in self.layers for key in layer.params]

    def num_params(self) -> int:
        return sum(layer.num_params() for layer in self.layers)

    def state_dict(self) -> dict[str, np.ndarray]:
        """``"{index}.{name}"`` -> array, for params and buffers (the arrays themselves)."""
        state = {}
        for i, layer in enumerate(self.layers):
            for name, array in {**layer.params, **layer.buffers}.items():
                state[f"{i}.{name}"] = array
        return state

    def load_state_dict(self, state: dict) -> Sequential:
        """Copy values into the model's own arrays after checking keys, shapes and dtypes."""
        own = self.state_dict()
        missing = sorted(own.keys() - state.keys())
        unexpected = sorted(state.keys() - own.keys())
        if missing or unexpected:
            raise ValueError(
                f"Sequential.load: expected exactly the keys {sorted(own)}. "
                f"Received: missing {missing}, unexpected {unexpected}. "
                "Is it the same architecture?"
            )
        for key, array in own.items():
            value = np.asarray(state[key])
            if value.shape != array.shape:
                raise ShapeError(
                    f"Sequential.load: expected {key!r} of shape {array.shape}. "
                    f"Received: shape={value.shape}."
                )
            if value.dtype != array.dtype:
                raise TypeError(
                    f"Sequential.load: expected {key!r} of dtype {array.dtype}. "
                    f"Received: dtype={value.dtype}."
                )
        for key, array in own.items():  # only after every check passed: all or nothing
            array[...] = state[key]
        return self

    def save(self, path) -> None:
        """Save params and buffers to ``path`` as .npz (keys ``"0.W"``, ``"3.running_mean"``...)."""
        with open(path, "wb") as f:  # a file object: numpy must not append ".npz" to the name
            np.savez(f, **self.state_dict())

    def load(self, path) -> Sequential:
        """Load values saved by `save` into this (same-architecture) model, bit for bit."""
        with np.load(path, allow_pickle=False) as data:
            stored = {key: data[key] for key in data.files}
        return self.load_state_dict(stored)

    # ------------------------------------------------------------- modes
    def train(self) -> Sequential:
        for layer in self.layers:
            layer.train()
        return self

    def eval(self) -> Sequential:
        for layer in self.layers:
            layer.eval()
        return self

    def _run_in_eval_mode(self, fn):
        """Call ``fn()`` in eval mode, then give every layer its previous mode back."""
        modes = [layer.training for layer in self.layers]
        self.eval()
        try:
            return fn()
        finally:
            for layer, mode in zip(self.layers, modes, strict=True):
                layer.training = mode

    # --------------------------------------------------------- inference
    def predict(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Outputs for ``x`` in eval mode, in batches of ``batch_size`` (None: all at once)."""

        x = np.asarray(x)

        def run():
            if batch_size is None:
                out = self.forward(x)
                return out.copy() if np.may_share_memory(out, x) else out
            size = _positive_int(batch_size, "Sequential.predict", "batch_size")
            return np.concatenate([self.forward(xb) for xb in batches(x, batch_size=size)])

        return self._run_in_eval_mode(run)

    def evaluate(self, x, y, loss, metrics=("accuracy",), batch_size: int | None = None) -> dict:
        """Mean loss (and accuracy) over ``(x, y)`` in eval mode.

        Accuracy is reported for classification targets only (integer labels,
        one-hot rows, or one column of 0/1 or -1/+1); see `npdl.metrics`.
        Returns ``{"loss": float, "accuracy": float}``.
        """
        x, y = np.asarray(x), np.asarray(y)
        _check_samples(x, y, "Sequential.evaluate")
        unknown = set(metrics) - {"accuracy"}
        if unknown:
            raise ValueError(
                f"Sequential.evaluate: expected metrics from ('accuracy',). "
                f"Received: {sorted(unknown)}."
            )
        with_accuracy = "accuracy" in metrics and is_classification_target(y)
        threshold = _binary_threshold(loss, y) if with_accuracy else None
        if batch_size is not None:
            batch_size = _positive_int(batch_size, "Sequential.evaluate", "batch_size")

        def run():
            total_loss, correct = 0.0, 0
            for xb, yb in batches(x, y, batch_size=batch_size or len(x)):
                out = self.forward(xb)
                total_loss += float(loss.forward(out, yb)) * len(xb)
                if with_accuracy:
                    correct += count_correct(out, yb, threshold)
            logs = {"loss": total_loss / len(x)}
            if with_accuracy:
                logs["accuracy"] = correct / len(x)
            return logs

        return self._run_in_eval_mode(run)

    # ---------------------------------------------------------- training
    def fit(
        self, x, y, *, loss, optimizer, epochs, batch_size=32, shuffle=True,
        validation_data=None, callbacks=(), verbose=1, rng=None,
    ) -> History:
        """Mini-batch training: per batch ``forward``, ``loss``, ``backward``, ``optimizer.step``.

        Args:
            x, y: training inputs (N, ...) and targets (N, ...).
            loss: an `npdl.losses.Loss`; optimizer: an `npdl.optimizers.Optimizer`.
            epochs: passes over the data.
            batch_size: samples per step (the last batch of an epoch may be smaller).
            shuffle: reshuffle every epoch with ``rng`` (a Generator or an int seed).
            validation_data: optional ``(x_val, y_val)`` evaluated after each epoch.
            callbacks: objects with ``on_epoch_end(epoch, logs, model) -> stop``
                (and optionally ``on_train_begin(model)`` / ``on_train_end(model)``).
            verbose: 0 silent, 1 progress bar and a line per epoch, 2 a line per epoch.

        Returns a `History` with per-epoch ``loss`` (sample-weighted mean over the
        batches, measured while training) and, for classification targets,
        ``accuracy``; plus ``val_loss``/``val_accuracy`` with validation data.
        Every layer gets its previous train/eval mode back at the end.
        """
        x, y = np.asarray(x), np.asarray(y)
        _check_samples(x, y, "Sequential.fit")
        epochs = _positive_int(epochs, "Sequential.fit", "epochs")
        batch_size = _positive_int(batch_size, "Sequential.fit", "batch_size")
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError(
                    "Sequential.fit: expected validation_data=(x_val, y_val). "
                    f"Received: a sequence of length {len(validation_data)}."
                )
            _check_samples(*validation_data, "Sequential.fit (validation_data)")
        gen = _as_generator(rng)
        history = History()
        modes = [layer.training for layer in self.layers]
        for callback in callbacks:
            getattr(callback, "on_train_begin", lambda model: None)(self)
        try:
            for epoch in range(epochs):
                n_batches = -(-len(x) // batch_size)
                bar = _progress_bar(epoch, epochs, n_batches) if verbose == 1 else None
                logs = self._train_epoch(x, y, loss, optimizer, batch_size, shuffle, gen, bar)
                if validation_data is not None:
                    metrics = ("accuracy",) if "accuracy" in logs else ()
                    val = self.evaluate(*validation_data, loss, metrics=metrics)
                    logs.update({f"val_{key}": value for key, value in val.items()})
                history.record(epoch, logs)
                if verbose:
                    summary = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
                    print(f"Epoch {epoch + 1}/{epochs} - {summary}")
                if any([bool(cb.on_epoch_end(epoch, logs, self)) for cb in callbacks]):
                    break
        finally:
            for layer, mode in zip(self.layers, modes, strict=True):
                layer.training = mode
        for callback in callbacks:
            getattr(callback, "on_train_end", lambda model: None)(self)
        return history

    def _train_epoch(self, x, y, loss, optimizer, batch_size, shuffle, gen, bar=None) -> dict:
        """One pass over the data in train mode; returns ``{"loss": ..., "accuracy": ...}``."""
        self.train()
        classify = is_classification_target(y)
        threshold = _binary_threshold(loss, y) if classify else None
        params, grads = self.params(), self.grads()  # fixed objects: fetched once
        total_loss, correct = 0.0, 0
        for xb, yb in batches(x, y, batch_size, shuffle=shuffle, rng=gen):
            out = self.forward(xb)
            batch_loss = float(loss.forward(out, yb))
            total_loss += batch_loss * len(xb)
            if classify:
                correct += count_correct(out, yb, threshold)
            self.backward(loss.backward(), need_input_grad=False)
            optimizer.step(params, grads)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{batch_loss:.4f}", refresh=False)
        if bar is not None:
            bar.close()
        logs = {"loss": total_loss / len(x)}
        if classify:
            logs["accuracy"] = correct / len(x)
        return logs

    # ------------------------------------------------------------ display
    def summary(self, input_shape=None) -> str:
        """Print and return a table of layers, output shapes and parameter counts.

        ``input_shape`` is one sample's shape, e.g. ``(64,)``; by default the
        shape seen by the last ``forward`` or the first layer's ``in_features``.
        """
        if input_shape is None:
            input_shape = self._input_shape
        if input_shape is None and self.layers and hasattr(self.layers[0], "in_features"):
            input_shape = (self.layers[0].in_features,)
        shape = None if input_shape is None else (None, *input_shape)
        rows = []
        for i, layer in enumerate(self.layers):
            if shape is not None:
                shape = layer.output_shape(shape)
            shown = "?" if shape is None else str(shape)
            rows.append((str(i), repr(layer), shown, f"{layer.num_params():,}"))
        header = ("#", "Layer", "Output shape", "Params")
        widths = [max(len(r[c]) for r in [header, *rows]) for c in range(4)]

        def line(row):
            return "  ".join([row[0].rjust(widths[0]), row[1].ljust(widths[1]),
                              row[2].ljust(widths[2]), row[3].rjust(widths[3])])

        rule = "-" * len(line(header))
        table = "\n".join([line(header), rule, *map(line, rows), rule,
                           f"Total params: {self.num_params():,}"])
        print(table)
        return table

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)" if inner else "Sequential()"
