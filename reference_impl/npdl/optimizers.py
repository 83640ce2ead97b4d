"""Optimizers: turn gradients into in-place parameter updates (chapter 7).

Every optimizer follows the update rule and the defaults of its ``torch.optim``
namesake. ``step(params, grads)`` takes two aligned lists of arrays (from
``Sequential.params()`` / ``Sequential.grads()``), updates each parameter IN
PLACE and never touches the gradients.

State (momentum buffers, moving averages, step counts) is kept per POSITION in
the list, so two layers never share state and the same list order must be
passed on every call. ``lr`` is read on every step, so a schedule can change it.

float32 parameters get float32 state and float32 updates: hyperparameters are
kept as Python floats, which NumPy never lets upcast an array.
"""

from __future__ import annotations

import math

import numpy as np

from npdl.core import ShapeError


def _at_least(who: str, name: str, value, low: float = 0.0) -> float:
    """Return ``value`` as a Python float, or raise ValueError unless ``value >= low``."""
    value = float(value)
    if not value >= low:  # also rejects NaN
        raise ValueError(f"{who}: expected {name} >= {low}. Received: {name}={value}.")
    return value


def _betas(who: str, betas) -> tuple[float, float]:
    """Validate ``betas = (beta1, beta2)`` with ``0 <= beta < 1`` (torch's ranges)."""
    if len(betas) != 2:
        raise ValueError(f"{who}: expected betas=(beta1, beta2). Received: betas={betas!r}.")
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"{who}: expected 0 <= betas[{i}] < 1. Received: betas[{i}]={beta}.")
    return float(betas[0]), float(betas[1])


