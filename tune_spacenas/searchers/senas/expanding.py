"""SE-NAS supernet parameters expanding (section 3.4, Fig. 3; Algorithm 1 lines 5-8).

After shrinking, adjacent layer-wise search spaces are merged from shallow to deep while the merged
child space holds at most ``T`` partial models; inside each merged child space every partial model keeps
its own copy of the weights. The copies themselves live in the weight store and are swapped in by SE-NAS's
worker extension (``jobs.SENASJob.expanded``: the merged slot groups; ``expanded_from``: earlier groupings,
so a partial model's new copy starts from the copy its path trained before rather than the shared tensor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tune_spacenas.spaces.base import SearchSpace


def merge_layer_spaces(
    space: SearchSpace | Sequence[int], threshold: int = 50, original: SearchSpace | Sequence[int] | None = None
) -> list[list[int]]:
    """Algorithm 1 line 5: groups of adjacent slots, formed greedily from the shallowest slot, each
    extended while the product of its slots' sizes stays <= ``threshold`` (T: 6 in Fig. 3's toy, 50
    for the whole space in 3.4). Only groups of two or more slots are merged child spaces (a single
    layer's candidates already have their own weights); groups never overlap.

    With ``original`` (the space before any shrinking, or its slot sizes) only layers that shrank take
    part, as section 3.4 describes: "we merge some layer-wise search spaces of small size" once "the
    number of candidate operators for some layers begins to be less than 5", and "supernet parameters
    are gradually expanded along with the shrinking process"; a group never spans an unshrunk layer.
    Once the whole space holds at most T models every slot joins one group, the end point 3.4 names
    ("almost perfect performance estimator without sharing weight"). Without ``original`` T alone
    decides, for every layer (on NAS-Bench-201 two unshrunk layers, 5 x 5 = 25 <= 50, would merge).

    ``space`` is a (shrunk) search space or the list of its slot sizes.
    """
    if threshold < 1:
        raise ValueError(f"the merging threshold T must be >= 1, got {threshold}")
    sizes = _sizes(space)
    if original is None:
        eligible = [True] * len(sizes)
    else:
        before = _sizes(original)
        if len(before) != len(sizes) or any(n > b for n, b in zip(sizes, before)):
            raise ValueError(f"original={before} is not the unshrunk form of a space with slot sizes {sizes}")
        if math.prod(sizes) <= threshold and len(sizes) > 1:
            return [list(range(len(sizes)))]
        eligible = [n < b for n, b in zip(sizes, before)]
    groups, start = [], 0
    while start < len(sizes):
        end = start + 1
        while end < len(sizes) and eligible[start] and eligible[end] and math.prod(sizes[start : end + 1]) <= threshold:
            end += 1
        if end - start > 1:
            groups.append(list(range(start, end)))
        start = end
    return groups


def _sizes(space: SearchSpace | Sequence[int]) -> list[int]:
    return [len(s.allowed) for s in space.slots] if isinstance(space, SearchSpace) else [int(n) for n in space]
