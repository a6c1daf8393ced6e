"""``WeightTable``: the weight store's state and rules, in plain numpy, without Ray.

The Ray actor (``store.actor``) wraps one; an in-process run (benchmarks, Ray-less GPU images) uses one
directly. Both answer the same calls, so the supernet worker cannot tell them apart.

Key scheme (plain strings):
  ``<param>``              a supernet parameter, shared by every path that uses it;
  ``<param>#<variant>``    an expanded copy (SE-NAS 3.4): independent weights of one partial model,
                           created from the shared tensor on first use;
  snapshots                whole-table copies by name (SE-NAS Eq. 4), averaged on request.

Every key has a version that grows with each change. Pushes carry (writer, step), the writer being the
training job's id (``jobs.JOB_ID_KEY``; a hand-made job's trial id): a step at or below the last one
applied for that writer is a replay (Tune retried the trial from a checkpoint, or a resumed searcher
issued the job again) and is ignored, so no delta is ever added twice. A finished job's result is kept
(``record_result``), so a job issued again after all its steps were applied is answered without training.

Moving what changed, once. A push may name the versions its deltas were measured from (``known``, with
the ``incarnation`` they belong to); its receipt (``PushReceipt.kept``) lists the tensors no other writer
changed since: the store now holds ``base + delta`` for them, which the writer computes itself
(``keep_exact``) instead of pulling them back. Exactness: float32 ``base + (p - base)`` is not always
bitwise ``p``, so a writer never keeps ``p``: it keeps ``base + delta``, computed by the same IEEE-754
float32 addition the store does (numpy here; torch on CPU or CUDA, without flush-to-zero), which is
bitwise the store's tensor. Writer and store agree exactly, so versions never drift from values.
"""

from __future__ import annotations

import json
import time
import uuid
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tune_spacenas import storage

VARIANT_SEP = "#"
LINEAGE = "uid"  # meta entry: the id of one store's lineage (a store resumed from a checkpoint keeps it apart)
# Results of the most recent finished jobs kept for re-issued jobs (a resumed searcher re-issues what it
# issued since Tune's last save of its state: seconds to minutes of jobs, far fewer than this).
KEPT_RESULTS = 1024


def variant_key(param: str, variant: str) -> str:
    return f"{param}{VARIANT_SEP}{variant}"


