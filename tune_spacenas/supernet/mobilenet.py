"""MobileNet-like skeleton (ProxylessNAS, SE-NAS Table 2): 21 searchable layers of MBConv choices."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn

from tune_spacenas.spaces import costs
from tune_spacenas.spaces.mobilenet import FIRST_BLOCK_CHANNELS, HEAD_CHANNELS, STEM_CHANNELS, MobileNetSpace, scaled
from tune_spacenas.supernet.base import Supernet
from tune_spacenas.supernet.ops import MBConv, build_op


class MobileNetSupernet(Supernet):
    """Stem, a fixed MBConv e1 k3 block, then per searchable layer one module per candidate operation.

    ``space.width_mult`` scales every width; inputs of 64 pixels or less use a stride-1 stem so small
    images (CIFAR at 32 or 16 pixels) keep spatial extent through the five stride-2 stages.
    """

    def __init__(self, space: MobileNetSpace, num_classes: int | None = None):
        super().__init__(space)
        w = space.width_mult
        stem, first = scaled(STEM_CHANNELS, w), scaled(FIRST_BLOCK_CHANNELS, w)
        stem_stride = costs.stem_stride(space.input_size)
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU6(inplace=True)
        )
        self.first = MBConv(stem, first, 1, 3, 1, affine=True)
        self.choices = nn.ModuleList()
        for slot_index, (slot, (cin, cout, stride)) in enumerate(zip(space.slots, space.layer_plan())):
            layer = nn.ModuleDict({op: build_op(op, cin, cout, stride) for op in slot.ops})
            for o, op in enumerate(slot.ops):
                self.register_choice(slot_index, o, layer[op])
            self.choices.append(layer)
        head = scaled(HEAD_CHANNELS, w)
        last = space.layer_plan()[-1][1]
        self.head = nn.Sequential(nn.Conv2d(last, head, 1, bias=False), nn.BatchNorm2d(head), nn.ReLU6(inplace=True))
        self.classifier = nn.Linear(head, num_classes or space.num_classes)
        self.op_names = [slot.ops for slot in space.slots]

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        x = self.first(self.stem(x))
        for slot in range(len(self.choices)):
            x = self.gated_layer((slot,), x, arch, functools.partial(self.run_layer, slot))
        return self.classifier(self.head(x).mean(dim=(2, 3)))

    def run_layer(self, slot: int, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        return self.choices[slot][self.op_names[slot][arch[slot]]](x)
