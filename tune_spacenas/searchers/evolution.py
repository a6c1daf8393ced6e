"""``EvolutionPhase``: SPOS's evolutionary architecture search on a trained supernet, in batches.

Guo et al. (SPOS, 2020) search the trained supernet with a genetic algorithm: a population of 50, 20
generations, the top 10 as parents, 25 children by mutation (each slot re-drawn with probability 0.1)
and 25 by crossover, every candidate checked against the constraint (MAdds) before it is evaluated.
SPOS, SE-NAS's final search and AutoSpace's generated-space search compose this phase.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tune_spacenas.searchers.base import FINISHED
from tune_spacenas.spaces.base import Architecture, SearchSpace

Constraint = Callable[[Architecture], bool]


class CostConstraint:
    """``space.cost(arch).madds <= max_madds`` (and params), as a picklable callable.

    A ``max_madds`` below the space's cheapest architecture (``SearchSpace.cost_range``) is a ValueError
    naming the space's cost range: such a search could only end without a result.
    """

    def __init__(self, space: SearchSpace, max_madds: float | None = None, max_params: float | None = None):
        if not space.has_cost_model:
            raise ValueError(f"space {space.name!r} has no cost model, so it cannot take a MAdds/params constraint")
        self.space, self.max_madds, self.max_params = space, max_madds, max_params
        span = space.cost_range() if max_madds is not None else None
        if span is not None and max_madds < span[0]:
            raise ValueError(f"max_madds={max_madds:.4g} admits no architecture of space {space!r}: its architectures "
                             f"cost {span[0]:.4g} to {span[1]:.4g} MAdds (cost model min and max); raise max_madds "
                             "to at least the minimum, or drop it")

    def __call__(self, arch: Architecture) -> bool:
        cost = self.space.cost(arch)
        return (self.max_madds is None or cost.madds <= self.max_madds) and (
            self.max_params is None or cost.params <= self.max_params)


class CostLimited:
    """Mixin for searchers with a ``max_madds`` setting: ``constraint`` (a ``CostConstraint``, or None) is
    built once the space is known (``ArchSearcher.check_space``), so an impossible limit fails at
    ``set_search_properties``, before any trial."""

    max_madds: float | None = None
    constraint: CostConstraint | None = None

    def check_space(self) -> None:
        super().check_space()
        self.constraint = None if self.max_madds is None else CostConstraint(self.space, self.max_madds)


class EvolutionPhase:
    """A generation at a time: ``next_batch`` hands out candidates, ``complete`` takes their scores.

    Scores are to be maximised. With a space of at most ``population`` architectures the search is
    exhaustive (every architecture once). Candidates failing ``constraint`` are never evaluated.
    """

    def __init__(self, space: SearchSpace, population: int = 50, generations: int = 20, parents: int = 10,
                 mutations: int = 25, crossovers: int = 25, mutation_prob: float = 0.1,
                 constraint: Constraint | None = None, max_tries: int = 10_000):
        self.space, self.population, self.generations = space, population, generations
        self.parents, self.mutations, self.crossovers = parents, mutations, crossovers
        self.mutation_prob, self.constraint, self.max_tries = mutation_prob, constraint, max_tries
        self.scores: dict[Architecture, float] = {}
        self.generation = 0
        self._pending: list[Architecture] = []
        self._outstanding: set[Architecture] = set()
        self.exhaustive = space.size <= population

    @property
    def finished(self) -> bool:
        return self.generation >= self.generations and not self._pending and not self._outstanding

    def best(self) -> tuple[Architecture, float] | None:
        if not self.scores:
            return None
        arch = max(self.scores, key=self.scores.get)
        return arch, self.scores[arch]

    def next_job(self, rng: np.random.Generator, size: int,
                 make_job: Callable[[list[Architecture]], dict[str, Any]]) -> dict[str, Any] | str | None:
        """A searcher's ``propose`` during the search: the job ``make_job`` builds for the next batch,
        ``FINISHED`` once every generation is scored, or None while a generation waits for its scores."""
        if self.finished:
            return FINISHED
        batch = self.next_batch(rng, size)
        return None if batch is None else make_job(batch)

    def next_batch(self, rng: np.random.Generator, size: int) -> list[Architecture] | None:
        """Up to ``size`` candidates to evaluate, or None while waiting for the generation to finish."""
        if not self._pending and not self._outstanding and self.generation < self.generations:
            self._pending = self._new_generation(rng)
            self.generation = self.generations if self.exhaustive else self.generation + 1
        if not self._pending:
            return None
        batch, self._pending = self._pending[:size], self._pending[size:]
        self._outstanding.update(batch)
        return batch

    def complete(self, archs: list[Architecture], scores: Mapping[Architecture, float] | None) -> None:
        """Scores of a batch's candidates; those without one (a failed trial or evaluation) are dropped."""
        for arch in archs:
            self._outstanding.discard(arch)
            if scores is not None and arch in scores:
                self.scores[arch] = float(scores[arch])

    def _ok(self, arch: Architecture) -> bool:
        return self.constraint is None or self.constraint(arch)

    def _new_generation(self, rng: np.random.Generator) -> list[Architecture]:
        if self.exhaustive:
            return [a for a in self.space.enumerate() if self._ok(a)]
        if not self.scores:
            return self._fill(rng, lambda: self.space.sample(rng), self.population)
        ranked = sorted(self.scores, key=self.scores.get, reverse=True)[: self.parents]
        children = self._fill(rng, lambda: self._mutate(ranked[rng.integers(len(ranked))], rng), self.mutations)
        children += self._fill(rng, lambda: self._crossover(ranked, rng), self.crossovers, exclude=children)
        return children

    def _fill(self, rng: np.random.Generator, make: Callable[[], Architecture], count: int,
              exclude: list[Architecture] = ()) -> list[Architecture]:
        out: list[Architecture] = []
        seen = set(self.scores) | set(exclude)
        for _ in range(self.max_tries):
            if len(out) >= count:
                break
            arch = make()
            if arch not in seen and self._ok(arch):
                seen.add(arch)
                out.append(arch)
        return out

    def _mutate(self, parent: Architecture, rng: np.random.Generator) -> Architecture:
        child = [self.space.sample_slot(i, rng) if rng.random() < self.mutation_prob else c
                 for i, c in enumerate(parent)]
        return self.space.canonicalize(tuple(child))

    def _crossover(self, parents: list[Architecture], rng: np.random.Generator) -> Architecture:
        a, b = (parents[i] for i in rng.choice(len(parents), size=2, replace=len(parents) < 2))
        return self.space.canonicalize(tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b)))
