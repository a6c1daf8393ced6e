"""SPOS (Guo et al., 2020): uniform single-path supernet training, then evolution on the trained supernet.

The one-shot baseline of SE-NAS (Table 1, Table 6) and a ready tool: on the shared supernet every
training trial trains sampled paths and every evaluation trial scores a batch of candidates with
inherited weights and recalibrated BatchNorm.
"""

from __future__ import annotations

from typing import Any

from tune_spacenas.jobs import TASK_KEY, TRAIN
from tune_spacenas.searchers.base import DONE, SEARCH, TRAINING, SearchProgress
from tune_spacenas.searchers.evolution import EvolutionSearcher
from tune_spacenas.searchers.training import TrainingPhase
from tune_spacenas.spaces.base import SearchSpace


class SPOSSearcher(EvolutionSearcher):
    """Uniform sampling supernet training (Eq. 1 of SE-NAS), then the SPOS evolutionary search (Eq. 2).

    Args:
        train_steps: supernet training steps in all (SE-NAS trains 40 epochs on NAS-Bench-201).
        steps_per_trial: steps a training trial runs.
        lr: peak learning rate (cosine to 0 over ``train_steps``); every training job carries it.
        **kwargs: ``EvolutionSearcher`` arguments (``evolution=EvolutionSettings(...)`` (SPOS: 50, 20, 10,
            25, 25, 0.1), ``max_madds``, ``min_madds``, ``eval_batch``) and ``ArchSearcher``'s (metric, mode, seed).
    """

    PHASES = (TRAINING, SEARCH, DONE)

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        train_steps: int = 2000,
        steps_per_trial: int = 200,
        lr: float = 0.05,
        **kwargs: Any,
    ):
        super().__init__(space, **kwargs)
        self.training = TrainingPhase(train_steps, steps_per_trial, lr)

    def setup(self) -> None:
        self.prepare_search(self.space)

    def propose(self) -> dict[str, Any] | str | None:
        if not self.training.finished:
            return self.training.next_job(seed=self.rng.integers(2**31))
        self.phase = SEARCH
        return self.next_search_job()

    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        if job[TASK_KEY] == TRAIN:
            self.training.complete(job, ok=result is not None)
        else:
            self.observe_search(job, result)

    def current_progress(self) -> SearchProgress:
        evaluations, best = self.search_progress()
        return self.make_progress(
            (self.training.done, self.training.total_steps),
            evaluations,
            best,
            note=f"generation {self.evolution.generation}",
        )
