"""npdl.schedules against torch.optim.lr_scheduler, step by step."""

import math

import numpy as np
import pytest
import torch

from npdl.callbacks import Callback, StepSchedule
from npdl.gradcheck import relative_error
from npdl.layers import Dense
from npdl.losses import MSE
from npdl.models import Sequential
from npdl.optimizers import SGD, Adam
from npdl.schedules import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearWarmup,
    LRScheduler,
    ReduceLROnPlateau,
    StepLR,
)

T = torch.optim.lr_scheduler


def _torch_lrs(make_scheduler, base_lr, steps, metrics=None):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    sched = make_scheduler(opt)
    lrs = [sched.get_last_lr()[0]]
    for i in range(steps):
        opt.step()
        sched.step(*([] if metrics is None else [metrics[i]]))
        lrs.append(sched.get_last_lr()[0])
    return np.array(lrs)


def _npdl_lrs(make_scheduler, base_lr, steps, metrics=None):
    opt = SGD(lr=base_lr)
    sched = make_scheduler(opt)
    assert sched.base_lr == base_lr
    lrs = [sched.get_last_lr()]
    for i in range(steps):
        sched.step(*([] if metrics is None else [metrics[i]]))
        lr = sched.get_last_lr()
        assert isinstance(lr, float) and lr == opt.lr
        lrs.append(lr)
    return np.array(lrs)


# (npdl scheduler, torch scheduler, period): each is compared over 3 periods.
PERIODIC = [
    (lambda o: StepLR(o, step_size=4), lambda o: T.StepLR(o, step_size=4), 4),
    (lambda o: StepLR(o, 3, gamma=0.5), lambda o: T.StepLR(o, 3, gamma=0.5), 3),
    (lambda o: ExponentialLR(o, gamma=0.9), lambda o: T.ExponentialLR(o, gamma=0.9), 10),
    (lambda o: CosineAnnealingLR(o, T_max=10), lambda o: T.CosineAnnealingLR(o, T_max=10), 10),
    (lambda o: CosineAnnealingLR(o, T_max=7, eta_min=1e-3),
     lambda o: T.CosineAnnealingLR(o, T_max=7, eta_min=1e-3), 7),
    (lambda o: CosineAnnealingLR(o, T_max=1), lambda o: T.CosineAnnealingLR(o, T_max=1), 1),
    (lambda o: LinearWarmup(o), lambda o: T.LinearLR(o, start_factor=1 / 3, total_iters=5), 5),
    (lambda o: LinearWarmup(o, warmup_steps=8, start_factor=0.1),
     lambda o: T.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=8), 8),
]


@pytest.mark.parametrize(("ours", "theirs", "period"), PERIODIC)
@pytest.mark.parametrize("base_lr", [0.1, 3e-4])
def test_matches_torch_over_three_periods(ours, theirs, period, base_lr):
    expected = _torch_lrs(theirs, base_lr, 3 * period)
    got = _npdl_lrs(ours, base_lr, 3 * period)
    assert relative_error(got, expected) < 1e-7
    assert len(set(np.round(got / base_lr, 12))) > 1 or period == 1  # the schedule moves


@pytest.mark.parametrize("T_max", [1, 2, 3, 5, 10, 25, 50])
@pytest.mark.parametrize("eta_min", [0.0, 1e-4])
def test_cosine_matches_torch_for_many_periods(T_max, eta_min):
    ours = _npdl_lrs(lambda o: CosineAnnealingLR(o, T_max, eta_min=eta_min), 0.05, 3 * T_max)
    theirs = _torch_lrs(lambda o: T.CosineAnnealingLR(o, T_max, eta_min=eta_min), 0.05,
                        3 * T_max)
    assert relative_error(ours, theirs) < 1e-7
    assert ours[T_max] == pytest.approx(eta_min, abs=1e-15)
    assert ours[2 * T_max] == pytest.approx(0.05)


def test_closed_forms():
    opt = SGD(lr=1.0)
    sched = CosineAnnealingLR(opt, T_max=4)
    assert [sched.lr_at(t) for t in range(5)] == pytest.approx([1, (1 + math.sqrt(0.5)) / 2,
                                                                0.5, (1 - math.sqrt(0.5)) / 2, 0])
    assert StepLR(SGD(lr=1.0), 2).lr_at(5) == pytest.approx(0.01)
    assert LinearWarmup(SGD(lr=0.3), 3, start_factor=0.25).lr_at(1) == pytest.approx(0.15)


PLATEAU_CASES = [
    {},
    dict(patience=2),
    dict(patience=1, cooldown=2, factor=0.5),
    dict(mode="max", patience=2, factor=0.3),
    dict(threshold_mode="abs", threshold=0.05, patience=1),
    dict(mode="max", threshold_mode="abs", threshold=0.01, patience=0, min_lr=0.02),
    dict(patience=0, factor=0.5, min_lr=0.01, eps=1e-3),
]


@pytest.mark.parametrize("kwargs", PLATEAU_CASES)
def test_reduce_on_plateau_matches_torch(kwargs):
    rng = np.random.default_rng(1)
    # Improves, plateaus with noise, dips, plateaus again: 3 x the default patience of 10.
    metrics = np.concatenate([np.linspace(1.0, 0.5, 6), 0.5 + 0.01 * rng.random(12),
                              [0.3, 0.29], 0.3 + 0.02 * rng.random(12)]).tolist()
    ours = _npdl_lrs(lambda o: ReduceLROnPlateau(o, **kwargs), 0.1, len(metrics), metrics)
    theirs = _torch_lrs(lambda o: T.ReduceLROnPlateau(o, **kwargs), 0.1, len(metrics), metrics)
    assert relative_error(ours, theirs) < 1e-7
    assert ours[-1] < ours[0]


