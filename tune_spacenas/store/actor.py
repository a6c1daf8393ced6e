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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import ray
from ray.exceptions import ObjectLostError, RayActorError

from tune_spacenas import storage
from tune_spacenas.jobs import NODE_ID
from tune_spacenas.store.shards import (
    ShardMap,
    checkpoint_layouts,
    join_incarnations,
    partition,
    shard_checkpoint_path,
    shard_name,
    split_incarnation,
)
from tune_spacenas.store.table import (
    LINEAGE,
    PushReceipt,
    WeightTable,
    check_deltas,
    check_same_contents,
    read_checkpoint_meta,
)
from tune_spacenas.store.transport import DIRECT_MIN_BYTES, TensorLink, TensorServer

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

    def __init__(self, server: TensorServer | None = None) -> None:
        self.server = server  # also serves the objects to other nodes' clients (``store.transport``)
        self.refs: dict[str, tuple[int, ray.ObjectRef]] = {}  # tensor -> (version, ref of its object)
        self.live: dict[ray.ObjectRef, dict[str, int]] = {}  # object -> {current tensor: bytes}
        self.size: dict[ray.ObjectRef, int] = {}

    def refs_for(
        self, table: WeightTable, wanted: Mapping[str, tuple[int, np.ndarray]]
    ) -> dict[str, tuple[int, ray.ObjectRef]]:
        fresh = {k: a for k, (v, a) in wanted.items() if self.refs.get(k, (None,))[0] != v}
        if fresh:
            for key in fresh:
                self._release(key)
            for ref in [r for r, live in self.live.items() if 2 * sum(live.values()) < self.size[r]]:
                for key in list(self.live[ref]):  # compaction: re-put the current tensors of a mostly stale object
                    fresh[key] = table.arrays[key]
                    self._release(key)
            ref = ray.put(fresh)
            if self.server is not None:
                self.server.publish(ref)
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
                if self.server is not None:
                    self.server.retire(ref)

    def stats(self) -> dict[str, int]:
        return {
            "objects": len(self.live),
            "object_bytes": sum(self.size.values()),
            "object_live_bytes": sum(sum(live.values()) for live in self.live.values()),
        }