@dataclass(frozen=True)
class PushReceipt:
    """What a push did. True when its step was new (applied), False for a replay (nothing applied).

    Attributes:
        applied: the step was new to the store (a sharded store: to at least one shard).
        kept: tensor -> its version now, for every pushed tensor no other writer changed since the
            version the push named in ``known``: the store holds exactly ``base + delta`` there, so the
            writer keeps that (``keep_exact``) instead of pulling it back. Empty without ``known``.
    """

    applied: bool
    kept: Mapping[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.applied


class WeightTable:
    """Tensors as float32 numpy arrays with per-key versions, deduplicated delta pushes, snapshots and
    checkpoints.

    Args:
        arrays: the initial tensors (ignored when ``checkpoint_path`` holds a checkpoint: a restarted
            store resumes from its last checkpoint).
        meta: plain data describing what the tensors are (``SupernetStore``: the supernet spec); a
            checkpoint or running store with other meta is refused (``check_same_contents``).
        checkpoint_path: where ``checkpoint()`` writes (atomically) and where a new table looks first:
            a local path, a shared filesystem or a ``pyarrow.fs`` URI (``storage.store_checkpoint_path``
            puts it in Tune's experiment directory).
        checkpoint_every: also checkpoint after this many changes (pushes, assigns, new variants).
            The loss policy on a crash: the changes after the last checkpoint, at most
            ``checkpoint_every - 1`` of them (0: everything since the last ``checkpoint()`` call; 1: every
            change is written before it is acknowledged, so a crash loses nothing).
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        meta: Mapping[str, Any] | None = None,
        checkpoint_path: str | None = None,
        checkpoint_every: int = 0,
    ):
        self.checkpoint_path, self.checkpoint_every = checkpoint_path, checkpoint_every
        self.incarnation = uuid.uuid4().hex
        self.meta = dict(meta or {})
        self.arrays = {k: np.array(v, dtype=np.float32, copy=True) for k, v in arrays.items()}
        self.versions = {k: 0 for k in self.arrays}
        self.last_step: dict[str, int] = {}
        self.push_counts: dict[str, int] = {}  # applied pushes per writer: the ledger a sum check reads
        self.results: dict[str, dict[str, Any]] = {}  # finished jobs' results, oldest first (KEPT_RESULTS)
        self.snapshots: dict[str, dict[str, np.ndarray]] = {}
        self.stats = {
            "pushes": 0,
            "applied": 0,
            "duplicates": 0,
            "resumed_jobs": 0,
            "checkpoints": 0,
            "restored_from": None,
        }
        self._since_checkpoint = 0
        if checkpoint_path and storage.exists(checkpoint_path):
            self.load(checkpoint_path)

    # --- reading -------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "incarnation": self.incarnation,
            "keys": len(self.arrays),
            "bytes": int(sum(a.nbytes for a in self.arrays.values())),
            "stats": dict(self.stats),
            "snapshots": sorted(self.snapshots),
            "checkpoint_path": self.checkpoint_path,
            "checkpoint_every": self.checkpoint_every,
            "last_step": dict(self.last_step),
            "push_counts": dict(self.push_counts),
            "finished_jobs": len(self.results),
        }

    def pull(
        self, known: Mapping[str, int] | None = None, keys: Iterable[str] | None = None, incarnation: str | None = None
    ) -> tuple[str, dict[str, tuple[int, np.ndarray]]]:
        """Tensors whose version differs from ``known`` (all of them for another incarnation)."""
        known = known if incarnation == self.incarnation and known else {}
        wanted = self.arrays.keys() if keys is None else keys
        missing = [k for k in wanted if k not in self.arrays]
        if missing:
            raise KeyError(f"weight store has no tensors {missing[:5]}{'...' if len(missing) > 5 else ''}")
        return self.incarnation, {
            k: (self.versions[k], self.arrays[k]) for k in wanted if known.get(k) != self.versions[k]
        }

    # --- writing -------------------------------------------------------------------------------
    def progress(self, writer: str) -> tuple[int, dict[str, Any] | None]:
        """(last step applied for ``writer``, 0 if none; its recorded result, if it finished). A job asking
        when some of its steps are in already is counted in ``stats["resumed_jobs"]`` (a retry or a re-issue)."""
        if writer in self.last_step or writer in self.results:
            self.stats["resumed_jobs"] += 1
        return self.last_step.get(writer, 0), self.results.get(writer)

    def push(
        self,
        deltas: Mapping[str, np.ndarray],
        writer: str,
        step: int,
        known: Mapping[str, int] | None = None,
        incarnation: str | None = None,
    ) -> PushReceipt:
        """Add ``deltas``; nothing is applied if (writer, step) was applied before (the receipt is False).

        ``known``/``incarnation``: the versions (of this incarnation) the deltas were measured from; the
        receipt's ``kept`` names the pushed tensors still at those versions before this push.
        """
        self.stats["pushes"] += 1
        if step <= self.last_step.get(writer, -1):
            self.stats["duplicates"] += 1
            return PushReceipt(False)
        check_deltas(deltas, {k: self.arrays[k].shape for k in deltas if k in self.arrays})
        known = known if known and incarnation == self.incarnation else {}
        kept = {}
        for key, delta in deltas.items():
            if known.get(key) == self.versions[key]:
                kept[key] = self.versions[key] + 1
            self.arrays[key] += delta
            self.versions[key] += 1
        self.last_step[writer] = step
        self.push_counts[writer] = self.push_counts.get(writer, 0) + 1
        self.stats["applied"] += 1
        self._after_change()
        return PushReceipt(True, kept)

    def record_result(self, writer: str, result: Mapping[str, Any]) -> None:
        """Keep a finished job's result (plain data) for a re-issue of the job; the oldest go beyond
        ``KEPT_RESULTS``. A change like a push: the checkpoint policy (``checkpoint_every``) covers it."""
        self.results.pop(writer, None)
        self.results[writer] = json.loads(json.dumps(dict(result), default=_plain))
        for old in list(self.results)[: max(0, len(self.results) - KEPT_RESULTS)]:
            del self.results[old]
        self._after_change()

    def assign(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Set tensors outright (new keys, or fresh initialisation of replenished operations)."""
        for key, value in arrays.items():
            self.arrays[key] = np.array(value, dtype=np.float32, copy=True)
            self.versions[key] = self.versions.get(key, -1) + 1
        self._after_change()

    def ensure_variants(self, mapping: Mapping[str, str | Sequence[str]]) -> list[str]:
        """Create each missing key ``variant -> source`` as a copy of the source tensor; returns created keys.

        A source may be a list of candidates: the first one the table holds is copied (SE-NAS: a partial
        model's new copy starts from the copy its path trained under an earlier grouping, else shared).
        """
        sources = self.resolve({v: src for v, src in mapping.items() if v not in self.arrays})
        self.assign({v: self.arrays[src] for v, src in sources.items()})
        return list(sources)

    def resolve(self, mapping: Mapping[str, str | Sequence[str]]) -> dict[str, str]:
        """For each key: the key itself if the table holds it, else the first of its candidate sources
        it holds (read-only: evaluations use a variant's would-be source without creating it)."""
        out = {}
        for key, sources in mapping.items():
            candidates = [key, *([sources] if isinstance(sources, str) else sources)]
            held = [c for c in candidates if c in self.arrays]
            if not held:
                raise KeyError(f"weight store holds none of {candidates}")
            out[key] = held[0]
        return out

    def _after_change(self) -> None:
        self._since_checkpoint += 1
        if self.checkpoint_path and self.checkpoint_every and self._since_checkpoint >= self.checkpoint_every:
            self.checkpoint()

    # --- snapshots (SE-NAS Eq. 4) --------------------------------------------------------------
    def snapshot(self, name: str) -> None:
        self.snapshots[name] = {k: v.copy() for k, v in self.arrays.items()}

    def average(self, names: Iterable[str]) -> dict[str, np.ndarray]:
        """Element-wise mean of named snapshots: ``(1/K) sum_k W_k``."""
        names = list(names)
        missing = [n for n in names if n not in self.snapshots]
        if not names or missing:
            raise KeyError(f"unknown snapshots {missing or names}; taken: {sorted(self.snapshots)}")
        # A key created between snapshots (a partial model first trained late) averages over those holding it.
        keys = dict.fromkeys(k for n in names for k in self.snapshots[n])
        return {
            k: np.mean([self.snapshots[n][k] for n in names if k in self.snapshots[n]], axis=0).astype(np.float32)
            for k in keys
        }

    def drop_snapshots(self, names: Iterable[str]) -> None:
        for name in names:
            self.snapshots.pop(name, None)

    # --- checkpoints ---------------------------------------------------------------------------
    def checkpoint(self, path: str | None = None) -> str:
        """Write every tensor, version and dedup mark atomically (temp file, then rename); ``path`` may
        be a ``pyarrow.fs`` URI."""
        path = path or self.checkpoint_path
        if not path:
            raise ValueError("no checkpoint path: pass one here or to the store at creation")
        state = {
            "meta": self.meta,
            "versions": self.versions,
            "last_step": self.last_step,
            "push_counts": self.push_counts,
            "results": self.results,
            "applied": self.stats["applied"],
            "snapshots": sorted(self.snapshots),
            "time": time.time(),
        }
        payload = {f"w:{k}": v for k, v in self.arrays.items()}
        for name, arrays in self.snapshots.items():
            payload.update({f"s:{name}:{k}": v for k, v in arrays.items()})
        header = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
        storage.write_atomic(path, lambda f: np.savez(f, __state__=header, **payload))
        self._since_checkpoint = 0
        self.stats["checkpoints"] += 1
        return path

    def load(self, path: str) -> None:
        """Resume from the checkpoint at ``path`` (ValueError if it holds another supernet or is damaged)."""
        state, payload = _read_checkpoint(path)
        check_same_contents(state["meta"], self.meta, f"checkpoint {path}")
        self.arrays = {k[2:]: v for k, v in payload.items() if k.startswith("w:")}
        self.snapshots = {
            n: {k[len(n) + 3 :]: v for k, v in payload.items() if k.startswith(f"s:{n}:")} for n in state["snapshots"]
        }
        self.meta = state["meta"] or self.meta
        self.versions = {k: int(v) for k, v in state["versions"].items()}
        self.last_step = {k: int(v) for k, v in state["last_step"].items()}
        self.push_counts = {k: int(v) for k, v in state.get("push_counts", {}).items()}
        self.results = dict(state.get("results", {}))
        self.stats["applied"] = int(state.get("applied", 0))
        self.stats["restored_from"] = path
        self.stats["checkpoint_time"] = state["time"]


def check_deltas(deltas: Mapping[str, np.ndarray], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """KeyError/ValueError unless every delta names a held tensor (``shapes``: the held ones) and has its
    shape. Every delta is checked before any is added: a refused push changes nothing, so its retry is safe."""
    unknown = [k for k in deltas if k not in shapes]
    if unknown:
        raise KeyError(f"push names tensors the store does not hold: {unknown[:5]}")
    for key, delta in deltas.items():
        if np.shape(delta) != tuple(shapes[key]):
            raise ValueError(f"delta for {key!r} has shape {np.shape(delta)}, the tensor {tuple(shapes[key])}")


def _plain(value: Any) -> Any:
    """numpy scalars and arrays in a result, as JSON (a result is plain data, kept in the checkpoint)."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def read_checkpoint_meta(path: str) -> dict[str, Any]:
    """The ``meta`` (supernet spec) a store checkpoint holds, without loading its tensors."""
    return _read_checkpoint(path, tensors=False)[0]["meta"]


def check_same_contents(saved: Mapping[str, Any], current: Mapping[str, Any], where: str) -> None:
    """ValueError unless ``saved`` (a checkpoint's or a running store's meta) describes what ``current``
    describes (the lineage id may differ); meta without a description (raw arrays) is not checked."""
    saved, current = ({k: v for k, v in m.items() if k != LINEAGE} for m in (saved, current))
    if not (saved and current) or saved == current:
        return
    differs = sorted(
        f"{k}.{sub}" if sub else k
        for k in set(saved) | set(current)
        if saved.get(k) != current.get(k)
        for sub in _differing(saved.get(k), current.get(k))
    )
    raise ValueError(
        f"{where} holds another supernet than the one asked for (its {', '.join(differs)} differ): use the "
        "SupernetSpec it was created with (SupernetStore.connect(name).spec, or the original run's script), or "
        "give the new store another name / checkpoint_path"
    )


def _differing(a: Any, b: Any) -> list[str]:
    """The entries in which two meta values differ (one unnamed entry unless both are mappings)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return [""]


def _read_checkpoint(path: str, tensors: bool = True) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(state, tensors by archive key) of a store checkpoint; ValueError naming the fix if it is damaged."""
    try:
        with storage.open_read(path) as raw, np.load(raw) as f:
            if "__state__" not in f.files:
                raise ValueError("no __state__ entry")
            state = json.loads(bytes(f["__state__"]).decode())
            payload = {k: f[k] for k in f.files if k != "__state__"} if tensors else {}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(
            f"weight-store checkpoint {path} cannot be read ({type(err).__name__}: {err}); it is truncated or "
            "not a store checkpoint: move it away to start from fresh weights, or point checkpoint_path at a "
            "good copy"
        ) from err
    return state, payload
