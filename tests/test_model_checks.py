"""Checks of chapters 6 and 7: the solutions pass, realistic bugs fail with the right text.

The "students" are the solution cells of solutions/06_models/models.md and
solutions/07_optimizers/optimizers.md, run as a student would (markers stripped), with one
snippet replaced per bug.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.checks import CheckFailed
from autograder.checks.callbacks import check_early_stopping
from autograder.checks.data import check_batches
from autograder.checks.models import (
    check_sequential_backward,
    check_sequential_forward,
    check_sequential_params,
)
from autograder.checks.optimizers import check_clip_grad_norm
from autograder.checks.training import check_evaluate, check_fit_epoch
from autograder.demo import student_code
from autograder.notebooks import build_notebook

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "solutions" / "06_models" / "models.md"
OPTIMIZERS = REPO / "solutions" / "07_optimizers" / "optimizers.md"


def student(md: Path, cell: str | None = None, old: str = "", new: str = "") -> dict:
    """The notebook namespace after its setup, provided and solution cells (tests skipped)."""
    namespace = {"__name__": "__main__"}
    for c in build_notebook(md).cells:
        meta = c.metadata.get("nbgrader", {})
        if c.cell_type != "code" or meta.get("grade") or not meta:
            continue
        source = student_code(c.source) if meta.get("solution") else c.source
        if meta.get("grade_id") == cell:
            assert source.count(old) == 1, f"{old!r} must occur once in cell {cell!r}"
            source = source.replace(old, new)
        exec(compile(source, meta["grade_id"], "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def models():
    return student(MODELS)


def fails(check, *args, match: str, **kwargs) -> str:
    with pytest.raises(CheckFailed) as info:
        check(*args, **kwargs)
    message = str(info.value)
    for part in [match] if isinstance(match, str) else match:
        assert part in message, message
    return message


# ------------------------------------------------------------------ the solution passes


def test_solution_passes_every_check(models, capsys):
    ns = models
    check_batches(ns["batches"])
    check_sequential_forward(ns["Sequential"])
    check_sequential_backward(ns["Sequential"])
    check_sequential_params(ns["Sequential"])
    check_fit_epoch(ns["Sequential"], namespace=ns)
    check_evaluate(ns["Sequential"], namespace=ns)
    check_early_stopping(ns["EarlyStopping"])
    check_clip_grad_norm(student(OPTIMIZERS)["clip_grad_norm"])
    out = capsys.readouterr().out
    assert out.count("✔") == 8, out


def test_npdl_itself_passes_the_sequential_checks():
    from npdl.callbacks import EarlyStopping
    from npdl.data import batches
    from npdl.optimizers import clip_grad_norm

    check_batches(batches)
    check_early_stopping(EarlyStopping)
    check_clip_grad_norm(clip_grad_norm)


# ------------------------------------------------------------------ forward / backward / params


def test_forward_returning_inside_the_loop_names_the_layer():
    ns = student(
        MODELS,
        "sequential",
        "            x = layer.forward(x)\n        return x",
        "            x = layer.forward(x)\n            return x",
    )
    message = fails(check_sequential_forward, ns["Sequential"], match="Sequential.forward")
    assert "the shape after layer 0" in message and "Received: shape=(4, 8)" in message


def test_backward_in_forward_order_fails():
    ns = student(
        MODELS, "sequential", "for layer in reversed(self.layers):", "for layer in self.layers:"
    )
    fails(
        check_sequential_backward, ns["Sequential"], match=["Sequential.backward", "reverse order"]
    )


def test_backward_returning_grad_output_is_explained():
    ns = student(
        MODELS,
        "sequential",
        "            g = layer.backward(g)\n        return g",
        "            layer.backward(g)\n        return g",
    )
    fails(
        check_sequential_backward,
        ns["Sequential"],
        match=["Sequential.backward", "g = layer.backward(g)"],
    )


def test_backward_that_stops_early_says_which_layer_was_skipped():
    ns = student(
        MODELS,
        "sequential",
        "for layer in reversed(self.layers):",
        "for layer in list(reversed(self.layers))[:1]:",
    )
    fails(check_sequential_backward, ns["Sequential"], match=["layer 0", "never called"])


def test_params_returning_copies():
    ns = student(
        MODELS,
        "sequential",
        "return [p for layer in self.layers for p in layer.params.values()]",
        "return [p.copy() for layer in self.layers for p in layer.params.values()]",
    )
    fails(check_sequential_params, ns["Sequential"], match=["params()[0]", "not copies"])


def test_params_in_the_wrong_order():
    ns = student(
        MODELS,
        "sequential",
        "return [p for layer in self.layers for p in layer.params.values()]",
        "return [p for layer in self.layers for p in reversed(layer.params.values())]",
    )
    fails(check_sequential_params, ns["Sequential"], match=["wrong place", "W before b"])


def test_grads_not_aligned_with_params():
    ns = student(
        MODELS,
        "sequential",
        "return [layer.grads[key] for layer in self.layers for key in layer.params]",
        "return [layer.grads[key] for layer in reversed(self.layers) for key in layer.params]",
    )
    fails(check_sequential_params, ns["Sequential"], match="Sequential.grads()")


def test_params_returning_the_dicts():
    ns = student(
        MODELS,
        "sequential",
        "return [p for layer in self.layers for p in layer.params.values()]",
        "return [layer.params for layer in self.layers if layer.params]",
    )
    fails(check_sequential_params, ns["Sequential"], match="dict.values()")


# ------------------------------------------------------------------ batches


@pytest.mark.parametrize(
    "old, new, match",
    [
        (
            "for start in range(0, n, batch_size):",
            "for start in range(0, n - batch_size + 1, batch_size):",
            "the last partial batch is missing",
        ),
        ("order = rng.permutation(n)", "order = np.random.permutation(n)", "rng.permutation(n)"),
        (
            "yield x[part] if y is None else (x[part], y[part])",
            "yield x[part] if y is None else (x[part], y[np.sort(part) if shuffle else part])",
            "yb does not belong",
        ),
        (
            "        order = rng.permutation(n)\n",
            "        order = np.arange(n)\n        rng.shuffle(x)\n",
            "in place",
        ),
    ],
)
def test_batches_bugs(old, new, match):
    fails(check_batches, student(MODELS, "batches", old, new)["batches"], match=["batches(", match])


def test_batches_reseeding_a_generator_every_pass_is_caught():
    ns = student(
        MODELS,
        "batches",
        "rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)",
        "rng = np.random.default_rng(0)",
    )
    fails(check_batches, ns["batches"], match="rng.permutation(n)")


# ------------------------------------------------------------------ fit_epoch


@pytest.mark.parametrize(
    "old, new, match",
    [
        (
            "        self.train()\n        params, grads",
            "        params, grads",
            "not in training mode",
        ),
        (
            "batches(x, y, batch_size, shuffle=shuffle, rng=rng)",
            "batches(x, y, batch_size)",
            "not shuffled",
        ),
        ("            optimizer.step(params, grads)\n", "", "never change"),
        (
            "total += float(loss.forward(self.forward(xb), yb)) * len(xb)",
            "total += float(loss.forward(self.forward(xb), yb))"
            " * len(x) / -(-len(x) // batch_size)",
            "plain mean of the batch losses",
        ),
    ],
)
def test_fit_epoch_bugs(old, new, match):
    ns = student(MODELS, "sequential", old, new)
    fails(check_fit_epoch, ns["Sequential"], namespace=ns, match=["Sequential.fit_epoch", match])


def test_fit_epoch_does_not_cascade_from_a_broken_batches():
    ns = student(
        MODELS,
        "batches",
        "for start in range(0, n, batch_size):",
        "for start in range(0, n - batch_size + 1, batch_size):",
    )
    check_fit_epoch(ns["Sequential"], namespace=ns)
    check_evaluate(ns["Sequential"], namespace=ns)
    assert ns["batches"].__module__ != "npdl.data"  # the student's function is put back


# ------------------------------------------------------------------ evaluate / predict


def test_predict_without_eval_mode():
    ns = student(
        MODELS, "sequential", "        self.eval()\n        if batch_size", "        if batch_size"
    )
    fails(check_evaluate, ns["Sequential"], namespace=ns, match=["training mode", "self.eval()"])


def test_predict_not_restoring_modes():
    ns = student(
        MODELS, "sequential", "self.set_modes(modes)", "self.set_modes([True] * len(modes))"
    )
    fails(
        check_evaluate,
        ns["Sequential"],
        namespace=ns,
        match=["changed the mode of layer(s) [1, 4]", "previous mode"],
    )


def test_evaluate_without_accuracy():
    ns = student(MODELS, "sequential", 'logs["accuracy"] = count_correct(out, y) / len(x)', "pass")
    fails(check_evaluate, ns["Sequential"], namespace=ns, match="expected the key 'accuracy'")


# ------------------------------------------------------------------ EarlyStopping


@pytest.mark.parametrize(
    "old, new, match",
    [
        (
            "self.best_state = {k: v.copy() for k, v in model.state_dict().items()}",
            "self.best_state = dict(model.state_dict())",
            "without .copy()",
        ),
        ("return self.wait >= self.patience", "return self.wait > self.patience", "does not stop"),
        (
            "return self.wait >= self.patience",
            "return self.wait >= self.patience - 1",
            "stops too early",
        ),
        (
            "                array[...] = self.best_state[key]",
            "                index, name = key.split('.')\n"
            "                model.layers[int(index)].params[name] = self.best_state[key]",
            "replaced the model's arrays",
        ),
        (
            "            self.best, self.wait = value, 0",
            "            self.best = value",
            "stops too early",
        ),
    ],
)
def test_early_stopping_bugs(old, new, match):
    ns = student(MODELS, "early_stopping", old, new)
    fails(check_early_stopping, ns["EarlyStopping"], match=["EarlyStopping(", match])


def test_early_stopping_restoring_when_told_not_to():
    ns = student(
        MODELS, "early_stopping", "            if self.restore_best:\n", "            if True:\n"
    )
    check_early_stopping(ns["EarlyStopping"])  # saving copies without restoring them is harmless
    cls = ns["EarlyStopping"]
    on_train_end = cls.on_train_end

    def always_restore(self, model):
        self.restore_best = True
        on_train_end(self, model)

    cls.on_train_end = always_restore
    fails(check_early_stopping, cls, match="restore_best=False")


# ------------------------------------------------------------------ clip_grad_norm


@pytest.mark.parametrize(
    "old, new, match",
    [
        ("g *= scale", "g = g * scale", "not changed in place"),
        (
            "    if scale < 1.0:\n",
            "    scale = max_norm / (total + 1e-6)\n    if True:\n",
            "below max_norm",
        ),
        ("    return total", "    return total * scale", "AFTER clipping"),
        (
            "            g *= scale",
            "            g *= min(1.0, max_norm / (float(np.linalg.norm(g)) + 1e-6))",
            "its own norm",
        ),
    ],
)
def test_clip_grad_norm_bugs(old, new, match):
    ns = student(OPTIMIZERS, "clip_grad_norm", old, new)
    fails(check_clip_grad_norm, ns["clip_grad_norm"], match=["clip_grad_norm(", match])


def test_clip_grad_norm_dtype_and_return_type():
    ns = student(
        OPTIMIZERS, "clip_grad_norm", "            g *= scale", "            g *= np.float64(scale)"
    )
    check_clip_grad_norm(ns["clip_grad_norm"])  # in-place *= keeps float32: still right
    replaced = student(
        OPTIMIZERS, "clip_grad_norm", "            g *= scale", "            g[...] = g * 2"
    )
    fails(check_clip_grad_norm, replaced["clip_grad_norm"], match="max abs error")
    fails(check_clip_grad_norm, lambda grads, max_norm: [0.0], match="a single number")


def test_student_exceptions_become_feedback():
    class Broken:
        def __init__(self, layers=None):
            self.layers = list(layers or [])

        def forward(self, x):
            raise KeyError("oops")

    fails(check_sequential_forward, Broken, match=["Sequential.forward", "raised KeyError"])


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 40),
    batch_size=st.integers(1, 50),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**16),
    with_y=st.booleans(),
)
def test_solution_batches_equal_npdl_for_any_size(models, n, batch_size, shuffle, seed, with_y):
    from npdl.data import batches as reference

    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n) if with_y else None
    got = list(models["batches"](x, y, batch_size=batch_size, shuffle=shuffle, rng=seed))
    expected = list(reference(x, y, batch_size=batch_size, shuffle=shuffle, rng=seed))
    assert len(got) == len(expected) == -(-n // batch_size)
    for a, b in zip(got, expected, strict=True):
        for part_a, part_b in zip(a, b, strict=True) if with_y else [(a, b)]:
            np.testing.assert_array_equal(part_a, part_b)
            assert part_a.dtype == part_b.dtype


def test_early_stopping_check_never_hands_out_npdl_sequential():
    """The model given to the student's callback must not be this chapter's answer (npdl's
    Sequential): under trusted grading it would be shipped into the student's sandbox."""
    from npdl.callbacks import EarlyStopping

    seen = set()

    class Recording(EarlyStopping):
        def on_epoch_end(self, epoch, logs, model):
            seen.update(cls.__module__ for cls in type(model).__mro__)
            return super().on_epoch_end(epoch, logs, model)

    check_early_stopping(Recording)
    assert seen and not any(module.startswith("npdl.models") for module in seen), seen