class _StoreActor:
    """The actor's body: a ``WeightTable`` (of shard ``shard`` of ``shards``: its part of the tensors) plus
    the object-store copies of the tensor versions handed out, and the time it spends serving."""

    def __init__(
        self,
        meta: Mapping[str, Any],
        checkpoint_path: str | None,
        checkpoint_every: int,
        name: str = "",
        rebuild: Callable[[Mapping[str, Any]], Mapping[str, np.ndarray]] | None = None,
        shard: int = 0,
        shards: int = 1,
        direct_reads: bool = True,
    ):
        context = ray.get_runtime_context()
        arrays: Mapping[str, np.ndarray] = {}  # a fresh store's tensors come by ``assign`` (or its checkpoint)
        if context.was_current_actor_reconstructed and not (checkpoint_path and storage.exists(checkpoint_path)):
            arrays = rebuild(meta) if rebuild is not None else {}  # a restart with no checkpoint: initial tensors
            if shards > 1:  # this shard's part, placed as at creation (the same tensors give the same partition)
                placed = partition({k: np.asarray(a).nbytes for k, a in arrays.items()}, shards)
                arrays = {k: a for k, a in arrays.items() if placed[k] == shard}
        self.table = WeightTable(arrays, meta, checkpoint_path, checkpoint_every)
        self._server = TensorServer() if direct_reads else None
        self._objects = _ObjectGroups(self._server)
        self.shard, self.shards = shard, shards
        self.place = {
            NODE_ID: context.get_node_id(),
            "pid": os.getpid(),
            "restarted": bool(context.was_current_actor_reconstructed),
            "started": time.time(),
        }
        # calls, seconds of this thread's CPU and wall seconds inside push and pull: the service time a
        # shard spends per sync, which the scaling benchmark extrapolates from
        self.service = {kind: [0, 0.0, 0.0] for kind in ("push", "pull")}
        if self.place["restarted"]:
            _log_restart(shard_name(name, shard), self.table)

    def info(self) -> dict[str, Any]:
        service = {kind: {"calls": n, "cpu_s": cpu, "wall_s": wall} for kind, (n, cpu, wall) in self.service.items()}
        return {
            **self.table.info(),
            **self.place,
            "rss": _rss_bytes(),
            **self._objects.stats(),
            "shard": self.shard,
            "shards": self.shards,
            "service": service,
        }

    def layout(self) -> dict[str, Any]:
        """This shard's place in the store, the shapes of the tensors it holds (the client's routing) and
        where clients on other nodes reach its socket (``store.transport``; None: through Ray only)."""
        direct = None if self._server is None else [*self._server.address, self._server.token]
        return {
            "shard": self.shard,
            "shards": self.shards,
            NODE_ID: self.place[NODE_ID],
            "direct": direct,
            "shapes": {k: a.shape for k, a in self.table.arrays.items()},
        }

    def pull(self, known: Mapping[str, int] | None, keys: list[str] | None, incarnation: str | None):
        with self._serving("pull"):
            incarnation, arrays = self.table.pull(known, keys, incarnation)
            return incarnation, self._objects.refs_for(self.table, arrays)

    def push(
        self,
        deltas: Mapping[str, np.ndarray],
        writer: str,
        step: int,
        known: Mapping[str, int] | None = None,
        incarnation: str | None = None,
        upload: str | None = None,
    ) -> PushReceipt | None:
        """``WeightTable.push``; with ``upload``, the deltas a client on another node sent to this shard's
        socket first (None: no such upload here, this process restarted since: the client sends them again)."""
        with self._serving("push"):
            if upload is not None:
                uploaded = self._server.take(upload) if self._server is not None else None
                if uploaded is None:
                    return None
                deltas = {**deltas, **uploaded}
            return self.table.push(deltas, writer, step, known, incarnation)

    @contextmanager
    def _serving(self, kind: str) -> Iterator[None]:
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            yield
        finally:
            served = self.service[kind]
            served[0] += 1
            served[1] += time.thread_time() - cpu
            served[2] += time.perf_counter() - wall

    def holds(self, keys: list[str]) -> list[str]:
        return [k for k in keys if k in self.table.arrays]

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
        log.error(
            "weight store %r restarted with no checkpoint to reload (checkpoint_path=%r): it holds %s "
            "and every change since creation is lost; pass checkpoint_path= (and checkpoint_every=1 to "
            "lose nothing)",
            name,
            table.checkpoint_path,
            held,
        )
        return
    bound = f"at most {every - 1}" if every else "every change since the last checkpoint() call"
    log.warning(
        "weight store %r restarted: reloaded %s, written %.1f s ago with %d pushes applied; changes "
        "applied after it are lost (%s, checkpoint_every=%d); trials re-fetch the weights",
        name,
        stats["restored_from"],
        time.time() - stats["checkpoint_time"],
        stats["applied"],
        bound,
        every,
    )


