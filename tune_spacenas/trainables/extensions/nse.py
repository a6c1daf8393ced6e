"""NSE on the shared worker (``job["nse"]``, ``jobs.NSEJob``): the fitness-indicator update of a training job.

Every ``every`` steps one Adam step on the thetas, on a validation batch, by the simulated gradient of
Eq. (7) with Eq. (5)'s resource term (``FitnessIndicators.fitness_loss``); Adam's moments are local to
the job, as the SGD momentum is. A round's first job also carries ``reset``: before its first step the
thetas return to 0 and the replenished operations (every weight, with ``reset.all``) are re-initialised. The changed thetas and weights
travel to the store as the job's deltas; reports carry the thetas (``fitness_indicators``).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from tune_spacenas.jobs import FITNESS_INDICATORS, TRAIN, NSEJob
from tune_spacenas.spaces.base import Architecture
from tune_spacenas.supernet.multibranch import FITNESS_PARAM, FitnessIndicators
from tune_spacenas.trainables.extensions.base import JobContext, WorkerExtension


class NSEExtension(WorkerExtension):
    def __init__(self, payload: Any):
        self.job: NSEJob = NSEJob.from_dict(payload)
        self.val = self.adam = self.rng = None
        self.reset_names: set[str] = set()

    def begin(self, ctx: JobContext) -> None:
        if not isinstance(ctx.net, FitnessIndicators):
            raise ValueError(
                f"a job with an 'nse' payload needs a supernet with fitness indicators; this one's reports "
                f"would carry no {FITNESS_INDICATORS!r}: use a MultiBranchSpace or "
                "SupernetSpec(..., skeleton='nasbench201+fitness')"
            )

    def before_step(self, ctx: JobContext, step: int, arch: Architecture) -> None:
        # Before step 1 only (a trial Tune resumes from a checkpoint has applied its reset already), so the
        # round's first SGD step, and its momentum, already work on the fresh weights.
        reset = self.job.reset
        if reset is not None and step == 1 and ctx.task == TRAIN:
            self.reset_names = set(ctx.net.reset_for_round(reset.ops, int(reset.seed), bool(reset.all)))

    def after_step(self, ctx: JobContext, step: int, arch: Architecture, touched: set[str]) -> set[str]:
        net, job = ctx.net, self.job
        touched, self.reset_names = touched | self.reset_names, set()  # the reset goes out with the next push
        if step % int(job.every) or not job.lr:  # lr 0: no fitness learning (the thetas stay at 0)
            return touched
        if self.adam is None:  # one Adam and one validation stream per training job
            batches = ctx.data.fixed_batches("val", ctx.spec.batch_size, None, seed=ctx.seed)
            self.val = itertools.cycle(batches)
            self.adam = torch.optim.Adam([net.fitness_indicators], lr=float(job.lr), betas=tuple(job.betas))
            self.rng = np.random.default_rng([ctx.seed, 7])
        x, y = next(self.val)
        loss = net.fitness_loss(
            x,
            y,
            ctx.subspace,
            self.rng,
            alpha=job.alpha,
            beta=job.beta,
            tau=job.tau,
            costs=job.costs,
            fixed_cost=job.fixed_cost,
        )
        (grad,) = torch.autograd.grad(loss, [net.fitness_indicators], allow_unused=True)
        if grad is None:  # every layer has a single configuration left: nothing to learn
            return touched
        net.fitness_indicators.grad = grad
        self.adam.step()
        net.fitness_indicators.grad = None
        return touched | {FITNESS_PARAM}

    def metrics(self, ctx: JobContext) -> dict[str, Any]:
        return {FITNESS_INDICATORS: ctx.net.fitness_indicators.detach().cpu().tolist()}
