"""Measure the sandbox's start-up and per-call overhead: ``python -m autograder.sandbox.bench``.

Prints the best of several rounds (the machine may be shared), next to a bare pipe round
trip between two plain Python processes (the floor of any out-of-process design) and the
local call.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

import numpy as np

from . import Sandbox

RELU = ("class ReLU:\n    def forward(self, x):\n        self.mask = x > 0\n"
        "        return x * self.mask\n")
ECHO = ("import os\nwhile True:\n    data = os.read(0, 1 << 20)\n    if not data: break\n"
        "    os.write(1, data)\n")


class LocalReLU:
    def forward(self, x):
        self.mask = x > 0
        return x * self.mask


def per_call(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def pipe_round_trip(calls: int, size: int) -> float:
    child = subprocess.Popen([sys.executable, "-I", "-S", "-c", ECHO], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, bufsize=0)
    for pipe in (child.stdin, child.stdout):  # as the sandbox does, so big arrays fit at once
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    payload = b"x" * size

    def ping():
        child.stdin.write(payload)
        got = 0
        while got < size:
            got += len(os.read(child.stdout.fileno(), size - got))
    try:
        return per_call(ping, calls)
    finally:
        child.stdin.close()
        child.wait()


def main(rounds: int = 5, calls: int = 300) -> None:
    starts = []
    for _ in range(rounds):
        start = time.perf_counter()
        with Sandbox() as box:
            starts.append(time.perf_counter() - start)
    print(f"start-up (fresh child, NumPy imported): min {min(starts) * 1e3:.0f} ms")
    with Sandbox() as box:
        box.exec(RELU)
        remote, local = box.remote("ReLU")(), LocalReLU()
        for shape in [(32, 64), (256, 784)]:
            x = np.ones(shape, np.float32)
            rows = {"local": [], "sandbox": [], "bare pipe": []}
            for _ in range(rounds):
                rows["local"].append(per_call(lambda x=x: local.forward(x), calls))
                rows["sandbox"].append(per_call(lambda x=x: remote.forward(x), calls))
                rows["bare pipe"].append(pipe_round_trip(calls, x.nbytes))
            summary = ", ".join(f"{k} {min(v) * 1e6:.0f} us" for k, v in rows.items())
            print(f"forward{shape} float32: {summary}")


if __name__ == "__main__":
    main()