class WeightStore:
    """Client of a named weight store (one actor, or ``shards`` of them); the same calls as ``WeightTable``,
    returning numpy.

    Generic: it holds named tensors and a ``meta`` dict describing them. ``SupernetStore``
    (``store.supernet``) is the one a search creates: a store of one ``SupernetSpec``'s supernet that
    names itself in Tune's ``param_space``. Every call survives a store restart: it waits for the actor
    (found again by name) for up to ``reconnect_timeout_s`` seconds, then raises ``RuntimeError`` saying
    how to bring the store back.

    Sharded (``create(..., shards=N)``): the tensors are split over N actors by tensor, about equal bytes
    each (``store.shards``); a push or pull goes to the shards concerned in parallel, every push marks its
    (writer, step) on every shard. Each shard de-duplicates, checkpoints (its own file) and restarts on
    its own, so the guarantees hold per tensor: each (writer, step)'s delta of a tensor is applied exactly
    once. ``progress`` reports the last step every shard holds, so a job resumed after a failure between
    shards replays the steps some shard lacks, which the others ignore. Snapshots are taken shard by
    shard (not one instant across shards: pushes landing meanwhile may be in some shards' part only).
    """

    reconnect_timeout_s = float(os.environ.get("TUNE_SPACENAS_STORE_TIMEOUT_S", 60))

    def __init__(self, name: str, actors: Any, namespace: str = NAMESPACE):
        self.name, self.namespace = name, namespace
        self._actors = list(actors) if isinstance(actors, (list, tuple)) else [actors]
        self._map: ShardMap | None = None  # which shard holds what: learnt from the shards when first needed
        self._incarnations: list[str | None] = [None] * len(self._actors)
        self._direct: dict[int, tuple[Sequence, str] | None] = {}  # shard -> its socket, if on another node
        # how this client's transfers went: bytes read from and uploaded to shards' sockets, objects read via Ray
        self.transfers = {"direct_read_bytes": 0, "direct_upload_bytes": 0, "ray_objects": 0}

    @property
    def shards(self) -> int:
        return len(self._actors)

    @property
    def _actor(self) -> Any:  # shard 0: the store's own name, its ledger of finished jobs
        return self._actors[0]

    # --- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        arrays: Mapping[str, np.ndarray] | Callable[[], Mapping[str, np.ndarray]],
        *,
        meta: Mapping[str, Any] | None = None,
        rebuild: Callable[[Mapping[str, Any]], Mapping[str, np.ndarray]] | None = None,
        checkpoint_path: str | None = None,
        checkpoint_every: int = 0,
        namespace: str = NAMESPACE,
        detached: bool = False,
        exist_ok: bool = False,
        node_id: str | Sequence[str] | None = None,
        shards: int = 1,
        direct_reads: bool = True,
        **actor_options: Any,
    ) -> WeightStore:
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
                A sharded store writes one file per shard beside it (``<stem>.shard<i>of<N>.npz``).
            checkpoint_every: checkpoint after this many changes (per shard); a crash loses at most
                ``checkpoint_every - 1`` (1: nothing; 0: only explicit ``checkpoint()`` calls).
            detached: keep the store alive after the driver exits (a killed driver otherwise takes it along).
            exist_ok: connect to a running store of that name (which must hold the same contents).
            node_id: place the store on this node, softly (``NodeAffinitySchedulingStrategy(soft=True)``):
                if the node dies it restarts elsewhere; a list places shard i on ``node_id[i % len]``. A hard
                pin (``resources={"my_node": 0.01}`` through ``actor_options``) never comes back once its
                node is gone. Without it, the shards of a sharded store are spread over the nodes (Ray's
                ``SPREAD``, best effort).
            shards: split the tensors over this many actors (by tensor, about equal bytes each): pushes and
                pulls go to them in parallel, so many trials do not queue on one actor.
            direct_reads: clients on other nodes move tensors through a socket beside each shard
                (``store.transport``: about a raw TCP transfer, where Ray's object transfer takes 3-5x
                that), falling back to Ray's transfer when it fails; False: Ray's transfer only.
            actor_options: more ``.options()`` (resources, scheduling_strategy, runtime_env).
        """
        _require_ray()
        if checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 (0: on demand only), got {checkpoint_every}")
        if not (callable(arrays) or isinstance(arrays, Mapping)):
            raise ValueError(
                f"WeightStore.create takes tensors (a mapping of name to array, or a function returning "
                f"one), got {type(arrays).__name__}; a supernet's store is SupernetStore.create(name, spec)"
            )
        if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
            raise ValueError(f"shards must be a whole number >= 1 (actors the tensors are split over), got {shards!r}")
        shards = int(shards)
        meta = {LINEAGE: uuid.uuid4().hex, **(meta or {})}
        initial = arrays if callable(arrays) else (lambda: arrays)
        running = [i for i in range(shards) if _lookup(shard_name(name, i), namespace) is not None]
        if running:
            if not exist_ok or 0 not in running:
                raise ValueError(
                    f"a weight store named {name!r} already runs; connect to it with "
                    f"{cls.__name__}.connect({name!r}), pass exist_ok=True, or kill it first"
                )
            store = cls.connect(name, namespace)
            check_same_contents(store.info()["meta"], meta, f"the running store {name!r}")
            if store.shards != shards:
                raise ValueError(
                    f"the running store {name!r} has {store.shards} shards, {shards} were asked for: "
                    f"pass shards={store.shards}, or kill it first"
                )
            return store
        paths = [None] * shards
        late = None
        if checkpoint_path is not None:
            checkpoint_path = storage.join(checkpoint_path)  # absolute: the actor's working directory differs
            paths = [shard_checkpoint_path(checkpoint_path, i, shards) for i in range(shards)]
            _check_checkpoint_layout(checkpoint_path, shards)
            written = [storage.exists(p) for p in paths]
            if all(written):  # fail here, in the driver, not in a restarting actor
                for path in paths:
                    check_same_contents(read_checkpoint_meta(path), meta, f"checkpoint {path}")
            else:  # the actors start, and restart, from the files: not from arguments the driver's object store holds
                for path, part in zip(paths, _split(initial(), shards)):
                    WeightTable(part, meta, path).checkpoint()
        else:
            # Nothing large goes into an actor's constructor (Ray warns that a restart needs such arguments
            # to outlive their owner): the initial tensors are assigned once it runs, and a restarted actor
            # rebuilds them itself (``rebuild``).
            late = _split(initial(), shards)
        actors = []
        for i in range(shards):
            options = {
                "name": shard_name(name, i),
                "namespace": namespace,
                "max_restarts": -1,
                "max_task_retries": -1,
                "num_cpus": 0,
                **({"lifetime": "detached"} if detached else {}),
                **_placement(node_id, i, shards, actor_options),
                **actor_options,
            }
            actors.append(
                ray.remote(_StoreActor)
                .options(**options)
                .remote(meta, paths[i], checkpoint_every, name, rebuild, i, shards, direct_reads)
            )
        _CREATED[(namespace, name)] = actors
        store = cls(name, actors, namespace)
        store.info()  # fail here, not in a trial, if an actor cannot start
        if late is not None:
            store._on_shards("assign", {i: (part,) for i, part in enumerate(late) if part})
        return store

    @classmethod
    def connect(cls, name: str, namespace: str = NAMESPACE) -> WeightStore:
        """The running store ``name``; ValueError saying how to create it otherwise."""
        _require_ray()
        actor = _lookup(name, namespace)
        if actor is None:
            running = sorted(
                a["name"]
                for a in ray.util.list_named_actors(all_namespaces=True)
                if a["namespace"] == namespace and "/shard" not in a["name"]
            )
            raise ValueError(
                f"no weight store named {name!r} in namespace {namespace!r} (running: {running or 'none'}): "
                f"create it before tune.run with SupernetStore.create({name!r}, SupernetSpec(...)) and pass "
                "store.param_space() as the config; a store that is not detached dies with its driver"
            )
        store = cls(name, actor, namespace)
        shards = store._on_shards("layout", {0: ()})[0]["shards"]
        if shards > 1:
            others = [_lookup(shard_name(name, i), namespace) for i in range(1, shards)]
            missing = [shard_name(name, i) for i, a in enumerate(others, start=1) if a is None]
            if missing:
                raise ValueError(
                    f"weight store {name!r} has {shards} shards but {missing} are not running: kill it "
                    f"and create it again with shards={shards} and its checkpoint_path to resume"
                )
            store = cls(name, [actor, *others], namespace)
        return store

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
        """Stop the store (every shard) for good; returns once its names are free (a new store may take them)."""
        _CREATED.pop((self.namespace, self.name), None)
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        deadline = time.monotonic() + wait_s
        names = [shard_name(self.name, i) for i in range(self.shards)]
        while any(_lookup(n, self.namespace) is not None for n in names) and time.monotonic() < deadline:
            time.sleep(0.05)

    def __reduce__(self):  # a pickled client reconnects by name (never ships a handle in a config)
        return (type(self).connect, (self.name, self.namespace))

    # --- fault handling ------------------------------------------------------------------------
    def _on_shards(self, method: str, calls: Mapping[int, tuple]) -> dict[int, Any]:
        """``method(*args)`` on each shard of ``calls`` (shard -> args), all in flight at once; a shard
        that restarts or is replaced is found again by name and its call repeated (every call is safe to
        repeat: pushes are de-duplicated, the rest idempotent). Replies by shard."""
        pending, replies, deadline = dict(calls), {}, None
        while pending:
            refs = {i: getattr(self._actors[i], method).remote(*args) for i, args in pending.items()}
            for i, ref in refs.items():
                try:
                    replies[i] = ray.get(ref)
                    del pending[i]
                except _RETRYABLE as err:
                    deadline = deadline or time.monotonic() + self.reconnect_timeout_s
                    self._reconnect(i, method, err, deadline)
        return replies

    def _on_all(self, method: str, *args: Any) -> dict[int, Any]:
        return self._on_shards(method, dict.fromkeys(range(self.shards), args))

    def _fetch(self, method: str, replies: Callable[[], dict[int, Any]], read: Callable[[dict[int, Any]], Any]):
        """``replies()`` then ``read(replies)`` (the objects their refs name), repeated (calls and all) while a
        shard that handed out refs has restarted since (its objects died with it: ``OwnerDiedError``)."""
        deadline = None
        while True:
            out = replies()
            try:
                return out, read(out)
            except _RETRYABLE as err:
                deadline = deadline or time.monotonic() + self.reconnect_timeout_s
                self._reconnect(None, method, err, deadline)

    def _read(self, replies: Mapping[int, tuple[str, Mapping[str, tuple[int, Any]]]]) -> dict[str, np.ndarray]:
        """The tensors pull replies name: from a shard on another node through its socket (``store.transport``:
        only the named tensors), the rest, and whatever the socket no longer holds, by one ``ray.get``
        (zero-copy from this node's object store)."""
        arrays: dict[str, np.ndarray] = {}
        through_ray: dict[Any, list[str]] = {}
        for shard, (incarnation, refs) in replies.items():
            if incarnation != self._incarnations[shard]:
                self._direct.pop(shard, None)  # a restarted shard has a new socket, maybe on another node
            wanted: dict[Any, list[str]] = {}
            for key, (_, ref) in refs.items():
                wanted.setdefault(ref, []).append(key)
            route = self._direct_route(shard) if wanted else None
            got = _LINK.read(route[0], route[1], list(wanted.items())) if route else {}
            for ref, keys in wanted.items():
                if ref in got:
                    arrays.update(got[ref])
                    self.transfers["direct_read_bytes"] += sum(a.nbytes for a in got[ref].values())
                else:
                    through_ray[ref] = keys
        if through_ray:
            self.transfers["ray_objects"] += len(through_ray)
            for keys, tensors in zip(through_ray.values(), ray.get(list(through_ray))):
                arrays.update({k: tensors[k] for k in keys})
        return arrays

    def _direct_route(self, shard: int) -> tuple[Sequence, str] | None:
        """(address, token) of the shard's socket if it runs on another node than this process, else None."""
        if shard not in self._direct:
            layout = self._on_shards("layout", {shard: ()})[shard]
            here = ray.get_runtime_context().get_node_id()
            direct = layout["direct"]
            self._direct[shard] = (direct[:2], direct[2]) if direct and layout[NODE_ID] != here else None
        return self._direct[shard]

    def _reconnect(self, shard: int | None, method: str, err: Exception, deadline: float) -> None:
        """Wait a moment and find shard ``shard`` (None: every shard) again by name."""
        if getattr(err, "actor_init_failed", False):
            raise RuntimeError(f"weight store {self.name!r} failed to start: {err}") from err
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"weight store {self.name!r} did not come back within {self.reconnect_timeout_s:.0f} s "
                f"({type(err).__name__} in {method}): if it was killed for good, create it again with "
                f"{type(self).__name__}.create({self.name!r}, ..., checkpoint_path=<its checkpoint>"
                f"{f', shards={self.shards}' if self.shards > 1 else ''}) to resume from its last checkpoint"
            ) from err
        log.warning("weight store %r unreachable during %s (%s); retrying", self.name, method, type(err).__name__)
        time.sleep(0.2)
        for i in range(self.shards) if shard is None else (shard,):
            self._actors[i] = _lookup(shard_name(self.name, i), self.namespace) or self._actors[i]

    # --- routing -------------------------------------------------------------------------------
    def _routes(self) -> ShardMap:
        if self._map is None:
            layouts = self._on_all("layout")
            self._map = ShardMap(self.shards)
            for i, layout in layouts.items():
                self._map.learn(i, layout["shapes"])
        return self._map

    def _split(self, keys: Iterable[str]) -> dict[int, list[str]]:
        keys = list(keys)
        return {0: keys} if self.shards == 1 else self._routes().split(keys)

    def _check_push(self, deltas: Mapping[str, np.ndarray]) -> None:
        """A sharded push is refused whole before any shard applies part of it (a shard checks its own part:
        a single actor refuses a bad push atomically itself). Shapes the client does not know, or knows
        differently, are learnt again from the shards first (another client may have created them)."""
        routes = self._routes()
        try:
            check_deltas(deltas, routes.shapes)
        except (KeyError, ValueError):
            self._map = None
            check_deltas(deltas, self._routes().shapes)

    def _joined(self, incarnations: Mapping[int, str]) -> str:
        for i, incarnation in incarnations.items():
            if self._incarnations[i] not in (None, incarnation):
                log.warning(
                    "weight store %r restarted since this client's last pull: fetched every tensor again",
                    shard_name(self.name, i),
                )
            self._incarnations[i] = incarnation
        return join_incarnations(self._incarnations)

    # --- calls ---------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The store's state; a sharded store's is shard 0's (meta, finished jobs, snapshots, node, pid) with
        the sizes summed and the ledger (``push_counts``, ``last_step``: what every shard holds) as the
        minimum over shards, each shard's own under ``shard_info``."""
        infos = self._on_all("info")
        if self.shards == 1:
            return infos[0]
        shards = [infos[i] for i in range(self.shards)]
        out = dict(shards[0])
        for key in ("keys", "bytes", "rss", "objects", "object_bytes", "object_live_bytes"):
            out[key] = sum(info[key] for info in shards)
        for ledger in ("push_counts", "last_step"):
            out[ledger] = {w: min(info[ledger].get(w, 0) for info in shards) for w in shards[0][ledger]}
        out["restarted"] = any(info["restarted"] for info in shards)
        out["shard_info"] = shards
        return out

    def pull(
        self, known: Mapping[str, int] | None = None, keys: Iterable[str] | None = None, incarnation: str | None = None
    ) -> tuple[str, dict[str, tuple[int, np.ndarray]]]:
        """Tensors whose version differs from ``known`` (of this ``incarnation``; all of them otherwise)."""
        parts = split_incarnation(incarnation, self.shards)
        routed = {i: None for i in range(self.shards)} if keys is None else self._split(keys)
        known = known or {}

        def calls():
            return self._on_shards(
                "pull",
                {
                    i: ({k: known[k] for k in ks if k in known} if ks is not None else dict(known), ks, parts[i])
                    for i, ks in routed.items()
                },
            )

        replies, arrays = self._fetch("pull", calls, self._read)
        out = {k: (v, arrays[k]) for _, refs in replies.values() for k, (v, _) in refs.items()}
        return self._joined({i: reply[0] for i, reply in replies.items()}), out

    def push(
        self,
        deltas: Mapping[str, np.ndarray],
        writer: str,
        step: int,
        known: Mapping[str, int] | None = None,
        incarnation: str | None = None,
    ) -> PushReceipt:
        """Add ``deltas`` (only the tensors that changed travel); the receipt is False if (writer, step) was
        applied before. ``writer`` is the training job's id (``jobs.writer_of``). ``known``/``incarnation``
        (what the client's last pull returned): the receipt's ``kept`` names the pushed tensors no other
        writer changed since (``WeightTable.push``)."""
        changed = {k: d for k, d in deltas.items() if _nonzero(d)}
        parts, known = split_incarnation(incarnation, self.shards), known or {}
        if self.shards > 1:
            self._check_push(changed)
        routed = self._split(changed)
        calls = {}
        for i in range(self.shards):
            part = {k: changed[k] for k in routed.get(i, ())}
            calls[i] = (part, writer, step, {k: known[k] for k in part if k in known}, parts[i], None)
        sent = {i: self._uploaded(i, call) for i, call in calls.items()}
        receipts = self._on_shards("push", sent)
        lost = {i: calls[i] for i, receipt in receipts.items() if receipt is None}  # uploads a restart lost
        self.transfers["direct_upload_bytes"] += sum(
            sum(np.asarray(d).nbytes for d in calls[i][0].values())
            for i, call in sent.items()
            if call[5] and i not in lost
        )
        receipts |= self._on_shards("push", lost) if lost else {}
        return PushReceipt(
            any(r.applied for r in receipts.values()), {k: v for r in receipts.values() for k, v in r.kept.items()}
        )

    def _uploaded(self, shard: int, call: tuple) -> tuple:
        """A push call whose deltas went to the shard's socket first (a shard on another node, a large push),
        naming the upload instead of carrying them; the call unchanged otherwise."""
        nbytes = sum(np.asarray(d).nbytes for d in call[0].values())
        route = self._direct_route(shard) if nbytes >= DIRECT_MIN_BYTES else None
        upload = _LINK.upload(route[0], route[1], call[0]) if route else None
        return call if upload is None else ({}, *call[1:5], upload)

    def progress(self, writer: str) -> tuple[int, dict[str, Any] | None]:
        """(the last step of ``writer`` every shard holds; its recorded result once it finished): see ``WeightTable``."""
        replies = self._on_all("progress", writer)
        return min(step for step, _ in replies.values()), replies[0][1]

    def record_result(self, writer: str, result: Mapping[str, Any]) -> None:
        self._on_shards("record_result", {0: (writer, dict(result))})

    def assign(self, arrays: Mapping[str, np.ndarray]) -> None:
        routed = self._split(arrays)
        self._on_shards("assign", {i: ({k: arrays[k] for k in ks},) for i, ks in routed.items()})
        if self._map is not None:
            for i, ks in routed.items():
                self._map.learn(i, {k: np.shape(arrays[k]) for k in ks})

    def ensure_variants(self, mapping: Mapping[str, Any]) -> list[str]:
        """Create each missing key as a copy of its first held source (``WeightTable.ensure_variants``). A copy
        whose sources are all on its own shard (SE-NAS's: the same parameter's) is made there in one step;
        others are resolved across shards, fetched and assigned."""
        by_shard: dict[int, dict[str, Any]] = {}
        across: dict[str, Any] = {}
        for key, sources in mapping.items():
            candidates = [key, *([sources] if isinstance(sources, str) else sources)]
            shards = set(self._split(candidates))
            (by_shard.setdefault(shards.pop(), {}) if len(shards) == 1 else across)[key] = sources
        created = [
            k
            for reply in self._on_shards("ensure_variants", {i: (m,) for i, m in by_shard.items()}).values()
            for k in reply
        ]
        if across:
            copies = {k: src for k, src in self.resolve(across).items() if src != k}
            if copies:
                _, fresh = self.pull(keys=sorted(set(copies.values())))
                self.assign({k: fresh[src][1] for k, src in copies.items()})
                created += list(copies)
        return created

    def resolve(self, mapping: Mapping[str, Any]) -> dict[str, str]:
        if self.shards == 1:
            return self._on_shards("resolve", {0: (dict(mapping),)})[0]
        candidates = {k: [k, *([s] if isinstance(s, str) else s)] for k, s in mapping.items()}
        wanted = self._split(dict.fromkeys(c for cands in candidates.values() for c in cands))
        held = {k for reply in self._on_shards("holds", {i: (ks,) for i, ks in wanted.items()}).values() for k in reply}
        out = {}
        for key, cands in candidates.items():
            found = [c for c in cands if c in held]
            if not found:
                raise KeyError(f"weight store holds none of {cands}")
            out[key] = found[0]
        return out

    def snapshot(self, name: str) -> None:
        self._on_all("snapshot", name)

    def average(self, names: Iterable[str]) -> dict[str, np.ndarray]:
        names = list(names)
        _, averages = self._fetch(
            "average", lambda: self._on_all("average", names), lambda out: ray.get([out[i] for i in sorted(out)])
        )
        return {k: v for average in averages for k, v in average.items()}

    def drop_snapshots(self, names: Iterable[str]) -> None:
        self._on_all("drop_snapshots", list(names))

    def checkpoint(self, path: str | None = None) -> str:
        """Checkpoint every shard (to ``path``'s shard files, else each to its own); returns the path
        (shard 0's file for a store of one shard)."""
        if path is None:
            return self._on_all("checkpoint", None)[0]
        path = storage.join(path)
        self._on_shards("checkpoint", {i: (shard_checkpoint_path(path, i, self.shards),) for i in range(self.shards)})
        return path


