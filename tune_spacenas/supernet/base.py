"""``Supernet``: a weight-sharing network over a search space, run one path at a time (SPOS).

Skeletons register which modules belong to which (slot, operation) choice; from that the base class
answers the questions the weight store and the methods ask: which parameters does a path use, which
belong to a set of slots, which are shared by every path (stem, reductions, head).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tune_spacenas.spaces.base import Architecture, SearchSpace


class Supernet(nn.Module):
    """Base of every skeleton: ``forward(x, arch)`` runs the single path ``arch`` of ``space``."""

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
        branches); a skeleton overrides it where its state decides (AutoSpace's gates)."""
        return subspace.sample(rng)

    def architecture_parameter_names(self) -> list[str]:
        """Parameters that are *not* network weights (NSE's fitness indicators): the worker's SGD leaves
        them to the method's extension. None in a plain single-path supernet."""
        return []

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
