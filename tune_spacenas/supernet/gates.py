"""ProxylessNAS's binary gates (Cai et al., 2019, section 3.2), shared by AutoSpace and the ProxylessNAS search.

A choice among K candidates has architecture parameters alpha (AutoSpace calls them fitness scores) and path
weights ``p = softmax(alpha)``. Per step ``gate_paths`` candidates are drawn from multinomial(p) and one of
them is the active gate: the mixed output ``sum_k g_k o_k`` with g one-hot equals the active path's output,
only the active path carries gradients into its weights, and the other candidates' outputs are computed
without gradients, only for their gates' gradients ``dL/dg_k = <dL/dm, o_k>``. From those,
``dL/dalpha_i = sum_k dL/dg_k p_k (delta_ik - p_i)`` over the sampled candidates, with p renormalised over
them (ProxylessNAS Eq. 4; AutoSpace Eq. 4 adds its compensation factor).

* ``BinaryGates``: one choice's gates and parameters;
* ``SlotGates``: ProxylessNAS on every slot of a supernet: installed as ``Supernet.gates``, it draws the weight
  steps' paths from p (``sample_path``) and, in an architecture step (``sample``), turns each searchable
  layer into the gated mixture of its slots' sampled candidates (``mix_layer``, called by the skeletons);
  ``step`` applies one Adam step to alpha from the gates' gradients plus Eq. (6)'s expected-MAdds term.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

Architecture = tuple[int, ...]


def fitness_probabilities(alpha: torch.Tensor) -> torch.Tensor:
    """The path weights ``p = softmax(alpha)`` (AutoSpace's Eq. 3 ``p_k``). Eq. (3) as printed divides by
    ``sum_j alpha_j``, but its gradient, Eq. (4)'s ``p_k (delta_ik - p_i)``, is the derivative of a softmax,
    and a plain ratio breaks for negative or zero-sum scores; ProxylessNAS uses the softmax too."""
    return torch.softmax(alpha, dim=0)


def fitness_gradient(
    gate_grads: torch.Tensor, alpha: torch.Tensor, compensation: torch.Tensor | None = None
) -> torch.Tensor:
    """``dL/dalpha_i = sum_k dL/dg_k p_k (delta_ik - p_i)`` over the candidates given (``p`` = softmax of their
    alphas), times AutoSpace Eq. (4)'s compensation factors ``n(d_i) / n'(d_i)`` where given."""
    p = fitness_probabilities(alpha)
    jacobian = torch.diag(p) - torch.outer(p, p)  # [k, i] = p_k (delta_ik - p_i), symmetric
    grad = jacobian @ gate_grads
    return grad if compensation is None else grad * compensation


def madds_gradient(alpha: torch.Tensor, madds: torch.Tensor) -> torch.Tensor:
    """Gradient in alpha of the expected MAdds ``sum_k p_k MAdds(o_k)`` (the differentiable form of Eq. 6's
    ``lambda MAdds(N)``, as ProxylessNAS makes latency differentiable): ``p_i (MAdds_i - E[MAdds])``."""
    p = fitness_probabilities(alpha)
    return p * (madds - (p * madds).sum())


class BinaryGates:
    """The binary gates of one choice among K candidates, with parameters ``alpha`` (float64, on the CPU).

    ``sample(rng)`` draws ``gate_paths`` distinct candidates from multinomial(p) and one of them (by p
    renormalised over them) as the active gate; ``paths`` lists them, the active first, and ``gates`` is the
    leaf tensor of their gate values (one-hot), shared by every place the choice is mixed in one forward
    pass. ``mix(active, others)`` is ``sum_k g_k o_k``; ``gradient()`` is dL/dalpha after a backward pass.
    """

    def __init__(self, alpha: Sequence[float], gate_paths: int = 2):
        if not len(alpha):
            raise ValueError("binary gates need at least one candidate")
        if gate_paths < 1:
            raise ValueError(f"gate_paths must be at least 1, got {gate_paths}")
        self.alpha = torch.tensor([float(a) for a in alpha], dtype=torch.float64)
        self.gate_paths = min(int(gate_paths), len(alpha))
        self.paths: list[int] | None = None
        self.gates: torch.Tensor | None = None
        self.steps = np.zeros(len(alpha), dtype=np.int64)  # steps each candidate was the active gate

    def __len__(self) -> int:
        return len(self.alpha)

    def probabilities(self) -> torch.Tensor:
        return fitness_probabilities(self.alpha.detach())

    def sample(self, rng: np.random.Generator) -> int:
        """Draw the step's candidates (active first) and their gates; returns the active one."""
        p = self.probabilities().numpy()
        paths = rng.choice(len(p), size=self.gate_paths, replace=False, p=p / p.sum())
        sub = p[paths] / p[paths].sum()
        active = int(rng.choice(len(paths), p=sub))
        self.paths = [int(paths[active])] + [int(i) for j, i in enumerate(paths) if j != active]
        self.steps[self.paths[0]] += 1
        self.gates = None
        if len(self.paths) > 1:
            self.gates = torch.zeros(len(self.paths))
            self.gates[0] = 1.0
            self.gates.requires_grad_(True)
        return self.paths[0]

    def mix(self, active: torch.Tensor, others: Sequence[torch.Tensor]) -> torch.Tensor:
        """``g_0 o_active + sum_k g_k o_k`` over the sampled candidates (``others`` in ``paths[1:]`` order)."""
        if self.gates is None:
            return active
        gates = self.gates.to(active.device, active.dtype)
        total = gates[0] * active
        for g, other in enumerate(others, start=1):
            total = total + gates[g] * other
        return total

    def gradient(self, compensation: torch.Tensor | None = None) -> torch.Tensor:
        """dL/dalpha from the gates' gradients over the sampled candidates (p renormalised over them, as
        ProxylessNAS does; ``compensation``: AutoSpace's per-candidate factors), zero for the others."""
        grad = torch.zeros_like(self.alpha, dtype=torch.float64)
        if self.gates is None or self.gates.grad is None:
            return grad
        idx = torch.tensor(self.paths)
        grad[idx] = fitness_gradient(
            self.gates.grad.to("cpu", torch.float64),
            self.alpha.detach()[idx],
            None if compensation is None else compensation[idx],
        )
        return grad

    @torch.no_grad()
    def rescale(self, before: torch.Tensor) -> None:
        """ProxylessNAS's correction after an update of the sampled candidates' alphas: shift them by one offset
        so that their total ``sum exp(alpha)`` is what it was, leaving every other candidate's p unchanged."""
        if self.paths is None or len(self.paths) < 2:
            return
        idx = torch.tensor(self.paths)
        offset = torch.logsumexp(self.alpha[idx], 0) - torch.logsumexp(before[idx], 0)
        self.alpha[idx] -= offset

    def clear(self) -> None:
        self.paths, self.gates = None, None


class SlotGates:
    """ProxylessNAS over the slots of a supernet: one ``BinaryGates`` per slot over its allowed operations.

    Args:
        choices: per slot, the allowed operation indices (``SearchSpace.choices``); candidate k of slot s is
            operation ``choices[s][k]``.
        alpha: per slot, one architecture parameter per allowed operation.
        gate_paths: candidates per slot in an architecture step (ProxylessNAS's "two" mode: 2).
    """

    def __init__(self, choices: Sequence[Sequence[int]], alpha: Sequence[Sequence[float]], gate_paths: int = 2):
        if [len(c) for c in choices] != [len(a) for a in alpha]:
            raise ValueError(
                f"architecture parameters {[len(a) for a in alpha]} per slot do not match the space's "
                f"{[len(c) for c in choices]} allowed operations per slot"
            )
        self.choices = [tuple(int(o) for o in c) for c in choices]
        self.slots = [BinaryGates(a, gate_paths) for a in alpha]
        for gates in self.slots:
            gates.alpha.requires_grad_(True)  # a leaf the architecture optimizer (Adam) steps
        self.mixing = False  # an architecture step's forward pass: layers mix their slots' sampled candidates

    def parameters(self) -> list[torch.Tensor]:
        return [g.alpha for g in self.slots]

    def alpha(self) -> list[list[float]]:
        return [g.alpha.detach().tolist() for g in self.slots]

    def sample_path(self, rng: np.random.Generator) -> Architecture:
        """A weight step's path: one operation per slot from multinomial(p) (ProxylessNAS's single path)."""
        path = []
        for choices, gates in zip(self.choices, self.slots):
            p = gates.probabilities().numpy()
            path.append(choices[int(rng.choice(len(p), p=p / p.sum()))])
        return tuple(path)

    def sample(self, rng: np.random.Generator) -> Architecture:
        """An architecture step: every slot's gates drawn; returns the active path. Until ``clear``, layers
        run through ``mix_layer`` mix their slots' candidates."""
        self.mixing = True
        return tuple(choices[gates.sample(rng)] for choices, gates in zip(self.choices, self.slots))

    def mix_layer(
        self,
        slots: Sequence[int],
        x: torch.Tensor,
        arch: Sequence[int],
        run: Callable[[torch.Tensor, Sequence[int]], torch.Tensor],
    ) -> torch.Tensor:
        """One searchable layer deciding ``slots``, run on ``arch`` by ``run(x, arch)``: the active output, plus
        for each gated slot its gates' mixture with the layer's output under the slot's other sampled
        candidates (computed without gradients). Every slot's gate s has ``dL/dg_k = <dL/dy, y(arch with
        s = k)>``: the mixed operation of ProxylessNAS when a layer decides one slot, its per-slot form when a
        layer decides several (AutoSpace's open-space cells)."""
        out = run(x, arch)
        if not self.mixing:
            return out
        mixed = out
        for s in slots:
            gates = self.slots[s]
            if gates.gates is None:
                continue
            with torch.no_grad():
                others = [run(x, _with(arch, s, self.choices[s][k])) for k in gates.paths[1:]]
            mixed = mixed + (gates.mix(out, others) - out)
        return mixed

    def gated(self) -> list[torch.Tensor]:
        """The gate tensors of the current architecture step (slots with two or more sampled candidates)."""
        return [g.gates for g in self.slots if g.gates is not None]

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        madds_penalty: float = 0.0,
        madds: Sequence[Sequence[float]] | None = None,
    ) -> None:
        """One update of alpha after the architecture step's backward pass (the gates hold gradients):
        the binary gates' gradient plus ``madds_penalty`` times the expected-MAdds gradient over all of a
        slot's candidates (``madds[s][k]``: the network's MAdds with slot s on candidate k, Eq. 6), one
        ``optimizer`` step, then ProxylessNAS's rescaling of the sampled alphas."""
        before = [g.alpha.detach().clone() for g in self.slots]
        for s, gates in enumerate(self.slots):
            grad = gates.gradient()
            if madds_penalty and madds is not None:
                grad = grad + madds_penalty * madds_gradient(
                    gates.alpha.detach(), torch.tensor(madds[s], dtype=torch.float64)
                )
            gates.alpha.grad = grad
        optimizer.step()
        for gates, old in zip(self.slots, before):
            gates.alpha.grad = None
            gates.rescale(old)
        self.clear()

    def clear(self) -> None:
        self.mixing = False
        for gates in self.slots:
            gates.clear()


def _with(arch: Sequence[int], slot: int, op: int) -> Architecture:
    return tuple(arch[:slot]) + (int(op),) + tuple(arch[slot + 1 :])
