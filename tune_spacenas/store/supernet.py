"""``SupernetStore``: the weight store of one supernet, the pairing of a generic ``WeightStore`` with a ``SupernetSpec``.

The store itself (``WeightTable``, the actor and its client) holds named tensors and plain ``meta``; this
facade creates one from a spec (its freshly initialised weights, the spec kept in the meta:
``SupernetSpec.store_meta``), reads the spec back (every trainable builds the same network from it) and
names the store in Tune's ``param_space``, so a trial config finds it by name::

    store = SupernetStore.create("exp1", SupernetSpec(NASBench201Space(cells_per_stage=1), DataSpec(resolution=16)))
    tune.run(supernet_trainable, config=store.param_space(), search_alg=SPOSSearcher(), ...)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from tune_spacenas.jobs import STORE_KEY
from tune_spacenas.store.actor import WeightStore

if TYPE_CHECKING:  # torch is imported where a spec is used, not in the store actor that unpickles this module
    from tune_spacenas.supernet.spec import SupernetSpec


class SupernetStore(WeightStore):
    """A ``WeightStore`` holding one ``SupernetSpec``'s supernet; every ``WeightStore`` call works on it."""

    @classmethod
    def create(cls, name: str, spec: SupernetSpec, **options: Any) -> SupernetStore:
        """Start the store ``name`` with ``spec``'s freshly initialised supernet (``WeightStore.create``'s
        options: ``checkpoint_path``, ``checkpoint_every``, ``detached``, ``exist_ok``, ``node_id``, ...)."""
        from tune_spacenas.supernet.spec import SupernetSpec

        if not isinstance(spec, SupernetSpec):
            raise ValueError(
                f"SupernetStore.create needs a SupernetSpec, got {type(spec).__name__}; for raw tensors "
                "use WeightStore.create(name, arrays)"
            )
        return super().create(name, spec.initial_weights, meta=spec.store_meta(), rebuild=initial_weights, **options)

    @property
    def spec(self) -> SupernetSpec:
        from tune_spacenas.supernet.spec import SupernetSpec

        return SupernetSpec.from_store_meta(self.info()["meta"], f"weight store {self.name!r}")

    def param_space(self) -> dict[str, Any]:
        """Tune config naming this store, plus its space (``space.param_space()``)."""
        return {**self.spec.space.param_space(), STORE_KEY: self.name}


def initial_weights(meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The seeded initial weights (the same on every call) of the supernet a store's ``meta`` holds: what a
    store restarting without a checkpoint holds again."""
    from tune_spacenas.supernet.spec import SupernetSpec

    return SupernetSpec.from_store_meta(meta, "the restarted store").initial_weights()
