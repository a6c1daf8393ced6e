"""``ASESearcher``: Neural Architecture Search via Automatic Subspace Evoking (Chen et al., ASE-NAS).

Algorithm 1, as Tune suggestions:

1. (line 1) with a supernet, train it first (``train_steps`` of uniform single-path training in
   ``TrainingPhase`` trials, as SPOS does); on the NAS-Bench-201 table there is nothing to train;
2. (lines 2-3) K centres, random, given (ASE-NAS+: ``initial_centers``) or the best by a ``prior``
   that costs no query (e.g. a zero-cost proxy), each evaluated once so that ``R(a)`` is known, then
   the subspace graph (``SubspaceGraph``);
3. (lines 5-9) every further suggestion is one sample of the joint policy: evoke a subspace
   ``Omega_a ~ pi_G(.|G)``, edit its centre ``M`` times ``Delta a ~ pi_L(.|Omega_a)``, and evaluate
   ``b = a (+) Delta a`` (with inherited supernet weights, line 10, or by table lookup);
4. (lines 10-16) when ``b`` comes back: reward ``R(b|a) = R(b) - R(a)`` (Eq. 2), replace the centre when
   the reward is positive (lines 12-15), and one REINFORCE step on Eq. (2) (line 16).

Every suggested architecture is new: a sample whose ``b`` was evaluated already (or is in flight, or is
the centre itself: an all no-op edit) is drawn again, so no architecture is learned from twice and a
no-op never earns the advantage a negative baseline would give it. When the policy keeps landing on
known architectures, an unevaluated member of the evoked ball is drawn uniformly (no policy step: it
is not the policy's sample); when the ball holds none, its centre is reseeded with a new architecture
(the best unevaluated one by the ``prior``, else a random one), as local search restarts at a local
optimum. ``suggest`` therefore only waits while trials are in flight, and finishes when the space is.

Each suggestion carries its decision's id, so with several trials in flight every reward meets the
decision (and the graph snapshot) that produced it. The final answer is the best centre (III-B).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from tune_spacenas.jobs import ASE_KEY, TASK_KEY, TRAIN, ASEJob, evaluate_job
from tune_spacenas.searchers.ase.controller import ASEController, ControllerSettings, Decision, GraphTensors
from tune_spacenas.searchers.ase.graph import SubspaceGraph, load_centers
from tune_spacenas.searchers.base import DONE, FINISHED, SEARCH, TRAINING, ArchSearcher, SearchProgress
from tune_spacenas.searchers.constraints import CostLimited
from tune_spacenas.searchers.prior import Prior, check_prior, prior_score, select_by_prior
from tune_spacenas.searchers.training import TrainingPhase
from tune_spacenas.spaces.base import Architecture, SearchSpace
from tune_spacenas.spaces.neighbourhood import neighbourhood, neighbourhood_size, sample_neighbour

CENTERS = "centres"  # the phase that evaluates the initial centres
_MAX_DRAWS = 10_000
# Policy samples per suggestion before falling back to a uniform draw from the evoked ball.
_MAX_RESAMPLES = 32
# Balls up to this size are enumerated to find their unevaluated members; larger ones are sampled.
_ENUMERABLE_BALL = 20_000
# The prior's ranking kept for reseeds beyond the K initial centres.
_PRIOR_RESERVE = 32

# The paper's settings (section IV): NAS-Bench-201 (IV-A) and the MobileNet-like space (IV-B).
PAPER_SETTINGS: dict[str, dict[str, Any]] = {
    "nasbench201": {"num_subspaces": 4, "local_distance": 4, "learning_rate": 1e-2, "entropy_weight": 7.5e-4},
    "mobilenet": {
        "num_subspaces": 10,
        "local_distance": 3,
        "learning_rate": 3e-4,
        "entropy_weight": 1e-3,
        "max_madds": 600e6,
    },
}


def budget_setting(max_queries: int | None, space: SearchSpace) -> tuple[int, int]:
    """K and M for a query budget on a space: the library's defaults (``PAPER_SETTINGS`` are the paper's).

    * M: the paper's size analysis (section III-C) wants ``M << L``; its own MobileNet-like setting
      has ``M / L = 3 / 20``. So ``M = max(1, round(0.15 L))``: 1 on NAS-Bench-201 (L = 6, where the
      paper's M = 4 makes a "subspace" of up to 9,375 of the 15,625 cells), 3 on a 20-layer space.
    * K: the paper's MobileNet run gives each of its K = 10 subspaces about 1,000 of its 10k queries;
      with fewer, fewer subspaces, so ``K = clip(max_queries // 1000, 1, 10)``; without a budget the
      paper's NAS-Bench-201 K = 4.

    The rule was checked on seed 0 only (``benchmarks/results/ase/README.md``, K in 1-4 x M in 1-3 at
    50, 100 and 300 queries on the three NAS-Bench-201 datasets): K = 1, M = 1 had the lowest regret
    there; results are reported on seeds 1-100.
    """
    distance = max(1, round(0.15 * len(space.slots)))
    subspaces = 4 if max_queries is None else int(np.clip(max_queries // 1000, 1, 10))
    return subspaces, min(distance, len(space.slots))


class ASESearcher(CostLimited, ArchSearcher):
    """ASE-NAS: global search over K candidate subspaces, local search of M edits inside the evoked one.

    K and M default to ``budget_setting(max_queries, space)`` (see there for the rule and how it was
    chosen); ``ASESearcher.paper_preset()`` gives the paper's NAS-Bench-201 setting (section IV-A: K=4,
    M=4, Adam lr 1e-2, entropy weight 7.5e-4, batch size 1), ``paper_preset("mobilenet")`` its
    MobileNet-like one (K=10, M=3, lr 3e-4, entropy weight 1e-3, 600M MAdds). Where the paper is silent,
    the official code's values: baseline decay 0.9, Adam weight decay 2.374e-5, hidden size 64, tanh
    constants 1.5 / 0.6.

    Args:
        num_subspaces: K, candidate subspaces in the graph (section V-E); ``None``: from the budget.
        local_distance: M, single-layer edits per suggestion, so ``D(a, b) <= M`` (Eqs. 3-4, section V-F);
            ``None``: from the budget.
        initial_centers: ASE-NAS+: centres to start from (architectures as strings or index tuples, or
            the path of a graph saved by ``save_graph``); fewer than K are topped up (by the prior if
            one is given, else at random).
        prior: scores known before any query (higher is better), a mapping ``{architecture string:
            score}`` or a callable of the string, e.g. a zero-cost proxy (``tune_spacenas.proxies``,
            ``tune_spacenas.tables.proxies``): the initial centres, and the centres that replace an
            exhausted subspace, are the best-scored unevaluated architectures of ``prior_pool``
            (``searchers.prior.select_by_prior``) instead of random ones. Not part of the saved state:
            pass it again to the searcher you restore into.
        prior_pool: candidates the prior ranks, drawn uniformly with a generator seeded by ``seed``;
            ``None``: every architecture a mapping prior scores.
        prior_edits: with a prior, draw this many new ``b`` from the policy and evaluate the one the
            prior scores best (1: the policy's sample as it is). The REINFORCE step then learns from a
            sample selected by the prior, not a plain sample of ``pi``: a bias traded for fewer wasted
            queries.
        learning_rate, weight_decay: the controller's Adam.
        entropy_weight: weight of the entropy bonus (the loss is ``-(R - baseline) log pi - w H(pi)``).
        baseline_decay: the moving-average baseline ``b <- decay b + (1 - decay) R``.
        subspace_update: replace a centre by a better ``b`` (Algorithm 1 lines 12-15); False is the
            "without subspace update" ablation (section V-B).
        absolute_reward: reward ``R(b)`` instead of ``R(b|a)`` (the ablation of section V-C).
        use_graph: the GNN (True) or two fully connected layers (the "no graph" ablation, section V-D).
        controller: the policy network's shape (``ControllerSettings``: hidden and embedding sizes, tanh
            constants; see ``ASEController``).
        max_madds: only centres within this many multiply-adds (spaces with a cost model; the paper's
            mobile setting uses 600e6): initial centres are drawn inside it and a better ``b``
            replaces a centre only if it satisfies it.
        train_steps, steps_per_trial, train_lr: Algorithm 1 line 1, supernet training before the search
            (0 on the NAS-Bench-201 table).
        **kwargs: ``ArchSearcher`` arguments (metric, mode, seed, max_queries, ...).
    """

    needs_one_choice_per_slot = True
    PHASES = (TRAINING, CENTERS, SEARCH, DONE)

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        num_subspaces: int | None = None,
        local_distance: int | None = None,
        initial_centers: list[Any] | str | os.PathLike | None = None,
        prior: Prior | None = None,
        prior_pool: int | None = None,
        prior_edits: int = 1,
        learning_rate: float = 1e-2,
        entropy_weight: float = 7.5e-4,
        baseline_decay: float = 0.9,
        weight_decay: float = 2.374e-5,
        subspace_update: bool = True,
        absolute_reward: bool = False,
        use_graph: bool = True,
        controller: ControllerSettings = ControllerSettings(),
        max_madds: float | None = None,
        train_steps: int = 0,
        steps_per_trial: int = 200,
        train_lr: float = 0.05,
        **kwargs: Any,
    ):
        super().__init__(space, **kwargs)
        for name, value in (
            ("num_subspaces", num_subspaces),
            ("local_distance", local_distance),
            ("prior_pool", prior_pool),
            ("prior_edits", prior_edits),
        ):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None for the default), got {value}")
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        check_prior(prior)
        if prior_edits > 1 and prior is None:
            raise ValueError(f"prior_edits={prior_edits} ranks edits by a prior: pass prior= as well")
        self.num_subspaces, self.local_distance = num_subspaces, local_distance
        self.initial_centers = initial_centers
        self.prior, self.prior_pool, self.prior_edits = prior, prior_pool, prior_edits
        self.learning_rate, self.weight_decay = learning_rate, weight_decay
        self.entropy_weight, self.baseline_decay = entropy_weight, baseline_decay
        self.subspace_update, self.absolute_reward, self.use_graph = subspace_update, absolute_reward, use_graph
        self.controller_settings = controller
        self.max_madds = max_madds
        self.training = TrainingPhase(train_steps, steps_per_trial, train_lr)
        self.graph: SubspaceGraph | None = None
        self.baseline: float | None = None
        self.pending: dict[int, dict[str, Any]] = {}
        self.decisions = 0
        self.replacements = 0
        self.resamples = 0  # policy samples drawn again because their b was known
        self.fallbacks = 0  # suggestions drawn uniformly from the evoked ball
        self.reseeds = 0  # exhausted subspaces given a new centre
        self.prior_picks = 0  # architectures chosen by the prior before their evaluation
        self.retired: list[tuple[Architecture, float]] = []  # centres a reseed replaced
        self.seen: set[Architecture] = set()  # every architecture suggested (evaluated or in flight)
        self._centers: list[Architecture] = []
        self._center_scores: dict[int, float] = {}
        self._center_queue: list[int] = []
        self._prior_ranking: list[Architecture] = []
        self._reseeding: set[int] = set()
        self.controller: ASEController | None = None
        self.optimizer: torch.optim.Adam | None = None

    @classmethod
    def paper_preset(cls, setting: str = "nasbench201", **kwargs: Any) -> ASESearcher:
        """The paper's hyperparameters for ``setting`` (``PAPER_SETTINGS``: "nasbench201" or "mobilenet");
        ``kwargs`` add the rest (space, metric, seed, max_queries, ...) or override a value."""
        if setting not in PAPER_SETTINGS:
            raise ValueError(f"unknown paper setting {setting!r}; use one of {sorted(PAPER_SETTINGS)}")
        return cls(**{**PAPER_SETTINGS[setting], **kwargs})

    # ------------------------------------------------------------------------------------------
    # Setup: centres and the policy
    # ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        K, M = budget_setting(self.max_queries, self.space)
        self.num_subspaces = self.num_subspaces or K
        self.local_distance = self.local_distance or M
        given = [] if self.initial_centers is None else load_centers(self.initial_centers, self.space)
        if len(given) > self.num_subspaces:
            raise ValueError(
                f"{len(given)} initial_centers for num_subspaces={self.num_subspaces}; "
                "pass at most K centres or raise num_subspaces"
            )
        if self.prior is not None:
            self._prior_ranking = self._rank_by_prior(exclude=given)
        self._centers = list(given)
        self.seen.update(given)
        while len(self._centers) < self.num_subspaces:
            self._centers.append(self._new_center())
        self._center_queue = list(range(self.num_subspaces))
        self._build_policy()

    def repeat_refusal(self) -> str | None:
        if self.training.total_steps:
            return f"it trains the supernet first (train_steps={self.training.total_steps}) in training trials"
        return None

    def _rank_by_prior(self, exclude: list[Architecture]) -> list[Architecture]:
        """The prior's best architectures (inside ``max_madds``), best first: initial centres, then reseeds."""
        count = min(self.num_subspaces + _PRIOR_RESERVE, self.space.size - len(exclude))
        ranked = select_by_prior(
            self.prior, self.space, count, np.random.default_rng(self.seed), pool=self.prior_pool, exclude=exclude
        )
        return [a for a in ranked if self.constraint is None or self.constraint(a)]

    def _new_center(self) -> Architecture:
        """Algorithm 1 line 2 (and reseeds): the prior's best unevaluated architecture if there is a prior,
        else a random one; always new and inside the constraint."""
        while self._prior_ranking:
            arch = self._prior_ranking.pop(0)
            if arch not in self.seen:
                self.seen.add(arch)
                self.prior_picks += 1
                return arch
        for _ in range(_MAX_DRAWS):
            arch = self.space.sample(self.rng)
            if arch not in self.seen and (self.constraint is None or self.constraint(arch)):
                self.seen.add(arch)
                return arch
        raise ValueError(
            f"found no new centre in {_MAX_DRAWS} draws: the space is smaller than "
            f"num_subspaces={self.num_subspaces}, or max_madds={self.max_madds} excludes it"
        )

    def _build_policy(self) -> None:
        self.controller = ASEController(
            self.space,
            self.local_distance,
            use_graph=self.use_graph,
            seed=self.seed,
            **asdict(self.controller_settings),
        )
        # fused: one kernel for all ~25 parameter tensors (4x cheaper on CPU than the per-tensor loop)
        self.optimizer = torch.optim.Adam(
            self.controller.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay, fused=True
        )

    # ------------------------------------------------------------------------------------------
    # Suggestions
    # ------------------------------------------------------------------------------------------
    def propose(self) -> dict[str, Any] | str | None:
        if not self.training.finished:  # Algorithm 1 line 1
            return self.training.next_job(seed=self.rng.integers(2**31))
        if self.graph is None or self._center_queue:
            self.phase = CENTERS
            return self._next_center_job()
        self.phase = SEARCH
        return self._evoke_and_edit()

    def _next_center_job(self) -> dict[str, Any] | None:
        """Evaluate every centre once (R(a) must be known before its first reward), then build the graph."""
        if self._center_queue:
            node = self._center_queue.pop(0)
            return evaluate_job(self.space, self._centers[node], ase=ASEJob(center=node))
        return None  # centres in flight

    def _evoke_and_edit(self) -> dict[str, Any] | str | None:
        """Algorithm 1 lines 6-9: ``Omega_a ~ pi_G``, ``Delta a ~ pi_L``, ``b = a (+) Delta a``, with ``b`` new."""
        tensors = GraphTensors.build(self.graph, self.controller.offsets)
        samples: dict[Architecture, Decision] = {}
        for _ in range(_MAX_RESAMPLES):
            decision = self.evoke_subspace(tensors)
            beta = self.space.canonicalize(decision.apply(self.graph.centers[decision.node]))
            if beta not in self.seen and beta not in samples:
                samples[beta] = decision
                if len(samples) == self.prior_edits:
                    break
            else:
                self.resamples += 1
        if samples:
            beta = (
                max(samples, key=lambda b: prior_score(self.prior, self.space, b))
                if len(samples) > 1
                else next(iter(samples))
            )
            return self._edit_job(samples[beta].node, beta, samples[beta])
        beta = self._unseen_in_ball(decision.node)
        if beta is not None:
            self.fallbacks += 1
            return self._edit_job(decision.node, beta, None)
        return self._reseed(decision.node)

    def _edit_job(self, node: int, beta: Architecture, decision: Decision | None) -> dict[str, Any]:
        """A suggestion of ``b`` in node's subspace; ``decision`` is the policy sample (None: not learned)."""
        self.seen.add(beta)
        self.decisions += 1
        self.pending[self.decisions] = {
            "node": node,
            "center_score": self.graph.scores[node],
            "decision": None if decision is None else decision.to_plain(),
            "graph": (list(self.graph.centers), list(self.graph.scores)),
        }
        return evaluate_job(self.space, beta, ase=ASEJob(decision=self.decisions))

    def _unseen_in_ball(self, node: int) -> Architecture | None:
        """A uniform draw among the unevaluated architectures of ``Omega_a`` (None if it holds none)."""
        center, M = self.graph.centers[node], self.local_distance
        if neighbourhood_size(self.space, center, M) <= _ENUMERABLE_BALL:
            new = [b for b in map(self.space.canonicalize, neighbourhood(self.space, center, M)) if b not in self.seen]
            return new[self.rng.integers(len(new))] if new else None
        for _ in range(_MAX_DRAWS):
            beta = self.space.canonicalize(sample_neighbour(self.space, center, M, self.rng))
            if beta not in self.seen:
                return beta
        return None

    def _reseed(self, node: int) -> dict[str, Any] | str | None:
        """Every architecture of ``Omega_a`` is known: evaluate a new centre for the node (it replaces the
        old one when it comes back). FINISHED once the whole space is known."""
        if node in self._reseeding or len(self.seen) >= self.space.size:  # wait for what is in flight
            return None if self.pending or self._reseeding else FINISHED
        self._centers[node] = self._new_center()
        self._reseeding.add(node)
        self.reseeds += 1
        return evaluate_job(self.space, self._centers[node], ase=ASEJob(center=node))

    def evoke_subspace(self, tensors: GraphTensors | None = None) -> Decision:
        """One sample of the joint policy (section IV-A) on the current subspace graph (``tensors``: that
        graph already built for the controller)."""
        tensors = tensors or GraphTensors.build(self.graph, self.controller.offsets)
        return self.controller.sample(tensors, self.rng)

    # ------------------------------------------------------------------------------------------
    # Results
    # ------------------------------------------------------------------------------------------
    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        if job[TASK_KEY] == TRAIN:
            self.training.complete(job, ok=result is not None)
            return
        ase = ASEJob.from_dict(job[ASE_KEY])
        if ase.center is not None:
            self._observe_center(ase.center, job, result)
        else:
            record = self.pending.pop(int(ase.decision), None)
            if record is not None and result is not None:  # a failed trial teaches nothing
                ((beta, value),) = self.arch_values(job, result)
                self._learn(record, beta, self.score(value))

    def _observe_center(self, node: int, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        if result is None:  # the centre's trial failed: draw another centre for this node
            self._centers[node] = self._new_center()
            self._center_queue.append(node)
            return
        ((arch, value),) = self.arch_values(job, result)
        if self.graph is not None:  # a reseed: the exhausted subspace restarts around the new centre
            self._reseeding.discard(node)
            self.retired.append((self.graph.centers[node], self.graph.scores[node]))
            self.graph.replace(node, arch, self.score(value))
            return
        self._center_scores[node] = self.score(value)
        if len(self._center_scores) == self.num_subspaces:  # Algorithm 1 line 3
            self.graph = SubspaceGraph(self._centers, [self._center_scores[k] for k in range(self.num_subspaces)])

    def _learn(self, record: dict[str, Any], beta: Architecture, score: float) -> None:
        improvement = score - record["center_score"]  # Eq. (2): R(b|a) = R(b) - R(a)
        self.update_subspace(record["node"], beta, score)
        if record["decision"] is not None:
            self.policy_step(
                SubspaceGraph(*record["graph"]),
                Decision.from_plain(record["decision"]),
                score if self.absolute_reward else improvement,
            )

    def update_subspace(self, node: int, beta: Architecture, score: float) -> bool:
        """Algorithm 1 lines 12-15: the evoked subspace's centre becomes ``b`` when ``b`` is better.

        With one trial in flight this is exactly ``R(b|a) > 0``. With several, the node may have been
        given a new centre meanwhile; ``b`` must then beat that one. A centre already in the graph is
        not added twice, and with ``max_madds`` only an architecture within it becomes a centre.
        """
        if not self.subspace_update or score <= self.graph.scores[node] or self.graph.index(beta) is not None:
            return False
        if self.constraint is not None and not self.constraint(beta):
            return False
        self.graph.replace(node, beta, score)
        self.replacements += 1
        return True

    def policy_step(self, graph: SubspaceGraph, decision: Decision, reward: float) -> None:
        """Algorithm 1 line 16: one REINFORCE step (batch size 1) on Eq. (2), with the moving-average
        baseline and the entropy bonus, on the graph the decision was sampled from."""
        self.baseline = (
            reward
            if self.baseline is None
            else (self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward)
        )
        log_prob, entropy = self.controller.log_prob(GraphTensors.build(graph, self.controller.offsets), decision)
        loss = -(reward - self.baseline) * log_prob - self.entropy_weight * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    # ------------------------------------------------------------------------------------------
    # Answers and state
    # ------------------------------------------------------------------------------------------
    def best_architecture(self) -> str | None:
        """Section III-B: the best centre of the subspace graph by the validation metric (including
        centres a reseed retired)."""
        if self.graph is None:
            return super().best_architecture()
        best = max([self.graph.best(), *self.retired], key=lambda center: center[1])
        return self.space.to_string(best[0])

    def current_progress(self) -> SearchProgress:
        note = (
            ""
            if self.graph is None
            else (
                f"centres {', '.join(f'{self.score(v):.3g}' for v in self.graph.scores)}, {self.replacements} replaced"
            )
        )
        best = None
        if self.graph is not None:
            arch, value = self.graph.best()
            best = (self.score(value), self.space.to_string(arch))
        return self.make_progress((self.training.done, self.training.total_steps), best=best, note=note)

    def save_graph(self, path: str | os.PathLike) -> None:
        """Write the subspace graph (centres and rewards) as JSON; ``initial_centers=path`` starts ASE-NAS+ from it."""
        if self.graph is None:
            raise ValueError("no subspace graph yet: its centres are still being evaluated")
        self.graph.save(path, self.space)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        del state["prior"]  # user data (maybe a function): passed again to the searcher restored into
        for name in ("controller", "optimizer"):
            module = state.pop(name)
            state[name] = None if module is None else _to_numpy(module.state_dict())
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        controller, optimizer = state.pop("controller"), state.pop("optimizer")
        super().set_state(state)
        self.controller = self.optimizer = None
        if controller is not None:
            self._build_policy()
            self.controller.load_state_dict(_to_torch(controller))
            self.optimizer.load_state_dict(_to_torch(optimizer))


def _to_numpy(value: Any) -> Any:
    """A (nested) state_dict with its tensors as numpy arrays: plain data that pickles anywhere."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    return value


def _to_torch(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, dict):
        return {k: _to_torch(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_torch(v) for v in value)
    return value
