"""What `Sequential.fit` records and the hooks it calls: `History`, `Callback`,
`EarlyStopping` and `StepSchedule`."""

from __future__ import annotations

import inspect

import numpy as np

__all__ = ["History", "Callback", "EarlyStopping", "StepSchedule"]


class History:
    """Per-epoch metrics returned by `Sequential.fit`.

    Attributes:
        history: dict of lists, e.g. ``{"loss": [...], "accuracy": [...],
            "val_loss": [...], "val_accuracy": [...]}`` (one value per epoch).
        epochs: the 0-based indices of the epochs that ran.
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epochs: list[int] = []

    def record(self, epoch: int, logs: dict) -> None:
        self.epochs.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __len__(self) -> int:
        return len(self.epochs)

    def plot(self, ax=None, keys=None):
        """Plot every recorded curve (or ``keys``) against the epoch number; return the Axes."""
        import matplotlib.pyplot as plt  # lazily: plotting is optional

        if ax is None:
            _, ax = plt.subplots()
        x = np.asarray(self.epochs) + 1
        for key in keys or self.history:
            ax.plot(x, self.history[key], marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.legend()
        return ax

    def __repr__(self) -> str:
        return f"History(epochs={len(self)}, keys={list(self.history)})"


class Callback:
    """Base class of fit() hooks. Override what you need.

    ``on_epoch_end`` returns True to stop training after this epoch.
    """

    def on_train_begin(self, model) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict, model) -> bool:
        return False

    def on_train_end(self, model) -> None:
        pass


def _monitored(logs: dict, monitor: str, who: str) -> float:
    """``logs[monitor]`` as a float, or a KeyError listing the keys the epoch did log."""
    if monitor not in logs:
        raise KeyError(
            f"{who}: expected {monitor!r} in the epoch logs. Received: {sorted(logs)}. "
            "Pass validation_data to fit() or monitor another key."
        )
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    Losses improve by going down, accuracies by going up (``mode="auto"``).
    With ``restore_best`` the model's parameters and buffers get the values of
    the best epoch back when training ends (copied into the same arrays).
    """

    def __init__(
        self, patience=5, restore_best=True, *, monitor="val_loss", min_delta=0.0, mode="auto"
    ):
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(
                f"EarlyStopping: expected mode 'auto', 'min' or 'max'. Received: {mode!r}."
            )
        if patience < 0 or min_delta < 0:
            raise ValueError(
                f"EarlyStopping: expected patience >= 0 and min_delta >= 0. "
                f"Received: patience={patience}, min_delta={min_delta}."
            )
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.restore_best = restore_best
        self.mode = mode
        self.on_train_begin(None)

    def on_train_begin(self, model) -> None:
        self.best = np.inf if self.mode == "min" else -np.inf
        self.best_epoch = None
        self.best_state = None
        self.wait = 0
        self.stopped_epoch = None

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch: int, logs: dict, model) -> bool:
        value = _monitored(logs, self.monitor, f"EarlyStopping(monitor={self.monitor!r})")
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = {k: v.copy() for k, v in model.state_dict().items()}
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, model) -> None:
        if self.restore_best and self.best_state is not None:
            for key, array in model.state_dict().items():
                array[...] = self.best_state[key]

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
            f"min_delta={self.min_delta}, restore_best={self.restore_best})"
        )


class StepSchedule(Callback):
    """Advance a learning-rate schedule at the end of every epoch.

    A PyTorch loop calls ``scheduler.step()`` after each epoch; inside `Sequential.fit`
    this callback does it. ``schedule`` is any npdl schedule (``CosineAnnealingLR``,
    ``StepLR``, ...). ``ReduceLROnPlateau`` steps on a metric: pass ``monitor`` (e.g.
    ``"val_loss"``) and each epoch calls ``schedule.step(logs[monitor])``.
    """

    def __init__(self, schedule, monitor: str | None = None) -> None:
        step = getattr(schedule, "step", None)
        if not callable(step):
            raise TypeError(
                "StepSchedule: expected a schedule with a step() method (e.g. "
                f"CosineAnnealingLR(optimizer, T_max)). Received: {type(schedule).__name__}."
            )
        takes_metric = bool(inspect.signature(step).parameters)
        if takes_metric != (monitor is not None):
            needs = "a metric: pass monitor, e.g. 'val_loss'" if takes_metric else "no metric"
            raise ValueError(
                f"StepSchedule: {type(schedule).__name__}.step() takes {needs}. "
                f"Received: monitor={monitor!r}."
            )
        self.schedule, self.monitor = schedule, monitor

    def on_epoch_end(self, epoch: int, logs: dict, model) -> bool:
        if self.monitor is None:
            self.schedule.step()
        else:
            self.schedule.step(_monitored(logs, self.monitor, repr(self)))
        return False  # a schedule never stops training

    def __repr__(self) -> str:
        monitor = "" if self.monitor is None else f", monitor={self.monitor!r}"
        return f"StepSchedule({type(self.schedule).__name__}{monitor})"
