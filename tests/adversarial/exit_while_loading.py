"""Leave early with SystemExit while the cells load: under nbgrader this can skip the hidden
tests that follow. Here loading fails, but the trusted checks still run (and fail)."""

import sys

import numpy as np


class ReLU:
    def forward(self, x):
        return np.abs(x)

    def backward(self, grad_output):
        return grad_output


sys.exit(0)
