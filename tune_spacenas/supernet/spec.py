"""``SupernetSpec``: everything needed to rebuild one shared supernet and train it the same way anywhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tune_spacenas.data.spec import DataSpec
from tune_spacenas.spaces.base import SearchSpace, space_from_spec

if TYPE_CHECKING:
    from tune_spacenas.supernet.base import Supernet

STORE_META = "spec"  # the weight store's meta entry holding the spec (plain data)


@dataclass
class SupernetSpec:
    """The space, the data and the training recipe of a shared supernet; stored (as plain data) in
    the weight store, so every trainable builds the same network and trains it the same way.

    Optimiser semantics: each training trial runs its own SGD (momentum, Nesterov, weight decay) on
    the paths it samples, starting with empty momentum buffers, and pushes the resulting weight
    *deltas* to the store at every sync; momentum is therefore local to a trial (a trial of many steps
    makes this negligible) while the weights are global.

    Args:
        space: the search space (its kind picks the skeleton; e.g. ``NASBench201Space(channels=16,
            cells_per_stage=1)``).
        data: the dataset and its splits.
        batch_size: training batch size.
        lr, momentum, weight_decay, nesterov, grad_clip: SGD settings; ``lr`` is the peak rate a
            searcher's schedule scales (trial configs may carry their own ``lr``).
        recalibration_batches: training batches that re-estimate BatchNorm statistics per architecture
            before it is evaluated (NSE 3.3.2 and FACTS: 4 batches of 128 suffice at CIFAR scale).
        eval_batch_size, eval_images: validation batch size and how many validation images score an
            architecture (``None``: the whole validation split).
        init_seed: seeds the supernet's initial weights.
        skeleton: a registered skeleton other than the space kind's own (e.g. ``"nasbench201+fitness"``:
            NAS-Bench-201 with NSE's fitness indicators); ``None`` builds the space kind's.
    """

    space: SearchSpace
    data: DataSpec = field(default_factory=DataSpec)
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    grad_clip: float = 5.0
    recalibration_batches: int = 4
    eval_batch_size: int = 500
    eval_images: int | None = 1000
    init_seed: int = 0
    skeleton: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self) | {"space": self.space.to_spec(), "data": self.data.to_dict()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupernetSpec:
        data = dict(data)
        return cls(space=space_from_spec(data.pop("space")), data=DataSpec.from_dict(data.pop("data")), **data)

    def store_meta(self) -> dict[str, Any]:
        """The meta a weight store (or an in-process ``WeightTable``) of this supernet carries."""
        return {STORE_META: self.to_dict()}

    @classmethod
    def from_store_meta(cls, meta: Mapping[str, Any], where: str) -> SupernetSpec:
        """The spec a store's meta holds; ValueError saying how to create a store that has one."""
        if STORE_META not in meta:
            raise ValueError(
                f"{where} holds no SupernetSpec (it was created from raw arrays); create it with "
                "SupernetStore.create(name, spec)"
            )
        return cls.from_dict(meta[STORE_META])

    def build(self) -> Supernet:
        """A freshly initialised supernet (seeded by ``init_seed``)."""
        from tune_spacenas.supernet import build_supernet

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.init_seed)
            return build_supernet(
                self.space, num_classes=10 if self.data.name in ("cifar10", "digits") else None, skeleton=self.skeleton
            )

    def initial_weights(self) -> dict[str, np.ndarray]:
        return {name: p.detach().cpu().numpy().copy() for name, p in self.build().named_parameters()}
