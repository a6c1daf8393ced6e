"""``WeightStore``: one named Ray actor per experiment holding the supernet's tensors, and its client.

Trainables find the store by the plain name in their trial config (``config['store']``) in a fixed
namespace; nothing in a config is a handle or an ObjectRef. Tensors travel as numpy arrays through
Ray's object store: the actor ``ray.put``s each tensor version once (the tensors a pull needs anew go
into one object: ``_ObjectGroups``) and hands out refs, so a node fetches a version at most once (Ray
caches fetched objects per node) and readers on the store's node get it zero-copy. A push carries only
the tensors that changed.

Faults. The actor restarts after a crash (``max_restarts=-1``, calls retried) and reloads its last
checkpoint; its objects die with the old process, so the client re-fetches (``OwnerDiedError``), and a
store replaced by a new one of the same name is found again by name. Every call is safe to repeat:
a push is de-duplicated by (trial, step), the other calls are idempotent. What a restart loses is the
changes after the last checkpoint (``WeightTable``: at most ``checkpoint_every - 1``); it is logged.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import ray
from ray.exceptions import ObjectLostError, RayActorError

from tune_spacenas import storage
from tune_spacenas.jobs import NODE_ID
from tune_spacenas.store.table import LINEAGE, WeightTable, check_same_contents, read_checkpoint_meta

NAMESPACE = "tune_spacenas"
log = logging.getLogger("tune_spacenas.store")
# The store restarted (its refs died with the old process: OwnerDiedError is an ObjectLostError) or died.
_RETRYABLE = (ObjectLostError, RayActorError)
# Handles of the stores this process created: Ray collects a named actor once no handle to it is left, and a
# store must live as long as its driver even when the caller kept only ``store.param_space()``.
_CREATED: dict[tuple[str, str], Any] = {}


class _ObjectGroups:
    """Tensor versions in Ray's object store: every tensor that needs a new ref in one pull goes into ONE
    object (a dict of arrays; readers get zero-copy views), so a pull costs one ``ray.put`` and one transfer
    per node instead of one per tensor (68 tensors of a MobileNet path: ~60 ms of puts against ~10). Each
    tensor keeps the ref of the object holding its current version, so a node still fetches a version once.

    An object lives while one of its tensors is current. When one is less than half current, its current
    tensors are put again with the next object and it is freed: the store's objects never hold more than
    twice the bytes of the tensors handed out.
    """

    def __init__(self) -> None:
        self.refs: dict[str, tuple[int, ray.ObjectRef]] = {}  # tensor -> (version, ref of its object)
        self.live: dict[ray.ObjectRef, dict[str, int]] = {}  # object -> {current tensor: bytes}
        self.size: dict[ray.ObjectRef, int] = {}

    def refs_for(self, table: WeightTable, wanted: Mapping[str, tuple[int, np.ndarray]]) -> dict[str, tuple[int, ray.ObjectRef]]:
        fresh = {k: a for k, (v, a) in wanted.items() if self.refs.get(k, (None,))[0] != v}
        if fresh:
            for key in fresh:
                self._release(key)
            for ref in [r for r, live in self.live.items() if 2 * sum(live.values()) < self.size[r]]:
                for key in list(self.live[ref]):  # compaction: re-put the current tensors of a mostly stale object
                    fresh[key] = table.arrays[key]
                    self._release(key)
            ref = ray.put(fresh)
            self.live[ref] = {k: a.nbytes for k, a in fresh.items()}
            self.size[ref] = sum(self.live[ref].values())
            self.refs.update({k: (table.versions[k], ref) for k in fresh})
        return {k: self.refs[k] for k in wanted}

    def _release(self, key: str) -> None:
        _, ref = self.refs.pop(key, (None, None))
        if ref is not None:
            self.live[ref].pop(key)
            if not self.live[ref]:  # the last ref to the object goes: Ray frees it
                del self.live[ref], self.size[ref]

    def stats(self) -> dict[str, int]:
        return {"objects": len(self.live), "object_bytes": sum(self.size.values()),
                "object_live_bytes": sum(sum(live.values()) for live in self.live.values())}


class _StoreActor:
    """The actor's body: a ``WeightTable`` plus the object-store copies of the tensor versions handed out."""

    def __init__(self, meta: Mapping[str, Any], checkpoint_path: str | None, checkpoint_every: int, name: str = "",
                 rebuild: Callable[[Mapping[str, Any]], Mapping[str, np.ndarray]] | None = None):
        context = ray.get_runtime_context()
        arrays: Mapping[str, np.ndarray] = {}  # a fresh store's tensors come by ``assign`` (or its checkpoint)
        if context.was_current_actor_reconstructed and not (checkpoint_path and storage.exists(checkpoint_path)):
            arrays = rebuild(meta) if rebuild is not None else {}  # a restart with no checkpoint: initial tensors
        self.table = WeightTable(arrays, meta, checkpoint_path, checkpoint_every)
        self._objects = _ObjectGroups()
        self.place = {NODE_ID: context.get_node_id(), "pid": os.getpid(),
                      "restarted": bool(context.was_current_actor_reconstructed), "started": time.time()}
        if self.place["restarted"]:
            _log_restart(name, self.table)

    def info(self) -> dict[str, Any]:
        return {**self.table.info(), **self.place, "rss": _rss_bytes(), **self._objects.stats()}

    def pull(self, known: Mapping[str, int] | None, keys: list[str] | None, incarnation: str | None):
        incarnation, arrays = self.table.pull(known, keys, incarnation)
        return incarnation, self._objects.refs_for(self.table, arrays)

    def push(self, deltas: Mapping[str, np.ndarray], writer: str, step: int) -> bool:
        return self.table.push(deltas, writer, step)

    def progress(self, writer: str) -> tuple[int, dict[str, Any] | None]:
        return self.table.progress(writer)

    def record_result(self, writer: str, result: Mapping[str, Any]) -> None:
        self.table.record_result(writer, result)

    def assign(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.table.assign(arrays)

    def ensure_variants(self, mapping: Mapping[str, Any]) -> list[str]:
        return self.table.ensure_variants(mapping)

    def resolve(self, mapping: Mapping[str, Any]) -> dict[str, str]:
        return self.table.resolve(mapping)

    def snapshot(self, name: str) -> None:
        self.table.snapshot(name)

    def average(self, names: list[str]) -> ray.ObjectRef:
        return ray.put(self.table.average(names))

    def drop_snapshots(self, names: list[str]) -> None:
        self.table.drop_snapshots(names)

    def checkpoint(self, path: str | None = None) -> str:
        return self.table.checkpoint(path)


def _rss_bytes() -> int:
    """This process's resident memory (Linux); elsewhere its peak, which still shows growth."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _log_restart(name: str, table: WeightTable) -> None:
    """Say what a restart lost, by the checkpoint policy (``WeightTable``'s ``checkpoint_every``)."""
    stats, every = table.stats, table.checkpoint_every
    if stats["restored_from"] is None:
        held = "its initial weights again" if table.arrays else "no tensors (it was created from raw arrays)"
        log.error("weight store %r restarted with no checkpoint to reload (checkpoint_path=%r): it holds %s "
                  "and every change since creation is lost; pass checkpoint_path= (and checkpoint_every=1 to "
                  "lose nothing)", name, table.checkpoint_path, held)
        return
    bound = f"at most {every - 1}" if every else "every change since the last checkpoint() call"
    log.warning("weight store %r restarted: reloaded %s, written %.1f s ago with %d pushes applied; changes "
                "applied after it are lost (%s, checkpoint_every=%d); trials re-fetch the weights",
                name, stats["restored_from"], time.time() - stats["checkpoint_time"], stats["applied"], bound, every)


class WeightStore:
    """Client of a named weight-store actor; the same calls as ``WeightTable``, returning numpy.

    Generic: it holds named tensors and a ``meta`` dict describing them. ``SupernetStore``
    (``store.supernet``) is the one a search creates: a store of one ``SupernetSpec``'s supernet that
    names itself in Tune's ``param_space``. Every call survives a store restart: it waits for the actor
    (found again by name) for up to ``reconnect_timeout_s`` seconds, then raises ``RuntimeError`` saying
    how to bring the store back.
    """

    reconnect_timeout_s = float(os.environ.get("TUNE_SPACENAS_STORE_TIMEOUT_S", 60))

    def __init__(self, name: str, actor: Any, namespace: str = NAMESPACE):
        self.name, self.namespace, self._actor = name, namespace, actor
        self._incarnation: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, arrays: Mapping[str, np.ndarray] | Callable[[], Mapping[str, np.ndarray]], *,
               meta: Mapping[str, Any] | None = None,
               rebuild: Callable[[Mapping[str, Any]], Mapping[str, np.ndarray]] | None = None,
               checkpoint_path: str | None = None, checkpoint_every: int = 0, namespace: str = NAMESPACE,
               detached: bool = False, exist_ok: bool = False, node_id: str | None = None,
               **actor_options: Any) -> WeightStore:
        """Start the store ``name`` holding ``arrays`` (or what calling it returns: computed only when no
        checkpoint is there to resume from), described by ``meta`` (plain data).

        Args:
            rebuild: ``rebuild(meta)`` gives the initial tensors again in an actor that restarts with no
                checkpoint to reload (a module-level function, light to import: the actor unpickles it);
                without it such a restart holds no tensors.
            checkpoint_path: where it checkpoints and where a (re)started store reloads from: a path every
                node sees (shared filesystem) or a ``pyarrow.fs`` URI; ``storage.store_checkpoint_path(
                storage_path, experiment)`` puts it in Tune's experiment directory, where ``Tuner.restore``
                finds it. A store created over an existing checkpoint resumes from it. The initial weights
                are written there first, so restarts never depend on the creating driver; without a
                checkpoint_path a restarted store holds its initial weights again (and is logged as such).
            checkpoint_every: checkpoint after this many changes; a crash loses at most
                ``checkpoint_every - 1`` (1: nothing; 0: only explicit ``checkpoint()`` calls).
            detached: keep the store alive after the driver exits (a killed driver otherwise takes it along).
            exist_ok: connect to a running store of that name (which must hold the same contents).
            node_id: place the store on this node, softly (``NodeAffinitySchedulingStrategy(soft=True)``):
                if the node dies it restarts elsewhere. A hard pin (``resources={"my_node": 0.01}``
                through ``actor_options``) never comes back once its node is gone.
            actor_options: more ``.options()`` (resources, scheduling_strategy, runtime_env).
        """
        _require_ray()
        if checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 (0: on demand only), got {checkpoint_every}")
        if not (callable(arrays) or isinstance(arrays, Mapping)):
            raise ValueError(f"WeightStore.create takes tensors (a mapping of name to array, or a function returning "
                             f"one), got {type(arrays).__name__}; a supernet's store is SupernetStore.create(name, spec)")
        meta = {LINEAGE: uuid.uuid4().hex, **(meta or {})}
        initial = arrays if callable(arrays) else (lambda: arrays)
        existing = _lookup(name, namespace)
        if existing is not None:
            if not exist_ok:
                raise ValueError(f"a weight store named {name!r} already runs; connect to it with "
                                 f"{cls.__name__}.connect({name!r}), pass exist_ok=True, or kill it first")
            store = cls(name, existing, namespace)
            check_same_contents(store.info()["meta"], meta, f"the running store {name!r}")
            return store
        if checkpoint_path is not None:
            checkpoint_path = storage.join(checkpoint_path)  # absolute: the actor's working directory differs
            if storage.exists(checkpoint_path):  # fail here, in the driver, not in a restarting actor
                check_same_contents(read_checkpoint_meta(checkpoint_path), meta, f"checkpoint {checkpoint_path}")
            else:  # the actor starts, and restarts, from the file: not from arguments its driver's object store holds
                WeightTable(initial(), meta, checkpoint_path).checkpoint()
            late = None
        else:
            # Nothing large goes into the actor's constructor (Ray warns that a restart needs such arguments
            # to outlive their owner): the initial tensors are assigned once it runs, and a restarted actor
            # rebuilds them itself (``rebuild``).
            late = initial()
        options = {"name": name, "namespace": namespace, "max_restarts": -1, "max_task_retries": -1,
                   "num_cpus": 0, **({"lifetime": "detached"} if detached else {}), **actor_options}
        if node_id is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=True)
            # Ray 2.60 places an actor that requests no resource at all on a random node despite the
            # affinity; a token request (1 MiB of "memory", which trials do not ask for) makes it stick.
            options.setdefault("memory", 2**20)
        actor = ray.remote(_StoreActor).options(**options).remote(meta, checkpoint_path, checkpoint_every, name, rebuild)
        _CREATED[(namespace, name)] = actor
        store = cls(name, actor, namespace)
        store.info()  # fail here, not in a trial, if the actor cannot start
        if late is not None:
            store.assign(late)
        return store

    @classmethod
    def connect(cls, name: str, namespace: str = NAMESPACE) -> WeightStore:
        """The running store ``name``; ValueError saying how to create it otherwise."""
        _require_ray()
        actor = _lookup(name, namespace)
        if actor is None:
            running = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                             if a["namespace"] == namespace)
            raise ValueError(
                f"no weight store named {name!r} in namespace {namespace!r} (running: {running or 'none'}): "
                f"create it before tune.run with SupernetStore.create({name!r}, SupernetSpec(...)) and pass "
                "store.param_space() as the config; a store that is not detached dies with its driver"
            )
        return cls(name, actor, namespace)

    @classmethod
    @contextmanager
    def temporary(cls, *contents: Any, prefix: str = "search", **create_options: Any) -> Iterator[WeightStore]:
        """A store under a fresh name for one search (``create``'s arguments after the name), killed when
        the block exits (examples, one-off runs; create a named store with a ``checkpoint_path`` to keep
        the trained weights)."""
        store = cls.create(f"{prefix}-{uuid.uuid4().hex[:6]}", *contents, **create_options)
        try:
            yield store
        finally:
            store.kill()

    def kill(self, wait_s: float = 10.0) -> None:
        """Stop the store for good; returns once its name is free (a new store may take it)."""
        _CREATED.pop((self.namespace, self.name), None)
        ray.kill(self._actor, no_restart=True)
        deadline = time.monotonic() + wait_s
        while _lookup(self.name, self.namespace) is not None and time.monotonic() < deadline:
            time.sleep(0.05)

    def __reduce__(self):  # a pickled client reconnects by name (never ships a handle in a config)
        return (type(self).connect, (self.name, self.namespace))

    # --- fault handling ------------------------------------------------------------------------
    def _call(self, method: str, *args: Any, fetch: Callable[[Any], Any] | None = None) -> Any:
        """``ray.get`` of one actor call, then ``fetch`` of the refs it returned; both are retried
        against the store (found again by name) while it restarts."""
        deadline = None
        while True:
            try:
                out = ray.get(getattr(self._actor, method).remote(*args))
                return fetch(out) if fetch is not None else out
            except _RETRYABLE as err:
                deadline = deadline or time.monotonic() + self.reconnect_timeout_s
                self._reconnect(method, err, deadline)

    def _reconnect(self, method: str, err: Exception, deadline: float) -> None:
        if getattr(err, "actor_init_failed", False):
            raise RuntimeError(f"weight store {self.name!r} failed to start: {err}") from err
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"weight store {self.name!r} did not come back within {self.reconnect_timeout_s:.0f} s "
                f"({type(err).__name__} in {method}): if it was killed for good, create it again with "
                f"{type(self).__name__}.create({self.name!r}, ..., checkpoint_path=<its checkpoint>) to resume from its "
                "last checkpoint"
            ) from err
        log.warning("weight store %r unreachable during %s (%s); retrying", self.name, method, type(err).__name__)
        time.sleep(0.2)
        self._actor = _lookup(self.name, self.namespace) or self._actor

    # --- calls ---------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return self._call("info")

    def pull(self, known: Mapping[str, int] | None = None, keys: Iterable[str] | None = None,
             incarnation: str | None = None) -> tuple[str, dict[str, tuple[int, np.ndarray]]]:
        def fetch(reply):
            incarnation, refs = reply
            objects = list(dict.fromkeys(ref for _, ref in refs.values()))  # tensors share objects
            groups = dict(zip(objects, ray.get(objects))) if objects else {}
            return incarnation, {k: (v, groups[ref][k]) for k, (v, ref) in refs.items()}

        incarnation, out = self._call("pull", known, None if keys is None else list(keys), incarnation, fetch=fetch)
        if self._incarnation not in (None, incarnation):
            log.warning("weight store %r restarted since this client's last pull: fetched every tensor again", self.name)
        self._incarnation = incarnation
        return incarnation, out

    def push(self, deltas: Mapping[str, np.ndarray], writer: str, step: int) -> bool:
        """Add ``deltas`` (only the tensors that changed travel); False if (writer, step) was applied before.
        ``writer`` is the training job's id (``jobs.writer_of``)."""
        changed = {k: d for k, d in deltas.items() if np.any(d)}
        return self._call("push", changed, writer, step)

    def progress(self, writer: str) -> tuple[int, dict[str, Any] | None]:
        """(last step applied for ``writer``; its recorded result once it finished): see ``WeightTable``."""
        return self._call("progress", writer)

    def record_result(self, writer: str, result: Mapping[str, Any]) -> None:
        self._call("record_result", writer, dict(result))

    def assign(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._call("assign", dict(arrays))

    def ensure_variants(self, mapping: Mapping[str, Any]) -> list[str]:
        return self._call("ensure_variants", dict(mapping))

    def resolve(self, mapping: Mapping[str, Any]) -> dict[str, str]:
        return self._call("resolve", dict(mapping))

    def snapshot(self, name: str) -> None:
        self._call("snapshot", name)

    def average(self, names: Iterable[str]) -> dict[str, np.ndarray]:
        return self._call("average", list(names), fetch=ray.get)

    def drop_snapshots(self, names: Iterable[str]) -> None:
        self._call("drop_snapshots", list(names))

    def checkpoint(self, path: str | None = None) -> str:
        return self._call("checkpoint", path)

def _lookup(name: str, namespace: str) -> Any:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def _require_ray() -> None:
    if not ray.is_initialized():
        raise RuntimeError("Ray is not running: call tune_spacenas.cluster.connect() (or ray.init()) first")
