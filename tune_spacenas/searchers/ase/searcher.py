"""``ASESearcher``: Neural Architecture Search via Automatic Subspace Evoking (Chen et al., ASE-NAS).

Algorithm 1, as Tune suggestions:

1. (line 1) with a supernet, train it first (``train_steps`` of uniform single-path training in
   ``TrainingPhase`` trials, as SPOS does); on the NAS-Bench-201 table there is nothing to train;
2. (lines 2-3) K centres, random or given (ASE-NAS+: ``initial_centers``), each evaluated once so that
   ``R(a)`` is known, then the subspace graph (``SubspaceGraph``);
3. (lines 5-9) every further suggestion is one sample of the joint policy: evoke a subspace
   ``Omega_a ~ pi_G(.|G)``, edit its centre ``M`` times ``Delta a ~ pi_L(.|Omega_a)``, and evaluate
   ``b = a (+) Delta a`` (with inherited supernet weights, line 10, or by table lookup);
4. (lines 10-16) when ``b`` comes back: reward ``R(b|a) = R(b) - R(a)`` (Eq. 2), replace the centre when
   the reward is positive (lines 12-15), and one REINFORCE step on Eq. (2) (line 16).

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
from tune_spacenas.searchers.base import DONE, SEARCH, TRAINING, ArchSearcher, SearchProgress
from tune_spacenas.searchers.constraints import CostLimited
from tune_spacenas.searchers.training import TrainingPhase
from tune_spacenas.spaces.base import Architecture, SearchSpace

CENTERS = "centres"  # the phase that evaluates the initial centres
_MAX_DRAWS = 10_000


class ASESearcher(CostLimited, ArchSearcher):
    """ASE-NAS: global search over K candidate subspaces, local search of M edits inside the evoked one.

    Defaults are the paper's NAS-Bench-201 setting (section IV-A: K=4, M=4, Adam lr 1e-2, entropy
    weight 7.5e-4, batch size 1) and, where the paper is silent, the official code's (baseline decay 0.9,
    Adam weight decay 2.374e-5, hidden size 64, tanh constants 1.5 / 0.6). The paper's MobileNet-like
    setting is ``num_subspaces=10, local_distance=3, learning_rate=3e-4, entropy_weight=1e-3,
    max_madds=600e6``.

    Args:
        num_subspaces: K, candidate subspaces in the graph (section V-E).
        local_distance: M, single-layer edits per suggestion, so ``D(a, b) <= M`` (Eqs. 3-4, section V-F).
        initial_centers: ASE-NAS+: centres to start from (architectures as strings or index tuples, or
            the path of a graph saved by ``save_graph``); fewer than K are topped up with random ones.
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
            mobile setting uses 600e6): random initial centres are drawn inside it and a better ``b``
            replaces a centre only if it satisfies it.
        train_steps, steps_per_trial, train_lr: Algorithm 1 line 1, supernet training before the search
            (0 on the NAS-Bench-201 table).
        **kwargs: ``ArchSearcher`` arguments (metric, mode, seed, max_queries, ...).
    """

    needs_one_choice_per_slot = True
    PHASES = (TRAINING, CENTERS, SEARCH, DONE)

    def __init__(self, space: SearchSpace | None = None, *, num_subspaces: int = 4, local_distance: int = 4,
                 initial_centers: list[Any] | str | os.PathLike | None = None, learning_rate: float = 1e-2,
                 entropy_weight: float = 7.5e-4, baseline_decay: float = 0.9, weight_decay: float = 2.374e-5,
                 subspace_update: bool = True, absolute_reward: bool = False, use_graph: bool = True,
                 controller: ControllerSettings = ControllerSettings(), max_madds: float | None = None,
                 train_steps: int = 0, steps_per_trial: int = 200, train_lr: float = 0.05, **kwargs: Any):
        super().__init__(space, **kwargs)
        if num_subspaces < 1 or local_distance < 1:
            raise ValueError(f"need num_subspaces >= 1 and local_distance >= 1, got {num_subspaces}, {local_distance}")
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        self.num_subspaces, self.local_distance = num_subspaces, local_distance
        self.initial_centers = initial_centers
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
        self._centers: list[Architecture] = []
        self._center_scores: dict[int, float] = {}
        self._center_queue: list[int] = []
        self.controller: ASEController | None = None
        self.optimizer: torch.optim.Adam | None = None

    # ------------------------------------------------------------------------------------------
    # Setup: centres and the policy
    # ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        given = [] if self.initial_centers is None else load_centers(self.initial_centers, self.space)
        if len(given) > self.num_subspaces:
            raise ValueError(f"{len(given)} initial_centers for num_subspaces={self.num_subspaces}; "
                             "pass at most K centres or raise num_subspaces")
        self._centers = list(given)
        while len(self._centers) < self.num_subspaces:
            self._centers.append(self._random_center())
        self._center_queue = list(range(self.num_subspaces))
        self._build_policy()

    def repeat_refusal(self) -> str | None:
        if self.training.total_steps:
            return f"it trains the supernet first (train_steps={self.training.total_steps}) in training trials"
        return None

    def _random_center(self) -> Architecture:
        """Algorithm 1 line 2: a random architecture, distinct from the other centres, inside the constraint."""
        for _ in range(_MAX_DRAWS):
            arch = self.space.sample(self.rng)
            if arch not in self._centers and (self.constraint is None or self.constraint(arch)):
                return arch
        raise ValueError(f"found no new centre in {_MAX_DRAWS} draws: the space is smaller than "
                         f"num_subspaces={self.num_subspaces}, or max_madds={self.max_madds} excludes it")

    def _build_policy(self) -> None:
        self.controller = ASEController(self.space, self.local_distance, use_graph=self.use_graph, seed=self.seed,
                                        **asdict(self.controller_settings))
        # fused: one kernel for all ~25 parameter tensors (4x cheaper on CPU than the per-tensor loop)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=self.learning_rate,
                                          weight_decay=self.weight_decay, fused=True)

    # ------------------------------------------------------------------------------------------
    # Suggestions
    # ------------------------------------------------------------------------------------------
    def propose(self) -> dict[str, Any] | None:
        if not self.training.finished:  # Algorithm 1 line 1
            return self.training.next_job(seed=self.rng.integers(2**31))
        if self.graph is None:
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

    def _evoke_and_edit(self) -> dict[str, Any]:
        """Algorithm 1 lines 6-9: ``Omega_a ~ pi_G``, ``Delta a ~ pi_L``, ``b = a (+) Delta a``."""
        decision = self.evoke_subspace()
        center = self.graph.centers[decision.node]
        beta = self.space.canonicalize(decision.apply(center))
        self.decisions += 1
        self.pending[self.decisions] = {"decision": decision.to_plain(), "center_score": self.graph.scores[decision.node],
                                        "graph": (list(self.graph.centers), list(self.graph.scores))}
        return evaluate_job(self.space, beta, ase=ASEJob(decision=self.decisions))

    def evoke_subspace(self) -> Decision:
        """One sample of the joint policy (section IV-A) on the current subspace graph."""
        return self.controller.sample(GraphTensors.build(self.graph, self.controller.offsets), self.rng)

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
                (beta, value), = self.arch_values(job, result)
                self._learn(record, beta, self.score(value))

    def _observe_center(self, node: int, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        if result is None:  # the centre's trial failed: draw another centre for this node
            self._centers[node] = self._random_center()
            self._center_queue.append(node)
            return
        (_, value), = self.arch_values(job, result)
        self._center_scores[node] = self.score(value)
        if len(self._center_scores) == self.num_subspaces:  # Algorithm 1 line 3
            self.graph = SubspaceGraph(self._centers, [self._center_scores[k] for k in range(self.num_subspaces)])

    def _learn(self, record: dict[str, Any], beta: Architecture, score: float) -> None:
        decision = Decision.from_plain(record["decision"])
        improvement = score - record["center_score"]  # Eq. (2): R(b|a) = R(b) - R(a)
        self.update_subspace(decision.node, beta, score)
        self.policy_step(SubspaceGraph(*record["graph"]), decision, score if self.absolute_reward else improvement)

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
        self.baseline = reward if self.baseline is None else (
            self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward)
        log_prob, entropy = self.controller.log_prob(GraphTensors.build(graph, self.controller.offsets), decision)
        loss = -(reward - self.baseline) * log_prob - self.entropy_weight * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    # ------------------------------------------------------------------------------------------
    # Answers and state
    # ------------------------------------------------------------------------------------------
    def best_architecture(self) -> str | None:
        """Section III-B: the best centre of the subspace graph by the validation metric."""
        if self.graph is None:
            return super().best_architecture()
        return self.space.to_string(self.graph.best()[0])

    def current_progress(self) -> SearchProgress:
        note = "" if self.graph is None else (f"centres {', '.join(f'{self.score(v):.3g}' for v in self.graph.scores)}, "
                                              f"{self.replacements} replaced")
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
