"""``SENASSearcher``: SE-NAS (Hu et al., 2021), the shrinking-and-expanding supernet, as a Tune searcher.

Algorithm 1 on the shared supernet, one stage at a time: SPOS training trials in the current (shrunk)
space, the last of them taking Eq. (4)'s snapshots; evaluation trials scoring sampled child models
(Eqs. 5-7); shrinking (drop the ``k`` lowest-scoring operators); merging adjacent layer-wise spaces and
expanding their weights (3.4). After the last stage, evolution (exhaustive when small) searches the
final space on the decoupled supernet.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tune_spacenas.analysis import kendall_tau
from tune_spacenas.jobs import ARCHS_KEY, PER_ARCH_KEY, TASK_KEY, TRAIN, evaluate_batch_job
from tune_spacenas.searchers.base import ArchSearcher
from tune_spacenas.searchers.evolution import CostLimited, EvolutionPhase
from tune_spacenas.searchers.senas.expanding import merge_layer_spaces
from tune_spacenas.searchers.senas.scores import (as_table, labels, operator_sample, operator_scores,
                                                  selection_confidence, selection_importance)
from tune_spacenas.searchers.senas.shrinking import shrink_operators
from tune_spacenas.searchers.training import TrainingPhase
from tune_spacenas.spaces.base import Architecture, space_from_spec

TRAINING, SCORING, SEARCH = "training", "scoring", "search"


class SENASSearcher(CostLimited, ArchSearcher):
    """Shrinking-and-expanding supernet search (SE-NAS, Algorithm 1), every component switchable.

    Args:
        stages: shrinking-and-expanding stages, each: train, score operators, shrink, merge and expand
            (2 on NAS-Bench-201 in section 4.2).
        stage_steps: supernet training steps of each stage: one number, or one per stage (paper: 20
            epochs per stage on NAS-Bench-201; 100 epochs, then 5 per stage, on MobileNet-like).
        steps_per_trial: steps one training trial runs.
        lr: peak learning rate; cosine to 0 over all stages' steps (the schedule a SPOS run of the same
            length follows), or restarted every stage with ``restart_lr=True``.
        snapshots: K of Eq. (4), snapshots averaged to score child models.
        snapshot_window: steps over which the K snapshots spread: "the last epoch" of the stage (clipped
            to the stage's last trial; default: that whole trial).
        evaluation_stability: Eq. (4) on; ``False`` scores with the last weights (ablation).
        samples_per_op: sampled child models containing each operator for Eq. (5) (1000 in the paper on
            MobileNet-like); a space no bigger than the sample is enumerated (Eq. 5 exact).
        selection_confidence: divide by Eq. (6)'s layer variance in Eq. (7); ``False`` is Table 6's
            SI-only ablation.
        drop_per_stage: k, operators removed per shrinking step (10 on NAS-Bench-201 and MobileNet-like).
        drop_per_slot: remove one operator per slot per step instead (SE-NAS on FairNAS).
        expanding: section 3.4 on; ``False`` keeps all weights shared (Table 6 without "Expanding").
        merge_threshold: T, the largest merged child space (50 in 3.4; 6 in Fig. 3's toy).
        population, generations, parents, mutations, crossovers, mutation_prob: the final evolutionary
            search (SPOS's settings); exhaustive when the final space has at most ``population`` models.
        max_madds: child models above this many multiply-adds are never scored (operator sampling) or
            searched ("SE-NAS dumps models that don't satisfy FLOPs constraint"); spaces with a cost model.
        eval_batch: child models one evaluation trial scores.
        **kwargs: ``ArchSearcher`` arguments (space, metric, mode, seed, store). SE-NAS scores operators
            by accuracy: ``mode`` must be ``"max"``.

    Public state: ``shrunk_space`` (the current space), ``merged_spaces`` (groups of slots whose partial
    models have their own weights), ``stage_log`` (per stage: SI, SC, scores, dropped operators, merges).
    """

    needs_one_choice_per_slot = True

    def __init__(self, stages: int = 2, stage_steps: int | Sequence[int] = 2000, steps_per_trial: int = 200,
                 lr: float = 0.05, restart_lr: bool = False, snapshots: int = 5, snapshot_window: int | None = None,
                 evaluation_stability: bool = True, samples_per_op: int = 100, selection_confidence: bool = True,
                 drop_per_stage: int = 10, drop_per_slot: bool = False, expanding: bool = True,
                 merge_threshold: int = 50, population: int = 50, generations: int = 20, parents: int = 10,
                 mutations: int = 25, crossovers: int = 25, mutation_prob: float = 0.1,
                 max_madds: float | None = None, eval_batch: int = 50, **kwargs: Any):
        kwargs.setdefault("cache_evaluations", False)
        super().__init__(**kwargs)
        steps = [int(stage_steps)] * stages if np.isscalar(stage_steps) else [int(s) for s in stage_steps]
        if stages < 1 or len(steps) != stages or min(steps) < 1:
            raise ValueError(f"need stages >= 1 and one positive step count per stage, got stages={stages}, "
                             f"stage_steps={stage_steps}")
        if snapshots < 1 or samples_per_op < 1 or eval_batch < 1:
            raise ValueError("snapshots, samples_per_op and eval_batch must be positive")
        self.stages, self.stage_steps, self.steps_per_trial = stages, steps, steps_per_trial
        self.lr, self.restart_lr = lr, restart_lr
        self.snapshots, self.snapshot_window, self.evaluation_stability = snapshots, snapshot_window, evaluation_stability
        self.samples_per_op, self.selection_confidence = samples_per_op, selection_confidence
        self.drop_per_stage, self.drop_per_slot = drop_per_stage, drop_per_slot
        self.expanding, self.merge_threshold = expanding, merge_threshold
        self.evolution_args = dict(population=population, generations=generations, parents=parents,
                                   mutations=mutations, crossovers=crossovers, mutation_prob=mutation_prob)
        self.max_madds, self.eval_batch = max_madds, eval_batch
        self.stage, self.phase = 0, TRAINING
        self.shrunk_space = None
        self.merged_spaces: list[list[int]] = []
        self.earlier_merges: list[list[list[int]]] = []
        self.stage_log: list[dict[str, Any]] = []
        self.snapshot_names: list[str] = []
        self.stale_snapshots: list[str] = []
        self.training: TrainingPhase | None = None
        self.evolution: EvolutionPhase | None = None
        self.samples: list[Architecture] = []
        self.pending: list[Architecture] = []
        self.values: dict[Architecture, float] = {}
        self.outstanding = 0

    # ------------------------------------------------------------------------------------------
    # Algorithm 1
    # ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        if self.mode != "max":
            raise ValueError("SE-NAS scores operators by supernet accuracy (Eqs. 5-7 average a positive metric "
                             "to maximise): use an accuracy metric with mode='max'")
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
        return self.evolution.next_job(self.rng, self.eval_batch, self.evaluation_job)

    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        if job[TASK_KEY] == TRAIN:
            self.training.complete(job, ok=result is not None)
            if result is None and "snapshots" in job:
                self.snapshot_names = []  # the snapshot trial failed: score this stage with the last weights
            return
        archs = [self.space.from_string(s) for s in job[ARCHS_KEY]]
        scores = {} if result is None else {a: self.score(v) for a, v in self.arch_values(job, result)}
        if self.phase == SCORING:
            self.outstanding -= len(archs)
            self.values.update(scores)
        else:
            self.evolution.complete(archs, scores)

    # --- line 2: SPOS training of the (shrunk) supernet ----------------------------------------
    def _begin_stage(self) -> None:
        done, total = sum(self.stage_steps[:self.stage]), sum(self.stage_steps)
        self.training = TrainingPhase(
            self.stage_steps[self.stage], self.steps_per_trial, self.lr,
            schedule_offset=0 if self.restart_lr else done, schedule_steps=None if self.restart_lr else total,
            extra=self.expansion_keys())
        self.phase = TRAINING

    def _next_training_job(self) -> dict[str, Any] | str | None:
        phase = self.training
        if phase.finished:
            self._begin_scoring()
            return self.propose()
        if phase.all_issued:
            return None
        last = phase.total_steps - phase.issued <= phase.steps_per_trial
        if last and self.evaluation_stability and phase.completed + phase.failed < phase.issued:
            return None  # Eq. (4) snapshots the stage's final weights: its last trial runs after all others
        job = phase.next_job(int(self.rng.integers(2**31)), self.shrunk_space)
        if last and self.evaluation_stability:
            job["snapshots"] = self._snapshot_request(job["steps"])
        return job

    def _snapshot_request(self, steps: int) -> dict[str, Any]:
        """Eq. (4): K snapshots spread over the stage's last ``snapshot_window`` steps (its last epoch)."""
        window = min(self.snapshot_window or steps, steps)
        count = min(self.snapshots, max(1, window - 1))  # distinct steps for every snapshot
        prefix = f"{self.snapshot_prefix}/stage{self.stage}"
        self.stale_snapshots += self.snapshot_names
        self.snapshot_names = [f"{prefix}/{i}" for i in range(count)]
        return {"name": prefix, "count": count, "fraction": window / steps}

    # --- line 3: operator scores, Eqs. (4)-(7) -------------------------------------------------
    def _begin_scoring(self) -> None:
        self.phase = SCORING
        if self.stale_snapshots and self.store is not None:
            self.store_client().drop_snapshots(self.stale_snapshots)
        self.stale_snapshots = []
        nothing_to_drop = all(len(s.allowed) == 1 for s in self.shrunk_space.slots)
        self.samples = [] if nothing_to_drop else operator_sample(
            self.shrunk_space, self.samples_per_op, self.rng, self.constraint)
        self.pending, self.values, self.outstanding = list(dict.fromkeys(self.samples)), {}, 0

    def _next_scoring_batch(self) -> dict[str, Any] | str | None:
        if self.pending:
            batch, self.pending = self.pending[:self.eval_batch], self.pending[self.eval_batch:]
            self.outstanding += len(batch)
            return self.evaluation_job(batch)
        if self.outstanding:
            return None
        self._shrink_and_expand()
        return self.propose()

    # --- lines 4-8: shrinking, merging, expanding ----------------------------------------------
    def _shrink_and_expand(self) -> None:
        space = self.shrunk_space
        si = selection_importance(((a, self.values[a]) for a in self.samples if a in self.values), space)
        scores = operator_scores(si, self.selection_confidence)
        self.shrunk_space, dropped = shrink_operators(space, scores, self.drop_per_stage, self.drop_per_slot)
        if self.expanding:
            merged = merge_layer_spaces(self.shrunk_space, self.merge_threshold)
            if merged != self.merged_spaces:
                self.earlier_merges = ([self.merged_spaces] if self.merged_spaces else []) + self.earlier_merges
                self.merged_spaces = merged
        self.stage_log.append({
            "stage": self.stage, "evaluated": len(self.values), "selection_importance": as_table(space, si),
            "selection_confidence": as_table(space, selection_confidence(si)), "scores": as_table(space, scores),
            "dropped": labels(space, dropped), "allowed": [list(s.allowed) for s in self.shrunk_space.slots],
            "size": self.shrunk_space.size, "merged_spaces": [list(g) for g in self.merged_spaces]})
        self.stage += 1
        if self.stage < self.stages:
            self._begin_stage()
        else:
            self.phase = SEARCH
            self.evolution = EvolutionPhase(self.shrunk_space, constraint=self.constraint, **self.evolution_args)

    # --- the final search (Eq. 2): EvolutionPhase.next_job ---------------------------------------
    def best_architecture(self) -> str | None:
        best = self.evolution.best() if self.evolution else None
        return None if best is None else self.space.to_string(best[0])

    # ------------------------------------------------------------------------------------------
    # How the supernet scores a child model now
    # ------------------------------------------------------------------------------------------
    def expansion_keys(self) -> dict[str, Any]:
        """Job keys of the expanded supernet (3.4): merged slot groups and the earlier groupings."""
        if not self.merged_spaces:
            return {}
        return {"expanded": [list(g) for g in self.merged_spaces],
                "expanded_from": [[list(g) for g in m] for m in self.earlier_merges]}

    def evaluation_job(self, archs: Sequence[Architecture]) -> dict[str, Any]:
        """An evaluation job scoring ``archs`` as SE-NAS does now: ``P(a)`` of Eq. (4) (the averaged
        snapshots of the last stage, or the live weights) on the expanded supernet."""
        keys = self.expansion_keys()
        if self.snapshot_names:
            keys["weights"] = {"average": list(self.snapshot_names)}
        return evaluate_batch_job(self.space, archs, **keys)

    def rank_correlation(self, evaluate: Callable[[Mapping[str, Any]], Mapping[str, Any]],
                         ground_truth: Callable[[Architecture], float], archs: Sequence[Architecture] | None = None,
                         max_archs: int = 200, seed: int = 0) -> dict[str, Any]:
        """Kendall's tau between the supernet's ``P(a)`` and ``ground_truth`` (section 4.2) over every child
        model of the current shrunk space, a seeded sample of ``max_archs`` of them, or the given ``archs``
        (e.g. a fixed sample of the full space). ``evaluate`` runs one evaluation job in this process and
        returns its result (``tune_spacenas.runner.InProcessSupernet``)."""
        space = self.shrunk_space
        if archs is None:
            archs = list(space.enumerate()) if space.size <= max_archs else space.sample_many(
                np.random.default_rng(seed), max_archs, distinct=True)
        scores: list[float] = []
        for start in range(0, len(archs), self.eval_batch):
            result = evaluate(self.evaluation_job(archs[start:start + self.eval_batch]))
            scores += [float(v) for v in result[PER_ARCH_KEY][self.metric]]
        truth = [float(ground_truth(a)) for a in archs]
        tau = kendall_tau(scores, truth) if len(archs) > 1 else float("nan")
        return {"kendall_tau": tau, "architectures": len(archs), "archs": [self.space.to_string(a) for a in archs],
                "scores": scores, "truth": truth}

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