class Optimizer:
    """Base class: validates the inputs of ``step`` and keeps per-position state.

    Subclasses implement ``_init_state(param) -> dict`` (state arrays for one
    parameter) and ``_update(param, grad, state, lr)`` (one in-place update).

    Attributes:
        lr: learning rate, read on every ``step`` (schedules change it).
        state: one dict per parameter position, created on the first ``step``.
    """

    _fields: tuple[str, ...] = ("lr",)

    def __init__(self, lr: float) -> None:
        self.lr = _at_least(self.name, "lr", lr)
        self.state: list[dict] | None = None
        self._signature: list[tuple] | None = None  # (shape, dtype) per position

    @property
    def name(self) -> str:
        return type(self).__name__

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """Update every ``params[i]`` in place from ``grads[i]`` (same shape and dtype)."""
        lr = _at_least(self.name, "lr", self.lr)
        self._check(params, grads)
        if self.state is None:
            self.state = [self._init_state(p) for p in params]
            self._signature = [(p.shape, p.dtype) for p in params]
        for p, g, state in zip(params, grads, self.state, strict=True):
            self._update(p, g, state, lr)

    def reset(self) -> None:
        """Forget all state, e.g. before training a different model."""
        self.state = None
        self._signature = None

    def _check(self, params, grads) -> None:
        who = f"{self.name}.step"
        if len(params) != len(grads):
            raise ValueError(
                f"{who}: expected one gradient per parameter ({len(params)} parameters). "
                f"Received: {len(grads)} gradients."
            )
        if self._signature is not None and len(params) != len(self._signature):
            raise ValueError(
                f"{who}: expected the same {len(self._signature)} parameters as in the first "
                f"step (state is kept per position). Received: {len(params)} parameters. "
                f"Use a new optimizer (or call reset()) for a different model."
            )
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            self._check_pair(who, i, p, g)

    def _check_pair(self, who: str, i: int, p, g) -> None:
        if not isinstance(p, np.ndarray) or p.dtype.kind != "f":  # a floating dtype
            raise TypeError(
                f"{who}: expected params[{i}] to be a floating-point ndarray. "
                f"Received: {type(p).__name__} with dtype={getattr(p, 'dtype', None)}."
            )
        if not isinstance(g, np.ndarray):
            raise TypeError(
                f"{who}: expected grads[{i}] to be an ndarray. Received: {type(g).__name__}."
            )
        if g.shape != p.shape:
            raise ShapeError(
                f"{who}: expected grads[{i}] to have the shape of params[{i}], {p.shape}. "
                f"Received: shape={g.shape}."
            )
        if g.dtype != p.dtype:
            raise TypeError(
                f"{who}: expected grads[{i}] to have the dtype of params[{i}], {p.dtype}. "
                f"Received: dtype={g.dtype}."
            )
        if self._signature is not None and (p.shape, p.dtype) != self._signature[i]:
            shape, dtype = self._signature[i]
            raise ShapeError(
                f"{who}: expected params[{i}] of shape {shape} and dtype {dtype}, as in the "
                f"first step. Received: shape={p.shape}, dtype={p.dtype}. "
                f"Pass the parameters in the same order every step."
            )

    def _init_state(self, p: np.ndarray) -> dict:
        raise NotImplementedError

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict, lr: float) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{self.name}({fields})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, as torch.optim.SGD.

    For each parameter ``p`` (any shape) with gradient ``g`` (same shape)::

        g <- g + weight_decay * p                          (L2 penalty)
        b <- g  on the first step, else  momentum * b + (1 - dampening) * g
        d <- g + momentum * b  if nesterov, else  b        (d = g when momentum == 0)
        p <- p - lr * d
    """

    _fields = ("lr", "momentum", "dampening", "nesterov", "weight_decay")

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        self.momentum = _at_least(self.name, "momentum", momentum)
        self.dampening = float(dampening)
        self.nesterov = bool(nesterov)
        self.weight_decay = _at_least(self.name, "weight_decay", weight_decay)
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"{self.name}: Nesterov momentum requires momentum > 0 and dampening == 0. "
                f"Received: momentum={momentum}, dampening={dampening}."
            )

    def _init_state(self, p):
        return {"momentum_buffer": None, "tmp": np.empty_like(p)}

    def _update(self, p, g, state, lr):
        tmp = state["tmp"]  # scratch array: no allocation in the hot path
        if self.weight_decay:
            g = g + self.weight_decay * p  # a new array: the caller's grads stay untouched
        if self.momentum:
            g = self._direction(g, state)
        np.multiply(g, lr, out=tmp)
        p -= tmp

    def _direction(self, g, state):
        """Update the momentum buffer ``b`` and return the step direction ``d``."""
        buf = state["momentum_buffer"]
        if buf is None:  # torch starts the buffer at the first gradient, undamped
            buf = state["momentum_buffer"] = g.copy()
        else:
            buf *= self.momentum
            if self.dampening:
                np.multiply(g, 1.0 - self.dampening, out=state["tmp"])
                buf += state["tmp"]
            else:
                buf += g
        if not self.nesterov:
            return buf
        direction = np.multiply(buf, self.momentum, out=state["tmp"])
        direction += g
        return direction


class AdaGrad(Optimizer):
    """Per-element learning rates shrinking with the summed squared gradients (torch.optim.Adagrad).

    With step count ``t = 1, 2, ...`` and ``s`` starting at ``initial_accumulator_value``::

        g  <- g + weight_decay * p
        lr_t = lr / (1 + (t - 1) * lr_decay)
        s  <- s + g**2
        p  <- p - lr_t * g / (sqrt(s) + eps)
    """

    _fields = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def __init__(self, lr: float = 0.01, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        super().__init__(lr)
        self.lr_decay = _at_least(self.name, "lr_decay", lr_decay)
        self.weight_decay = _at_least(self.name, "weight_decay", weight_decay)
        self.initial_accumulator_value = _at_least(
            self.name, "initial_accumulator_value", initial_accumulator_value)
        self.eps = _at_least(self.name, "eps", eps)

    def _init_state(self, p):
        return {"step": 0, "sum": np.full_like(p, self.initial_accumulator_value),
                "tmp": np.empty_like(p)}

    def _update(self, p, g, state, lr):
        state["step"] += 1
        s, tmp = state["sum"], state["tmp"]
        if self.weight_decay:
            g = g + self.weight_decay * p
        lr_t = lr / (1 + (state["step"] - 1) * self.lr_decay)
        np.multiply(g, g, out=tmp)
        s += tmp
        np.sqrt(s, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= lr_t
        p -= tmp


class RMSprop(Optimizer):
    """Divide the gradient by a moving RMS of recent gradients (torch.optim.RMSprop).

    ``v``, ``m`` (centered) and ``b`` (momentum) start at zero::

        g <- g + weight_decay * p
        v <- alpha * v + (1 - alpha) * g**2
        m <- alpha * m + (1 - alpha) * g              (centered only)
        a =  sqrt(v - m**2) + eps  if centered, else  sqrt(v) + eps
        b <- momentum * b + g / a,   p <- p - lr * b  (momentum > 0)
        p <- p - lr * g / a                           (momentum == 0)
    """

    _fields = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None:
        super().__init__(lr)
        self.alpha = _at_least(self.name, "alpha", alpha)
        self.eps = _at_least(self.name, "eps", eps)
        self.weight_decay = _at_least(self.name, "weight_decay", weight_decay)
        self.momentum = _at_least(self.name, "momentum", momentum)
        self.centered = bool(centered)

    def _init_state(self, p):
        state = {"step": 0, "square_avg": np.zeros_like(p), "tmp": np.empty_like(p)}
        if self.momentum > 0:
            state["momentum_buffer"] = np.zeros_like(p)
        if self.centered:
            state["grad_avg"] = np.zeros_like(p)
        return state

    def _update(self, p, g, state, lr):
        state["step"] += 1
        v, tmp = state["square_avg"], state["tmp"]
        if self.weight_decay:
            g = g + self.weight_decay * p
        v *= self.alpha
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.alpha
        v += tmp
        if self.centered:
            m = state["grad_avg"]
            np.subtract(g, m, out=tmp)  # m + (1 - alpha) * (g - m): torch's lerp form
            tmp *= 1.0 - self.alpha
            m += tmp
            np.multiply(m, m, out=tmp)
            np.subtract(v, tmp, out=tmp)
            np.maximum(tmp, 0.0, out=tmp)  # rounding can make v - m**2 a hair negative
            np.sqrt(tmp, out=tmp)
        else:
            np.sqrt(v, out=tmp)
        tmp += self.eps
        step = np.divide(g, tmp, out=tmp)  # g / a
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += step
            step = np.multiply(buf, lr, out=tmp)
        else:
            step *= lr
        p -= step


class Adam(Optimizer):
    """Adaptive moment estimation with bias correction (torch.optim.Adam).

    ``m``, ``v`` and ``v_max`` start at zero; ``t = 1, 2, ...`` counts steps::

        g <- g + weight_decay * p                     (L2 penalty, coupled)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g**2
        v_max <- max(v_max, v);  v <- v_max           (amsgrad only)
        p <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """

    _fields = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    _decoupled = False  # AdamW: decay the weights directly instead of the gradient

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        super().__init__(lr)
        self.betas = _betas(self.name, betas)
        self.eps = _at_least(self.name, "eps", eps)
        self.weight_decay = _at_least(self.name, "weight_decay", weight_decay)
        self.amsgrad = bool(amsgrad)

    def _init_state(self, p):
        state = {"step": 0, "exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p),
                 "tmp": np.empty_like(p)}
        if self.amsgrad:
            state["max_exp_avg_sq"] = np.zeros_like(p)
        return state

    def _update(self, p, g, state, lr):
        beta1, beta2 = self.betas
        state["step"] += 1
        t = state["step"]
        m, v, tmp = state["exp_avg"], state["exp_avg_sq"], state["tmp"]
        if self.weight_decay and self._decoupled:
            p *= 1.0 - lr * self.weight_decay
        elif self.weight_decay:
            g = g + self.weight_decay * p
        np.subtract(g, m, out=tmp)  # m + (1 - beta1) * (g - m): torch's lerp form
        tmp *= 1.0 - beta1
        m += tmp
        v *= beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        v += tmp
        if self.amsgrad:
            v = np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        denom = np.sqrt(v, out=tmp)
        denom /= math.sqrt(1.0 - beta2**t)
        denom += self.eps
        step = np.divide(m, denom, out=tmp)
        step *= lr / (1.0 - beta1**t)
        p -= step


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW).

    First ``p <- p * (1 - lr * weight_decay)``, then the Adam update of ``Adam``
    without any L2 term in the gradient. Default ``weight_decay=0.01``.
    """

    _decoupled = True

    def __init__(self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, amsgrad: bool = False) -> None:
        super().__init__(lr, betas, eps, weight_decay, amsgrad)


