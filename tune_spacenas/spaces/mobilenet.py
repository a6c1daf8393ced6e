"""MobileNet-like space of ProxylessNAS, as SE-NAS Table 2 and ASE-NAS IV-B use it: 21 searchable MBConv layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tune_spacenas.spaces import costs
from tune_spacenas.spaces.base import SearchSpace, Slot, register_space
from tune_spacenas.spaces.costs import Cost

MBCONV_OPS = tuple(f"mb_k{k}_e{e}" for k in (3, 5, 7) for e in (3, 6))
IDENTITY = "identity"
# SE-NAS Table 2: (output channels, searchable layers, stride of the first one).
MOBILENET_STAGES = ((32, 4, 2), (56, 4, 2), (112, 4, 2), (128, 4, 1), (256, 4, 2), (432, 1, 1))
STEM_CHANNELS, FIRST_BLOCK_CHANNELS, HEAD_CHANNELS = 40, 24, 1728


def parse_mbconv(op: str) -> tuple[int, int]:
    """``'mb_k5_e6'`` -> (kernel 5, expand 6)."""
    _, k, e = op.split("_")
    return int(k[1:]), int(e[1:])


def scaled(channels: int, width_mult: float) -> int:
    """Channels at a width multiplier, rounded to a multiple of 8 as MobileNets do (never below 8)."""
    return max(8, int(channels * width_mult + 4) // 8 * 8)


@register_space("mobilenet")
class MobileNetSpace(SearchSpace):
    """ProxylessNAS skeleton (SE-NAS Table 2): 3x3 stem (40), a fixed MBConv e1 k3 block (24), then 21
    searchable layers in six stages (32x4, 56x4, 112x4, 128x4, 256x4, 432x1), a 1x1 conv to 1728,
    global pooling and a classifier.

    Each layer chooses an inverted bottleneck with kernel {3, 5, 7} x expansion {3, 6} or identity;
    identity is not a candidate in the first layer of a stage (it changes width or stride), so those six
    slots have 6 operations and the others 7. The cost model counts MAdds and parameters at
    ``input_size`` (224 by default) and ``width_mult``.
    """

    def __init__(self, width_mult: float = 1.0, input_size: int = 224, num_classes: int = 1000):
        slots, index = [], 0
        for stage, (_, repeat, _) in enumerate(MOBILENET_STAGES):
            for layer in range(repeat):
                ops = MBCONV_OPS if layer == 0 else MBCONV_OPS + (IDENTITY,)
                slots.append(Slot(f"s{stage + 1}.l{layer + 1}", ops))
                index += 1
        super().__init__(slots, name="mobilenet")
        self.width_mult, self.input_size, self.num_classes = width_mult, input_size, num_classes

    def spec_kwargs(self) -> dict[str, Any]:
        return {"width_mult": self.width_mult, "input_size": self.input_size, "num_classes": self.num_classes}

    def layer_plan(self) -> list[tuple[int, int, int]]:
        """(in channels, out channels, stride) of each searchable layer, at this width."""
        plan, cin = [], scaled(FIRST_BLOCK_CHANNELS, self.width_mult)
        for cout, repeat, stride in MOBILENET_STAGES:
            cout = scaled(cout, self.width_mult)
            for layer in range(repeat):
                plan.append((cin, cout, stride if layer == 0 else 1))
                cin = cout
        return plan

    def cost(self, arch: Sequence[int]) -> Cost:
        ops = self.op_names(self.validate(arch))
        w = self.width_mult
        stem, first = scaled(STEM_CHANNELS, w), scaled(FIRST_BLOCK_CHANNELS, w)
        size, stride = self.input_size, costs.stem_stride(self.input_size)
        total = costs.conv_bn(3, stem, 3, size, stride)
        size = costs.out_size(size, stride)
        total += costs.mbconv(stem, first, 3, 1, size)
        for op, (cin, cout, stride) in zip(ops, self.layer_plan()):
            if op != IDENTITY:
                kernel, expand = parse_mbconv(op)
                total += costs.mbconv(cin, cout, kernel, expand, size, stride)
            size = costs.out_size(size, stride)
        head = scaled(HEAD_CHANNELS, w)
        total += costs.conv_bn(self.layer_plan()[-1][1], head, 1, size)
        return total + costs.linear(head, self.num_classes)
