"""Distance and neighbourhoods of architectures (ASE-NAS section III): ``Omega_a = {b : D(a, b) <= M}``.

Defined on one-choice-per-slot spaces (a slot's value is one operation); ASE-NAS's subspaces and
AutoSpace's reference-constrained initial cells are drawn from them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np

from tune_spacenas.spaces.base import Architecture, SearchSpace


def distance(a: Sequence[int], b: Sequence[int]) -> int:
    """ASE-NAS Eq. (4): ``D(a, b) = sum_i 1{a_i != b_i}``, the number of differing slots."""
    if len(a) != len(b):
        raise ValueError(f"architectures of different lengths: {len(a)} vs {len(b)}")
    return sum(x != y for x, y in zip(a, b))


def _check(space: SearchSpace) -> None:
    if not space.one_choice_per_slot:
        raise ValueError(
            f"neighbourhoods (ASE-NAS) are defined on one-choice-per-slot spaces; space {space.name!r} "
            "selects a set of operations per layer"
        )


def _ball_counts(space: SearchSpace, center: Architecture) -> np.ndarray:
    """counts[i, m]: ways to differ from ``center`` in exactly m of the slots i..L-1 (within the space)."""
    alts = [len(s.allowed) - (c in s.allowed) for s, c in zip(space.slots, center)]
    L = len(alts)
    counts = np.zeros((L + 1, L + 1), dtype=object)
    counts[L, 0] = 1
    for i in range(L - 1, -1, -1):
        for m in range(L + 1):
            counts[i, m] = counts[i + 1, m] + (alts[i] * counts[i + 1, m - 1] if m else 0)
    return counts


def neighbourhood_size(space: SearchSpace, center: Sequence[int], max_distance: int) -> int:
    """Exact ``|{b in space : D(center, b) <= M}|`` (encodings, before canonical de-duplication)."""
    _check(space)
    center = tuple(center)
    counts = _ball_counts(space, center)
    return int(sum(counts[0, m] for m in range(min(max_distance, len(center)) + 1)))


def paper_subspace_size(space: SearchSpace, max_distance: int) -> int:
    """ASE-NAS section III-C's ``|Omega_a| = C(L, M) C^M`` for reporting (C = mean candidates per slot).

    The paper's count picks M layers and an operation for each, so it counts some architectures more
    than once; ``neighbourhood_size`` is the exact count. Both agree at M = L (the whole space).
    """
    L = len(space.slots)
    C = round(space.size ** (1 / L))  # the geometric mean where slots differ in size
    return math.comb(L, max_distance) * C**max_distance


def neighbourhood(space: SearchSpace, center: Sequence[int], max_distance: int) -> Iterator[Architecture]:
    """Enumerate ``{b : D(center, b) <= M}`` within the space, nearest first (the centre itself first)."""
    _check(space)
    center = tuple(center)
    L = len(center)
    for m in range(min(max_distance, L) + 1):
        for positions in itertools.combinations(range(L), m):
            options = [[o for o in space.slots[p].allowed if o != center[p]] for p in positions]
            for ops in itertools.product(*options):
                b = list(center)
                for p, o in zip(positions, ops):
                    b[p] = o
                yield tuple(b)


def sample_neighbour(
    space: SearchSpace, center: Sequence[int], max_distance: int, rng: np.random.Generator
) -> Architecture:
    """Uniform draw from ``{b : D(center, b) <= M}`` (exact, by counting, without enumerating)."""
    _check(space)
    center = tuple(center)
    L = len(center)
    counts = _ball_counts(space, center)
    weights = np.array([float(counts[0, m]) for m in range(min(max_distance, L) + 1)])
    m = int(rng.choice(len(weights), p=weights / weights.sum()))
    b = list(center)
    for i, slot in enumerate(space.slots):
        if m == 0:
            break
        alts = [o for o in slot.allowed if o != center[i]]
        change = len(alts) * float(counts[i + 1, m - 1])
        if rng.random() * (change + float(counts[i + 1, m])) < change:
            b[i] = int(alts[rng.integers(len(alts))])
            m -= 1
    return tuple(b)