_LINK = TensorLink()  # this process's connections to shards' sockets, shared by its clients


def _nonzero(delta: np.ndarray) -> bool:
    """Any element not zero; the first element decides most deltas without a pass over the rest."""
    delta = np.asarray(delta)
    return bool(delta.size) and (delta.flat[0] != 0 or bool(np.any(delta)))


def _split(arrays: Mapping[str, np.ndarray], shards: int) -> list[dict[str, np.ndarray]]:
    """The tensors of each shard (``shards.partition``: by tensor, about equal bytes)."""
    placed = partition({k: np.asarray(a).nbytes for k, a in arrays.items()}, shards)
    parts: list[dict[str, np.ndarray]] = [{} for _ in range(shards)]
    for key, array in arrays.items():
        parts[placed[key]][key] = array
    return parts


def _placement(node_id: str | Sequence[str] | None, shard: int, shards: int, options: Mapping[str, Any]) -> dict:
    """Actor options placing shard ``shard``: softly on its node, else spread over the nodes (several shards)."""
    if node_id is None:
        if shards == 1 or "scheduling_strategy" in options:
            return {}
        return {"scheduling_strategy": "SPREAD", "memory": 2**20}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = node_id if isinstance(node_id, str) else list(node_id)[shard % len(node_id)]
    # Ray 2.60 places an actor that requests no resource at all on a random node despite the affinity; a
    # token request (1 MiB of "memory", which trials do not ask for) makes it stick.
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True), "memory": 2**20}


def _check_checkpoint_layout(path: str, shards: int) -> None:
    """ValueError if the checkpoint at ``path`` was written by a store of another number of shards, or only
    some of this layout's shard files are there."""
    layouts = checkpoint_layouts(path) - {shards}
    if layouts:
        raise ValueError(
            f"the checkpoint at {path} was written by a store of {sorted(layouts)} shard(s), not {shards}: "
            f"pass shards={min(layouts)} to resume it, or move its files away to start afresh"
        )
    paths = [shard_checkpoint_path(path, i, shards) for i in range(shards)]
    missing = [p for p in paths if not storage.exists(p)]
    if 0 < len(missing) < shards:
        raise ValueError(
            f"the checkpoint at {path} lacks shard files {missing}: restore them, or move the other "
            "shard files away to start afresh"
        )


def _lookup(name: str, namespace: str) -> Any:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def _require_ray() -> None:
    if not ray.is_initialized():
        raise RuntimeError("Ray is not running: call tune_spacenas.cluster.connect() (or ray.init()) first")
