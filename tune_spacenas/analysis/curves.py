"""Search curves: best-so-far metric against queries, and their mean-and-band plots."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tune_spacenas import storage


def best_so_far(values: Sequence[float], length: int | None = None, mode: str = "max") -> np.ndarray:
    """Running best of ``values``, padded with its last value to ``length``."""
    values = np.asarray(values, float)
    running = np.maximum.accumulate(values) if mode == "max" else np.minimum.accumulate(values)
    if length is not None and len(running) < length:
        running = np.concatenate([running, np.full(length - len(running), running[-1] if len(running) else np.nan)])
    return running[:length] if length is not None else running


def plot_curves(
    curves: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    xlabel: str = "queries",
    ylabel: str = "best test accuracy (%)",
    title: str = "",
    band: str = "std",
) -> None:
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
    save_figure(fig, path)


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> None:
    """Write a matplotlib figure as PNG through ``storage.write_atomic`` (a path or URI), then close it."""
    import matplotlib.pyplot as plt

    storage.write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    plt.close(fig)