def test_reduce_on_plateau_counts():
    opt = SGD(lr=1.0)
    sched = ReduceLROnPlateau(opt, patience=2, factor=0.5)
    for metric in [3.0, 2.0, 2.0, 2.0]:
        sched.step(metric)
    assert sched.best == 2.0 and sched.num_bad_epochs == 2 and opt.lr == 1.0
    sched.step(2.0)  # a third bad epoch: more than patience
    assert opt.lr == 0.5 and sched.num_bad_epochs == 0


def test_schedule_drives_any_optimizer():
    opt = Adam(lr=0.01)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    p, g = np.ones(3), np.ones(3)
    sched.step()
    opt.step([p], [g])
    assert opt.lr == pytest.approx(0.005)
    np.testing.assert_allclose(p, 1 - 0.005, rtol=1e-6)  # Adam's first step is lr * sign(g)


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (lambda o: StepLR(o, step_size=0), ValueError, r"step_size to be an integer >= 1"),
        (lambda o: StepLR(o, step_size=2.5), ValueError, r"Received: step_size=2.5"),
        (lambda o: ExponentialLR(o, gamma=0.0), ValueError, r"gamma in \(0.0"),
        (lambda o: CosineAnnealingLR(o, T_max=0), ValueError, r"T_max"),
        (lambda o: CosineAnnealingLR(o, T_max=5, eta_min=-1.0), ValueError, r"eta_min"),
        (lambda o: LinearWarmup(o, start_factor=0.0), ValueError, r"start_factor in \(0.0, 1.0\]"),
        (lambda o: LinearWarmup(o, warmup_steps=0), ValueError, r"warmup_steps"),
        (lambda o: ReduceLROnPlateau(o, factor=1.0), ValueError, r"factor in \[0.0, 1.0\)"),
        (lambda o: ReduceLROnPlateau(o, mode="up"), ValueError, r"Received: mode='up'"),
        (lambda o: ReduceLROnPlateau(o, threshold_mode="x"), ValueError, r"threshold_mode"),
        (lambda o: ReduceLROnPlateau(o, patience=-1), ValueError, r"patience"),
        (lambda o: StepLR(object(), 3), TypeError, r"StepLR: expected an optimizer"),
        (lambda o: ReduceLROnPlateau("sgd"), TypeError, r"Received: str"),
    ],
)
def test_errors(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make(SGD(lr=0.1))


def test_base_class_needs_lr_at():
    with pytest.raises(NotImplementedError, match="lr_at"):
        LRScheduler(SGD())


# ------------------------------------------------ StepSchedule: schedules inside fit()
def test_step_schedule_in_fit_follows_torchs_epoch_loop():
    class RecordLR(Callback):  # the lr the epoch that just ended was trained with
        def __init__(self, optimizer):
            self.optimizer, self.lrs = optimizer, []

        def on_epoch_end(self, epoch, logs, model):
            self.lrs.append(self.optimizer.lr)
            return False

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 3)), rng.standard_normal((20, 1))
    optimizer = SGD(lr=0.1, momentum=0.9)
    record = RecordLR(optimizer)
    Sequential([Dense(3, 1, rng=0)]).fit(
        x, y, loss=MSE(), optimizer=optimizer, epochs=6, batch_size=5, verbose=0, rng=0,
        callbacks=[record, StepSchedule(CosineAnnealingLR(optimizer, T_max=6))])
    expected = _torch_lrs(lambda opt: T.CosineAnnealingLR(opt, T_max=6), 0.1, 6)
    assert np.allclose(record.lrs, expected[:6], rtol=1e-12, atol=0)
    assert optimizer.lr == pytest.approx(expected[6], abs=1e-15)


def test_step_schedule_passes_the_monitored_metric_to_reduce_on_plateau():
    metrics = [1.0, 0.9, 0.95, 0.97, 0.99, 0.98, 0.5, 0.6, 0.7]
    make = {"patience": 1, "factor": 0.5}
    optimizer = SGD(lr=0.4)
    callback = StepSchedule(ReduceLROnPlateau(optimizer, **make), monitor="val_loss")
    lrs = [optimizer.lr]
    for epoch, metric in enumerate(metrics):
        assert callback.on_epoch_end(epoch, {"loss": 0.0, "val_loss": metric}, None) is False
        lrs.append(optimizer.lr)
    expected = _torch_lrs(lambda opt: T.ReduceLROnPlateau(opt, **make), 0.4, len(metrics), metrics)
    assert np.allclose(lrs, expected, rtol=0, atol=1e-15)
    assert min(lrs) < 0.4  # the plateau was detected, so the comparison means something


def test_step_schedule_errors_name_the_mismatch():
    with pytest.raises(TypeError, match=r"expected a schedule with a step\(\) method.*float"):
        StepSchedule(0.1)
    with pytest.raises(ValueError, match=r"Plateau.step\(\) takes a metric.*monitor=None"):
        StepSchedule(ReduceLROnPlateau(SGD(lr=0.1)))
    with pytest.raises(ValueError, match=r"CosineAnnealingLR.step\(\) takes no metric.*'val_loss'"):
        StepSchedule(CosineAnnealingLR(SGD(lr=0.1), T_max=3), monitor="val_loss")
    callback = StepSchedule(ReduceLROnPlateau(SGD(lr=0.1)), monitor="val_loss")
    with pytest.raises(KeyError, match=r"expected 'val_loss' in the epoch logs.*\['loss'\]"):
        callback.on_epoch_end(0, {"loss": 1.0}, None)
