"""Pareto fronts of (accuracy, cost) points (NSE 3.3.2)."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(accuracy: Sequence[float], cost: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates (higher-or-equal accuracy at lower-or-equal cost,
    strictly better in one), sorted by cost. Duplicated points are all kept."""
    if len(accuracy) != len(cost):
        raise ValueError(f"{len(accuracy)} accuracies but {len(cost)} costs")
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -accuracy[i]))
    front: list[int] = []
    best, best_cost = float("-inf"), None
    for i in order:
        if accuracy[i] > best or (accuracy[i] == best and cost[i] == best_cost):
            front.append(i)
            best, best_cost = accuracy[i], cost[i]
    return front
