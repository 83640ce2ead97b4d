"""Grading of assignment 08_capstone: the held-out accuracy of the student's trained ``model``.

The held-out set
----------------
The data is scikit-learn's 8x8 handwritten digits (1797 images, pixel values 0..16), the only
real image set that ships offline. It is split once by a fixed rule,
``np.random.default_rng(SPLIT_SEED).permutation(1797)``: the first ``N_TRAIN`` (1437) indices
are the training part, the only one the notebook's ``load_training_data()`` returns, and the
other 360 digits are the grader's.

The grader never uses those 360 images as they are. Each one is turned into ``VARIANTS`` (3)
new images by `perturb`: a per-image brightness gain in [0.85, 1.15] and a +-1 level change on
about a quarter of the pixels, rounded back to the 0..16 levels (like a second scan of the same
sheet). The 1080 results are stored in ``data/capstone_heldout.npz`` (`build_heldout` rebuilds
the file; a test checks that it has not drifted). So:

* No held-out image occurs in the handout, nor anywhere a student can load it: none equals any
  of the 1797 scikit-learn images, so a lookup table of known images scores nothing.
* The task is the one the notebook states: generalise to digits the model has never seen, under
  the kind of variation its ``jitter`` helper shows. The reference solution (an MLP trained on
  jittered copies of the training part) scores about 98.9 %, well above the 97 % of full marks,
  and deterministically so: every random draw in it is seeded.
* Why not stronger protection: the course is open source and the digits are public, so a student
  who deliberately trains on scikit-learn's 360 held-out originals does better than an honest
  one (near 100 %). No offline data set can prevent that; the notebook forbids it, and the
  perturbation at least rules out the effortless cheat, memorising the exact images.

Scoring: accuracy >= 97 % earns full marks; from 90 % to 97 % the credit grows linearly; below
90 % it is 0. nbgrader takes a test cell's last expression as its partial score, so the hidden
test ends with the value `grade_capstone` returns.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from autograder.checks.compare import CheckFailed, passed

SPLIT_SEED = 2024
N_SAMPLES = 1797
N_TRAIN = 1437
VARIANTS = 3
PERTURB_SEED = 7
FULL_MARKS_ACCURACY = 0.97
ZERO_CREDIT_ACCURACY = 0.90
DATA = Path(__file__).resolve().parent.parent / "data" / "capstone_heldout.npz"


def training_indices() -> np.ndarray:
    """The digits the notebook's load_training_data() returns (sorted indices into load_digits)."""
    return np.sort(np.random.default_rng(SPLIT_SEED).permutation(N_SAMPLES)[:N_TRAIN])


def heldout_indices() -> np.ndarray:
    """The 360 digits only the grader uses (after `perturb`)."""
    return np.sort(np.random.default_rng(SPLIT_SEED).permutation(N_SAMPLES)[N_TRAIN:])


