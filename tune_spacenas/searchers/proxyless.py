"""ProxylessNAS (Cai et al., 2019): gradient search over architecture parameters through binary gates.

AutoSpace searches its generated space with it (section 3.3, Tables 3 and 7: "we follow ProxylessNAS to use
the single path searching algorithm"), with Eq. (6)'s MAdds-regularised loss ``CE + lambda MAdds(N)``; it
works on any one-choice-per-slot space of ours whose supernet runs its layers through
``Supernet.gated_layer`` (NAS-Bench-201, MobileNet-like, the manual IRB space, AutoSpace's open and
generated spaces).

Every slot s has architecture parameters alpha_s (one per allowed operation, 0 at the start) and path
weights ``p_s = softmax(alpha_s)``. The search:

1. warm-up: the supernet's weights train alone on paths drawn from p (uniform while alpha = 0);
2. search: training trials alternate weight steps on single paths drawn from p with, every
   ``update_every`` steps, one architecture step on a validation batch: two candidates per slot drawn from
   multinomial(p) behind binary gates, ``dL/dalpha`` from the gates' gradients (p renormalised over the
   two), plus ``madds_penalty`` (lambda) times the gradient of the expected MAdds, one Adam step, and the
   rescaling that keeps the unsampled operations' p unchanged (``ProxylessJob``, run by the ``proxyless``
   worker extension; the trials report the alpha they learned and the searcher adds what each trial
   changed, so trials may run in parallel);
3. the derived architecture is the most probable one, ``argmax_k alpha_sk`` per slot; with a cost window
   (``min_madds``/``max_madds``) the most probable architecture inside it (comparisons at matched MAdds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from tune_spacenas.jobs import ARCH_PARAMETERS, PROXYLESS_KEY, STEPS_DONE, TASK_KEY, TRAIN, ProxylessJob
from tune_spacenas.searchers.base import DONE, FINISHED, SEARCH, ArchSearcher, SearchProgress
from tune_spacenas.searchers.constraints import CostLimited
from tune_spacenas.searchers.training import TrainingPhase
from tune_spacenas.spaces.base import Architecture, SearchSpace

WARMUP = "warmup"


class ProxylessSearcher(CostLimited, ArchSearcher):
    """ProxylessNAS's gradient search with binary gates and Eq. (6)'s MAdds-regularised loss, on the shared supernet.

    Use with a supernet store of the space (``config=store.param_space()``, ``supernet_trainable``) and the
    training metric (``"loss"``/``"min"`` or ``"accuracy"``/``"max"``); the answer is derived from alpha.

    Args:
        warmup_steps: weight-only training before the architecture parameters learn (ProxylessNAS's warm-up
            epochs).
        search_steps: training steps with architecture steps interleaved.
        steps_per_trial: steps one training trial runs.
        lr: peak learning rate of the weights (cosine to 0 over warm-up and search).
        arch_lr: Adam's learning rate on alpha (ProxylessNAS: 1e-3).
        arch_betas: Adam's betas on alpha (ProxylessNAS: (0, 0.999)).
        update_every: weight steps per architecture step (ProxylessNAS's ``grad_update_arch_param_every``: 5).
        gate_paths: candidates per slot behind the binary gates in an architecture step (ProxylessNAS's
            "two" mode: 2).
        madds_penalty: lambda of Eq. (6) ``Loss = Loss_CE + lambda MAdds(N)``, on the expected MAdds.
        max_madds, min_madds: a cost window for the derived architecture: the most probable architecture
            inside it (matched-MAdds comparisons); the search itself is steered only by lambda.
        derive_samples: architectures drawn from p to find the most probable one inside the window.
        **kwargs: ``ArchSearcher`` arguments (metric, mode, seed).
    """

    needs_one_choice_per_slot = True
    PHASES = (WARMUP, SEARCH, DONE)

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        warmup_steps: int = 1000,
        search_steps: int = 2000,
        steps_per_trial: int = 200,
        lr: float = 0.05,
        arch_lr: float = 1e-3,
        arch_betas: Sequence[float] = (0.0, 0.999),
        update_every: int = 5,
        gate_paths: int = 2,
        madds_penalty: float = 0.0,
        max_madds: float | None = None,
        min_madds: float | None = None,
        derive_samples: int = 2000,
        **kwargs: Any,
    ):
        kwargs.setdefault("cache_evaluations", False)
        super().__init__(space, **kwargs)
        if warmup_steps < 0 or search_steps < 1:
            raise ValueError(f"need warmup_steps >= 0 and search_steps >= 1, got {warmup_steps} and {search_steps}")
        if update_every < 1 or gate_paths < 1 or derive_samples < 0:
            raise ValueError("update_every and gate_paths must be positive and derive_samples non-negative")
        if arch_lr <= 0 or len(arch_betas) != 2 or not all(0 <= b < 1 for b in arch_betas):
            raise ValueError(
                f"arch_lr must be positive and arch_betas two numbers in [0, 1), got {arch_lr}, {arch_betas}"
            )
        total = warmup_steps + search_steps
        self.warmup = TrainingPhase(warmup_steps, steps_per_trial, lr, schedule_steps=total)
        self.search = TrainingPhase(
            search_steps, steps_per_trial, lr, schedule_offset=warmup_steps, schedule_steps=total
        )
        self.arch = ProxylessJob(
            arch_lr=float(arch_lr),
            betas=tuple(float(b) for b in arch_betas),
            update_every=int(update_every),
            gate_paths=int(gate_paths),
            madds_penalty=float(madds_penalty),
        )
        self.max_madds, self.min_madds, self.derive_samples = max_madds, min_madds, int(derive_samples)
        self.alpha: list[list[float]] = []
        self.curve: list[dict[str, Any]] = []  # per training trial: phase, steps, the reported metric
        self._derived: tuple[Any, Architecture | None] | None = None  # (alpha and window, their answer)

    def setup(self) -> None:
        self.alpha = [[0.0] * len(allowed) for allowed in self.space.choices]

    def repeat_refusal(self) -> str | None:
        return "its trials train the supernet and report the architecture parameters they learned"

    # ------------------------------------------------------------------------------------------
    # Jobs
    # ------------------------------------------------------------------------------------------
    def propose(self) -> dict[str, Any] | str | None:
        if not self.warmup.all_issued:
            return self.warmup.next_job(seed=int(self.rng.integers(2**31)), subspace=self.space)
        if not self.warmup.finished:
            return None  # alpha starts learning on the warmed-up weights
        self.phase = SEARCH
        if not self.search.all_issued:
            job = self.search.next_job(seed=int(self.rng.integers(2**31)), subspace=self.space)
            job[PROXYLESS_KEY] = replace(self.arch, alpha=self.alpha).to_dict()
            return job
        return FINISHED if self.search.finished else None

    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        if job.get(TASK_KEY) != TRAIN:
            return
        searching = PROXYLESS_KEY in job
        phase = self.search if searching else self.warmup
        phase.complete(job, ok=result is not None)
        if result is None:
            return  # a failed trial teaches alpha nothing; its pushed weight steps stay applied
        value = self._value(result)
        self.curve.append(
            {
                "phase": SEARCH if searching else WARMUP,
                STEPS_DONE: phase.done,
                self._metric: math.nan if value is None else float(value),
            }
        )
        if not searching:
            return
        if ARCH_PARAMETERS not in result:
            raise ValueError(
                f"the search trial reported no {ARCH_PARAMETERS!r} (architecture parameters): train on a "
                f"supernet store with supernet_trainable; it reported {sorted(result)}"
            )
        sent = ProxylessJob.from_dict(job[PROXYLESS_KEY]).alpha
        learned = result[ARCH_PARAMETERS]
        if not all(math.isfinite(float(a)) for slot in learned for a in slot):
            return
        # What this trial changed, added to alpha as it is now (other trials may have changed it meanwhile).
        self.alpha = [
            [a + float(new) - float(old) for a, new, old in zip(now, l, s)]
            for now, l, s in zip(self.alpha, learned, sent)
        ]

    # ------------------------------------------------------------------------------------------
    # The derived architecture
    # ------------------------------------------------------------------------------------------
    def probabilities(self) -> list[dict[str, float]]:
        """Per slot, ``p = softmax(alpha)`` by operation name."""
        return [
            dict(zip((slot.ops[o] for o in slot.allowed), _softmax(a).tolist()))
            for slot, a in zip(self.space.slots, self.alpha)
        ]

    def derive(self) -> Architecture | None:
        """The most probable architecture, ``argmax alpha`` per slot; with a cost window, the most probable one
        found inside it: from the best of ``derive_samples`` architectures drawn from p and the argmax moved
        into the window (each step the most probable single-slot change that brings its cost closer), improved
        one slot at a time while a change stays inside and raises the probability. None if none gets inside."""
        if not self.alpha:
            return None
        key = (tuple(tuple(a) for a in self.alpha), self.min_madds, self.max_madds)
        if self._derived is None or self._derived[0] != key:
            self._derived = (key, self._most_probable())
        return self._derived[1]

    def _most_probable(self) -> Architecture | None:
        logp = [np.log(_softmax(a)) for a in self.alpha]
        argmax = [int(np.argmax(a)) for a in self.alpha]
        if self.constraint is None or self.constraint(self._arch(argmax)):
            return self._arch(argmax)
        rng = np.random.default_rng(self.seed)  # the same alpha, the same answer
        draws = [
            [int(rng.choice(len(lp), p=np.exp(lp) / np.exp(lp).sum())) for lp in logp]
            for _ in range(self.derive_samples)
        ]
        starts = [picks for picks in draws if self.constraint(self._arch(picks))]
        moved = self._into_window(argmax, logp)
        starts += [moved] if moved is not None else []
        if not starts:
            return None
        picks = max(starts, key=lambda p: _log_probability(logp, p))
        improved = True
        while improved:
            improved = False
            for s, lp in enumerate(logp):
                for k in np.argsort(-lp):
                    if lp[k] <= lp[picks[s]]:
                        break
                    trial = picks[:s] + [int(k)] + picks[s + 1 :]
                    if self.constraint(self._arch(trial)):
                        picks, improved = trial, True
                        break
        return self._arch(picks)

    def _into_window(self, picks: list[int], logp: list[np.ndarray]) -> list[int] | None:
        """``picks`` moved into the cost window one slot at a time, by the most probable change that brings the
        cost closer to it; None if no change does before it is inside."""
        distance = self._window_distance(picks)
        while distance > 0:
            moves = [(float(lp[k]), s, int(k)) for s, lp in enumerate(logp) for k in range(len(lp)) if k != picks[s]]
            closer = [
                (score, s, k)
                for score, s, k in moves
                if self._window_distance(picks[:s] + [k] + picks[s + 1 :]) < distance
            ]
            if not closer:
                return None
            _, s, k = max(closer)
            picks = picks[:s] + [k] + picks[s + 1 :]
            distance = self._window_distance(picks)
        return picks

    def _window_distance(self, picks: list[int]) -> float:
        madds = self.space.cost(self._arch(picks)).madds
        low = -math.inf if self.min_madds is None else self.min_madds
        high = math.inf if self.max_madds is None else self.max_madds
        return max(0.0, low - madds, madds - high)

    def _arch(self, picks: Sequence[int]) -> Architecture:
        return tuple(allowed[k] for allowed, k in zip(self.space.choices, picks))

    def best_architecture(self) -> str | None:
        arch = self.derive()
        return None if arch is None else self.space.to_string(arch)

    def why_no_result(self) -> str:
        if self.alpha and self.constraint is not None:
            return (
                f"no architecture inside the cost window [{self.min_madds}, {self.max_madds}] MAdds among "
                f"{self.derive_samples} drawn from the learned probabilities: widen the window or raise "
                "derive_samples"
            )
        return super().why_no_result()

    def current_progress(self) -> SearchProgress:
        done = self.warmup.done + self.search.done
        total = self.warmup.total_steps + self.search.total_steps
        note = ""
        if self.alpha:
            confidence = float(np.mean([_softmax(a).max() for a in self.alpha]))
            argmax = self.space.to_string(self._arch([int(np.argmax(a)) for a in self.alpha]))
            note = f"mean largest p per slot {confidence:.3f}, most probable: {argmax}"
        return self.make_progress((done, total), (0, 0), note=note)


def _log_probability(logp: list[np.ndarray], picks: Sequence[int]) -> float:
    return float(sum(lp[k] for lp, k in zip(logp, picks)))


def _softmax(alpha: Sequence[float]) -> np.ndarray:
    a = np.asarray(alpha, dtype=float)
    e = np.exp(a - a.max())
    return e / e.sum()
