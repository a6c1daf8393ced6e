"""A prior over architectures: a score known before any query is spent (e.g. a zero-cost proxy).

Searchers take it as plain data or a plain function of the architecture's canonical string, so they
never build networks themselves: ``tune_spacenas.proxies.ProxyScorer.prior`` computes one on demand,
``tune_spacenas.tables.proxies.nasbench201_prior`` reads precomputed NAS-Bench-201 scores. Higher is
better. ``select_by_prior`` is the one rule every method (and every warm-started baseline) uses to turn
it into architectures, so a comparison gives all of them the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import numpy as np

from tune_spacenas.spaces.base import Architecture, SearchSpace

Prior = Mapping[str, float] | Callable[[str], float]


def check_prior(prior: object) -> None:
    if prior is not None and not isinstance(prior, Mapping) and not callable(prior):
        raise ValueError(
            f"prior must be a mapping {{architecture string: score}} or a callable of the "
            f"architecture string, got {type(prior).__name__}"
        )


def prior_score(prior: Prior, space: SearchSpace, arch: Architecture) -> float:
    """The prior's score of ``arch`` (-inf where a mapping does not score it)."""
    text = space.to_string(arch)
    if isinstance(prior, Mapping):
        return float(prior.get(text, -np.inf))
    return float(prior(text))


def select_by_prior(
    prior: Prior,
    space: SearchSpace,
    count: int,
    rng: np.random.Generator,
    pool: int | None = None,
    exclude: Collection[Architecture] = (),
) -> list[Architecture]:
    """The ``count`` best-scored distinct architectures of a candidate pool, best first.

    The pool is ``pool`` architectures drawn uniformly with ``rng`` (a callable prior is evaluated on
    each), or, with ``pool=None``, every architecture a mapping prior scores. Ties keep pool order.
    """
    excluded = set(exclude)
    if pool is None:
        if not isinstance(prior, Mapping):
            raise ValueError(
                "a callable prior needs a candidate pool size (prior_pool=...): it cannot score the whole space"
            )
        chosen: list[Architecture] = []
        for text, _ in sorted(prior.items(), key=lambda item: -item[1]):  # stable: ties keep the mapping's order
            arch = space.validate(text) if space.contains(text) else None
            if arch is not None and arch not in excluded and arch not in chosen:
                chosen.append(arch)
                if len(chosen) == count:
                    return chosen
        raise ValueError(f"the prior scores only {len(chosen)} new architectures of this space; {count} needed")
    if pool < count:
        raise ValueError(f"a pool of {pool} candidates cannot yield {count} architectures")
    candidates = [a for a in space.sample_many(rng, min(pool, space.size), distinct=True) if a not in excluded]
    if len(candidates) < count:
        raise ValueError(f"only {len(candidates)} new architectures in the pool; {count} needed")
    scores = np.array([prior_score(prior, space, a) for a in candidates])
    return [candidates[i] for i in np.argsort(-scores, kind="stable")[:count]]
