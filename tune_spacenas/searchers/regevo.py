"""Regularized evolution (Real et al., 2019): tournament selection, one-slot mutation, the oldest dies."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from tune_spacenas.jobs import evaluate_job
from tune_spacenas.searchers.base import ArchSearcher
from tune_spacenas.spaces.base import SearchSpace


class RegularizedEvolutionSearcher(ArchSearcher):
    """Aging evolution over the space.

    Args:
        population_size: P, architectures alive at once (10 in NAS-Bench-201's reference runs).
        tournament_size: S, random members compared to pick a parent (3 there).
        num_edits: slots a mutation changes (1: one edge / layer to a different operation).
        initial_population: architectures (strings or index tuples) proposed first, before the random
            ones that fill the population (a warm start, e.g. a prior's best; see ``searchers.prior``).
        **kwargs: ``ArchSearcher`` arguments (metric, mode, seed, max_queries).

    Until the population is full it proposes random architectures; afterwards each proposal mutates
    the tournament winner among the members present *now*, so several trials in flight simply draw
    several tournaments. A failed trial is dropped without entering the population.
    """

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        population_size: int = 10,
        tournament_size: int = 3,
        num_edits: int = 1,
        initial_population: Sequence[Any] = (),
        **kwargs: Any,
    ):
        super().__init__(space, **kwargs)
        if num_edits < 1:
            raise ValueError(f"num_edits must be at least 1 (a mutation changes that many slots), got {num_edits}")
        if not 1 <= tournament_size <= population_size:
            raise ValueError(f"need 1 <= tournament_size ({tournament_size}) <= population_size ({population_size})")
        self.population_size, self.tournament_size, self.num_edits = population_size, tournament_size, num_edits
        self.initial_population = list(initial_population)
        self.population: deque[tuple[tuple[int, ...], float]] = deque()
        self.proposed = 0

    def propose(self) -> dict[str, Any]:
        self.proposed += 1
        if self.proposed <= len(self.initial_population):
            return evaluate_job(self.space, self.space.validate(self.initial_population[self.proposed - 1]))
        if self.proposed <= self.population_size or len(self.population) < self.tournament_size:
            return evaluate_job(self.space, self.space.sample(self.rng))
        picks = self.rng.choice(len(self.population), size=self.tournament_size, replace=False)
        parent = max((self.population[i] for i in picks), key=lambda member: member[1])[0]
        return evaluate_job(self.space, self.space.mutate(parent, self.rng, self.num_edits))

    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        if result is None:
            return
        for arch, value in self.arch_values(job, result):
            self.population.append((arch, self.score(value)))
            if len(self.population) > self.population_size:
                self.population.popleft()
