"""``WeightStore``: one named Ray actor per experiment holding the supernet's tensors, and its client.

Trainables find the store by the plain name in their trial config (``config['store']``) in a fixed
namespace; nothing in a config is a handle or an ObjectRef. Tensors travel as numpy arrays through
Ray's object store: the actor ``ray.put``s each tensor version once and hands out refs, so a node
fetches a version at most once and readers on the store's node get it zero-copy.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import ray

from tune_spacenas.store.table import WeightTable

NAMESPACE = "tune_spacenas"


class _StoreActor:
    """The actor's body: a ``WeightTable`` plus one cached object ref per (tensor, version)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], checkpoint_path: str | None,
                 checkpoint_every: int):
        self.table = WeightTable(arrays, meta, checkpoint_path, checkpoint_every)
        self._refs: dict[str, tuple[int, ray.ObjectRef]] = {}

    def info(self) -> dict[str, Any]:
        return self.table.info()

    def pull(self, known: Mapping[str, int] | None, keys: list[str] | None, incarnation: str | None):
        incarnation, arrays = self.table.pull(known, keys, incarnation)
        out = {}
        for key, (version, array) in arrays.items():
            cached = self._refs.get(key)
            if cached is None or cached[0] != version:
                cached = self._refs[key] = (version, ray.put(array))
            out[key] = cached
        return incarnation, out

    def push(self, deltas: Mapping[str, np.ndarray], trial_id: str, step: int) -> bool:
        return self.table.push(deltas, trial_id, step)

    def assign(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.table.assign(arrays)

    def ensure_variants(self, mapping: Mapping[str, str]) -> list[str]:
        return self.table.ensure_variants(mapping)

    def snapshot(self, name: str) -> None:
        self.table.snapshot(name)

    def average(self, names: list[str]) -> ray.ObjectRef:
        return ray.put(self.table.average(names))

    def drop_snapshots(self, names: list[str]) -> None:
        self.table.drop_snapshots(names)

    def checkpoint(self, path: str | None = None) -> str:
        return self.table.checkpoint(path)


class WeightStore:
    """Client of a named weight-store actor; the same calls as ``WeightTable``, returning numpy.

    Create it once per experiment (the driver, or a searcher), then pass ``store.param_space()`` as
    Tune's ``param_space``/``config`` so every trial names it::

        store = WeightStore.create("exp1", SupernetSpec(NASBench201Space(cells_per_stage=1), DataSpec(resolution=16)))
        tune.run(supernet_trainable, config=store.param_space(), search_alg=SPOSSearcher(), ...)
    """

    def __init__(self, name: str, actor: Any, namespace: str = NAMESPACE):
        self.name, self.namespace, self._actor = name, namespace, actor

    # --- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, spec: Any = None, *, arrays: Mapping[str, np.ndarray] | None = None,
               checkpoint_path: str | None = None, checkpoint_every: int = 0, namespace: str = NAMESPACE,
               detached: bool = False, exist_ok: bool = False, **actor_options: Any) -> "WeightStore":
        """Start the store ``name`` holding ``spec``'s freshly initialised supernet (or ``arrays``).

        ``checkpoint_path`` is where it checkpoints and where a restarted store reloads from; the
        actor restarts after a crash (``max_restarts=-1``) with calls retried. ``detached`` keeps it
        alive after the driver exits. ``actor_options`` go to ``.options()`` (resources, scheduling).
        """
        _require_ray()
        if spec is None and arrays is None:
            raise ValueError("give the store a SupernetSpec (spec=) or the tensors themselves (arrays=)")
        try:
            existing = ray.get_actor(name, namespace=namespace)
        except ValueError:
            existing = None
        if existing is not None:
            if not exist_ok:
                raise ValueError(f"a weight store named {name!r} already runs; connect to it with "
                                 f"WeightStore.connect({name!r}) or pass exist_ok=True")
            return cls(name, existing, namespace)
        meta = {"uid": uuid.uuid4().hex}
        if spec is not None:
            meta["spec"] = spec.to_dict()
            arrays = spec.initial_weights() if arrays is None else arrays
        options = {"name": name, "namespace": namespace, "max_restarts": -1, "max_task_retries": -1,
                   "num_cpus": 0, **({"lifetime": "detached"} if detached else {}), **actor_options}
        actor = ray.remote(_StoreActor).options(**options).remote(arrays, meta, checkpoint_path, checkpoint_every)
        store = cls(name, actor, namespace)
        store.info()  # fail here, not in a trial, if the actor cannot start
        return store

    @classmethod
    def connect(cls, name: str, namespace: str = NAMESPACE) -> "WeightStore":
        """The running store ``name``; ValueError saying how to create it otherwise."""
        _require_ray()
        try:
            return cls(name, ray.get_actor(name, namespace=namespace), namespace)
        except ValueError as err:
            raise ValueError(
                f"no weight store named {name!r} in namespace {namespace!r}: create it before tune.run with "
                f"WeightStore.create({name!r}, SupernetSpec(...)) and pass store.param_space() as the config"
            ) from err

    def kill(self) -> None:
        ray.kill(self._actor, no_restart=True)

    def __reduce__(self):  # a pickled client reconnects by name (never ships a handle in a config)
        return (WeightStore.connect, (self.name, self.namespace))

    # --- calls ---------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return ray.get(self._actor.info.remote())

    @property
    def spec(self):
        from tune_spacenas.supernet.spec import SupernetSpec

        meta = self.info()["meta"]
        if "spec" not in meta:
            raise ValueError(f"weight store {self.name!r} was created from raw arrays and holds no SupernetSpec")
        return SupernetSpec.from_dict(meta["spec"])

    def pull(self, known: Mapping[str, int] | None = None, keys: Iterable[str] | None = None,
             incarnation: str | None = None) -> tuple[str, dict[str, tuple[int, np.ndarray]]]:
        incarnation, refs = ray.get(self._actor.pull.remote(known, None if keys is None else list(keys), incarnation))
        values = ray.get([ref for _, ref in refs.values()]) if refs else []
        return incarnation, {k: (v, a) for (k, (v, _)), a in zip(refs.items(), values)}

    def push(self, deltas: Mapping[str, np.ndarray], trial_id: str, step: int) -> bool:
        return ray.get(self._actor.push.remote(dict(deltas), trial_id, step))

    def assign(self, arrays: Mapping[str, np.ndarray]) -> None:
        ray.get(self._actor.assign.remote(dict(arrays)))

    def ensure_variants(self, mapping: Mapping[str, str]) -> list[str]:
        return ray.get(self._actor.ensure_variants.remote(dict(mapping)))

    def snapshot(self, name: str) -> None:
        ray.get(self._actor.snapshot.remote(name))

    def average(self, names: Iterable[str]) -> dict[str, np.ndarray]:
        return ray.get(ray.get(self._actor.average.remote(list(names))))

    def drop_snapshots(self, names: Iterable[str]) -> None:
        ray.get(self._actor.drop_snapshots.remote(list(names)))

    def checkpoint(self, path: str | None = None) -> str:
        return ray.get(self._actor.checkpoint.remote(path))

    # --- Tune ----------------------------------------------------------------------------------
    def param_space(self) -> dict[str, Any]:
        """Tune config naming this store, plus its space (``space.param_space()``)."""
        return {**self.spec.space.param_space(), "store": self.name}


def _require_ray() -> None:
    if not ray.is_initialized():
        raise RuntimeError("Ray is not running: call ray.init() (or ray.init(address=...) for a cluster) first")
