"""SE-NAS candidate-operator evaluation (section 3.3): selection importance, confidence and the score.

An *operator* is one candidate at one slot, ``(slot index, op index)`` with the op index into the slot's
full operation list (the same op at two slots is two operators, as in Fig. 6's 30 NAS-Bench-201 points).
``P(a)``, the supernet accuracy of child model ``a`` with the snapshot-averaged weights of Eq. (4), is
what the searcher measures; these functions turn a table of ``(a, P(a))`` into Eqs. (5)-(7).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from tune_spacenas.spaces.base import Architecture, SearchSpace

Operator = tuple[int, int]


def operators(space: SearchSpace) -> list[Operator]:
    """Every operator the (shrunk) space still allows, slot by slot."""
    return [(i, o) for i, slot in enumerate(space.slots) for o in slot.allowed]


def operator_sample(
    space: SearchSpace,
    samples_per_op: int,
    rng: np.random.Generator,
    constraint: Callable[[Architecture], bool] | None = None,
    max_tries: int = 1000,
) -> list[Architecture]:
    """Child models for Eq. (5): uniform draws from ``space`` in which every operator appears at least
    ``samples_per_op`` times (the paper samples 1000 models per operator on the MobileNet-like space).

    One table serves every operator: each slot's column holds its operators equally often in a random
    order, columns independent, so each row is a uniform child model and, given operator ``o`` at its
    slot, the other slots are uniform too (the condition of Eq. 5). A space no bigger than the table is
    enumerated instead (Eq. 5 exact). With a ``constraint`` (FLOPs/MAdds) a breaking row is redrawn
    uniformly until it fits, as SE-NAS "dumps models that don't satisfy FLOPs constraint"; rows that
    never fit are left out.
    """
    if samples_per_op < 1:
        raise ValueError(f"samples_per_op must be at least 1, got {samples_per_op}")
    rows = samples_per_op * max(len(s.allowed) for s in space.slots)
    if space.size <= rows:
        archs = list(space.enumerate())
    else:
        columns = [rng.permutation(np.resize(np.asarray(s.allowed), rows)) for s in space.slots]
        archs = [space.canonicalize(tuple(int(c[r]) for c in columns)) for r in range(rows)]
    if constraint is None:
        return archs
    out = []
    for arch in archs:
        for _ in range(max_tries):
            if constraint(arch):
                out.append(arch)
                break
            arch = space.sample(rng)
    return out


def selection_importance(samples: Iterable[tuple[Architecture, float]], space: SearchSpace) -> dict[Operator, float]:
    """Eq. (5): ``SI_o = E_{a contains o} P(a)``, the mean supernet accuracy of the sampled child models
    containing ``o``; an operator no sample contains gets NaN (no evidence, never dropped)."""
    totals: dict[Operator, list[float]] = defaultdict(list)
    for arch, value in samples:
        for slot, op in enumerate(arch):
            totals[(slot, op)].append(float(value))
    return {o: float(np.mean(totals[o])) if totals[o] else math.nan for o in operators(space)}


def selection_confidence(si: Mapping[Operator, float]) -> dict[Operator, float]:
    """Eq. (6): ``SC_o = Var(SI_o), o in O_ij``: the variance of SI over the candidates of o's layer,
    the same for every operator of a slot (a large gap between a layer's candidates means its weak
    ones can be discarded with confidence). Population variance over the operators with evidence."""
    by_slot: dict[int, list[float]] = defaultdict(list)
    for (slot, _), value in si.items():
        if np.isfinite(value):
            by_slot[slot].append(value)
    variance = {slot: float(np.var(values)) for slot, values in by_slot.items()}
    return {o: variance.get(o[0], math.nan) for o in si}


def mean_normalize(values: Mapping[Operator, float]) -> dict[Operator, float]:
    """The paper's ``normalize()`` read as division by the mean over operators (``normalization="mean"``).

    Dividing SI and SC each by a positive constant rescales every S_o alike, so with this reading Eq. (7)
    ranks operators exactly as ``SI / SC`` does: SC, a variance (squared accuracy), spans orders of
    magnitude across layers while SI stays near its mean, so whole layers lose their weak operators first.
    (The centred form ``(x - mean) / (max - min)`` is not offered: it makes Eq. (7) a ratio of signed
    numbers whose sign flips rank a strong operator of a steady layer below a weak one.)"""
    finite = [v for v in values.values() if np.isfinite(v)]
    mean = float(np.mean(finite)) if finite else math.nan
    return {o: v / mean if mean else math.nan for o, v in values.items()}


def min_max_normalize(values: Mapping[Operator, float]) -> dict[Operator, float]:
    """``normalize()`` as min-max scaling, ``(x - min) / (max - min)`` over operators
    (``normalization="min-max"``): both factors of Eq. (7) span [0, 1], so importance counts as much as
    confidence. The weakest operator scores 0 unless its layer is the least confident one (SC 0, S +inf:
    no confident choice there); values all alike normalise to 0."""
    finite = [v for v in values.values() if np.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (math.nan, math.nan)
    span = high - low
    return {o: (v - low) / span if span > 0 else 0.0 * v for o, v in values.items()}


NORMALIZATIONS: dict[str, Callable[[Mapping[Operator, float]], dict[Operator, float]]] = {
    "mean": mean_normalize,
    "min-max": min_max_normalize,
}


def normalizer(name: str) -> Callable[[Mapping[Operator, float]], dict[Operator, float]]:
    """Eq. (7)'s ``normalize()`` by name (``NORMALIZATIONS``); an unknown name is a ValueError."""
    if name not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {sorted(NORMALIZATIONS)} (Eq. 7's normalize()), got {name!r}")
    return NORMALIZATIONS[name]


def operator_scores(
    si: Mapping[Operator, float], selection_confidence_term: bool = True, normalization: str = "mean"
) -> dict[Operator, float]:
    """Eq. (7): ``S_o = normalize(SI_o) / normalize(SC_o)``; low importance in a confident (high
    variance) layer scores lowest and is dropped first. ``normalization`` is the paper's "mean
    normalization", read as ``"mean"`` (x / mean: S ranks as SI / SC) or ``"min-max"``
    ((x - min) / (max - min)); see ``NORMALIZATIONS``. ``selection_confidence_term=False`` is Table 6's
    "Shrinking (SI)" ablation, ``S_o = normalize(SI_o)``. A slot whose candidates all score alike (or
    that has one left) has SC = 0 and scores +inf: there is no confident choice to make in it."""
    normalize = normalizer(normalization)
    importance = normalize(si)
    if not selection_confidence_term:
        return importance
    confidence = selection_confidence(si)
    if not any(np.isfinite(v) and v > 0 for v in confidence.values()):
        return importance  # no layer separates its candidates: Eq. (7) degenerates, importance decides
    confidence = normalize(confidence)
    return {o: _ratio(importance[o], confidence[o]) for o in si}


def _ratio(num: float, den: float) -> float:
    if not (np.isfinite(num) and np.isfinite(den)):
        return math.nan
    return num / den if den > 0 else math.inf


def ground_truth_operator_scores(
    space: SearchSpace, accuracy: Callable[[Architecture], float]
) -> dict[Operator, float]:
    """Section 4.2's ground-truth score of an operator: the mean true accuracy of *all* models of
    ``space`` containing it (Fig. 6 ranks operators by it)."""
    return selection_importance(((a, accuracy(a)) for a in space.enumerate()), space)


def ranked(scores: Mapping[Operator, float]) -> list[Operator]:
    """Operators from the highest score to the lowest (NaN last, ties by (slot, op))."""
    return sorted(scores, key=lambda o: (math.isnan(scores[o]), 0.0 if math.isnan(scores[o]) else -scores[o], o))


def operator_label(space: SearchSpace, op: Operator) -> str:
    """``"<slot name>:<op name>"``, e.g. ``"2<-1:nor_conv_3x3"``."""
    slot = space.slots[op[0]]
    return f"{slot.name}:{slot.ops[op[1]]}"


def as_table(space: SearchSpace, values: Mapping[Operator, float]) -> dict[str, float]:
    """Plain-data form (operator label -> value) for results and checkpoints."""
    return {operator_label(space, o): float(v) for o, v in values.items()}


def labels(space: SearchSpace, ops: Sequence[Operator]) -> list[str]:
    return [operator_label(space, o) for o in ops]
