"""SE-NAS search space shrinking (section 3.3, "Removing unpromising operators"; Algorithm 1 line 4)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from tune_spacenas.searchers.senas.scores import Operator
from tune_spacenas.spaces.base import SearchSpace


def shrink_operators(
    space: SearchSpace,
    scores: Mapping[Operator, float],
    k: int = 10,
    per_slot: bool = False,
    feasible: Callable[[SearchSpace], bool] | None = None,
) -> tuple[SearchSpace, list[Operator]]:
    """Remove the ``k`` operators with the lowest scores (Eq. 7) from ``space``; returns the shrunk space
    and the dropped operators, lowest score first.

    At least one operator stays on every slot, so the topology never changes (3.3); child models that
    contain a dropped operator leave the space with it. Operators without a score (NaN: no sampled child
    model contained them) are never dropped. ``per_slot=True`` removes one operator per slot instead,
    the lowest-scoring of each slot that has more than one (SE-NAS on FairNAS, whose strict fairness
    needs every layer to keep the same number of candidates); ``k`` is then ignored. ``feasible`` is a test
    the shrunk space must keep passing (SE-NAS under a FLOPs limit: some architecture within it); an
    operator whose removal would fail it stays, and the next-lowest goes instead (the paper is silent: it
    only discards infeasible child models when sampling).
    """
    if k < 0:
        raise ValueError(f"k (operators dropped per shrinking step) must be >= 0, got {k}")
    unknown = [o for o in scores if o[0] >= len(space.slots) or o[1] not in space.slots[o[0]].allowed]
    if unknown:
        raise ValueError(f"scores name operators the space does not allow: {unknown[:5]}")
    left = {i: len(s.allowed) for i, s in enumerate(space.slots)}
    candidates = sorted((o for o in scores if not math.isnan(scores[o])), key=lambda o: (scores[o], o))
    dropped: list[Operator] = []
    for op in candidates:
        if not per_slot and len(dropped) >= k:
            break
        if left[op[0]] > 1 and not (per_slot and any(d[0] == op[0] for d in dropped)):
            if feasible is not None and not feasible(_without(space, [*dropped, op])):
                continue
            dropped.append(op)
            left[op[0]] -= 1
    return _without(space, dropped), dropped


def _without(space: SearchSpace, dropped: list[Operator]) -> SearchSpace:
    gone = set(dropped)
    return space.restrict([[o for o in s.allowed if (i, o) not in gone] for i, s in enumerate(space.slots)])
