"""Rank-correlation measurement shared by the SPOS and SE-NAS benchmarks (CPU and GPU).

Protocol (../shared/DESIGN.md): the supernet trains on CIFAR-10; a seeded sample of NAS-Bench-201 cells
is scored with inherited weights and recalibrated BatchNorm; Kendall tau against the table's CIFAR-10
accuracy, over all cells and over the better half, with parameter count's tau on the same sample
printed beside it as the floor a supernet must beat.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from tune_spacenas.analysis import kendall_tau, top_half_tau
from tune_spacenas.jobs import ACCURACY, PER_ARCH_KEY, evaluate_batch_job, train_job
from tune_spacenas.runner import InProcessSupernet
from tune_spacenas.spaces import NASBench201Space
from tune_spacenas.spaces.base import Architecture
from tune_spacenas.tables import NASBench201Table


def rank_sample(count: int = 200, seed: int = 0) -> list[Architecture]:
    """``count`` distinct NAS-Bench-201 cells drawn uniformly (the same sample for every method)."""
    return NASBench201Space().sample_many(np.random.default_rng(seed), count, distinct=True)


def table_truth(archs: Sequence[Architecture], dataset: str = "cifar10") -> list[float]:
    table = NASBench201Table.load()
    return [table.query(a, dataset) for a in archs]


def parameter_counts(space: NASBench201Space, archs: Sequence[Architecture]) -> list[float]:
    return [space.cost(a).params for a in archs]


def score(runner: InProcessSupernet, archs: Sequence[Architecture], batch: int = 50, **job_keys: Any) -> list[float]:
    """Supernet accuracy of every architecture (inherited weights, recalibrated BatchNorm)."""
    space = runner.worker.space
    scores: list[float] = []
    for start in range(0, len(archs), batch):
        result = runner(evaluate_batch_job(space, archs[start : start + batch], **job_keys))
        scores += result[PER_ARCH_KEY][ACCURACY]
    return scores


def rank_report(scores: Sequence[float], truth: Sequence[float], params: Sequence[float]) -> dict[str, float]:
    """Tau of the supernet and of parameter count (the floor), over all cells and the better half."""
    rank_sum = np.argsort(np.argsort(scores)) + np.argsort(np.argsort(params))
    return {
        "kendall_tau": kendall_tau(scores, truth),
        "kendall_tau_top_half": top_half_tau(scores, truth),
        "params_tau": kendall_tau(params, truth),
        "params_tau_top_half": top_half_tau(params, truth),
        "supernet_plus_params_tau": kendall_tau(rank_sum, truth),
    }


def steps_for_seconds(runner: InProcessSupernet, seconds: float, probe_steps: int = 30) -> tuple[int, float]:
    """How many training steps fit in ``seconds`` (measured on a probe job that also trains)."""
    start = time.perf_counter()
    runner(train_job(probe_steps, seed=12345, lr=1e-3))
    per_step = (time.perf_counter() - start) / probe_steps
    return max(1, int(seconds / per_step)), per_step
