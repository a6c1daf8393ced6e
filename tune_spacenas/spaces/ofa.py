"""OFA-like space (ASE-NAS IV-B): 5 units of 2-4 MBConv layers, per-layer kernel {3,5,7} and expansion {3,4,6}."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tune_spacenas.spaces import costs
from tune_spacenas.spaces.base import Architecture, SearchSpace, Slot, register_space
from tune_spacenas.spaces.costs import Cost

OFA_LAYER_OPS = tuple(f"k{k}_e{e}" for k in (3, 5, 7) for e in (3, 4, 6))
OFA_DEPTHS = ("d2", "d3", "d4")
# Once-for-All's MobileNetV3 units: (output channels, stride of the first layer, squeeze-and-excite).
OFA_UNITS = ((24, 2, False), (40, 2, True), (80, 2, False), (112, 1, True), (160, 2, True))
MAX_DEPTH = 4


@register_space("ofa")
class OFASpace(SearchSpace):
    """Once-for-All MobileNetV3 space: a 3x3 stem (16), a fixed MBConv e1 block (16), five units
    (24, 40, 80, 112, 160 channels) of depth {2, 3, 4}, each layer with kernel {3, 5, 7} and expansion
    {3, 4, 6}, then 1x1 convs to 960 and 1280 and the classifier.

    Slots per unit: ``u{i}.depth`` then ``u{i}.l1`` .. ``u{i}.l4``. Layers beyond a unit's depth do not
    exist (``inactive_slots``), so ``canonicalize`` sets them to the first option of the full space: two
    encodings that differ only there are the same network (and are at architecture distance 0 after
    canonicalization), in the full space and in every subspace alike. ``sample`` is uniform over
    encodings, so each depth is equally likely and deep units are rarer than among the distinct
    networks that ``size`` counts (as in OFA's own sampling).
    """

    def __init__(self, input_size: int = 224, num_classes: int = 1000):
        slots = []
        for u in range(len(OFA_UNITS)):
            slots.append(Slot(f"u{u + 1}.depth", OFA_DEPTHS))
            slots.extend(Slot(f"u{u + 1}.l{l + 1}", OFA_LAYER_OPS) for l in range(MAX_DEPTH))
        super().__init__(slots, name="ofa")
        self.input_size, self.num_classes = input_size, num_classes

    def spec_kwargs(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "num_classes": self.num_classes}

    @staticmethod
    def depth(choice: int) -> int:
        return int(OFA_DEPTHS[choice][1:])

    def inactive_slots(self, arch: Architecture) -> frozenset[int]:
        return frozenset(
            u * (MAX_DEPTH + 1) + 1 + l
            for u in range(len(OFA_UNITS))
            for l in range(self.depth(arch[u * (MAX_DEPTH + 1)]), MAX_DEPTH)
        )

    @property
    def size(self) -> int:
        """Distinct networks: per unit, sum over depths of (allowed layer ops)^depth."""
        total = 1
        for u in range(len(OFA_UNITS)):
            base = u * (MAX_DEPTH + 1)
            per_unit = 0
            for d in self.slots[base].allowed:
                n = 1
                for l in range(self.depth(d)):
                    n *= len(self.slots[base + 1 + l].allowed)
                per_unit += n
            total *= per_unit
        return total

    def cost(self, arch: Sequence[int]) -> Cost:
        arch = self.validate(arch)
        size = self.input_size
        total = costs.conv_bn(3, 16, 3, size, 2)
        size = costs.out_size(size, 2)
        total += costs.mbconv(16, 16, 3, 1, size)
        cin = 16
        for u, (cout, stride, se) in enumerate(OFA_UNITS):
            base = u * (MAX_DEPTH + 1)
            for l in range(self.depth(arch[base])):
                k, e = (int(x[1:]) for x in OFA_LAYER_OPS[arch[base + 1 + l]].split("_"))
                s = stride if l == 0 else 1
                total += costs.mbconv(cin, cout, k, e, size, s, squeeze_excite=se)
                size, cin = costs.out_size(size, s), cout
        total += costs.conv_bn(cin, 960, 1, size) + costs.linear(960, 1280, bias=False)
        return total + costs.linear(1280, self.num_classes)
