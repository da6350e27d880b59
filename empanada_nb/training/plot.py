"""Matplotlib figure of a training history (the widgets draw the same events live)."""

from __future__ import annotations

import numpy as np


def smooth_curve(values: list[float], window: int) -> np.ndarray:
    """Trailing moving average that is defined from the first point."""
    v = np.asarray(values, float)
    if len(v) == 0 or window <= 1:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_history(history: list[dict], smooth: int = 20, log: bool = True):
    import matplotlib.pyplot as plt

    steps = [e for e in history if e["type"] == "step"]
    vals = [e for e in history if e["type"] == "validation"]
    fig, axes = plt.subplots(1, 2 if vals else 1, figsize=(10 if vals else 5.5, 3.8), squeeze=False)
    ax = axes[0, 0]
    it = [s["iteration"] for s in steps]
    series = {"total": [s["loss"] for s in steps]}
    for key in steps[0]["terms"] if steps else {}:
        series[key] = [s["terms"][key] for s in steps]
    for i, (name, ys) in enumerate(series.items()):
        color = f"C{i}"
        ax.plot(it, ys, ".", color=color, alpha=0.25, ms=3)
        ax.plot(it, smooth_curve(ys, smooth), "-", color=color, label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    if vals:
        ax2 = axes[0, 1]
        for key in ("iou", "pq", "f1"):
            ax2.plot([v["iteration"] for v in vals], [v.get(key, np.nan) for v in vals], "o-", label=key)
        ax2.set_xlabel("iteration")
        ax2.set_ylim(0, 1)
        ax2.legend(fontsize=8)
        ax2.set_title("validation")
    fig.tight_layout()
    return fig
