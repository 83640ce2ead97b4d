"""One forward and backward pass of a 3x3 convolution: npdl ``Conv2D`` vs ``torch.nn.Conv2d``.

    .venv/bin/python benchmarks/bench_conv.py [--runs 21] [--block 3] [--threads N]

Batch 64, 3 -> 16 channels, 32x32 images, 3x3 kernel, padding 1, float32, CPU.
One run is ``y = conv(x)`` followed by the backward pass of a fixed ``dL/dy``
that fills dW, db AND dx (a layer inside a network; the first layer of a
network skips dx, which is timed too, as a second figure). npdl and torch
alternate in one process, so they see the same machine load, and each is
timed as the MIN over ``--runs`` runs. torch gets as many threads as NumPy's
BLAS has (``--threads`` overrides). A script that prints figures, not a test.
See benchmarks/README.md.

They alternate in BLOCKS of ``--block`` consecutive runs, not run by run: both
libraries leave their worker threads spinning for a moment after parallel work,
so a run that follows the other library's starts while that pool still holds a
core. Alternating run by run inflated torch's minimum by up to 2x here and made
the ratio swing from 1.2 to 2.2 between processes; with blocks it stays within
about 0.2 (measured on 2026-12-03, 10 processes each way).
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
import torch
from bench_mlp_epoch import MatmulPeak, _timed  # same peak measurement as the MLP benchmark
from threadpoolctl import threadpool_info

from npdl.conv import Conv2D

N, C_IN, C_OUT, H, W, K, PAD = 64, 3, 16, 32, 32, 3, 1


def useful_flops(need_input_grad: bool) -> float:
    """Multiply-adds of the three products, 2 FLOPs each: the forward ``W (*) x`` and in
    backward ``dW = g (*) x`` and ``dx = W^T (*) g`` (each ``N * OH * OW * C_OUT * C_IN * K * K``
    multiply-adds; OH = OW = 32 with padding 1). The bias is not counted."""
    per_product = 2.0 * N * H * W * C_OUT * C_IN * K * K
    return per_product * (3 if need_input_grad else 2)


def blas_threads() -> int:
    """Threads of NumPy's BLAS (OpenBLAS here), the pool npdl's matmuls run on."""
    pools = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(pools) if pools else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="timed runs per framework (>= 9)")
    parser.add_argument("--block", type=int, default=3,
                        help="consecutive runs of one framework before switching (1: run by run)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: NumPy's BLAS threads)")
    args = parser.parse_args()
    threads = args.threads or blas_threads()
    torch.set_num_threads(threads)
    if args.runs < 9:
        print(f"note: only {args.runs} run(s); use --runs 9 or more for reportable figures")

    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C_IN, H, W), dtype=np.float32)
    g = rng.standard_normal((N, C_OUT, H, W), dtype=np.float32)
    layer = Conv2D(C_IN, C_OUT, K, padding=PAD, rng=0, dtype=np.float32)
    conv = torch.nn.Conv2d(C_IN, C_OUT, K, padding=PAD)  # float32
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(layer.params["W"]))
        conv.bias.zero_()
    xt, gt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(g)
    xt_const = torch.from_numpy(x)  # no requires_grad: torch skips dx

    def npdl_run(need_input_grad=True):
        layer.forward(x)
        layer.backward(g, need_input_grad=need_input_grad)

    def torch_run(need_input_grad=True):
        conv.zero_grad(set_to_none=True)
        xt.grad = None
        conv(xt if need_input_grad else xt_const).backward(gt)

    # same numbers first: a benchmark of wrong code is worthless
    npdl_run()
    torch_run()
    assert np.allclose(layer.grads["W"], conv.weight.grad.numpy(), rtol=1e-3, atol=1e-2)

    print(f"numpy {np.__version__}, torch {torch.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, BLAS threads {blas_threads()}, torch threads {threads}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    print(f"Conv2D {C_IN}->{C_OUT}, {K}x{K}, padding {PAD}, batch {N}, {H}x{W}, float32; "
          f"min over {args.runs} runs of forward + backward, alternating in blocks of "
          f"{args.block}")
    peak = MatmulPeak()
    peak.sample(repeats=5)
    results = {}
    for need_input_grad in (True, False):
        times = {"npdl": [], "torch": []}
        while len(times["torch"]) < args.runs:
            for name, run in (("npdl", npdl_run), ("torch", torch_run)):
                for _ in range(min(args.block, args.runs - len(times[name]))):
                    times[name].append(_timed(lambda r=run, nig=need_input_grad: r(nig)))
        results[need_input_grad] = {name: min(ts) for name, ts in times.items()}
        peak.sample()

    print(f"float32 matmul peak (best 2048x2048 @ 2048x2048 of 7): {peak.gflops:.1f} GFLOP/s")
    for need_input_grad, label in ((True, "with dx (a hidden layer)"),
                                   (False, "without dx (a first layer)")):
        best = results[need_input_grad]
        work = useful_flops(need_input_grad)
        print(f"\n{label}: {work / 1e6:.1f} MFLOP of useful work")
        for name, seconds in best.items():
            rate = work / seconds / 1e9
            print(f"{name:>8}: {seconds * 1e3:.2f} ms  ({rate:6.1f} GFLOP/s, "
                  f"{rate / peak.gflops:.0%} of peak)")
        ratio = best["npdl"] / best["torch"]
        if need_input_grad:
            verdict = "OK" if ratio <= 1.5 else "MISSED"
            print(f"npdl / torch time ratio: {ratio:.2f}  (target <= 1.5: {verdict})")
        else:
            print(f"npdl / torch time ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
