"""ASE-NAS section III-B: the candidate subspaces and the subspace graph built on them.

A subspace ``Omega_a = {b : D(a, b) <= M}`` (Eq. 3) is identified by its centre architecture ``a``, so the
graph stores centres and their rewards ``R(a)``. Edges are directed from a weaker centre to a better one
(ties: from the earlier node to the later, as the official code does), so every pair of nodes is joined
by exactly one edge; the edge features ``h_a' - h_a`` (Appendix) are computed by the controller from the
centres' embeddings. Replacing a centre (Algorithm 1 lines 12-15) re-derives its edges, since they
follow from the rewards.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tune_spacenas import storage
from tune_spacenas.jobs import SPACE_KEY
from tune_spacenas.spaces.base import Architecture, SearchSpace, space_from_spec


@dataclass
class SubspaceGraph:
    """The K candidate subspaces (nodes: centres with their rewards) and the directed edges between them.

    ``scores`` are rewards to maximise (``ArchSearcher.score`` of the metric).
    """

    centers: list[Architecture] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def __post_init__(self):
        if len(self.centers) != len(self.scores):
            raise ValueError(f"{len(self.centers)} centres but {len(self.scores)} scores")
        self.centers = [tuple(int(o) for o in c) for c in self.centers]
        self.scores = [float(s) for s in self.scores]

    def __len__(self) -> int:
        return len(self.centers)

    def edges(self) -> list[tuple[int, int]]:
        """Directed edges ``(weaker, better)``: one per pair of nodes."""
        K = len(self.centers)
        return [(i, j) if self._weaker(i, j) else (j, i) for i in range(K) for j in range(i + 1, K)]

    def edge_mask(self) -> np.ndarray:
        """``mask[i, j] = 1`` when the edge ``i -> j`` exists (``i`` is the weaker centre)."""
        mask = np.zeros((len(self), len(self)), dtype=np.float32)
        for i, j in self.edges():
            mask[i, j] = 1.0
        return mask

    def _weaker(self, i: int, j: int) -> bool:
        return self.scores[i] < self.scores[j] or (self.scores[i] == self.scores[j] and i < j)

    def add(self, center: Architecture, score: float) -> None:
        self.centers.append(tuple(int(o) for o in center))
        self.scores.append(float(score))

    def replace(self, node: int, center: Architecture, score: float) -> None:
        """Algorithm 1 lines 13-14: ``Omega_a`` becomes ``Omega_b``; its edges follow from the new reward."""
        self.centers[node] = tuple(int(o) for o in center)
        self.scores[node] = float(score)

    def index(self, center: Architecture) -> int | None:
        """The node whose centre is ``center``, if any."""
        try:
            return self.centers.index(tuple(center))
        except ValueError:
            return None

    def best(self) -> tuple[Architecture, float]:
        """The best centre (section III-B: the inferred architecture after search) and its reward."""
        if not self.centers:
            raise ValueError("the subspace graph has no centres yet")
        k = int(np.argmax(self.scores))
        return self.centers[k], self.scores[k]

    # --- plain data ----------------------------------------------------------------------------
    def to_dict(self, space: SearchSpace) -> dict[str, Any]:
        return {
            "centers": [space.to_string(c) for c in self.centers],
            "scores": list(self.scores),
            SPACE_KEY: space.to_spec(),
        }

    def save(self, path: str | os.PathLike, space: SearchSpace) -> None:
        """Write the graph as JSON (the centres as strings), atomically, to a path or a ``pyarrow.fs`` URI;
        ASE-NAS+ starts a new search from it."""
        storage.write_json(path, self.to_dict(space))


def load_centers(source: Sequence[Any] | str | os.PathLike, space: SearchSpace) -> list[Architecture]:
    """Centres for ASE-NAS+ (section IV-A, Table II): architectures (strings or index tuples), or the
    path of a graph saved by ``SubspaceGraph.save`` / ``ASESearcher.save_graph``."""
    if isinstance(source, (str, os.PathLike)):
        path = str(source)
        if not storage.exists(path):
            raise FileNotFoundError(
                f"initial_centers: no saved subspace graph at {path!r}; pass a list of "
                "architectures or a file written by ASESearcher.save_graph"
            )
        saved = storage.read_json(path)
        if SPACE_KEY in saved and space_from_spec(saved[SPACE_KEY]).full_space() != space.full_space():
            raise ValueError(
                f"initial_centers: the graph at {path!r} was saved for another space "
                f"({saved[SPACE_KEY]['kind']}); transfer centres between searches of the same space"
            )
        source = saved["centers"]
    centers = [space.validate(c) for c in source]
    if len(set(centers)) != len(centers):
        raise ValueError("initial_centers repeats an architecture; the subspaces of the graph must be distinct")
    return centers
