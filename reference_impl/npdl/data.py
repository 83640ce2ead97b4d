"""Offline datasets, splitting, preprocessing and mini-batching.

The small real datasets (digits, breast cancer, diabetes) ship inside
scikit-learn, so every notebook runs without a network. MNIST is read from
IDX files on disk; it is downloaded only when you ask for it.

    x, y = load_digits()                      # (1797, 64) in [0, 1], labels 0..9
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, rng=0)
    for xb, yb in batches(x_tr, y_tr, batch_size=32, shuffle=True, rng=0):
        ...
"""

from __future__ import annotations

import gzip
import os
import urllib.request
from collections.abc import Iterator

import numpy as np

from npdl.core import ShapeError

__all__ = [
    "load_digits",
    "load_breast_cancer",
    "load_diabetes",
    "read_idx",
    "load_mnist",
    "train_test_split",
    "one_hot",
    "standardize",
    "batches",
]


def _as_generator(rng) -> np.random.Generator:
    """Accept a Generator, an int seed or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _sklearn_datasets():
    try:
        from sklearn import datasets
    except ImportError as err:  # pragma: no cover - scikit-learn is in requirements.txt
        raise ImportError(
            "npdl.data: the small datasets ship inside scikit-learn. "
            "Install it with: pip install scikit-learn"
        ) from err
    return datasets


# ----------------------------------------------------------------- small sets
def load_digits(as_images: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits (1797 samples, 10 classes), offline.

    Returns:
        x: float64 in [0, 1], shape (1797, 64), or (1797, 8, 8) with ``as_images``.
        y: int64 labels 0..9, shape (1797,).
    """
    bunch = _sklearn_datasets().load_digits()
    x = bunch.data.astype(np.float64) / 16.0  # pixel intensities are 0..16
    if as_images:
        x = x.reshape(-1, 8, 8)
    return x, bunch.target.astype(np.int64)


def load_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """Wisconsin breast cancer: x float64 (569, 30) raw features, y int64 0/1 (569,).

    The features have very different scales: `standardize` them before training.
    """
    bunch = _sklearn_datasets().load_breast_cancer()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


def load_diabetes() -> tuple[np.ndarray, np.ndarray]:
    """Diabetes regression: x float64 (442, 10) (already centred and scaled), y float64 (442,)."""
    bunch = _sklearn_datasets().load_diabetes()
    return bunch.data.astype(np.float64), bunch.target.astype(np.float64)


# ----------------------------------------------------------------------- IDX
# IDX type codes (http://yann.lecun.com/exdb/mnist/): all values are big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) into an ndarray in native byte order.

    Layout: 2 zero bytes, 1 type-code byte, 1 byte ``ndim``, then ``ndim``
    big-endian uint32 sizes, then the values in C order.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic number, whatever the file is called
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"read_idx: expected an IDX file starting with bytes 00 00 <type> <ndim>, "
            f"type one of {[hex(c) for c in _IDX_DTYPES]}. "
            f"Received: first bytes {raw[:4].hex(' ')} in {os.fspath(path)!r}."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"read_idx: expected {ndim} dimension sizes after the magic number. "
            f"Received: a file of {len(raw)} bytes, {os.fspath(path)!r}."
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"read_idx: header says shape {shape} of {dtype} ({expected} bytes in all). "
            f"Received: {len(raw)} bytes in {os.fspath(path)!r}."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # native order, writable copy


_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


def _find_idx(root: str, stem: str) -> str | None:
    for name in (stem, stem + ".gz"):
        path = os.path.join(root, name)
        if os.path.exists(path):
            return path
    return None


def _download_mnist(root: str) -> None:  # network code: never run by the tests
    os.makedirs(root, exist_ok=True)
    for stem in _MNIST_FILES.values():
        if _find_idx(root, stem):
            continue
        target = os.path.join(root, stem + ".gz")
        errors = []
        for mirror in _MNIST_MIRRORS:
            try:
                urllib.request.urlretrieve(mirror + stem + ".gz", target)
                break
            except OSError as err:
                errors.append(f"{mirror}: {err}")
        else:
            raise OSError(f"load_mnist: could not download {stem}.gz. Tried: {errors}")


