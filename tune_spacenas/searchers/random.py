"""Random search: architectures drawn uniformly from the space (the papers' first baseline)."""

from __future__ import annotations

from typing import Any

from tune_spacenas.jobs import evaluate_job
from tune_spacenas.searchers.base import ArchSearcher


class RandomSearcher(ArchSearcher):
    """Uniform sampling; with ``max_queries`` it stops after that many distinct architectures.

    Repeats are answered from the run's cache, so the budget counts distinct architectures as the
    NAS-Bench-201 protocol does.
    """

    def propose(self) -> dict[str, Any]:
        return evaluate_job(self.space, self.space.sample(self.rng))

    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        pass  # the base class keeps the history; random search learns nothing
