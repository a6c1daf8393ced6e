"""ProxylessNAS on the shared worker (``job["proxyless"]``, ``jobs.ProxylessJob``): the architecture parameters'
updates during a training job.

The job's alpha become binary gates on every slot of the supernet (``supernet.gates.SlotGates``, installed as
``Supernet.gates``): the worker's weight steps then train paths drawn from ``p = softmax(alpha)``, and every
``update_every`` steps this extension takes one architecture step on a validation batch: two candidates per
slot, the layers mixing them through their gates, the gates' gradients, Eq. (6)'s expected-MAdds term, one
Adam step on alpha and ProxylessNAS's rescaling. Adam's moments are local to the job (as the SGD momentum
is); alpha is reported (``arch_parameters``) and never pushed to the store.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from torch import nn

from tune_spacenas.jobs import ARCH_PARAMETERS, TRAIN, ProxylessJob
from tune_spacenas.spaces.base import Architecture, SearchSpace
from tune_spacenas.supernet.gates import SlotGates
from tune_spacenas.trainables.extensions.base import JobContext, WorkerExtension


class ProxylessExtension(WorkerExtension):
    def __init__(self, payload: Any):
        self.job: ProxylessJob = ProxylessJob.from_dict(payload)
        self.gates: SlotGates | None = None

    def begin(self, ctx: JobContext) -> None:
        if ctx.task != TRAIN:
            return
        space = ctx.subspace
        if not space.one_choice_per_slot:
            raise ValueError(f"ProxylessNAS picks one operation per slot; space {space.name!r} selects sets of them")
        if self.job.madds_penalty and not space.has_cost_model:
            raise ValueError(f"madds_penalty (Eq. 6) needs a cost model, and space {space.name!r} has none")
        self.gates = SlotGates(space.choices, self.job.alpha, int(self.job.gate_paths))
        self.adam = torch.optim.Adam(self.gates.parameters(), lr=float(self.job.arch_lr), betas=tuple(self.job.betas))
        self.val = itertools.cycle(ctx.data.fixed_batches("val", ctx.spec.batch_size, None, seed=ctx.seed))
        self.rng = np.random.default_rng([ctx.seed, 11])
        ctx.net.gates = self.gates

    def after_step(self, ctx: JobContext, step: int, arch: Architecture, touched: set[str]) -> set[str]:
        if self.gates is None or step % int(self.job.update_every):
            return touched
        x, y = next(self.val)
        active = self.gates.sample(self.rng)
        loss = nn.functional.cross_entropy(ctx.net(x, active), y)
        gated = self.gates.gated()
        if gated:
            for gate, grad in zip(gated, torch.autograd.grad(loss, gated, allow_unused=True)):
                gate.grad = grad
        madds = _slot_madds(ctx.subspace, active, self.gates.choices) if self.job.madds_penalty else None
        self.gates.step(self.adam, float(self.job.madds_penalty), madds)
        return touched  # alpha is the trial's own, reported, never pushed

    def metrics(self, ctx: JobContext) -> dict[str, Any]:
        return {} if self.gates is None else {ARCH_PARAMETERS: self.gates.alpha()}

    def end(self, ctx: JobContext) -> None:
        if self.gates is not None:
            self.gates.clear()
            ctx.net.gates = None


def _slot_madds(space: SearchSpace, arch: Architecture, choices: list[tuple[int, ...]]) -> list[list[float]]:
    """Per slot and candidate, the network's MAdds with that slot switched to the candidate: where the cost model
    adds up over slots, the exact gradient of the expected MAdds; otherwise its linearisation at ``arch``."""
    return [[space.cost(arch[:s] + (op,) + arch[s + 1 :]).madds for op in ops] for s, ops in enumerate(choices)]
