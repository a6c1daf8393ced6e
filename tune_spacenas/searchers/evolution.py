"""SPOS's evolutionary architecture search on a trained supernet, in batches, and the searchers built on it.

Guo et al. (SPOS, 2020) search the trained supernet with a genetic algorithm: a population of 50, 20
generations, the top 10 as parents, 25 children by mutation (each slot re-drawn with probability 0.1)
and 25 by crossover, every candidate checked against the constraint (MAdds) before it is evaluated.
``EvolutionPhase`` is that search one generation at a time; ``EvolutionSearcher`` is the base of the
searchers whose answer it gives (SPOS, SE-NAS's final search).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tune_spacenas.jobs import evaluate_batch_job
from tune_spacenas.searchers.base import FINISHED, ArchSearcher
from tune_spacenas.searchers.constraints import CostLimited
from tune_spacenas.searchers.evaluation import EvaluationQueue
from tune_spacenas.spaces.base import Architecture, SearchSpace

Constraint = Callable[[Architecture], bool]


@dataclass(frozen=True)
class EvolutionSettings:
    """The evolutionary search's settings (SPOS's defaults): ``population`` candidates in the first
    generation, ``generations`` in all, the top ``parents`` breed ``mutations`` children by mutation (each
    slot re-drawn with probability ``mutation_prob``) and ``crossovers`` by uniform crossover."""

    population: int = 50
    generations: int = 20
    parents: int = 10
    mutations: int = 25
    crossovers: int = 25
    mutation_prob: float = 0.1

    def __post_init__(self):
        if min(self.population, self.generations, self.parents) < 1 or min(self.mutations, self.crossovers) < 0:
            raise ValueError(
                f"evolution needs population, generations and parents >= 1 and no negative "
                f"mutations or crossovers, got {asdict(self)}"
            )


class EvolutionPhase:
    """A generation at a time: ``next_batch`` hands out candidates, ``complete`` takes their scores.

    Scores are to be maximised. With a space of at most ``population`` architectures the search is
    exhaustive (every architecture once). Candidates failing ``constraint`` are never evaluated.
    """

    def __init__(
        self,
        space: SearchSpace,
        settings: EvolutionSettings = EvolutionSettings(),
        batch_size: int = 25,
        constraint: Constraint | None = None,
        max_tries: int = 10_000,
    ):
        self.space, self.settings, self.constraint, self.max_tries = space, settings, constraint, max_tries
        self.queue = EvaluationQueue(batch_size)
        self.scores: dict[Architecture, float] = {}
        self.generation = 0
        self.exhaustive = space.size <= settings.population

    @property
    def finished(self) -> bool:
        return self.generation >= self.settings.generations and self.queue.drained

    def best(self) -> tuple[Architecture, float] | None:
        if not self.scores:
            return None
        arch = max(self.scores, key=self.scores.get)
        return arch, self.scores[arch]

    @property
    def budget(self) -> int:
        """Candidates the whole search evaluates at most."""
        s = self.settings
        return self.space.size if self.exhaustive else s.population + (s.generations - 1) * (s.mutations + s.crossovers)

    def next_job(
        self, rng: np.random.Generator, make_job: Callable[[list[Architecture]], dict[str, Any]]
    ) -> dict[str, Any] | str | None:
        """A searcher's ``propose`` during the search: the job ``make_job`` builds for the next batch,
        ``FINISHED`` once every generation is scored, or None while a generation waits for its scores."""
        if self.finished:
            return FINISHED
        batch = self.next_batch(rng)
        return None if batch is None else make_job(batch)

    def next_batch(self, rng: np.random.Generator) -> list[Architecture] | None:
        """The next batch of candidates to evaluate, or None while waiting for the generation to finish."""
        if self.queue.drained and self.generation < self.settings.generations:
            self.queue.put(self._new_generation(rng))
            self.generation = self.settings.generations if self.exhaustive else self.generation + 1
        return self.queue.next_batch()

    def complete(self, archs: list[Architecture], scores: Mapping[Architecture, float]) -> None:
        """Scores of a batch's candidates; those without one (a failed trial or evaluation) are dropped."""
        self.queue.complete(len(archs))
        self.scores.update({a: float(scores[a]) for a in archs if a in scores})

    def _ok(self, arch: Architecture) -> bool:
        return self.constraint is None or self.constraint(arch)

    def _new_generation(self, rng: np.random.Generator) -> list[Architecture]:
        s = self.settings
        if self.exhaustive:
            return [a for a in self.space.enumerate() if self._ok(a)]
        if not self.scores:
            return self._fill(rng, lambda: self.space.sample(rng), s.population)
        ranked = sorted(self.scores, key=self.scores.get, reverse=True)[: s.parents]
        children = self._fill(rng, lambda: self._mutate(ranked[rng.integers(len(ranked))], rng), s.mutations)
        children += self._fill(rng, lambda: self._crossover(ranked, rng), s.crossovers, exclude=children)
        return children

    def _fill(
        self, rng: np.random.Generator, make: Callable[[], Architecture], count: int, exclude: list[Architecture] = ()
    ) -> list[Architecture]:
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
        child = [
            self.space.sample_slot(i, rng) if rng.random() < self.settings.mutation_prob else c
            for i, c in enumerate(parent)
        ]
        return self.space.canonicalize(tuple(child))

    def _crossover(self, parents: list[Architecture], rng: np.random.Generator) -> Architecture:
        a, b = (parents[i] for i in rng.choice(len(parents), size=2, replace=len(parents) < 2))
        return self.space.canonicalize(tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b)))


