"""``Supernet``: a weight-sharing network over a search space, run one path at a time (SPOS).

Skeletons register which modules belong to which (slot, operation) choice; from that the base class
answers the questions the weight store and the methods ask: which parameters does a path use, which
belong to a set of slots, which are shared by every path (stem, reductions, head).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from tune_spacenas.spaces.base import Architecture, SearchSpace

if TYPE_CHECKING:
    from tune_spacenas.supernet.gates import SlotGates


class Supernet(nn.Module):
    """Base of every skeleton: ``forward(x, arch)`` runs the single path ``arch`` of ``space``.

    A skeleton of a one-choice-per-slot space runs each searchable layer through ``gated_layer`` (naming the
    slots the layer decides), so that ProxylessNAS's binary gates (``gates``, a ``supernet.gates.SlotGates``
    a method's extension installs) can mix the layer's candidates in an architecture step and draw the
    weight steps' paths from their probabilities.
    """

    gates: SlotGates | None = None

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space.full_space()
        self._choice_modules: dict[tuple[int, int], list[nn.Module]] = defaultdict(list)
        self._choice_params: dict[tuple[int, int], list[str]] | None = None

    def register_choice(self, slot: int, op: int, module: nn.Module) -> nn.Module:
        """Declare that ``module`` computes operation ``op`` of slot ``slot`` (one slot may own many)."""
        self._choice_modules[(slot, op)].append(module)
        self._choice_params = None
        return module

    def _index(self) -> dict[tuple[int, int], list[str]]:
        if self._choice_params is None:
            name_of = {id(p): n for n, p in self.named_parameters()}
            self._choice_params = {
                key: [name_of[id(p)] for m in modules for p in m.parameters()]
                for key, modules in self._choice_modules.items()
            }
        return self._choice_params

    def choice_parameter_names(self, slot: int, op: int) -> list[str]:
        return list(self._index().get((slot, op), []))

    def shared_parameter_names(self) -> list[str]:
        owned = {n for names in self._index().values() for n in names}
        return [n for n, _ in self.named_parameters() if n not in owned]

    def path_parameter_names(self, arch: Sequence[int]) -> list[str]:
        """Every parameter the path ``arch`` uses: the shared ones and its chosen operations' (every
        selected branch of a multi-branch layer)."""
        names = self.shared_parameter_names()
        for slot, value in enumerate(arch):
            for op in self.space.branches(slot, value):
                names += self.choice_parameter_names(slot, op)
        return names

    def sample_path(self, subspace: SearchSpace, rng: np.random.Generator) -> Architecture:
        """SPOS: one path uniformly from the (shrunk) subspace (a multi-branch space draws NSE's Bernoulli
        branches); with binary gates installed, one path from their probabilities (ProxylessNAS); a skeleton
        overrides it where its own state decides (AutoSpace's generations)."""
        return subspace.sample(rng) if self.gates is None else self.gates.sample_path(rng)

    def gated_layer(
        self,
        slots: Sequence[int],
        x: torch.Tensor,
        arch: Sequence[int],
        run: Callable[[torch.Tensor, Sequence[int]], torch.Tensor],
    ) -> torch.Tensor:
        """``run(x, arch)``: one searchable layer deciding ``slots``; during an architecture step of installed
        binary gates, the gated mixture of the slots' sampled candidates (``SlotGates.mix_layer``)."""
        if self.gates is None:
            return run(x, arch)
        return self.gates.mix_layer(slots, x, arch, run)

    def architecture_parameter_names(self) -> list[str]:
        """Parameters that are *not* network weights (NSE's fitness indicators): the worker's SGD leaves
        them to the method's extension. None in a plain single-path supernet."""
        return []

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
