"""AutoSpace on the shared worker (``job["autospace"]``, ``jobs.AutoSpaceJob``).

Training: the job's generation makes each layer of the open-space supernet a fitness-weighted layer over
its K cells (Eq. 3, ``OpenCellSupernet.begin_generation``), paths are drawn by the binary gates, the
fitness scores follow Eq. (4) (plus Eq. 6's MAdds term) after every step and are reported as ``alpha``
(learned alpha*) with the gates' counts. Evaluation: each architecture also reports its ``madds`` and
Eq. (6)'s ``regularized_loss = loss + lambda * MAdds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tune_spacenas.jobs import ALPHA, GATE_COUNTS, LOSS, MADDS, REGULARIZED_LOSS, TRAIN, AutoSpaceJob
from tune_spacenas.spaces.base import Architecture
from tune_spacenas.supernet.cells import OpenCellSupernet
from tune_spacenas.trainables.extensions.base import JobContext, WorkerExtension


class AutoSpaceExtension(WorkerExtension):
    def __init__(self, payload: Any):
        self.job: AutoSpaceJob = AutoSpaceJob.from_dict(payload)
        self.layers = []

    def begin(self, ctx: JobContext) -> None:
        generation = self.job.generation
        if ctx.task != TRAIN or generation is None:
            return
        if not isinstance(ctx.net, OpenCellSupernet):
            raise ValueError(
                "an AutoSpace generation trains an OpenCellSpace supernet; create the store with "
                f"SupernetSpec(OpenCellSpace(...)), not {type(ctx.net).__name__}"
            )
        self.layers = ctx.net.begin_generation(
            generation.cells,
            generation.alpha,
            generation.compensation,
            generation.gate_paths,
            generation.alpha_lr,
            self.job.madds_penalty,
        )

    def after_step(self, ctx: JobContext, step: int, arch: Architecture, touched: set[str]) -> set[str]:
        for layer in self.layers:
            layer.update()
        return touched  # fitness scores are the trial's own, reported, never pushed

    def metrics(self, ctx: JobContext) -> dict[str, Any]:
        if not self.layers:
            return {}
        return {
            ALPHA: [layer.alpha.tolist() for layer in self.layers],
            GATE_COUNTS: [layer.steps.tolist() for layer in self.layers],
        }

    def arch_metrics(self, ctx: JobContext, arch: Architecture, scores: Mapping[str, float]) -> dict[str, float]:
        madds = ctx.net.space.cost(arch).madds
        return {MADDS: madds, REGULARIZED_LOSS: scores[LOSS] + float(self.job.madds_penalty) * madds}

    def end(self, ctx: JobContext) -> None:
        if self.layers:
            ctx.net.end_generation()
