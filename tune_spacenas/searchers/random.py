"""Random search: architectures drawn uniformly from the space (the papers' first baseline)."""

from __future__ import annotations

from typing import Any

from tune_spacenas.jobs import evaluate_job
from tune_spacenas.searchers.base import FINISHED, ArchSearcher
from tune_spacenas.searchers.constraints import CostLimited
from tune_spacenas.spaces.base import SearchSpace

_MAX_DRAWS = 10_000


class RandomSearcher(CostLimited, ArchSearcher):
    """Uniform sampling; with ``max_queries`` it stops after that many distinct architectures.

    Repeats are answered from the run's cache, so the budget counts distinct architectures as the
    NAS-Bench-201 protocol does.

    Args:
        max_madds, min_madds: only architectures inside this cost window are drawn (uniformly among those:
            the rest are rejected), for comparisons at matched MAdds (AutoSpace's Table 4 protocol).
        **kwargs: ``ArchSearcher`` arguments (metric, mode, seed, max_queries).
    """

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        max_madds: float | None = None,
        min_madds: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(space, **kwargs)
        self.max_madds, self.min_madds = max_madds, min_madds
        self.window_missed = False

    def propose(self) -> dict[str, Any] | str:
        for _ in range(_MAX_DRAWS):
            arch = self.space.sample(self.rng)
            if self.constraint is None or self.constraint(arch):
                return evaluate_job(self.space, arch)
        self.window_missed = True
        return FINISHED

    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        pass  # the base class keeps the history; random search learns nothing

    def why_no_result(self) -> str:
        if self.window_missed:
            return (
                f"{_MAX_DRAWS} random architectures in a row fell outside the cost window [{self.min_madds}, "
                f"{self.max_madds}] MAdds: widen it"
            )
        return super().why_no_result()
