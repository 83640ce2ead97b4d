"""One training epoch of a 784-256-128-10 MLP: npdl vs PyTorch CPU vs a hand-fused NumPy loop.

    .venv/bin/python benchmarks/bench_mlp_epoch.py [--epochs 9]

60,000 random MNIST-shaped float32 samples, batch 128, ReLU, softmax
cross-entropy, SGD with momentum 0.9 and lr 0.01, reshuffled every epoch.
The three trainers alternate epoch by epoch in one process (so they see the
same machine load) and each is timed as the MIN over ``--epochs`` epochs.
NumPy's BLAS and torch get the same number of threads (``--threads``).
This is a script that prints figures, not a test. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

# OpenBLAS reads these once, when NumPy loads it. A forced OPENBLAS_CORETYPE (e.g. Haswell
# on an AVX-512 CPU) or L2 size slows NumPy's matmuls but not torch's, so this process drops
# them before importing NumPy and prints the kernel that runs. The caller's shell keeps them.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
dropped = {name: os.environ.pop(name) for name in OPENBLAS_OVERRIDES if name in os.environ}

import numpy as np  # noqa: E402 (after the environment is cleaned)
import torch  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from npdl.activations import ReLU  # noqa: E402
from npdl.layers import Dense  # noqa: E402
from npdl.losses import SoftmaxCrossEntropy  # noqa: E402
from npdl.models import Sequential  # noqa: E402
from npdl.optimizers import SGD  # noqa: E402

SIZES = (784, 256, 128, 10)
LR, MOMENTUM = 0.01, 0.9
TARGET_RATIO, TARGET_PEAK = 0.62, 0.70  # npdl/torch time at most, fraction of peak at least


def useful_flops(n_samples: int, sizes=SIZES) -> float:
    """Matmul FLOPs of one epoch: per layer a forward ``x @ W`` and the two
    backward products ``x^T g`` and ``g W^T``, except the first layer's input
    gradient, which nobody needs. Each (m, k) @ (k, n) product costs 2 m k n."""
    per_sample = 0
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        products = 2 if i == 0 else 3
        per_sample += products * 2 * fan_in * fan_out
    return float(n_samples * per_sample)


class MatmulPeak:
    """Best float32 GFLOP/s of an (n, n) @ (n, n) product: the machine's practical peak.

    Sampled a few times before the epochs and once after every round of epochs,
    so that a quiet moment anywhere in the run counts (the maximum is reported).
    """

    def __init__(self, n: int = 2048) -> None:
        rng = np.random.default_rng(0)
        self.a = rng.random((n, n), dtype=np.float32)
        self.b = rng.random((n, n), dtype=np.float32)
        self.out = np.empty((n, n), dtype=np.float32)
        self.flops = 2.0 * n**3
        self.best = np.inf
        np.matmul(self.a, self.b, out=self.out)  # warm-up: threads, caches

    def sample(self, repeats: int = 1) -> None:
        for _ in range(repeats):
            seconds = _timed(lambda: np.matmul(self.a, self.b, out=self.out))
            self.best = min(self.best, seconds)

    @property
    def gflops(self) -> float:
        return self.flops / self.best / 1e9


class MatmulFloor:
    """One epoch of the eight matmuls alone (three forward, three weight gradients, two
    input gradients), on preallocated operands: the time no NumPy
    trainer of this network can beat, whatever it does around the products."""

    def __init__(self, n_samples: int, batch_size: int, sizes=SIZES) -> None:
        rng = np.random.default_rng(0)
        f32 = np.float32
        self.steps = -(-n_samples // batch_size)
        dims = list(zip(sizes[:-1], sizes[1:], strict=True))
        self.inputs = [rng.random((batch_size, i), dtype=f32) for i, _ in dims]
        self.weights = [rng.random((i, o), dtype=f32) for i, o in dims]
        self.grads = [rng.random((batch_size, o), dtype=f32) for _, o in dims]
        self.outputs = [np.empty((batch_size, o), f32) for _, o in dims]
        self.weight_grads = [np.empty((i, o), f32) for i, o in dims]
        self.input_grads = [np.empty((batch_size, i), f32) for i, _ in dims]
        self.best = np.inf

    def _epoch(self) -> None:
        layers = list(zip(self.inputs, self.weights, self.grads, self.outputs,
                          self.weight_grads, self.input_grads, strict=True))
        for _ in range(self.steps):
            for i, (x, w, g, out, dw, dx) in enumerate(layers):
                np.matmul(x, w, out=out)
                np.matmul(x.T, g, out=dw)
                if i > 0:  # the first layer's input gradient is never needed
                    np.matmul(g, w.T, out=dx)

    def sample(self) -> None:
        self.best = min(self.best, _timed(self._epoch))


def blas_description() -> str:
    """Library, version, kernel (OpenBLAS's detected or forced core type) and threads."""
    pools = [info for info in threadpool_info() if info["user_api"] == "blas"
             and "numpy" in info["filepath"]] or threadpool_info()
    return "; ".join(f"{info['internal_api']} {info.get('version')}, kernel "
                     f"{info.get('architecture', '?')}, {info['num_threads']} threads"
                     for info in pools)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------ trainers
class NpdlTrainer:
    name = "npdl"

    def __init__(self, x, y, batch_size, seed):
        self.x, self.y, self.batch_size = x, y, batch_size
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
            layers.append(Dense(fan_in, fan_out, rng=seed + i, dtype=np.float32))
            if i < len(SIZES) - 2:
                layers.append(ReLU())
        self.model = Sequential(layers)
        self.loss = SoftmaxCrossEntropy()
        self.optimizer = SGD(lr=LR, momentum=MOMENTUM)
        self.rng = np.random.default_rng(seed)

    def epoch(self) -> float:
        history = self.model.fit(self.x, self.y, loss=self.loss, optimizer=self.optimizer, epochs=1,
                                 batch_size=self.batch_size, verbose=0, rng=self.rng)
        return history.history["loss"][-1]


class TorchTrainer:
    name = "torch"

    def __init__(self, x, y, batch_size, seed):
        torch.manual_seed(seed)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        self.batch_size = batch_size
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
            layers.append(torch.nn.Linear(fan_in, fan_out))
            if i < len(SIZES) - 2:
                layers.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*layers)  # float32, like the data
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM)
        self.generator = torch.Generator().manual_seed(seed)

    def epoch(self) -> float:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator)
        total = 0.0
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            xb, yb = self.x[idx], self.y[idx]
            loss = torch.nn.functional.cross_entropy(self.net(xb), yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(idx)
        return total / n


class FusedNumpyTrainer:
    """The same computation written as one loop over preallocated buffers: the
    floor of what NumPy can do, to see how much npdl's layering costs."""

    name = "fused numpy"

    def __init__(self, x, y, batch_size, seed):
        self.x, self.y, self.batch_size = x, y, batch_size
        rng = np.random.default_rng(seed)
        dims = list(zip(SIZES[:-1], SIZES[1:], strict=True))
        f32 = np.float32
        self.W = [(rng.standard_normal((i, o), dtype=f32) * f32(np.sqrt(2.0 / i))) for i, o in dims]
        self.b = [np.zeros(o, f32) for _, o in dims]
        self.vW = [np.zeros_like(w) for w in self.W]
        self.vb = [np.zeros_like(b) for b in self.b]
        self.dW = [np.empty_like(w) for w in self.W]
        self.db = [np.empty_like(b) for b in self.b]
        bs = batch_size
        self.xb = np.empty((bs, SIZES[0]), f32)
        self.h = [np.empty((bs, o), f32) for _, o in dims]  # layer outputs (post-ReLU)
        self.g = [np.empty((bs, o), f32) for _, o in dims]  # dL/d(pre-activation)
        self.rng = rng

    def _step(self, n, yb):
        W, b, h, g = self.W, self.b, [a[:n] for a in self.h], [a[:n] for a in self.g]
        x = self.xb[:n]
        inputs = [x, h[0], h[1]]
        for i in range(3):  # forward
            np.matmul(inputs[i], W[i], out=h[i])
            h[i] += b[i]
            if i < 2:
                np.maximum(h[i], 0, out=h[i])
        logits = h[2]  # softmax cross-entropy, in place
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        sums = logits.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(sums[:, 0]) - np.log(logits[np.arange(n), yb])))
        np.divide(logits, sums, out=g[2])
        g[2][np.arange(n), yb] -= 1.0
        g[2] *= np.float32(1.0 / n)
        for i in (2, 1, 0):  # backward
            np.matmul(inputs[i].T, g[i], out=self.dW[i])
            np.sum(g[i], axis=0, out=self.db[i])
            if i > 0:
                np.matmul(g[i], W[i].T, out=g[i - 1])
                g[i - 1] *= h[i - 1] > 0
        # SGD with momentum, torch rule: v = momentum * v + g; p -= lr * v
        for p, v, d in zip(W + b, self.vW + self.vb, self.dW + self.db, strict=True):
            v *= MOMENTUM
            v += d
            p -= np.float32(LR) * v
        return loss

    def epoch(self) -> float:
        n_total = len(self.x)
        order = self.rng.permutation(n_total)
        total = 0.0
        for start in range(0, n_total, self.batch_size):
            idx = order[start : start + self.batch_size]
            n = len(idx)
            np.take(self.x, idx, axis=0, out=self.xb[:n])
            total += self._step(n, self.y[idx]) * n
        return total / n_total


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=9, help="timed epochs per trainer (>= 9)")
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for NumPy's BLAS and for torch alike")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads, user_api="blas")  # NumPy's OpenBLAS: the same count
    if args.epochs < 9:
        print(f"note: only {args.epochs} epoch(s); use --epochs 9 or more for reportable figures")

    rng = np.random.default_rng(0)
    x = rng.random((args.samples, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], size=args.samples)
    trainers = [cls(x, y, args.batch_size, seed=1) for cls in
                (NpdlTrainer, TorchTrainer, FusedNumpyTrainer)]

    print(f"numpy {np.__version__}, torch {torch.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    print(f"numpy BLAS: {blas_description()}; torch: {torch.get_num_threads()} threads")
    if dropped:
        print(f"unset for this process: {', '.join(f'{k}={v}' for k, v in dropped.items())}")
    print(f"{args.samples} samples x {SIZES}, batch {args.batch_size}, float32, "
          f"SGD(lr={LR}, momentum={MOMENTUM}); min over {args.epochs} epochs, trainers alternating")
    peak = MatmulPeak()
    peak.sample(repeats=5)
    floor = MatmulFloor(args.samples, args.batch_size)
    times = {t.name: [] for t in trainers}
    for epoch in range(args.epochs):
        for trainer in trainers:
            seconds = _timed(trainer.epoch)
            times[trainer.name].append(seconds)
        peak.sample()
        floor.sample()
        print(f"  epoch {epoch + 1}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()),
              flush=True)

    best = {name: min(ts) for name, ts in times.items()}
    work = useful_flops(args.samples)
    npdl_rate = work / best["npdl"] / 1e9
    print()
    for name, seconds in best.items():
        print(f"{name:>12}: {seconds:.3f} s/epoch  ({work / seconds / 1e9:6.1f} GFLOP/s)")
    print(f"useful work: {work / 1e9:.1f} GFLOP per epoch "
          f"(forward + 2 backward matmuls per layer, minus the first layer's input gradient)")
    print(f"float32 matmul peak (best 2048x2048 @ 2048x2048 of {5 + args.epochs}): "
          f"{peak.gflops:.1f} GFLOP/s")
    print(f"the same matmuls alone, nothing around them: {floor.best:.3f} s/epoch "
          f"({work / floor.best / 1e9:.1f} GFLOP/s, {work / floor.best / 1e9 / peak.gflops:.0%} "
          f"of peak): no NumPy trainer of these shapes can be faster")
    ratio = best["npdl"] / best["torch"]
    fraction = npdl_rate / peak.gflops
    verdict = "OK" if ratio <= TARGET_RATIO else "MISSED"
    print(f"npdl / torch time ratio: {ratio:.2f}  (target <= {TARGET_RATIO}: {verdict})")
    print(f"npdl / fused numpy time ratio: {best['npdl'] / best['fused numpy']:.2f}")
    verdict = "OK" if fraction >= TARGET_PEAK else "MISSED"
    print(f"npdl fraction of peak: {fraction:.0%}  (target >= {TARGET_PEAK:.0%}: {verdict})")
    print(f"load average {os.getloadavg()[0]:.2f} at the end (above ~0.5 the figures are noisy)")


if __name__ == "__main__":
    main()
