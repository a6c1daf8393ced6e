"""NAS-Bench-201 skeleton: stem, three stages of N cells, residual reduction blocks, classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tune_spacenas.spaces.nasbench201 import NB201_EDGES, NASBench201Space
from tune_spacenas.supernet.base import Supernet
from tune_spacenas.supernet.ops import ReLUConvBN, build_op


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction: two 3x3 ReLU-conv-BN (the first of stride 2) plus avg-pool + 1x1 shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv_a = ReLUConvBN(cin, cout, 3, 2, affine=True)
        self.conv_b = ReLUConvBN(cout, cout, 3, 1, affine=True)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class Cell(nn.Module):
    """A 4-node DAG; every edge holds one module per operation except ``none`` (skipped on a path)."""

    def __init__(self, space: NASBench201Space, channels: int):
        super().__init__()
        self.edges = nn.ModuleList(
            nn.ModuleDict({op: build_op(op, channels, channels) for op in slot.ops if op != "none"})
            for slot in space.slots
        )
        self.op_names = [slot.ops for slot in space.slots]

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        nodes = [x]
        for j in range(1, 4):
            total = None
            for e, (dst, src) in enumerate(NB201_EDGES):
                name = self.op_names[e][arch[e]]
                if dst != j or name == "none":
                    continue
                out = self.edges[e][name](nodes[src])
                total = out if total is None else total + out
            nodes.append(total if total is not None else torch.zeros_like(x))
        return nodes[3]


class NASBench201Supernet(Supernet):
    """The benchmark's network with every cell a weight-sharing cell (width ``space.channels``,
    ``space.cells_per_stage`` cells per stage; C=16, N=5 is the benchmark's, C=16, N=1 trains on CPU).
    Works at any input resolution (32x32 CIFAR, or 16x16 for CPU rank experiments)."""

    def __init__(self, space: NASBench201Space, num_classes: int | None = None):
        super().__init__(space)
        C, N = space.channels, space.cells_per_stage
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.layers = nn.ModuleList()
        for stage in range(3):
            c = C * 2**stage
            if stage:
                self.layers.append(ResNetBasicBlock(c // 2, c))
            for _ in range(N):
                cell = Cell(space, c)
                for e, slot in enumerate(space.slots):
                    for o, name in enumerate(slot.ops):
                        if name != "none":
                            self.register_choice(e, o, cell.edges[e][name])
                self.layers.append(cell)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(4 * C, num_classes or space.num_classes)

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        x = self.stem(x)
        every_slot = range(len(self.space.slots))  # every cell decides all of them
        for layer in self.layers:
            x = self.gated_layer(every_slot, x, arch, layer) if isinstance(layer, Cell) else layer(x)
        x = self.lastact(x).mean(dim=(2, 3))
        return self.classifier(x)
