"""Weight-sharing supernets: the operation registry, one skeleton per space, BatchNorm recalibration."""

from __future__ import annotations

from collections.abc import Callable

from tune_spacenas.spaces import (
    GeneratedSpace,
    IRBSpace,
    MobileNetSpace,
    MultiBranchSpace,
    NASBench201Space,
    OpenCellSpace,
    SearchSpace,
)
from tune_spacenas.supernet.base import Supernet
from tune_spacenas.supernet.bn import recalibrate_batchnorm
from tune_spacenas.supernet.cells import GeneratedSpaceSupernet, IRBSupernet, OpenCellSupernet
from tune_spacenas.supernet.mobilenet import MobileNetSupernet
from tune_spacenas.supernet.multibranch import MultiBranchSupernet, NASBench201FitnessSupernet
from tune_spacenas.supernet.nasbench201 import NASBench201Supernet
from tune_spacenas.supernet.ops import build_op, register_op, register_op_pattern

_SKELETONS: dict[str, Callable[..., Supernet]] = {
    NASBench201Space.kind: NASBench201Supernet,
    MobileNetSpace.kind: MobileNetSupernet,
    OpenCellSpace.kind: OpenCellSupernet,
    GeneratedSpace.kind: GeneratedSpaceSupernet,
    IRBSpace.kind: IRBSupernet,
    MultiBranchSpace.kind: MultiBranchSupernet,
    "nasbench201+fitness": NASBench201FitnessSupernet,  # NSE single-branch: SupernetSpec(skeleton=...)
}


def register_supernet(kind: str, factory: Callable[..., Supernet]) -> None:
    """Make ``build_supernet`` build ``factory(space, num_classes=...)`` for spaces of ``kind``."""
    _SKELETONS[kind] = factory


def build_supernet(space: SearchSpace, num_classes: int | None = None, skeleton: str | None = None) -> Supernet:
    """The supernet skeleton ``skeleton`` (default: the one of ``space``'s kind); ValueError for none."""
    kind = skeleton or space.kind
    if kind not in _SKELETONS:
        raise ValueError(f"no supernet skeleton {kind!r} (space kind {space.kind!r}); known: {sorted(_SKELETONS)}")
    return _SKELETONS[kind](space.full_space(), num_classes=num_classes)


__all__ = [
    "MobileNetSupernet",
    "MultiBranchSupernet",
    "NASBench201FitnessSupernet",
    "NASBench201Supernet",
    "Supernet",
    "build_op",
    "build_supernet",
    "recalibrate_batchnorm",
    "register_op",
    "register_op_pattern",
    "register_supernet",
]