def clip_grad_norm(grads: list[np.ndarray], max_norm: float) -> float:
    """Scale all gradients together, in place, so their global L2 norm is at most ``max_norm``.

    As torch.nn.utils.clip_grad_norm_ (norm_type=2)::

        total = sqrt(sum_i sum(g_i**2))
        g_i <- g_i * min(1, max_norm / (total + 1e-6))

    Returns ``total``, the norm before clipping, as a Python float. Raises
    ValueError if it is NaN or inf (training has diverged; scaling cannot help).
    """
    max_norm = _at_least("clip_grad_norm", "max_norm", max_norm)
    grads = list(grads)
    for i, g in enumerate(grads):
        if not isinstance(g, np.ndarray) or not np.issubdtype(g.dtype, np.floating):
            raise TypeError(
                f"clip_grad_norm: expected grads[{i}] to be a floating-point ndarray. "
                f"Received: {type(g).__name__} with dtype={getattr(g, 'dtype', None)}."
            )
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    if not math.isfinite(total):
        raise ValueError(
            f"clip_grad_norm: expected finite gradients. Received: total norm={total}. "
            f"Training has diverged; lower the learning rate."
        )
    scale = min(1.0, max_norm / (total + 1e-6))
    if scale < 1.0:
        for g in grads:
            g *= scale
    return total
