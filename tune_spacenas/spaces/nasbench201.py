"""NAS-Bench-201 cell space: 6 edges of a 4-node DAG, 5 operations each, 5^6 = 15,625 cells."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tune_spacenas.spaces import costs
from tune_spacenas.spaces.base import Architecture, SearchSpace, Slot, register_space
from tune_spacenas.spaces.costs import Cost

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Edges in the order NAS-Bench-201 writes them: node 1 <- 0 | node 2 <- 0, 1 | node 3 <- 0, 1, 2.
NB201_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


@register_space("nasbench201")
class NASBench201Space(SearchSpace):
    """The NAS-Bench-201 topology space (Dong & Yang, 2020), as searched in ASE-NAS IV-A and SE-NAS 3.5.

    The string form is NAS-Bench-201's own, ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, so architectures
    round-trip with the benchmark table. The cost model is the benchmark's network: a 3x3 stem of
    ``channels``, three stages of ``cells_per_stage`` cells with residual reduction blocks between them,
    global pooling and a linear classifier, on ``input_size`` x ``input_size`` images.
    """

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, input_size: int = 32, num_classes: int = 10):
        super().__init__([Slot(f"{j}<-{i}", NB201_OPS) for j, i in NB201_EDGES], name="nasbench201")
        self.channels, self.cells_per_stage = channels, cells_per_stage
        self.input_size, self.num_classes = input_size, num_classes

    def spec_kwargs(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "cells_per_stage": self.cells_per_stage,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
        }

    def to_string(self, arch: Sequence[int | str]) -> str:
        ops = self.op_names(self.validate(arch))
        nodes = [ops[0:1], ops[1:3], ops[3:6]]
        return "+".join("|" + "|".join(f"{op}~{i}" for i, op in enumerate(node)) + "|" for node in nodes)

    def from_string(self, text: str) -> Architecture:
        try:
            nodes = text.split("+")
            ops, ok = [], len(nodes) == 3
            for j, node in enumerate(nodes, start=1):
                items = node.strip("|").split("|")
                ok &= node.startswith("|") and node.endswith("|") and len(items) == j
                for i, item in enumerate(items):
                    op, _, src = item.partition("~")
                    ok &= src == str(i)
                    ops.append(op)
        except AttributeError:
            ok = False
        if not ok:
            raise ValueError(f"{text!r} is not a NAS-Bench-201 string like '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'")
        return self.validate(ops)

    def cost(self, arch: Sequence[int]) -> Cost:
        arch = self.validate(arch)
        C, size = self.channels, self.input_size
        total = costs.conv_bn(3, C, 3, size)
        for stage in range(3):
            c = C * 2**stage
            if stage:
                total += _reduction_block(c // 2, c, size)
                size = costs.out_size(size, 2)
            total += _cell_cost(self.op_names(arch), c, size).scale(self.cells_per_stage)
        return total + costs.batchnorm(4 * C) + costs.linear(4 * C, self.num_classes)


def _cell_cost(ops: Sequence[str], c: int, size: int) -> Cost:
    total = Cost()
    for op in ops:
        if op.startswith("nor_conv_"):
            total += costs.conv_bn(c, c, int(op[-1]), size)
    return total


def _reduction_block(cin: int, cout: int, size: int) -> Cost:
    """NAS-Bench-201's ResNet basic block with stride 2 and an avg-pool + 1x1 shortcut."""
    out = costs.out_size(size, 2)
    return costs.conv_bn(cin, cout, 3, size, 2) + costs.conv_bn(cout, cout, 3, out) + costs.conv(cin, cout, 1, out)
