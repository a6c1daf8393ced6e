"""DARTS cell space (SE-NAS 3.5): a normal and a reduction cell, 14 edges x 8 operations each."""

from __future__ import annotations

from tune_spacenas.spaces.base import SearchSpace, Slot, register_space

DARTS_OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
# Node j (2..5) takes an edge from every earlier node i: the two cell inputs (0, 1) and nodes 2..j-1.
DARTS_EDGES = tuple((j, i) for j in range(2, 6) for i in range(j))


@register_space("darts")
class DARTSSpace(SearchSpace):
    """Two cells of 4 intermediate nodes; each node sums one operation per incoming edge (``none``
    removes the edge), 8^14 choices per cell. Slots are named ``normal:j<-i`` and ``reduce:j<-i``."""

    def __init__(self):
        slots = [Slot(f"{cell}:{j}<-{i}", DARTS_OPS) for cell in ("normal", "reduce") for j, i in DARTS_EDGES]
        super().__init__(slots, name="darts")

    def spec_kwargs(self) -> dict:
        return {}
