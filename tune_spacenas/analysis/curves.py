"""Search curves: best-so-far metric against queries, and their mean-and-band plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def best_so_far(values: Sequence[float], length: int | None = None, mode: str = "max") -> np.ndarray:
    """Running best of ``values``, padded with its last value to ``length``."""
    values = np.asarray(values, float)
    running = np.maximum.accumulate(values) if mode == "max" else np.minimum.accumulate(values)
    if length is not None and len(running) < length:
        running = np.concatenate([running, np.full(length - len(running), running[-1] if len(running) else np.nan)])
    return running[:length] if length is not None else running


def plot_curves(curves: Mapping[str, np.ndarray], path: str | Path, xlabel: str = "queries",
                ylabel: str = "best test accuracy (%)", title: str = "", band: str = "std") -> None:
    """One line per method (mean over runs) with a band (std, or 'sem'); ``curves[name]`` is runs x steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, runs in curves.items():
        runs = np.asarray(runs, float)
        mean = runs.mean(axis=0)
        spread = runs.std(axis=0) / (np.sqrt(len(runs)) if band == "sem" else 1.0)
        x = np.arange(1, runs.shape[1] + 1)
        ax.plot(x, mean, label=name)
        ax.fill_between(x, mean - spread, mean + spread, alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
