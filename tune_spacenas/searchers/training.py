"""``TrainingPhase``: a supernet training budget cut into training trials, with its learning-rate schedule.

Methods that train the shared supernet (SPOS, SE-NAS stages, NSE rounds, ASE's Algorithm 1 line 1)
compose this instead of each counting steps: it hands out training jobs until the budget is issued,
knows when every one has come back, and gives each trial the cosine learning rate at its first step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tune_spacenas.jobs import STEPS_KEY, SYNC_EVERY_KEY, train_job
from tune_spacenas.spaces.base import SearchSpace


@dataclass
class TrainingPhase:
    """``total_steps`` of supernet training in trials of ``steps_per_trial`` steps.

    Args:
        total_steps: steps in this phase.
        steps_per_trial: steps one training trial runs (a trial costs ~1 s of Tune overhead: keep
            it to many steps, e.g. 100-500).
        lr: peak learning rate; the schedule is cosine from ``lr`` to 0 over ``schedule_steps``
            (default: this phase), evaluated at each trial's first step, starting at ``schedule_offset``.
        sync_every: steps between a trial's delta pushes (default: once, at its end).
        extra: more contract keys for every trial of the phase (a method's payload: ``nse=NSEJob(...)``).
    """

    total_steps: int
    steps_per_trial: int
    lr: float
    schedule_offset: int = 0
    schedule_steps: int | None = None
    sync_every: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    issued: int = 0
    completed: int = 0
    failed: int = 0

    def __post_init__(self):
        if self.total_steps < 0 or self.steps_per_trial < 1:
            raise ValueError(
                f"need total_steps >= 0 and steps_per_trial >= 1, got {self.total_steps}, {self.steps_per_trial}"
            )

    @property
    def all_issued(self) -> bool:
        return self.issued >= self.total_steps

    @property
    def finished(self) -> bool:
        return self.completed + self.failed >= self.total_steps

    @property
    def done(self) -> int:
        """Steps whose trials came back (failed ones count as spent)."""
        return self.completed + self.failed

    def learning_rate(self, step: int) -> float:
        """Cosine annealing: ``lr * (1 + cos(pi * t / T)) / 2`` at global step ``t``."""
        horizon = self.schedule_steps or max(self.total_steps, 1)
        t = min(self.schedule_offset + step, horizon)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * t / horizon))

    def next_job(self, seed: int, subspace: SearchSpace | None = None) -> dict[str, Any] | None:
        """The next training job, or None once the budget is issued."""
        if self.all_issued:
            return None
        steps = min(self.steps_per_trial, self.total_steps - self.issued)
        sync = {SYNC_EVERY_KEY: self.sync_every} if self.sync_every else {}
        job = train_job(steps, subspace, lr=self.learning_rate(self.issued), seed=int(seed), **self.extra, **sync)
        self.issued += steps
        return job

    def complete(self, job: dict[str, Any], ok: bool = True) -> None:
        """A training job came back; a failed one counts as spent (its pushed steps stay applied)."""
        if ok:
            self.completed += int(job[STEPS_KEY])
        else:
            self.failed += int(job[STEPS_KEY])
