"""npdl.data: offline datasets, the IDX reader, splitting, one-hot, standardize, batches."""

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npdl.core import ShapeError
from npdl.data import (
    batches,
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_mnist,
    one_hot,
    read_idx,
    standardize,
    train_test_split,
)

SETTINGS = settings(max_examples=40, deadline=None)


# ------------------------------------------------------------------ datasets
def test_load_digits_flat_and_images():
    x, y = load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float64
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    images, y2 = load_digits(as_images=True)
    assert images.shape == (1797, 8, 8)
    np.testing.assert_array_equal(images.reshape(1797, 64), x)
    np.testing.assert_array_equal(y, y2)


def test_load_breast_cancer_and_diabetes():
    x, y = load_breast_cancer()
    assert x.shape == (569, 30) and x.dtype == np.float64
    assert y.dtype == np.int64 and set(np.unique(y)) == {0, 1}
    x, y = load_diabetes()
    assert x.shape == (442, 10) and y.shape == (442,)
    assert x.dtype == np.float64 and y.dtype == np.float64


# ----------------------------------------------------------------------- IDX
def _idx_bytes(array: np.ndarray, code: int, big_endian_dtype: str) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.astype(big_endian_dtype).tobytes()


@pytest.mark.parametrize(
    ("code", "dtype", "be"),
    [(0x08, np.uint8, "u1"), (0x09, np.int8, "i1"), (0x0B, np.int16, ">i2"),
     (0x0C, np.int32, ">i4"), (0x0D, np.float32, ">f4"), (0x0E, np.float64, ">f8")],
)
def test_read_idx_every_type_code(tmp_path, code, dtype, be):
    array = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    path = tmp_path / "a.idx"
    path.write_bytes(_idx_bytes(array, code, be))
    out = read_idx(path)
    assert out.shape == (2, 3, 4)
    assert out.dtype == np.dtype(dtype)  # native byte order
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)
    out[0, 0, 0] = 1  # writable


def test_read_idx_gzip_and_1d(tmp_path):
    labels = np.array([3, 1, 4, 1, 5, 9], dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(labels, 0x08, "u1")))
    np.testing.assert_array_equal(read_idx(path), labels)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="Received: first bytes 01 02 08 01"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(np.zeros((4, 5), np.uint8), 0x08, "u1")[:-3])
    with pytest.raises(ValueError, match=r"shape \(4, 5\).*Received: 29 bytes"):
        read_idx(short)
    header_only = tmp_path / "header"
    header_only.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(ValueError, match="expected 3 dimension sizes"):
        read_idx(header_only)


def _write_fake_mnist(root, n_train=5, n_test=3, gz=True):
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for kind, array, nd in (("images", images, 3), ("labels", labels, 1)):
            name = f"{split}-{kind}-idx{nd}-ubyte"
            data = _idx_bytes(array, 0x08, "u1")
            if gz and kind == "images":  # mix plain and gzipped files
                (root / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)
            files[(split, kind)] = array
    return files


def test_load_mnist_reads_plain_and_gzip_files(tmp_path):
    files = _write_fake_mnist(tmp_path)
    (x_tr, y_tr), (x_te, y_te) = load_mnist(tmp_path)
    assert x_tr.shape == (5, 784) and x_te.shape == (3, 784)
    assert x_tr.dtype == np.float64 and y_tr.dtype == np.int64
    np.testing.assert_array_equal(x_tr, files[("train", "images")].reshape(5, 784) / 255.0)
    np.testing.assert_array_equal(y_te, files[("t10k", "labels")])
    (x32, _), _ = load_mnist(str(tmp_path), flatten=False, dtype=np.float32)
    assert x32.shape == (5, 28, 28) and x32.dtype == np.float32
    assert 0.0 <= x32.min() and x32.max() <= 1.0


def test_load_mnist_missing_files_never_downloads_by_default(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_mnist(tmp_path)


# ------------------------------------------------------------------ one_hot
@SETTINGS
@given(hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                  elements=st.integers(0, 6)), st.integers(7, 9))
def test_one_hot_properties(labels, num_classes):
    out = one_hot(labels, num_classes)
    assert out.shape == labels.shape + (num_classes,) and out.dtype == np.float64
    np.testing.assert_array_equal(out.sum(axis=-1), 1.0)
    np.testing.assert_array_equal(out.argmax(axis=-1), labels)
    assert one_hot(labels, num_classes, dtype=np.float32).dtype == np.float32


