"""NSE: Neural Search-space Evolution (Ci et al., "Evolving Search Space for Neural Architecture Search",
ICCV 2021), as a Tune searcher on the shared supernet.

Each round (section 3.1, Figure 2) runs as phases of trials this searcher suggests itself:

1. **train** the supernet on the current subset ``A_s`` (Eq. 2: every branch Bernoulli(0.5)) while the
   training trials update the fitness indicators ``Theta`` (Eqs. 3-8, ``supernet.multibranch``); after
   each training trial, ``simplify`` drops the paths whose theta fell below the threshold, with Lock and
   Rehearse (3.3.1);
2. **evaluate**: ``D`` distinct architectures sampled from ``P(Theta)`` inside the resource constraint,
   ``D_e`` more just below it (the edging effect, Fig. 10) and, with L&R, the previous round's Pareto
   architectures, scored on the validation split with recalibrated BatchNorm in batches;
3. **aggregate** the Pareto front of (accuracy, cost) into ``Â_s``, the union of its operations per layer
   (Eq. 9);
4. **replenish** every layer back to ``K`` operations from the pool's unused ones (3.3.3) and start the
   next round; when a layer's pool runs out, the search ends and the last front is the answer.

The search space can be a ``MultiBranchSpace`` (the paper's setting) or any one-choice-per-slot space
(its single-branch special case ``N_l = 1``, e.g. NAS-Bench-201 with ``SupernetSpec(...,
skeleton="nasbench201+fitness")``). The supernet must carry fitness indicators; NSE's worker extension
(``trainables.extensions.nse``) updates them during the training trials (the job's ``nse`` payload).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from tune_spacenas.analysis.pareto import pareto_front
from tune_spacenas.jobs import (
    ARCH_KEY,
    FITNESS_INDICATORS,
    IMAGES_KEY,
    NSE_KEY,
    TASK_KEY,
    TRAIN,
    NSEJob,
    NSEReset,
    evaluate_batch_job,
)
from tune_spacenas.searchers.base import DONE, FINISHED, TRAINING, ArchSearcher, SearchProgress, write_rows
from tune_spacenas.searchers.evaluation import EvaluationQueue
from tune_spacenas.searchers.training import TrainingPhase
from tune_spacenas.spaces.base import SearchSpace
from tune_spacenas.spaces.multibranch import MultiBranchSpace, configuration_selectors, layer_probability

SAMPLE, EDGE, REHEARSE = "sample", "edge", "rehearse"
EVALUATION = "evaluation"
PAPER_TAU = 300.0  # the paper's MAdds target, in millions (ImageNet, 224 px)
log = logging.getLogger("tune_spacenas.searchers")


# --------------------------------------------------------------------------------------------------
# Resource model: Eq. (8)'s C(e) per (layer, operation), in the unit of tau
# --------------------------------------------------------------------------------------------------
def resource_table(space: SearchSpace, unit: float = 1e6) -> tuple[float, np.ndarray]:
    """(fixed cost, cost of each (slot, operation)) in MAdds / ``unit`` (millions by default).

    A multi-branch space gives its branch costs; a one-choice space's additive cost model is read by
    changing one slot at a time (checked on random architectures; pass ``cost_table=`` otherwise).
    """
    full = space.full_space()
    if isinstance(full, MultiBranchSpace):
        fixed, table = full.cost_table()
        return fixed.madds / unit, np.array([[c.madds / unit for c in row] for row in table])
    if not full.has_cost_model:
        raise ValueError(
            f"space {full.name!r} has no cost model; give NSESearcher cost_table=(fixed, table) "
            "(e.g. a latency lookup table: a fixed cost and one cost per slot and operation)"
        )
    reference = tuple(0 for _ in full.slots)
    base = full.cost(reference).madds
    table = np.zeros((len(full.slots), max(len(s.ops) for s in full.slots)))
    for i, slot in enumerate(full.slots):
        for o in range(1, len(slot.ops)):
            table[i, o] = full.cost(reference[:i] + (o,) + reference[i + 1 :]).madds - base
    rng = np.random.default_rng(0)
    for arch in full.sample_many(rng, 5):
        if not np.isclose(base + sum(table[i, o] for i, o in enumerate(arch)), full.cost(arch).madds):
            raise ValueError(
                f"space {full.name!r} has no additive cost model; give NSESearcher cost_table=(fixed, table)"
            )
    return base / unit, table / unit


def resource_range(space: SearchSpace, fixed: float, table: np.ndarray) -> tuple[float, float]:
    """(cheapest, dearest) resource cost of ``space``'s architectures under ``(fixed, table)`` (non-negative
    costs): per layer its cheapest and dearest configuration."""
    low = high = fixed
    for layer, slot in enumerate(space.slots):
        if isinstance(space, MultiBranchSpace):
            costs = sorted(float(table[layer][o]) for o in range(len(slot.ops)))
            most = len(costs) if space.max_branches is None else space.max_branches
            low += costs[0] if space.reduction[layer] else 0.0  # a normal layer may keep its identity path only
            high += sum(costs[-most:])
        else:
            costs = [float(table[layer][o]) for o in slot.allowed]
            low, high = low + min(costs), high + max(costs)
    return low, high


# --------------------------------------------------------------------------------------------------
# The paper's steps as functions of plain data
# --------------------------------------------------------------------------------------------------
def simplify(
    subsets: Sequence[Sequence[int]],
    theta: np.ndarray,
    threshold: float,
    reduction: Sequence[bool],
    locked: Sequence[Sequence[int]] = (),
) -> list[list[int]]:
    """Section 3.3.1: drop each path whose fitness indicator is below ``threshold``, except the last
    remaining path of a reduction layer (the one with the highest theta stays) and the ``locked``
    operations inherited from the previous round (Lock and Rehearse)."""
    out = []
    for layer, subset in enumerate(subsets):
        keep_locked = set(locked[layer]) if layer < len(locked) else set()
        kept = [o for o in subset if theta[layer, o] >= threshold or o in keep_locked]
        if not kept and reduction[layer] and subset:
            kept = [max(subset, key=lambda o: theta[layer, o])]
        out.append(kept)
    return out


def aggregate(front: Sequence[Sequence[Sequence[int]]], layers: int) -> list[list[int]]:
    """Eq. (9): per layer, the union of the operations the Pareto-optimal architectures select
    (``front[p][l]`` is architecture ``p``'s operations at layer ``l``)."""
    return [sorted({o for arch in front for o in arch[layer]}) for layer in range(layers)]


def replenish(
    aggregated: Sequence[Sequence[int]], pending: Sequence[Sequence[int]], k: int
) -> tuple[list[list[int]], list[list[int]]] | None:
    """Section 3.3.3: ``A'_s = Â_s U A_r``, each layer refilled to ``k`` operations with the next unused
    ones of its (shuffled) pool; ``None`` when some layer's pool cannot fill it (the search ends, 4.1)."""
    subsets, left = [], []
    for kept, queue in zip(aggregated, pending):
        need = max(0, k - len(kept))
        if need > len(queue):
            return None
        subsets.append(list(kept) + list(queue[:need]))
        left.append(list(queue[need:]))
    return subsets, left


def retrieve_front(accuracy: Sequence[float], cost: Sequence[float], edge: Sequence[bool]) -> list[int]:
    """Section 3.3.2 with Fig. 10's fix: the Pareto front of (accuracy, cost) over every evaluated
    architecture, of which the ``edge`` samples (beyond the constraint) may dominate but never belong.

    When the edge samples dominate every architecture inside the constraint (cheaper ones are better
    throughout, as on a barely trained supernet), the front inside the constraint alone is returned.
    """
    front = [i for i in pareto_front(accuracy, cost) if not edge[i]]
    inside = [i for i, e in enumerate(edge) if not e]
    if front or not inside:
        return front
    return [inside[j] for j in pareto_front([accuracy[i] for i in inside], [cost[i] for i in inside])]


class NSESearcher(ArchSearcher):
    """Neural Search-space Evolution on the shared supernet, round after round (phases: ``training`` the
    round's subset, ``evaluation`` of its candidates, ``finished``).

    Args:
        ops_per_layer: ``K``, the layer-wise size of the search space subset (paper: 5).
        steps_per_round: supernet training steps per round (paper: 100 ImageNet epochs).
        steps_per_trial: steps one training trial runs.
        lr: peak SGD learning rate, cosine to 0 within each round (appendix B: 0.4 at batch 1024).
        theta_lr, theta_betas: Adam for the fitness indicators (paper: lr 0.1, the default; the official
            code 5e-3 with betas (0, 0.999); 0 learns no fitness, the thetas stay 0). In the CPU benchmark (15
            updates per round) no rate brought a theta to ``drop_threshold``: ``benchmarks/results/nse``.
        update_every: theta update once every this many training steps (paper: 2).
        alpha, beta, tau: Eq. (5)'s resource term ``alpha * R(a, tau)^beta`` (paper: 1e-5, 2, 300M MAdds);
            ``tau`` and the constraint are in ``resource_unit`` (MAdds / 1e6 by default). ``tau=None`` (the
            default) takes the paper's 300 where the space's cost range holds its window (the ImageNet-size
            spaces), else the median cost of the architectures round one samples, so a CPU-sized space
            (costing a few million MAdds) still gets a window its samples fill; the value is logged. A window
            outside the space's cost range is a ValueError at ``set_search_properties``.
        cost_table: ``(fixed, per_slot_op_costs)`` replacing the MAdds model (e.g. a latency lookup table).
        drop_threshold: a path whose theta falls below it leaves the subset (paper: -2).
        lock_and_rehearse: L&R (3.3.1); ``False`` is the "w/o L&R" ablation.
        samples, edge_samples: ``D`` and ``D_e`` (paper: 2000, 100).
        constraint: ``(low, high)`` resource interval of Pareto retrieval (default ``tau`` +- 10%).
        edge_band: edge samples cost in ``(low - edge_band, low]`` (default 10% of ``tau``).
        eval_batch: architectures one evaluation trial scores; ``eval_images``: validation images each.
        reinit_weights: re-initialise every supernet weight at the start of each round (the default), as the
            official code does (``re_init()`` every round). The paper inherits the *search space* (Eq. 9's
            aggregated operations, 3.3.3) and says nothing of weights. ``False`` keeps the aggregated
            operations' weights across rounds (replenished operations still start fresh): inherited operations
            then train several rounds longer than new ones, which biases accuracy and fitness toward them on
            top of Lock & Rehearse.
        max_rounds: stop after this many rounds (default: the official ``(N - 1) // (K - 1)``).
        pool: the operations replenishment may add (names; default every operation of each slot).
        inherit: per layer, operations of an earlier search's aggregated subset to start from (locked by
            L&R); ``rehearse``: that search's Pareto architectures (strings) to re-evaluate in round one.
            Together they continue a finished search on a second pool (the "K=5 w/ 2nd Space" run).
        **kwargs: ``ArchSearcher`` arguments (metric, mode, seed).
    """

    PHASES = (TRAINING, EVALUATION, DONE)

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        ops_per_layer: int = 5,
        steps_per_round: int = 2000,
        steps_per_trial: int = 200,
        lr: float = 0.05,
        theta_lr: float = 0.1,
        theta_betas: tuple[float, float] = (0.0, 0.999),
        update_every: int = 2,
        alpha: float = 1e-5,
        beta: float = 2.0,
        tau: float | None = None,
        resource_unit: float = 1e6,
        cost_table: tuple[float, Sequence[Sequence[float]]] | None = None,
        drop_threshold: float = -2.0,
        lock_and_rehearse: bool = True,
        samples: int = 2000,
        edge_samples: int = 100,
        constraint: tuple[float, float] | None = None,
        edge_band: float | None = None,
        eval_batch: int = 50,
        eval_images: int | None = None,
        reinit_weights: bool = True,
        max_rounds: int | None = None,
        pool: Sequence[str] | None = None,
        inherit: Sequence[Sequence[str]] | None = None,
        rehearse: Sequence[str] = (),
        **kwargs: Any,
    ):
        # The constructor's arguments, so ``continue_on`` can start a follow-up search with the same settings.
        self.settings = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")}
        self.settings |= {k: kwargs[k] for k in ("metric", "mode", "seed") if k in kwargs}
        kwargs.setdefault("cache_evaluations", False)
        super().__init__(space, **kwargs)
        if ops_per_layer < 1:
            raise ValueError(f"ops_per_layer (K) must be at least 1, got {ops_per_layer}")
        if theta_lr < 0:
            raise ValueError(f"theta_lr must be >= 0 (0: no fitness learning, the thetas stay 0), got {theta_lr}")
        if steps_per_round < 1 or samples < 1:
            raise ValueError(f"need steps_per_round >= 1 and samples >= 1, got {steps_per_round}, {samples}")
        self.k, self.steps_per_round, self.steps_per_trial, self.lr = (
            ops_per_layer,
            steps_per_round,
            steps_per_trial,
            lr,
        )
        # Eq. (5)-(8)'s update as the training jobs carry it (``tau``, ``costs`` are set once the space is known).
        self.fitness = NSEJob(every=update_every, lr=theta_lr, betas=list(theta_betas), alpha=alpha, beta=beta)
        self.target: float | None = None  # Eq. (5)'s tau in use
        self.resource_unit, self.cost_table = resource_unit, cost_table
        self.drop_threshold, self.lock_and_rehearse = drop_threshold, lock_and_rehearse
        self.samples, self.edge_samples = samples, edge_samples
        self.constraint, self.edge_band = (tuple(constraint) if constraint is not None else None), edge_band
        if tau is not None:
            self._set_target(tau)
        self.eval_batch, self.eval_images = eval_batch, eval_images
        self.reinit_weights, self.max_rounds = reinit_weights, max_rounds
        self.pool, self.inherit, self.rehearse = (list(pool) if pool is not None else None), inherit, list(rehearse)
        self.round = 0
        self.rounds: list[dict[str, Any]] = []
        self.front: list[dict[str, Any]] = []
        self.final_subsets: list[list[str]] | None = None

    # ------------------------------------------------------------------------------------------
    # Set-up: the first subset A_s (Step 1)
    # ------------------------------------------------------------------------------------------
    def _set_target(self, tau: float) -> None:
        """Eq. (5)'s ``tau`` and what defaults to it: the constraint (tau +- 10%) and the edge band (10%)."""
        self.target = float(tau)
        self.constraint = self.constraint or (0.9 * tau, 1.1 * tau)
        self.edge_band = self.edge_band if self.edge_band is not None else 0.1 * tau

    @property
    def tau(self) -> float | None:
        """Eq. (5)'s resource target in use (derived at the first ``suggest`` when not given)."""
        return self.target

    def check_space(self) -> None:
        """The resource model (Eq. 8's ``C``) of the space; a constraint window no architecture of the space
        can meet is a ValueError naming the space's range."""
        full = self.space.full_space()
        fixed, table = self.cost_table if self.cost_table is not None else resource_table(full, self.resource_unit)
        self.fixed_cost, self.costs = float(fixed), np.asarray(table, float)
        self.cost_span = resource_range(full, self.fixed_cost, self.costs)
        if self.constraint is not None:
            (low, high), (cheapest, dearest) = self.constraint, self.cost_span
            if high < cheapest or low > dearest:
                raise ValueError(
                    f"NSESearcher's constraint window {low:.4g}-{high:.4g} (tau={self.target}, in MAdds / "
                    f"{self.resource_unit:.0e}) holds no architecture of space {full!r}, whose costs range "
                    f"{cheapest:.4g}-{dearest:.4g}: pass tau= (and constraint=) inside that range, or leave tau unset "
                    "to derive it from the space"
                )

    def setup(self) -> None:
        full = self.space.full_space()
        self.reduction = list(full.reduction) if isinstance(full, MultiBranchSpace) else [True] * len(full.slots)
        names = [set(s.ops) if self.pool is None else set(self.pool) for s in full.slots]
        if self.inherit and len(self.inherit) != len(full.slots):
            raise ValueError(
                f"inherit= has {len(self.inherit)} layers but space {full.name!r} has {len(full.slots)}: "
                "give one list of operations per layer (e.g. a finished search's final subsets)"
            )
        inherited = (
            [[full.slots[i].index(op) for op in ops] for i, ops in enumerate(self.inherit)]
            if self.inherit
            else [[] for _ in full.slots]
        )
        # Section 4.1: each layer's pool in a fixed, layer-wise shuffled order (a MultiBranchSpace's slots are
        # already shuffled by its seed; other spaces by this searcher's), so the first subset is a random one.
        order = [
            list(range(len(s.ops)))
            if isinstance(full, MultiBranchSpace)
            else np.random.default_rng([self.seed, i]).permutation(len(s.ops)).tolist()
            for i, s in enumerate(full.slots)
        ]
        pending = [
            [o for o in order[i] if full.slots[i].ops[o] in names[i] and o not in inherited[i]]
            for i in range(len(full.slots))
        ]
        filled = replenish(inherited, pending, self.k)
        if filled is None:
            raise ValueError(f"a layer's pool holds fewer than K={self.k} operations; lower ops_per_layer")
        self.subsets, self.pending = filled
        if self.target is None:
            self._set_target(self._default_tau())
        self.locked = inherited if self.lock_and_rehearse else [[] for _ in full.slots]
        self.previous_front = (
            [self.space.to_string(full.validate(a)) for a in self.rehearse] if self.lock_and_rehearse else []
        )
        pool_size = max(len(p) + len(s) for p, s in zip(self.pending, self.subsets))
        if self.max_rounds is None:
            self.max_rounds = max(1, (pool_size - 1) // max(1, self.k - 1))
        self._start_round(fresh_ops=[])

    def _default_tau(self) -> float:
        """The paper's target where the space's cost range holds its window, else the median cost of what
        round one samples (Eq. 4 at theta = 0 on the first subset)."""
        cheapest, dearest = self.cost_span
        paper = PAPER_TAU * 1e6 / self.resource_unit if self.cost_table is None else None
        if paper is not None and cheapest <= 0.9 * paper and 1.1 * paper <= dearest:
            tau, why = paper, "the paper's target"
        else:
            _, costs = self.sample_architectures(
                np.zeros(self.costs.shape), 1000, np.random.default_rng([self.seed, 8])
            )
            tau, why = (
                float(np.median(costs)),
                f"the median cost of round one's samples (the space costs {cheapest:.3g}-{dearest:.3g})",
            )
        log.info("NSESearcher: tau=%.4g (%s), constraint window %.4g-%.4g", tau, why, 0.9 * tau, 1.1 * tau)
        return tau

    @property
    def subspace(self) -> SearchSpace:
        """The current search space subset ``A_s``."""
        return self.space.full_space().restrict(self.subsets)

    def _start_round(self, fresh_ops: list[tuple[int, int]]) -> None:
        """Open the round's training phase. Its first trial carries the round's reset: thetas back to 0
        (Eq. 4's uniform start) and fresh weights for the replenished operations (every weight with
        ``reinit_weights``); the other trials wait for it, so none trains on the previous round's values."""
        settings = replace(self.fitness, tau=self.target, costs=self.costs.tolist(), fixed_cost=self.fixed_cost)
        self.training = TrainingPhase(self.steps_per_round, self.steps_per_trial, self.lr, extra={NSE_KEY: settings})
        self.reset: NSEReset | None = NSEReset(
            seed=1000 * (self.seed + 1) + self.round,
            ops=[list(op) for op in fresh_ops],
            all=bool(self.reinit_weights and self.round),
        )
        self.reset_in_flight = False
        self.thetas = np.zeros((len(self.subsets), self.costs.shape[1]))
        self.phase = TRAINING
        self.record = {"round": self.round, "subsets": self._names(self.subsets), "locked": self._names(self.locked)}
        self.candidates: dict[str, dict[str, Any]] = {}
        self.queue = EvaluationQueue(self.eval_batch)

    def _names(self, subsets: Sequence[Sequence[int]]) -> list[list[str]]:
        return [[slot.ops[o] for o in ops] for slot, ops in zip(self.space.full_space().slots, subsets)]

    # ------------------------------------------------------------------------------------------
    # Tune hooks
    # ------------------------------------------------------------------------------------------
    def propose(self) -> dict[str, Any] | str | None:
        if self.phase == DONE:
            return FINISHED
        if self.phase == TRAINING:
            if self.reset_in_flight:
                return None
            if not self.training.all_issued:
                job = self.training.next_job(seed=int(self.rng.integers(2**31)), subspace=self.subspace)
                if self.reset is not None:
                    job[NSE_KEY] = replace(NSEJob.from_dict(job[NSE_KEY]), reset=self.reset).to_dict()
                    self.reset_in_flight = True
                return job
            if not self.training.finished:
                return None
            self._retrieve_candidates()
            self.phase = EVALUATION
        batch = self.queue.next_batch()
        if batch is not None:
            extra = {} if self.eval_images is None else {IMAGES_KEY: self.eval_images}
            return evaluate_batch_job(self.space, [self.space.from_string(a) for a in batch], **extra)
        if self.queue.outstanding:
            return None
        self._finish_round()
        return self.propose()

    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        if job[TASK_KEY] == TRAIN:
            self.training.complete(job, ok=result is not None)
            if NSEJob.from_dict(job[NSE_KEY]).reset is not None:
                self.reset_in_flight = False
                self.reset = self.reset if result is None else None  # a failed reset goes out with the next trial
            if result is not None:
                if FITNESS_INDICATORS not in result:
                    raise ValueError(
                        f"training results carry no {FITNESS_INDICATORS!r}: NSE needs a supernet with "
                        "fitness indicators (a MultiBranchSpace, or SupernetSpec(..., "
                        "skeleton='nasbench201+fitness'))"
                    )
                self.thetas = np.asarray(result[FITNESS_INDICATORS], float)  # the store's values after this push
            self.subsets = simplify(self.subsets, self.thetas, self.drop_threshold, self.reduction, self.locked)
            return
        archs, scores = self.batch_scores(job, result)
        self.queue.complete(len(archs))
        for arch, score in scores.items():
            self.candidates[self.space.to_string(arch)]["score"] = score

    # ------------------------------------------------------------------------------------------
    # Pareto front retrieval (3.3.2)
    # ------------------------------------------------------------------------------------------
    def sample_architectures(
        self, theta: np.ndarray, n: int, rng: np.random.Generator | None = None
    ) -> tuple[list[tuple[int, ...]], np.ndarray]:
        """``n`` architectures from ``P(Theta)``: per layer a configuration with Eq. (4)'s probability,
        renormalised over the configurations the subset allows (reduction layers: non-empty); with their
        resource costs (Eq. 8's ``C``)."""
        rng = rng or self.rng
        space, p = self.subspace, 1.0 / (1.0 + np.exp(-theta))
        columns, cost = [], np.full(n, self.fixed_cost)
        for layer, subset in enumerate(self.subsets):
            configs, selectors = configuration_selectors(space, layer, subset)
            probs = layer_probability(p[layer, list(subset)], selectors)
            pick = rng.choice(len(configs), size=n, p=probs / probs.sum())
            columns.append([configs[i] for i in pick])
            cost += (selectors @ self.costs[layer, list(subset)])[pick]  # a configuration's branches' costs
        return list(zip(*columns)), cost

    def _retrieve_candidates(self) -> None:
        """D samples inside the constraint, D_e just below it, and (L&R) the previous Pareto architectures."""
        theta, (low, high) = self.thetas, self.constraint
        self.record.update(simplified=self._names(self.subsets), thetas=theta.tolist(), steps=self.training.completed)
        wanted = {SAMPLE: self.samples, EDGE: self.edge_samples}
        found: dict[str, list[str]] = {SAMPLE: [], EDGE: []}
        seen = set()
        subspace_size = self.subspace.size
        draws = max(4 * (self.samples + self.edge_samples), 500)  # a narrow window needs many draws
        for _ in range(50):  # rejection sampling, bounded so a callback stays short
            if all(len(found[r]) >= wanted[r] for r in wanted) or len(seen) >= subspace_size:
                break
            archs, cost = self.sample_architectures(theta, draws)
            for arch, c in zip(archs, cost):
                role = SAMPLE if low <= c <= high else EDGE if low - self.edge_band < c < low else None
                if arch in seen or role is None or len(found[role]) >= wanted[role]:
                    seen.add(arch)
                    continue
                seen.add(arch)
                found[role].append(self.space.to_string(arch))
                self.candidates[found[role][-1]] = {"role": role, "cost": float(c), "score": None}
        rehearsed = [a for a in self.previous_front if a not in self.candidates and self._fits(a)]
        for arch in rehearsed:
            self.candidates[arch] = {"role": REHEARSE, "cost": self._cost(arch), "score": None}
        self.queue.put(self.candidates)
        self.record.update(sampled=len(found[SAMPLE]), edge=len(found[EDGE]), rehearsed=len(rehearsed))

    def _cost(self, arch: str) -> float:
        a = self.space.from_string(arch)
        return self.fixed_cost + sum(self.costs[l, list(self.space.branches(l, v))].sum() for l, v in enumerate(a))

    def _fits(self, arch: str) -> bool:
        low, high = self.constraint
        return self.subspace.contains(arch) and low <= self._cost(arch) <= high

    # ------------------------------------------------------------------------------------------
    # Aggregation (Eq. 9) and replenishment (3.3.3)
    # ------------------------------------------------------------------------------------------
    def _finish_round(self) -> None:
        scored = [(a, c) for a, c in self.candidates.items() if c["score"] is not None]
        accuracy = [c["score"] for _, c in scored]
        cost = [c["cost"] for _, c in scored]
        front = [scored[i] for i in retrieve_front(accuracy, cost, [c["role"] == EDGE for _, c in scored])]
        self.front = [
            {ARCH_KEY: a, self._metric: self.score(c["score"]), "cost": c["cost"], "role": c["role"]} for a, c in front
        ]
        archs = [self.space.from_string(a) for a, _ in front]
        ops = [[self.space.branches(l, v) for l, v in enumerate(a)] for a in archs]
        aggregated = aggregate(ops, len(self.subsets)) if front else [list(s) for s in self.subsets]
        self.record.update(
            front=[f[ARCH_KEY] for f in self.front],
            front_accuracy=[f[self._metric] for f in self.front],
            front_cost=[f["cost"] for f in self.front],
            aggregated=self._names(aggregated),
            evaluated=len(scored),
            evaluated_archs=[a for a, _ in scored],
            evaluated_accuracy=[self.score(c["score"]) for _, c in scored],
            evaluated_cost=cost,
            evaluated_role=[c["role"] for _, c in scored],
        )
        self.rounds.append(self.record)
        refilled = replenish(aggregated, self.pending, self.k)
        if refilled is None or self.round + 1 >= self.max_rounds:
            self.final_subsets = self._names(aggregated)
            self.phase = DONE
            return
        new_subsets, self.pending = refilled
        fresh = [(l, o) for l, (old, new) in enumerate(zip(aggregated, new_subsets)) for o in new if o not in old]
        self.subsets = new_subsets
        self.locked = aggregated if self.lock_and_rehearse else [[] for _ in self.subsets]
        self.previous_front = [f[ARCH_KEY] for f in self.front] if self.lock_and_rehearse else []
        self.round += 1
        self._start_round(fresh)

    # ------------------------------------------------------------------------------------------
    # Results and state
    # ------------------------------------------------------------------------------------------
    def continue_on(self, space: SearchSpace, pool: Sequence[str], **overrides: Any) -> NSESearcher:
        """Section 5.2's "K=5 w/ 2nd Space": a new search on ``space`` (this search's operations plus the
        ``pool``) that inherits this search's final subset (locked by L&R), rehearses its last Pareto front
        and replenishes from ``pool`` only; other settings are this search's unless overridden (the paper
        ran three more rounds: ``max_rounds=3``). It needs its own weight store, built for ``space``."""
        if self.final_subsets is None:
            raise ValueError("this search has not finished yet; continue_on starts from its final subset and front")
        settings = {
            **self.settings,
            "space": space,
            "pool": list(pool),
            "inherit": self.final_subsets,
            "rehearse": [f[ARCH_KEY] for f in self.front],
            "max_rounds": None,
        }
        return NSESearcher(**{**settings, **overrides})

    def repeat_refusal(self) -> str | None:
        return (
            "it trains the supernet with fitness indicators in training trials and scores architectures in "
            "batches (per_arch lists)"
        )

    def why_no_result(self) -> str:
        inside = sum(r.get("sampled", 0) for r in self.rounds)
        if self.rounds and not inside:
            low, high = self.constraint
            return (
                f"no sampled architecture fell inside the constraint window {low:.4g}-{high:.4g} (tau="
                f"{self.target:.4g}, MAdds / {self.resource_unit:.0e}) in {len(self.rounds)} rounds, on a "
                f"space costing {self.cost_span[0]:.4g}-{self.cost_span[1]:.4g}: widen constraint= or move tau"
            )
        return super().why_no_result()

    def best_architecture(self) -> str | None:
        """The most accurate architecture of the latest Pareto front (all inside the constraint)."""
        if not self.front:
            return None
        return max(self.front, key=lambda f: self.score(f[self._metric]))[ARCH_KEY]

    def current_progress(self) -> SearchProgress:
        done = self.round * self.steps_per_round + (
            self.training.done if self.phase == TRAINING else self.steps_per_round
        )
        evaluated = sum(c["score"] is not None for c in self.candidates.values())
        best = None if not self.front else max(self.front, key=lambda f: self.score(f[self._metric]))
        ops = sum(len(o) for o in self.subsets)
        return self.make_progress(
            (done, self.max_rounds * self.steps_per_round),
            (evaluated, len(self.candidates)),
            None if best is None else (best[self._metric], best[ARCH_KEY]),
            note=f"round {self.round + 1}/{self.max_rounds}, {ops} operations in the subset, {len(self.rounds)} fronts",
        )

    def export_rounds(self, path: str | os.PathLike) -> None:
        """Per-round history to Parquet: subsets, locked, simplified and aggregated operations per layer,
        thetas, the Pareto front (architectures, accuracy, cost), every evaluated candidate (``evaluated_*``:
        architecture, supernet accuracy, cost, role: sample, edge or rehearse) and sample counts."""
        write_rows(self.rounds, path, empty_column="round")
