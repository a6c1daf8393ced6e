"""How a sharded weight store splits its tensors: the partition, the routing of keys, the names and files.

A store of N shards is N actors, each a ``WeightTable`` of some of the tensors. A tensor lives on exactly
one shard, chosen when the store is created: tensors (with their SE-NAS private copies, ``<param>#<tag>``,
which always live beside their parameter so ``ensure_variants`` copies within one shard) are dealt
largest first to the shard holding the fewest bytes so far (``partition``), so shards hold about equal
bytes. A tensor created later (``assign`` of a new name) goes to the shard of its parameter if that is
known, else to ``crc32(name) % N``: every client computes the same place without asking (``ShardMap``).

Plain Python, no Ray: the actor uses it to keep its part of rebuilt initial weights, the client to route.
"""

from __future__ import annotations

import posixpath
import re
import zlib
from collections.abc import Iterable, Mapping

from tune_spacenas import storage
from tune_spacenas.store.table import VARIANT_SEP

INCARNATION_SEP = "|"  # a sharded store's incarnation: its shards' incarnations, joined in shard order


def parameter_of(key: str) -> str:
    """The shared parameter a key belongs to (itself, or the ``<param>`` of a private copy ``<param>#<tag>``)."""
    return key.split(VARIANT_SEP, 1)[0]


def partition(sizes: Mapping[str, int], shards: int) -> dict[str, int]:
    """Key -> shard for tensors of ``sizes`` bytes: each parameter (with its private copies) whole, largest
    first onto the shard with the fewest bytes so far (ties: the lower index). Deterministic."""
    groups: dict[str, int] = {}
    for key, size in sizes.items():
        groups[parameter_of(key)] = groups.get(parameter_of(key), 0) + int(size)
    load = [0] * shards
    placed = {}
    for group in sorted(groups, key=lambda g: (-groups[g], g)):
        target = min(range(shards), key=lambda i: (load[i], i))
        placed[group] = target
        load[target] += groups[group]
    return {key: placed[parameter_of(key)] for key in sizes}


class ShardMap:
    """Which shard holds which tensor, and the shapes the client knows (to refuse a bad push before any
    shard applies part of it)."""

    def __init__(
        self, shards: int, shapes: Mapping[str, tuple[int, ...]] | None = None, placed: Mapping[str, int] | None = None
    ):
        self.shards = shards
        self.shapes: dict[str, tuple[int, ...]] = dict(shapes or {})
        self.placed: dict[str, int] = dict(placed or {})

    def learn(self, shard: int, shapes: Mapping[str, tuple[int, ...]]) -> None:
        self.shapes.update({k: tuple(v) for k, v in shapes.items()})
        self.placed.update(dict.fromkeys(shapes, shard))

    def shard_of(self, key: str) -> int:
        if key in self.placed:
            return self.placed[key]
        parameter = parameter_of(key)
        if parameter in self.placed:
            return self.placed[parameter]
        return zlib.crc32(parameter.encode()) % self.shards

    def split(self, keys: Iterable[str]) -> dict[int, list[str]]:
        """Keys grouped by shard (only shards that get some)."""
        out: dict[int, list[str]] = {}
        for key in keys:
            out.setdefault(self.shard_of(key), []).append(key)
        return out


def shard_name(name: str, shard: int) -> str:
    """The named actor of shard ``shard`` of store ``name`` (shard 0 carries the store's own name)."""
    return name if shard == 0 else f"{name}/shard{shard}"


def shard_checkpoint_path(path: str, shard: int, shards: int) -> str:
    """Shard ``shard``'s checkpoint file: ``path`` itself for a store of one shard, else
    ``<stem>.shard<i>of<N><ext>`` beside it (a local path or a ``pyarrow.fs`` URI alike)."""
    if shards == 1:
        return path
    stem, ext = posixpath.splitext(path)
    return f"{stem}.shard{shard}of{shards}{ext}"


def checkpoint_layouts(path: str) -> set[int]:
    """The shard counts of the store checkpoints at ``path`` (1: the file itself; N: its shard files)."""
    found = {1} if storage.exists(path) else set()
    stem, ext = posixpath.splitext(path)
    pattern = re.compile(re.escape(posixpath.basename(stem)) + r"\.shard\d+of(\d+)" + re.escape(ext) + "$")
    for file in storage.glob(posixpath.dirname(path), f"{posixpath.basename(stem)}.shard*of*{ext}"):
        match = pattern.match(posixpath.basename(file))
        if match:
            found.add(int(match.group(1)))
    return found


def join_incarnations(parts: Iterable[str | None]) -> str:
    return INCARNATION_SEP.join(p or "" for p in parts)


def split_incarnation(incarnation: str | None, shards: int) -> list[str | None]:
    """Each shard's incarnation from a joined one (all unknown if it came from another layout)."""
    parts = (incarnation or "").split(INCARNATION_SEP)
    return [p or None for p in parts] if len(parts) == shards else [None] * shards
