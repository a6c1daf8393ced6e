"""REINFORCE over the whole space: the policy-gradient baseline of ASE-NAS Table I (Williams, 1992)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tune_spacenas.jobs import evaluate_job
from tune_spacenas.searchers.base import ArchSearcher
from tune_spacenas.spaces.base import SearchSpace


class Adam:
    """Adam on one numpy array (the policy here is a few dozen logits; torch would only add overhead)."""

    def __init__(self, shape: tuple[int, ...], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m, self.v, self.t = np.zeros(shape), np.zeros(shape), 0

    def step(self, param: np.ndarray, grad: np.ndarray) -> None:
        """In-place gradient *ascent* step on ``param``."""
        b1, b2 = self.betas
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad**2
        m_hat, v_hat = self.m / (1 - b1**self.t), self.v / (1 - b2**self.t)
        param += self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class REINFORCESearcher(ArchSearcher):
    """An independent softmax policy per slot trained by REINFORCE with a moving-average baseline.

    ``grad log pi(a) * (R - b)`` with ``b <- decay * b + (1 - decay) * R`` (NAS-Bench-201's reference
    setting: Adam, decay 0.9), plus ``entropy_weight`` times the gradient of the policy entropy.
    Batch size 1: every finished trial is one update, matched to the architecture that trial evaluated.

    Args:
        learning_rate: Adam step size on the logits.
        baseline_decay: the moving average's decay.
        entropy_weight: weight of the entropy bonus (0 disables it).
    """

    needs_one_choice_per_slot = True

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        learning_rate: float = 0.01,
        baseline_decay: float = 0.9,
        entropy_weight: float = 0.0,
        **kwargs: Any,
    ):
        super().__init__(space, **kwargs)
        self.learning_rate, self.baseline_decay, self.entropy_weight = learning_rate, baseline_decay, entropy_weight
        self.baseline: float | None = None

    def setup(self) -> None:
        width = max(len(s.ops) for s in self.space.slots)
        # Disallowed operations (subspaces, identity in a stage's first layer) get -inf logits.
        self.logits = np.full((len(self.space.slots), width), -np.inf)
        for i, slot in enumerate(self.space.slots):
            self.logits[i, list(slot.allowed)] = 0.0
        self.optimizer = Adam(self.logits.shape, self.learning_rate)

    def probabilities(self) -> np.ndarray:
        z = np.exp(self.logits - self.logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def propose(self) -> dict[str, Any]:
        probs = self.probabilities()
        arch = tuple(int(self.rng.choice(len(p), p=p)) for p in probs)
        return evaluate_job(self.space, self.space.canonicalize(arch))

    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        if result is None:
            return
        for arch, value in self.arch_values(job, result):
            reward = self.score(value)
            self.baseline = (
                reward
                if self.baseline is None
                else (self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward)
            )
            self._update(arch, reward - self.baseline)

    def _update(self, arch: tuple[int, ...], advantage: float) -> None:
        probs = self.probabilities()
        grad = -probs * advantage
        grad[np.arange(len(arch)), list(arch)] += advantage
        if self.entropy_weight:
            logp = np.log(np.where(probs > 0, probs, 1.0))
            entropy = -(probs * logp).sum(axis=1, keepdims=True)
            grad += self.entropy_weight * -probs * (logp + entropy)
        finite = np.isfinite(self.logits)
        grad[~finite] = 0.0
        self.optimizer.step(self.logits, grad)
