"""SPOS (Guo et al., 2020): uniform single-path supernet training, then evolution on the trained supernet.

The one-shot baseline of SE-NAS (Table 1, Table 6) and a ready tool: on the shared supernet every
training trial trains sampled paths and every evaluation trial scores a batch of candidates with
inherited weights and recalibrated BatchNorm.
"""

from __future__ import annotations

from typing import Any

from tune_spacenas.jobs import TASK_KEY, TRAIN, evaluate_batch_job
from tune_spacenas.searchers.base import ArchSearcher
from tune_spacenas.searchers.evolution import CostLimited, EvolutionPhase
from tune_spacenas.searchers.training import TrainingPhase


class SPOSSearcher(CostLimited, ArchSearcher):
    """Uniform sampling supernet training (Eq. 1 of SE-NAS), then the SPOS evolutionary search (Eq. 2).

    Args:
        train_steps: supernet training steps in all (SE-NAS trains 40 epochs on NAS-Bench-201).
        steps_per_trial: steps a training trial runs.
        lr: peak learning rate (cosine to 0 over ``train_steps``); every training job carries it.
        population, generations, parents, mutations, crossovers, mutation_prob: the evolution (SPOS:
            50, 20, 10, 25, 25, 0.1).
        max_madds: discard candidates above this many multiply-adds (spaces with a cost model).
        eval_batch: candidates one evaluation trial scores.
        **kwargs: ``ArchSearcher`` arguments (space, metric, mode, seed).
    """

    def __init__(self, train_steps: int = 2000, steps_per_trial: int = 200, lr: float = 0.05,
                 population: int = 50, generations: int = 20, parents: int = 10, mutations: int = 25,
                 crossovers: int = 25, mutation_prob: float = 0.1, max_madds: float | None = None,
                 eval_batch: int = 25, **kwargs: Any):
        kwargs.setdefault("cache_evaluations", False)
        super().__init__(**kwargs)
        self.training = TrainingPhase(train_steps, steps_per_trial, lr)
        self.evolution_args = dict(population=population, generations=generations, parents=parents,
                                   mutations=mutations, crossovers=crossovers, mutation_prob=mutation_prob)
        self.max_madds, self.eval_batch = max_madds, eval_batch
        self.evolution: EvolutionPhase | None = None

    def setup(self) -> None:
        self.evolution = EvolutionPhase(self.space, constraint=self.constraint, **self.evolution_args)

    def repeat_refusal(self) -> str | None:
        return "it trains the supernet in training trials and scores candidates in batches (per_arch lists)"

    def propose(self) -> dict[str, Any] | str | None:
        if not self.training.finished:
            return self.training.next_job(seed=self.rng.integers(2**31))
        return self.evolution.next_job(self.rng, self.eval_batch, lambda batch: evaluate_batch_job(self.space, batch))

    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        if job[TASK_KEY] == TRAIN:
            self.training.complete(job, ok=result is not None)
            return
        archs = [self.space.from_string(s) for s in job["archs"]]
        scores = None if result is None else {a: self.score(v) for a, v in self.arch_values(job, result)}
        self.evolution.complete(archs, scores)

    def best_architecture(self) -> str | None:
        best = self.evolution.best() if self.evolution else None
        return None if best is None else self.space.to_string(best[0])
