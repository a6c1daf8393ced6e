"""ASE-NAS (Chen et al.): Automatic Subspace Evoking.

``graph`` holds the candidate subspaces and the subspace graph, ``controller`` the GNN + LSTM policy
(Eqs. 5-7, section IV-A), ``searcher`` the Tune searcher running Algorithm 1.
"""

from tune_spacenas.searchers.ase.controller import (
    ASEController,
    ControllerSettings,
    Decision,
    EdgeSAGEConv,
    GraphEncoder,
    PointEncoder,
)
from tune_spacenas.searchers.ase.graph import SubspaceGraph
from tune_spacenas.searchers.ase.searcher import ASESearcher

__all__ = [
    "ASEController",
    "ASESearcher",
    "ControllerSettings",
    "Decision",
    "EdgeSAGEConv",
    "GraphEncoder",
    "PointEncoder",
    "SubspaceGraph",
]