def load_mnist(root, download: bool = False, flatten: bool = True, dtype=np.float64):
    """MNIST from the four IDX files in ``root`` (plain or ``.gz``).

    Returns ``((x_train, y_train), (x_test, y_test))`` with x in [0, 1] of
    ``dtype``, shape (N, 784) or (N, 28, 28) without ``flatten``, and int64 labels.
    Files are fetched from a public mirror only with ``download=True``.
    """
    root = os.fspath(root)
    if download:
        _download_mnist(root)
    paths = {key: _find_idx(root, stem) for key, stem in _MNIST_FILES.items()}
    missing = [_MNIST_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(
            f"load_mnist: expected the MNIST IDX files (optionally .gz) in {root!r}. "
            f"Received: missing {missing}. Copy them there or call load_mnist(root, download=True)."
        )

    def images(path):
        x = read_idx(path).astype(dtype)
        x /= 255  # a Python int keeps the dtype
        return x.reshape(len(x), -1) if flatten else x

    return (
        (images(paths["train_images"]), read_idx(paths["train_labels"]).astype(np.int64)),
        (images(paths["test_images"]), read_idx(paths["test_labels"]).astype(np.int64)),
    )


# ------------------------------------------------------------ preprocessing
def _check_same_length(arrays, who: str) -> int:
    lengths = [len(a) for a in arrays]
    if len(set(lengths)) > 1:
        raise ShapeError(
            f"{who}: expected every array to have the same number of samples (first dimension). "
            f"Received: lengths {lengths}."
        )
    return lengths[0]


def train_test_split(*arrays, test_size=0.2, rng=None, stratify=None):
    """Shuffle and split arrays into train and test parts (scikit-learn's order).

    ``test_size`` is a fraction in (0, 1) or a number of samples. With
    ``stratify=labels`` every class keeps (up to rounding) its proportion in both parts.

    Returns ``[a_train, a_test, b_train, b_test, ...]``.
    """
    if not arrays:
        raise ValueError("train_test_split: expected at least one array. Received: none.")
    arrays = [np.asarray(a) for a in arrays]
    n = _check_same_length(arrays, "train_test_split")
    if isinstance(test_size, float) and 0.0 < test_size < 1.0:
        n_test = int(np.ceil(test_size * n))
    elif isinstance(test_size, (int, np.integer)) and not isinstance(test_size, bool):
        n_test = int(test_size)
    else:
        raise ValueError(
            f"train_test_split: expected test_size as a fraction in (0, 1) or a sample count. "
            f"Received: test_size={test_size!r}."
        )
    if not 0 < n_test < n:
        raise ValueError(
            f"train_test_split: expected both parts to be non-empty. "
            f"Received: test_size={test_size!r} gives {n_test} of {n} samples for the test part."
        )
    gen = _as_generator(rng)
    if stratify is None:
        perm = gen.permutation(n)
        test_idx, train_idx = perm[:n_test], perm[n_test:]
    else:
        test_idx, train_idx = _stratified_indices(np.asarray(stratify), n, n_test, gen)
    out = []
    for a in arrays:
        out += [a[train_idx], a[test_idx]]
    return out


def _stratified_indices(labels, n, n_test, gen):
    if len(labels) != n:
        raise ShapeError(
            f"train_test_split: expected stratify to have {n} labels. Received: {len(labels)}."
        )
    test, train = [], []
    for cls in np.unique(labels):
        idx = gen.permutation(np.flatnonzero(labels == cls))
        k = int(round(len(idx) * n_test / n))
        test.append(idx[:k])
        train.append(idx[k:])
    # shuffle so the classes are interleaved, not in blocks
    return gen.permutation(np.concatenate(test)), gen.permutation(np.concatenate(train))


def one_hot(labels, num_classes=None, dtype=np.float64) -> np.ndarray:
    """Integer labels of shape (...) -> one-hot array of shape (..., num_classes).

    ``out[..., k] = 1`` where ``labels == k``, 0 elsewhere.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"one_hot: expected integer class labels. Received: dtype={labels.dtype}. "
            f"Use labels.astype(np.int64) if they are whole numbers."
        )
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"one_hot: expected labels in [0, {num_classes - 1}]. "
            f"Received: min={labels.min()}, max={labels.max()}."
        )
    out = np.zeros(labels.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, labels[..., None], 1, axis=-1)
    return out


def standardize(x, mean=None, std=None):
    """Zero mean, unit variance per feature (column): ``(x - mean) / std``.

    ``mean``/``std`` default to the column statistics of ``x`` (pass the
    training set's values to transform a test set the same way). Columns
    with zero spread get ``std = 1``, so they map to 0 instead of NaN.

    Returns ``(x_std, mean, std)``; float32 input stays float32, integers become float64.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if mean is None or std is None:
        constant = np.ptp(x, axis=0) == 0  # exact: rounding gives a constant a std of ~1e-17
    if mean is None:
        mean = np.where(constant, x[0], x.mean(axis=0))
    if std is None:
        std = x.std(axis=0)
        std = np.where(constant | ~(std > 0), 1, std)  # ~(std > 0): std underflowed to 0
    mean = np.asarray(mean, dtype=x.dtype)
    std = np.asarray(std, dtype=x.dtype)
    return (x - mean) / std, mean, std


def batches(x, y=None, batch_size: int = 32, shuffle: bool = False, rng=None) -> Iterator:
    """Yield mini-batches ``xb`` (or ``(xb, yb)`` when ``y`` is given).

    Every sample appears exactly once per pass; the last batch may be
    smaller. Without ``shuffle`` the batches are views (no copy).
    ``rng`` is a Generator or an int seed for the shuffle.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            f"batches: expected a positive integer batch_size. Received: {batch_size!r}."
        )
    n = len(x) if y is None else _check_same_length([x, y], "batches")
    order = _as_generator(rng).permutation(n) if shuffle else None
    for start in range(0, n, batch_size):
        if order is None:
            part = slice(start, start + batch_size)
        else:
            part = order[start : start + batch_size]
        yield x[part] if y is None else (x[part], y[part])