def test_fit_epoch_check_never_hands_out_an_npdl_optimizer(models):
    """npdl.optimizers is chapter 7's answer: the chapter-6 check keeps it from student code."""
    seen = set()

    class Recording(models["Sequential"]):
        def fit_epoch(self, x, y, *, optimizer, **kwargs):
            seen.update(cls.__module__ for cls in type(optimizer).__mro__)
            return super().fit_epoch(x, y, optimizer=optimizer, **kwargs)

    check_fit_epoch(Recording, namespace=models)
    assert seen and not any(module.startswith("npdl") for module in seen), seen


def test_training_checks_never_hand_out_npdl_batches(models):
    """npdl.data is chapter 6's answer: fit_epoch and predict see a recording of its batches."""
    seen = []

    class Recording(models["Sequential"]):
        def fit_epoch(self, *args, **kwargs):
            seen.append(models["batches"].__module__)
            return super().fit_epoch(*args, **kwargs)

        def predict(self, *args, **kwargs):
            seen.append(models["batches"].__module__)
            return super().predict(*args, **kwargs)

    check_fit_epoch(Recording, namespace=models)
    check_evaluate(Recording, namespace=models)
    assert seen and set(seen) == {"autograder.checks.stand_ins"}, seen
    assert models["batches"].__module__ != "autograder.checks.stand_ins"  # the student's again
