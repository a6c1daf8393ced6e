"""``SENASSearcher``: SE-NAS (Hu et al., 2021), the shrinking-and-expanding supernet, as a Tune searcher.

Algorithm 1 on the shared supernet, one stage at a time: SPOS training trials in the current (shrunk)
space, the last of them taking Eq. (4)'s snapshots; evaluation trials scoring sampled child models
(Eqs. 5-7); shrinking (drop the ``k`` lowest-scoring operators); merging adjacent layer-wise spaces that
shrank and expanding their weights (3.4). After the last stage the final, expanded space trains once more
(its new private copies would otherwise be ranked untrained), then evolution (exhaustive when small)
searches it on the decoupled supernet.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from tune_spacenas.analysis import kendall_tau
from tune_spacenas.jobs import PER_ARCH_KEY, SENAS_KEY, TASK_KEY, TRAIN, SENASJob, SnapshotRequest, evaluate_batch_job
from tune_spacenas.searchers.base import DONE, SEARCH, TRAINING, SearchProgress
from tune_spacenas.searchers.evaluation import EvaluationQueue
from tune_spacenas.searchers.evolution import EvolutionSearcher
from tune_spacenas.searchers.senas.expanding import merge_layer_spaces
from tune_spacenas.searchers.senas.scores import (
    as_table,
    labels,
    normalizer,
    operator_sample,
    operator_scores,
    selection_confidence,
    selection_importance,
)
from tune_spacenas.searchers.senas.shrinking import shrink_operators
from tune_spacenas.searchers.training import TrainingPhase
from tune_spacenas.spaces.base import Architecture, SearchSpace, space_from_spec

SCORING = "scoring"


class SENASSearcher(EvolutionSearcher):
    """Shrinking-and-expanding supernet search (SE-NAS, Algorithm 1), every component switchable.

    Args:
        stages: shrinking-and-expanding stages, each: train, score operators, shrink, merge and expand
            (2 on NAS-Bench-201 in section 4.2).
        stage_steps: supernet training steps of each stage: one number, or one per stage (paper: 20
            epochs per stage on NAS-Bench-201; 100 epochs, then 5 per stage, on MobileNet-like).
        final_steps: training steps of the final (shrunk, expanded) space after the last shrink-and-expand,
            before the search ranks it (default: as many as the last stage; 0: none, the search then ranks
            with weights trained on the previous, larger space and private copies fresh from the shared
            ones). Algorithm 1 ends on a shrink-and-expand; 4.2 ranks the space "based on the decoupled
            supernet", which needs the decoupled weights trained. Its last trial takes Eq. (4)'s snapshots.
        steps_per_trial: steps one training trial runs.
        lr: peak learning rate; cosine to 0 over all stages' steps and the final ones (the schedule a SPOS
            run of the same length follows), or restarted every stage with ``restart_lr=True``.
        snapshots: K of Eq. (4), snapshots averaged to score child models.
        snapshot_window: steps over which the K snapshots spread: "the last epoch" of the stage (clipped
            to the stage's last trial; default: that whole trial).
        evaluation_stability: Eq. (4) on; ``False`` scores with the last weights (ablation).
        samples_per_op: sampled child models containing each operator for Eq. (5) (1000 in the paper on
            MobileNet-like); a space no bigger than the sample is enumerated (Eq. 5 exact).
        selection_confidence: divide by Eq. (6)'s layer variance in Eq. (7); ``False`` is Table 6's
            SI-only ablation.
        normalization: Eq. (7)'s ``normalize()``, "mean normalization": ``"mean"`` divides by the mean
            (then S ranks as SI / SC, and SC, a variance, decides layer by layer); ``"min-max"`` scales to
            [0, 1] ((x - min) / (max - min)), weighing importance and confidence alike.
        drop_per_stage: k, operators removed per shrinking step (10 on NAS-Bench-201 and MobileNet-like).
        drop_per_slot: remove one operator per slot per step instead (SE-NAS on FairNAS).
        expanding: section 3.4 on; ``False`` keeps all weights shared (Table 6 without "Expanding").
        merge_threshold: T, the largest merged child space (50 in 3.4; 6 in Fig. 3's toy).
        merge_only_shrunk: merge only adjacent layers that shrank (3.4: "merge some layer-wise search
            spaces of small size", expanded "along with the shrinking process"), and every layer once the
            whole space holds <= T models; ``False`` applies T to every layer (two unshrunk 5-op
            NAS-Bench-201 layers, 25 <= 50, then merge after the first stage).
        **kwargs: ``EvolutionSearcher`` arguments: ``evolution=EvolutionSettings(...)`` (the final
            search, SPOS's settings; exhaustive when the final space has at most ``population`` models),
            ``max_madds`` (child models above it are never scored (operator sampling) or searched: "SE-NAS
            dumps models that don't satisfy FLOPs constraint"; shrinking never leaves a space without one
            inside the limit), ``eval_batch`` (child models one
            evaluation trial scores, default 50); and ``ArchSearcher``'s (metric, mode, seed). SE-NAS
            scores operators by accuracy: ``mode`` must be ``"max"``.

    Public state: ``shrunk_space`` (the current space), ``merged_spaces`` (groups of slots whose partial
    models have their own weights), ``stage_log`` (per stage: SI, SC, scores, dropped operators, merges).
    """

    needs_one_choice_per_slot = True
    PHASES = (TRAINING, SCORING, SEARCH, DONE)

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        stages: int = 2,
        stage_steps: int | Sequence[int] = 2000,
        final_steps: int | None = None,
        steps_per_trial: int = 200,
        lr: float = 0.05,
        restart_lr: bool = False,
        snapshots: int = 5,
        snapshot_window: int | None = None,
        evaluation_stability: bool = True,
        samples_per_op: int = 100,
        selection_confidence: bool = True,
        normalization: str = "mean",
        drop_per_stage: int = 10,
        drop_per_slot: bool = False,
        expanding: bool = True,
        merge_threshold: int = 50,
        merge_only_shrunk: bool = True,
        **kwargs: Any,
    ):
        kwargs.setdefault("eval_batch", 50)
        super().__init__(space, **kwargs)
        steps = [int(stage_steps)] * stages if np.isscalar(stage_steps) else [int(s) for s in stage_steps]
        if stages < 1 or len(steps) != stages or min(steps) < 1:
            raise ValueError(
                f"need stages >= 1 and one positive step count per stage, got stages={stages}, "
                f"stage_steps={stage_steps}"
            )
        if snapshots < 1 or samples_per_op < 1:
            raise ValueError("snapshots and samples_per_op must be positive")
        final_steps = steps[-1] if final_steps is None else int(final_steps)
        if final_steps < 0:
            raise ValueError(f"final_steps must be >= 0 (0: no training after the last stage), got {final_steps}")
        normalizer(normalization)  # an unknown normalization fails here, not mid-run
        self.stages, self.stage_steps, self.steps_per_trial = stages, steps, steps_per_trial
        self.final_steps = final_steps
        self.normalization, self.merge_only_shrunk = normalization, merge_only_shrunk
        self.lr, self.restart_lr = lr, restart_lr
        self.snapshots, self.snapshot_window, self.evaluation_stability = (
            snapshots,
            snapshot_window,
            evaluation_stability,
        )
        self.samples_per_op, self.selection_confidence = samples_per_op, selection_confidence
        self.drop_per_stage, self.drop_per_slot = drop_per_stage, drop_per_slot
        self.expanding, self.merge_threshold = expanding, merge_threshold
        self.stage = 0
        self.shrunk_space = None
        self.merged_spaces: list[list[int]] = []
        self.earlier_merges: list[list[list[int]]] = []
        self.stage_log: list[dict[str, Any]] = []
        self.snapshot_names: list[str] = []
        self.stale_snapshots: list[str] = []
        self.training: TrainingPhase | None = None
        self.samples: list[Architecture] = []
        self.scoring = EvaluationQueue(self.eval_batch)
        self.values: dict[Architecture, float] = {}

    # ------------------------------------------------------------------------------------------
    # Algorithm 1
    # ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        if self.mode != "max":
            raise ValueError(
                "SE-NAS scores operators by supernet accuracy (Eqs. 5-7 average a positive metric "
                "to maximise): use an accuracy metric with mode='max'"
            )
        super().setup()
        self.shrunk_space = self.space
        self.snapshot_prefix = f"senas-{uuid.uuid4().hex[:8]}"
        self._begin_stage()

    def repeat_refusal(self) -> str | None:
        return "it trains the supernet in training trials and scores child models in batches (per_arch lists)"

    def propose(self) -> dict[str, Any] | str | None:
        if self.phase == TRAINING:
            return self._next_training_job()
        if self.phase == SCORING:
            return self._next_scoring_batch()
        return self.next_search_job()

    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        if job[TASK_KEY] == TRAIN:
            self.training.complete(job, ok=result is not None)
            senas = SENASJob.from_dict(job.get(SENAS_KEY, {}))
            if result is None and senas.snapshots is not None:
                self.snapshot_names = []  # the snapshot trial failed: score this stage with the last weights
            if result is not None:  # a failed job may not have freed them: the next snapshot job does
                self.stale_snapshots = [n for n in self.stale_snapshots if n not in senas.drop_snapshots]
            return
        if self.phase != SCORING:
            self.observe_search(job, result)
            return
        archs, scores = self.batch_scores(job, result)
        self.scoring.complete(len(archs))
        self.values.update(scores)

    # --- line 2: SPOS training of the (shrunk) supernet ----------------------------------------
    @property
    def training_steps(self) -> list[int]:
        """Steps of every training phase: one per stage, then the final space's (if any)."""
        return self.stage_steps + ([self.final_steps] if self.final_steps else [])

    def _begin_stage(self) -> None:
        """Training of stage ``self.stage``; ``self.stage == self.stages`` is the final space's training."""
        steps = self.training_steps
        done, total = sum(steps[: self.stage]), sum(steps)
        self.training = TrainingPhase(
            steps[self.stage],
            self.steps_per_trial,
            self.lr,
            schedule_offset=0 if self.restart_lr else done,
            schedule_steps=None if self.restart_lr else total,
        )
        self.phase = TRAINING

    def _next_training_job(self) -> dict[str, Any] | str | None:
        phase = self.training
        if phase.finished:
            if self.stage < self.stages:
                self._begin_scoring()
            else:
                self._begin_search()
            return self.propose()
        if phase.all_issued:
            return None
        last = phase.total_steps - phase.issued <= phase.steps_per_trial
        if last and self.evaluation_stability and phase.done < phase.issued:
            return None  # Eq. (4) snapshots the stage's final weights: its last trial runs after all others
        payload = self.expansion()
        if last and self.evaluation_stability:
            snapshots = self._snapshot_request(min(phase.steps_per_trial, phase.total_steps - phase.issued))
            payload = replace(payload, snapshots=snapshots, drop_snapshots=list(self.stale_snapshots))
        return phase.next_job(int(self.rng.integers(2**31)), self.shrunk_space) | _payload(payload)

    def _snapshot_request(self, steps: int) -> SnapshotRequest:
        """Eq. (4): K snapshots spread over the stage's last ``snapshot_window`` steps (its last epoch).
        The job that takes them also frees the previous stage's: no evaluation reads those any more."""
        window = min(self.snapshot_window or steps, steps)
        count = min(self.snapshots, max(1, window - 1))  # distinct steps for every snapshot
        prefix = f"{self.snapshot_prefix}/stage{self.stage}"
        self.stale_snapshots += self.snapshot_names
        self.snapshot_names = [f"{prefix}/{i}" for i in range(count)]
        return SnapshotRequest(name=prefix, count=count, fraction=window / steps)

    # --- line 3: operator scores, Eqs. (4)-(7) -------------------------------------------------
    def _begin_scoring(self) -> None:
        self.phase = SCORING
        nothing_to_drop = all(len(s.allowed) == 1 for s in self.shrunk_space.slots)
        self.samples = (
            []
            if nothing_to_drop
            else operator_sample(self.shrunk_space, self.samples_per_op, self.rng, self.constraint)
        )
        self.scoring, self.values = EvaluationQueue(self.eval_batch), {}
        self.scoring.put(dict.fromkeys(self.samples))

    def _next_scoring_batch(self) -> dict[str, Any] | str | None:
        batch = self.scoring.next_batch()
        if batch is not None:
            return self.evaluation_job(batch)
        if self.scoring.outstanding:
            return None
        self._shrink_and_expand()
        return self.propose()

    # --- lines 4-8: shrinking, merging, expanding ----------------------------------------------
    def _shrink_and_expand(self) -> None:
        space = self.shrunk_space
        si = selection_importance(((a, self.values[a]) for a in self.samples if a in self.values), space)
        scores = operator_scores(si, self.selection_confidence, self.normalization)
        feasible = None if self.constraint is None else self.constraint.admits_some
        self.shrunk_space, dropped = shrink_operators(space, scores, self.drop_per_stage, self.drop_per_slot, feasible)
        if self.expanding:
            merged = merge_layer_spaces(
                self.shrunk_space, self.merge_threshold, self.space if self.merge_only_shrunk else None
            )
            if merged != self.merged_spaces:
                self.earlier_merges = ([self.merged_spaces] if self.merged_spaces else []) + self.earlier_merges
                self.merged_spaces = merged
        self.stage_log.append(
            {
                "stage": self.stage,
                "scored": len(self.values),
                "selection_importance": as_table(space, si),
                "selection_confidence": as_table(space, selection_confidence(si)),
                "scores": as_table(space, scores),
                "dropped": labels(space, dropped),
                "allowed": [list(s.allowed) for s in self.shrunk_space.slots],
                "size": self.shrunk_space.size,
                "merged_spaces": [list(g) for g in self.merged_spaces],
            }
        )
        self.stage += 1
        if self.stage < self.stages or self.final_steps:
            self._begin_stage()
        else:
            self._begin_search()

    def _begin_search(self) -> None:
        self.prepare_search(self.shrunk_space)
        self.phase = SEARCH

    # ------------------------------------------------------------------------------------------
    # How the supernet scores a child model now
    # ------------------------------------------------------------------------------------------
    def expansion(self) -> SENASJob:
        """The expanded supernet (3.4): merged slot groups and the earlier groupings."""
        if not self.merged_spaces:
            return SENASJob()
        return SENASJob(
            expanded=[list(g) for g in self.merged_spaces],
            expanded_from=[[list(g) for g in m] for m in self.earlier_merges],
        )

    def evaluation_job(self, archs: Sequence[Architecture]) -> dict[str, Any]:
        """An evaluation job scoring ``archs`` as SE-NAS does now: ``P(a)`` of Eq. (4) (the averaged
        snapshots of the last stage, or the live weights) on the expanded supernet."""
        return evaluate_batch_job(self.space, archs, **_payload(replace(self.expansion(), average=self.snapshot_names)))

    def current_progress(self) -> SearchProgress:
        steps = self.training_steps
        if self.phase == TRAINING:
            done = sum(steps[: self.stage]) + self.training.done
        else:  # scoring follows the stage's training; the search (and the end) follows all of it
            done = sum(steps[: self.stage + 1]) if self.phase == SCORING else sum(steps)
        if self.phase == SCORING:
            evaluations, best = (len(self.values), len(dict.fromkeys(self.samples))), None
        else:
            evaluations, best = self.search_progress()
        size = "" if self.shrunk_space is None else f", space of {self.shrunk_space.size}"
        stage = f"stage {self.stage + 1}/{self.stages}" if self.stage < self.stages else "final space"
        return self.make_progress((done, sum(steps)), evaluations, best, note=f"{stage}{size}")

    def rank_correlation(
        self,
        evaluate: Callable[[Mapping[str, Any]], Mapping[str, Any]],
        ground_truth: Callable[[Architecture], float],
        archs: Sequence[Architecture] | None = None,
        max_archs: int = 200,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Kendall's tau between the supernet's ``P(a)`` and ``ground_truth`` (section 4.2) over every child
        model of the current shrunk space, a seeded sample of ``max_archs`` of them, or the given ``archs``
        (e.g. a fixed sample of the full space). ``evaluate`` runs one evaluation job in this process and
        returns its result (``tune_spacenas.runner.InProcessSupernet``)."""
        space = self.shrunk_space
        if archs is None:
            archs = (
                list(space.enumerate())
                if space.size <= max_archs
                else space.sample_many(np.random.default_rng(seed), max_archs, distinct=True)
            )
        scores: list[float] = []
        for start in range(0, len(archs), self.eval_batch):
            result = evaluate(self.evaluation_job(archs[start : start + self.eval_batch]))
            scores += [float(v) for v in result[PER_ARCH_KEY][self.metric]]
        truth = [float(ground_truth(a)) for a in archs]
        tau = kendall_tau(scores, truth) if len(archs) > 1 else float("nan")
        return {
            "kendall_tau": tau,
            "architectures": len(archs),
            "sample": [self.space.to_string(a) for a in archs],
            "scores": scores,
            "truth": truth,
        }

    # ------------------------------------------------------------------------------------------
    # State
    # ------------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["shrunk_space"] = None if self.shrunk_space is None else self.shrunk_space.to_spec()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        shrunk = state.pop("shrunk_space")
        super().set_state(state)
        self.shrunk_space = None if shrunk is None else space_from_spec(shrunk)


def _payload(job: SENASJob) -> dict[str, Any]:
    """The job entries of an SE-NAS payload: none when it asks for nothing (a plain SPOS job)."""
    return {SENAS_KEY: job.to_dict()} if job.to_dict() else {}