class EvolutionSearcher(CostLimited, ArchSearcher):
    """Base of the searchers whose answer is ``EvolutionPhase``'s best on the trained supernet (SPOS, SE-NAS):
    the search's settings, its ``max_madds`` constraint, its evaluation jobs and what they teach it.

    Args:
        evolution: the evolutionary search (``EvolutionSettings``; SPOS's by default).
        max_madds: candidates above this many multiply-adds are never evaluated (spaces with a cost model).
        min_madds: nor candidates below this many: with ``max_madds`` a cost window, so that searches of
            different spaces are compared at matched MAdds (AutoSpace's and NSE's protocol).
        eval_batch: candidates one evaluation trial scores.
        **kwargs: ``ArchSearcher`` arguments (metric, mode, seed, ...).
    """

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        evolution: EvolutionSettings = EvolutionSettings(),
        max_madds: float | None = None,
        min_madds: float | None = None,
        eval_batch: int = 25,
        **kwargs: Any,
    ):
        kwargs.setdefault("cache_evaluations", False)
        super().__init__(space, **kwargs)
        if not isinstance(evolution, EvolutionSettings):
            raise ValueError(f"evolution= takes an EvolutionSettings, got {type(evolution).__name__}")
        if eval_batch < 1:
            raise ValueError(f"eval_batch must be positive, got {eval_batch}")
        self.evolution_settings, self.eval_batch = evolution, eval_batch
        self.max_madds, self.min_madds = max_madds, min_madds
        self.evolution: EvolutionPhase | None = None

    def prepare_search(self, space: SearchSpace) -> None:
        """The evolutionary search over ``space`` (the searcher's, or a shrunk one), to run from ``search``."""
        self.evolution = EvolutionPhase(space, self.evolution_settings, self.eval_batch, self.constraint)

    def evaluation_job(self, archs: list[Architecture]) -> dict[str, Any]:
        """How a batch of candidates is evaluated (methods add their payload)."""
        return evaluate_batch_job(self.space, archs)

    def next_search_job(self) -> dict[str, Any] | str | None:
        return self.evolution.next_job(self.rng, self.evaluation_job)

    def repeat_refusal(self) -> str | None:
        return "it trains the supernet in training trials and scores candidates in batches (per_arch lists)"

    def observe_search(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        self.evolution.complete(*self.batch_scores(job, result))

    def best_architecture(self) -> str | None:
        best = self.evolution.best() if self.evolution else None
        return None if best is None else self.space.to_string(best[0])

    def search_progress(self) -> tuple[tuple[int, int], tuple[float, str] | None]:
        """(candidates scored, the search's budget) and (best metric value, its architecture) so far."""
        if self.evolution is None:
            return (0, 0), None
        best = self.evolution.best()
        found = None if best is None else (self.score(best[1]), self.space.to_string(best[0]))
        return (len(self.evolution.scores), self.evolution.budget), found
