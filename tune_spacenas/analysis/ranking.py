"""Rank correlation between supernet scores and a ground truth (SE-NAS 3.2 and 4.2)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def kendall_tau(scores: Sequence[float], truth: Sequence[float]) -> float:
    """Kendall's tau-b between two score lists over the same architectures (ties handled)."""
    from scipy.stats import kendalltau

    if len(scores) != len(truth) or len(scores) < 2:
        raise ValueError(f"need two equally long lists of at least 2 scores, got {len(scores)} and {len(truth)}")
    tau = kendalltau(np.asarray(scores, float), np.asarray(truth, float)).statistic
    return float(tau) if np.isfinite(tau) else 0.0


def top_half_tau(scores: Sequence[float], truth: Sequence[float]) -> float:
    """Tau over the architectures whose ground truth is in the better half (FACTS: where rankings fail)."""
    truth = np.asarray(truth, float)
    keep = truth >= np.median(truth)
    return kendall_tau(np.asarray(scores, float)[keep], truth[keep])


def rank_mean(columns: Sequence[Sequence[float]]) -> np.ndarray:
    """Each item's mean rank-percentile over several score lists (a voting ensemble of proxies as one
    score, after Abdelfattah et al. 2021): ties share their mean rank, NaN ranks lowest with -inf."""
    from scipy.stats import rankdata

    ranks = [rankdata(np.nan_to_num(np.asarray(c, float), nan=-np.inf)) / len(c) for c in columns]
    return np.mean(ranks, axis=0)