def test_one_hot_infers_classes_and_rejects_bad_labels():
    np.testing.assert_array_equal(one_hot(np.array([0, 2])), [[1, 0, 0], [0, 0, 1]])
    with pytest.raises(TypeError, match="integer class labels"):
        one_hot(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels in \[0, 2\]"):
        one_hot(np.array([0, 3]), num_classes=3)
    with pytest.raises(ValueError, match="min=-1"):
        one_hot(np.array([-1, 1]), num_classes=3)


# -------------------------------------------------------------- standardize
@SETTINGS
@given(hnp.arrays(np.float64, st.tuples(st.integers(2, 20), st.integers(1, 5)),
                  elements=st.floats(-1e4, 1e4, allow_subnormal=False)))
def test_standardize_properties(x):
    z, mean, std = standardize(x)
    assert z.shape == x.shape and z.dtype == np.float64
    assert np.all(np.isfinite(z)) and np.all(std > 0)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-6)
    spread = x.std(axis=0)
    informative = spread > 1e-6 * (np.abs(x).max(axis=0) + 1.0)
    np.testing.assert_allclose(z.std(axis=0)[informative], 1.0, rtol=1e-6)
    constant = np.ptp(x, axis=0) == 0
    np.testing.assert_array_equal(z[:, constant], 0.0)  # constant column -> 0, not NaN
    # applying the training statistics again gives the same result
    z2, _, _ = standardize(x, mean, std)
    np.testing.assert_array_equal(z2, z)


def test_standardize_keeps_float32_and_converts_integers():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    z, mean, std = standardize(x)
    assert z.dtype == mean.dtype == std.dtype == np.float32
    z_int, _, _ = standardize(np.arange(12).reshape(4, 3))
    assert z_int.dtype == np.float64


# --------------------------------------------------------- train_test_split
@SETTINGS
@given(st.integers(2, 60), st.floats(0.05, 0.95), st.integers(0, 2**16))
def test_train_test_split_partitions(n, test_size, seed):
    x = np.arange(n)
    y = x * 10.0
    if not 0 < int(np.ceil(test_size * n)) < n:
        with pytest.raises(ValueError, match="non-empty"):
            train_test_split(x, y, test_size=test_size, rng=seed)
        return
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, rng=seed)
    assert len(x_te) == int(np.ceil(test_size * n)) and len(x_tr) + len(x_te) == n
    np.testing.assert_array_equal(np.sort(np.concatenate([x_tr, x_te])), x)  # disjoint, complete
    np.testing.assert_array_equal(y_tr, x_tr * 10.0)  # arrays stay aligned
    np.testing.assert_array_equal(y_te, x_te * 10.0)
    again = train_test_split(x, y, test_size=test_size, rng=seed)
    np.testing.assert_array_equal(again[1], x_te)  # seeded


def test_train_test_split_stratified_keeps_proportions():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    x = np.arange(100.0)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, rng=1, stratify=y)
    assert np.bincount(y_te).tolist() == [10, 6, 4]
    assert np.bincount(y_tr).tolist() == [40, 24, 16]
    np.testing.assert_array_equal(y[x_te.astype(int)], y_te)
    assert len(np.unique(np.concatenate([x_tr, x_te]))) == 100
    assert not np.all(np.diff(y_te) >= 0)  # classes interleaved, not in blocks


def test_train_test_split_errors():
    with pytest.raises(ShapeError, match=r"Received: lengths \[3, 4\]"):
        train_test_split(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="test_size=1.5"):
        train_test_split(np.zeros(10), test_size=1.5)
    assert len(train_test_split(np.zeros(10), test_size=3, rng=0)[1]) == 3


# ------------------------------------------------------------------ batches
@SETTINGS
@given(st.integers(1, 50), st.integers(1, 17), st.booleans(), st.integers(0, 2**16))
def test_batches_cover_every_sample_once(n, batch_size, shuffle, seed):
    x = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
    y = np.arange(n)
    parts = list(batches(x, y, batch_size=batch_size, shuffle=shuffle, rng=seed))
    assert len(parts) == -(-n // batch_size)
    assert all(len(xb) == batch_size for xb, _ in parts[:-1])
    assert 1 <= len(parts[-1][0]) <= batch_size
    ys = np.concatenate([yb for _, yb in parts])
    np.testing.assert_array_equal(np.sort(ys), y)
    for xb, yb in parts:
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)  # x and y stay aligned
    if not shuffle:
        np.testing.assert_array_equal(ys, y)
        assert all(np.shares_memory(xb, x) for xb, _ in parts)  # views, no copy
    again = np.concatenate([yb for _, yb in batches(x, y, batch_size, shuffle, rng=seed)])
    np.testing.assert_array_equal(again, ys)


def test_batches_x_only_generator_and_errors():
    x = np.arange(10.0)
    assert [len(b) for b in batches(x, batch_size=4)] == [4, 4, 2]
    gen = np.random.default_rng(0)
    first = np.concatenate(list(batches(x, batch_size=3, shuffle=True, rng=gen)))
    second = np.concatenate(list(batches(x, batch_size=3, shuffle=True, rng=gen)))
    assert not np.array_equal(first, second)  # a shared Generator advances between epochs
    with pytest.raises(ShapeError, match="same number of samples"):
        next(batches(np.zeros(3), np.zeros(4)))
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(x, batch_size=0))
