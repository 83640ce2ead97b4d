"""Learning-rate schedules: change an optimizer's ``lr`` once per epoch (chapter 7).

Same semantics as ``torch.optim.lr_scheduler``: the constructor records
``base_lr = optimizer.lr`` and applies epoch 0 (torch takes this first step
inside its constructor too); then call ``step()`` once at the END of every
epoch. ``get_last_lr()`` returns the learning rate in use now, as a float.

    opt = SGD(lr=0.1)
    sched = StepLR(opt, step_size=30)
    for epoch in range(90):
        train_one_epoch(model, opt)
        sched.step()
"""

from __future__ import annotations

import math


def _int_at_least(who: str, name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or value < low:
        raise ValueError(
            f"{who}: expected {name} to be an integer >= {low}. Received: {name}={value!r}."
        )
    return int(value)


def _in_range(who: str, name: str, value, low: float, high: float, low_open=False, high_open=False):
    value = float(value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(
            f"{who}: expected {name} in {lo}{low}, {high}{hi}. Received: {name}={value}."
        )
    return value


class LRScheduler:
    """Base class: on each ``step()``, ``optimizer.lr = lr_at(epoch)``.

    Subclasses implement ``lr_at(epoch) -> float``, the closed-form learning
    rate of epoch ``0, 1, 2, ...`` computed from ``base_lr``.

    Attributes:
        optimizer: any object with a float ``lr`` attribute (an npdl Optimizer).
        base_lr: ``optimizer.lr`` when the schedule was created.
        last_epoch: index of the current epoch (0 right after construction).
    """

    def __init__(self, optimizer) -> None:
        if not hasattr(optimizer, "lr"):
            raise TypeError(
                f"{self.name}: expected an optimizer with an `lr` attribute. "
                f"Received: {type(optimizer).__name__}."
            )
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_epoch = -1
        self.step()

    @property
    def name(self) -> str:
        return type(self).__name__

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError(f"{self.name}.lr_at is not implemented.")

    def step(self) -> None:
        """Move to the next epoch and set the optimizer's learning rate for it."""
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def get_last_lr(self) -> float:
        return float(self.optimizer.lr)


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

        lr(t) = base_lr * gamma ** (t // step_size)
    """

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _int_at_least(self.name, "step_size", step_size)
        self.gamma = _in_range(self.name, "gamma", gamma, 0.0, math.inf, low_open=True)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch.

        lr(t) = base_lr * gamma ** t
    """

    def __init__(self, optimizer, gamma: float) -> None:
        self.gamma = _in_range(self.name, "gamma", gamma, 0.0, math.inf, low_open=True)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma**epoch


class CosineAnnealingLR(LRScheduler):
    """Follow a cosine from ``base_lr`` down to ``eta_min`` over ``T_max`` epochs.

        lr(t) = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2

    Like torch (without restarts), past ``T_max`` the cosine goes on: the rate
    climbs back to ``base_lr`` at ``2 * T_max``, with period ``2 * T_max``.
    """

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803
        self.T_max = _int_at_least(self.name, "T_max", T_max)
        self.eta_min = _in_range(self.name, "eta_min", eta_min, 0.0, math.inf)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        cosine = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return self.eta_min + (self.base_lr - self.eta_min) * cosine


class LinearWarmup(LRScheduler):
    """Ramp the learning rate linearly from ``start_factor * base_lr`` up to ``base_lr``.

    torch's ``LinearLR(start_factor, end_factor=1.0, total_iters=warmup_steps)``::

        lr(t) = base_lr * (start_factor + (1 - start_factor) * min(t, warmup_steps) / warmup_steps)
    """

    def __init__(self, optimizer, warmup_steps: int = 5, start_factor: float = 1 / 3) -> None:
        self.warmup_steps = _int_at_least(self.name, "warmup_steps", warmup_steps)
        self.start_factor = _in_range(self.name, "start_factor", start_factor, 0.0, 1.0,
                                      low_open=True)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        progress = min(epoch, self.warmup_steps) / self.warmup_steps
        return self.base_lr * (self.start_factor + (1.0 - self.start_factor) * progress)


class ReduceLROnPlateau:
    """Multiply the learning rate by ``factor`` when a metric stops improving.

    Call ``step(metric)`` once per epoch with e.g. the validation loss. torch's
    rules: ``metric`` improves on ``best`` if (mode "min")
    ``metric < best * (1 - threshold)`` (threshold_mode "rel") or
    ``metric < best - threshold`` ("abs"); mode "max" mirrors this. After more
    than ``patience`` epochs without improvement::

        lr <- max(lr * factor, min_lr)     (skipped if it changes lr by <= eps)

    then the count of bad epochs restarts after ``cooldown`` ignored epochs.
    """

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float = 0.0, eps: float = 1e-8) -> None:
        who = type(self).__name__
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"{who}: expected an optimizer with an `lr` attribute. "
                            f"Received: {type(optimizer).__name__}.")
        if mode not in ("min", "max"):
            raise ValueError(f"{who}: expected mode 'min' or 'max'. Received: mode={mode!r}.")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{who}: expected threshold_mode 'rel' or 'abs'. "
                             f"Received: threshold_mode={threshold_mode!r}.")
        self.factor = _in_range(who, "factor", factor, 0.0, 1.0, high_open=True)
        self.patience = _int_at_least(who, "patience", patience, 0)
        self.cooldown = _int_at_least(who, "cooldown", cooldown, 0)
        self.min_lr = _in_range(who, "min_lr", min_lr, 0.0, math.inf)
        self.optimizer, self.mode, self.threshold_mode = optimizer, mode, threshold_mode
        self.threshold, self.eps = float(threshold), float(eps)
        self.base_lr = float(optimizer.lr)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def step(self, metric: float) -> None:
        """Record this epoch's ``metric`` and lower the learning rate if it has plateaued."""
        metric = float(metric)
        self.last_epoch += 1
        if self.is_better(metric):
            self.best, self.num_bad_epochs = metric, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:  # bad epochs in cooldown do not count
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def is_better(self, metric: float) -> bool:
        """Whether ``metric`` improves on ``best`` by more than the threshold."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return metric < self.best * (1.0 - self.threshold)
        if self.mode == "min":
            return metric < self.best - self.threshold
        if self.threshold_mode == "rel":
            return metric > self.best * (1.0 + self.threshold)
        return metric > self.best + self.threshold

    def _reduce_lr(self) -> None:
        old_lr = float(self.optimizer.lr)
        new_lr = max(old_lr * self.factor, self.min_lr)
        if old_lr - new_lr > self.eps:
            self.optimizer.lr = new_lr

    def get_last_lr(self) -> float:
        return float(self.optimizer.lr)