def perturb(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """images (N, 64) of levels 0..16 -> new images of levels 0..16, each a different 'scan':
    ``round(gain * x + delta)`` clipped to [0, 16], gain ~ U(0.85, 1.15) per image and
    delta in {-1, 0, +1} on about 25 % of the pixels."""
    gain = rng.uniform(0.85, 1.15, size=(len(images), 1))
    delta = rng.integers(-1, 2, size=images.shape) * (rng.random(images.shape) < 0.25)
    return np.clip(np.rint(images * gain + delta), 0, 16)


def build_heldout(path: Path | None = DATA) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild the held-out set from scikit-learn's digits; write it to ``path`` unless None.

    Returns x (1080, 64) uint8 levels 0..16 and y (1080,) int64 labels. A variant that happens
    to equal an original image is drawn again, so no held-out image exists in scikit-learn.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    originals = bunch.data.astype(np.float64)
    known = {row.tobytes() for row in originals.astype(np.uint8)}
    index = heldout_indices()
    rng = np.random.default_rng(PERTURB_SEED)
    variants = []
    for _ in range(VARIANTS):
        x = perturb(originals[index], rng)
        for i in range(len(x)):
            while x[i].astype(np.uint8).tobytes() in known:
                x[i] = perturb(originals[index[i]][None], rng)[0]
        variants.append(x)
    x = np.concatenate(variants).astype(np.uint8)
    y = np.tile(bunch.target[index].astype(np.int64), VARIANTS)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # a file object: numpy must not append ".npz"
            np.savez_compressed(f, x=x, y=y)
    return x, y


def load_heldout() -> tuple[np.ndarray, np.ndarray]:
    """x (1080, 64) float64 in [0, 1] (as load_training_data() scales it), y (1080,) int64."""
    with np.load(DATA, allow_pickle=False) as data:
        return data["x"].astype(np.float64) / 16, data["y"].astype(np.int64)


def score_from_accuracy(accuracy: float, points: float) -> float:
    """Full ``points`` from 97 %, linear from 0 at 90 %, 0 below."""
    fraction = (accuracy - ZERO_CREDIT_ACCURACY) / (FULL_MARKS_ACCURACY - ZERO_CREDIT_ACCURACY)
    return round(float(points) * min(1.0, max(0.0, fraction)), 4)


def _predictions(model, x: np.ndarray) -> np.ndarray:
    """The model's class predictions for ``x``, or CheckFailed saying what is wrong with it."""
    if model is None:
        raise CheckFailed(
            "capstone: expected a trained model in a variable named `model`. Received: no "
            "`model` in the notebook. Build and train it in the cell above."
        )
    if not callable(getattr(model, "predict", None)):
        raise CheckFailed(
            f"capstone: expected `model` to have a predict(x) method (an npdl Sequential). "
            f"Received: {type(model).__name__}."
        )
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            out = model.predict(x.copy())
    except Exception as exc:  # any failure of the student's model is feedback, not a crash
        raise CheckFailed(
            f"capstone: model.predict(x) with x of shape {x.shape} (float64 pixels in [0, 1], "
            f"as load_training_data() returns them) raised {type(exc).__name__}: {exc}"
        ) from None
    out = np.asarray(out)
    if out.shape != (len(x), 10) or out.dtype.kind not in "fi":
        raise CheckFailed(
            f"capstone: model.predict(x) with x of shape {x.shape} should return class scores "
            f"of shape ({len(x)}, 10). Received: shape={out.shape}, dtype={out.dtype}. The grader "
            f"feeds raw pixels: put any preprocessing (e.g. Standardize) inside the model."
        )
    out = out.astype(np.float64)
    bad = ~np.all(np.isfinite(out), axis=1)
    labels = np.argmax(np.where(np.isfinite(out), out, -np.inf), axis=1)
    labels[bad] = -1  # a non-finite row is a wrong answer
    return labels


def grade_capstone(model, points: float = 10) -> float:
    """Held-out accuracy of ``model`` -> the score, printed and returned for partial credit.

    Raises CheckFailed (0 points, with the reason) for a missing or broken model or an accuracy
    below 90 %.
    """
    x, y = load_heldout()
    predicted = _predictions(model, x)
    accuracy = float(np.mean(predicted == y))
    per_class = [float(np.mean(predicted[y == c] == c)) for c in range(10)]
    weakest = int(np.argmin(per_class))
    report = (
        f"held-out accuracy {accuracy:.1%} on {len(y)} new digit images (full marks from "
        f"{FULL_MARKS_ACCURACY:.0%}, partial credit from {ZERO_CREDIT_ACCURACY:.0%}); "
        f"weakest class: "
        f"{weakest} ({per_class[weakest]:.1%})"
    )
    score = score_from_accuracy(accuracy, points)
    if score == 0:
        raise CheckFailed(
            f"capstone: {report}: 0 / {points:g} points. Check that the model is trained "
            f"(is the training loss falling?) and that it predicts raw pixels in [0, 1]."
        )
    passed(f"{report}: {score:g} / {points:g} points")
    return score
