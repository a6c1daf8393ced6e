"""Search spaces: the shared slot model and one module per concrete space."""

from tune_spacenas.spaces.base import (
    ARCH_KEY,
    OPS_KEY,
    SPACE_KEY,
    Architecture,
    SearchSpace,
    Slot,
    register_space,
    space_from_config,
    space_from_spec,
)
from tune_spacenas.spaces.cells import CellSpace, GeneratedSpace, IRBSpace, OpenCellSpace
from tune_spacenas.spaces.costs import Cost
from tune_spacenas.spaces.darts import DARTSSpace
from tune_spacenas.spaces.mobilenet import MobileNetSpace
from tune_spacenas.spaces.multibranch import MultiBranchSpace
from tune_spacenas.spaces.nasbench201 import NASBench201Space
from tune_spacenas.spaces.ofa import OFASpace

__all__ = [
    "ARCH_KEY",
    "OPS_KEY",
    "SPACE_KEY",
    "Architecture",
    "CellSpace",
    "Cost",
    "DARTSSpace",
    "GeneratedSpace",
    "IRBSpace",
    "MobileNetSpace",
    "MultiBranchSpace",
    "NASBench201Space",
    "OFASpace",
    "OpenCellSpace",
    "SearchSpace",
    "Slot",
    "register_space",
    "space_from_config",
    "space_from_spec",
]
