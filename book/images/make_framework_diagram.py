"""Draw book/images/framework.svg: data -> layers -> loss -> backward -> optimizer.

Run with `.venv/bin/python book/images/make_framework_diagram.py` after changing the picture.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

BOXES = [  # (x, label, detail, colour)
    (0.9, "data", "x, y\n(batch, features)", "#dfe8f7"),
    (3.2, "layers", "Dense, ReLU,\nDropout, BatchNorm", "#e3f1df"),
    (5.5, "loss", "L = loss(pred, y)\none number", "#f9e6cf"),
    (7.8, "optimizer", "W -= lr * dL/dW\n(SGD, Adam, ...)", "#efdff2"),
]


def box(ax, x, y, label, detail, colour):
    ax.add_patch(
        FancyBboxPatch(
            (x - 0.95, y - 0.55),
            1.9,
            1.1,
            boxstyle="round,pad=0.05",
            fc=colour,
            ec="#333333",
            lw=1.3,
        )
    )
    ax.text(x, y + 0.22, label, ha="center", va="center", fontsize=13, weight="bold")
    ax.text(x, y - 0.2, detail, ha="center", va="center", fontsize=8.5, linespacing=1.2)


def arrow(ax, start, end, colour, text, text_xy, rad=0.0):
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=16,
            lw=1.8,
            color=colour,
            connectionstyle=f"arc3,rad={rad}",
        )
    )
    ax.text(*text_xy, text, ha="center", va="center", fontsize=9, color=colour, style="italic")


def main():
    fig, ax = plt.subplots(figsize=(9, 3.6))
    y = 2.0
    for x, label, detail, colour in BOXES:
        box(ax, x, y, label, detail, colour)
    forward, backward = "#1f5fbf", "#c0392b"
    arrow(ax, (1.9, y + 0.15), (2.2, y + 0.15), forward, "", (0, 0))
    arrow(ax, (4.2, y + 0.15), (4.5, y + 0.15), forward, "", (0, 0))
    ax.text(3.2, 3.05, "forward: x -> pred", ha="center", fontsize=9, color=forward, style="italic")
    arrow(
        ax,
        (5.4, y - 0.65),
        (3.3, y - 0.65),
        backward,
        "backward: dL/dpred -> dL/dW, dL/dx",
        (4.35, 0.72),
        rad=-0.35,
    )
    arrow(ax, (3.6, y - 0.7), (7.6, y - 0.7), "#7d3c98", "grads dL/dW", (7.25, 0.62), rad=0.5)
    arrow(
        ax,
        (7.8, y + 0.65),
        (3.4, y + 0.65),
        "#7d3c98",
        "step(params, grads) updates W in place",
        (5.6, 3.45),
        rad=0.25,
    )
    ax.set_xlim(-0.2, 8.9)
    ax.set_ylim(-0.1, 3.8)
    ax.axis("off")
    out = Path(__file__).with_name("framework.svg")
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    print("wrote", out)


if __name__ == "__main__":
    main()
