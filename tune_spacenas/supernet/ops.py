"""Candidate operations, registered by name (timm-style), so every skeleton builds its choices the same way.

``build_op(name, cin, cout, stride)`` returns a module for any registered name; a space's operation
names are the registry's keys, so a new space needs new entries here and nothing else in the skeletons.
Candidate operations use BatchNorm without affine parameters, as weight-sharing supernets usually do:
one shared affine transform per op would be pulled between the paths using it; statistics are
recalibrated per architecture before evaluation anyway (``supernet.bn``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

OpFactory = Callable[[int, int, int], nn.Module]
_OPS: dict[str, OpFactory] = {}
_PATTERNS: list[tuple[re.Pattern, Callable[..., nn.Module]]] = []


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    def wrap(factory: OpFactory) -> OpFactory:
        _OPS[name] = factory
        return factory

    return wrap


def register_op_pattern(pattern: str) -> Callable:
    """Register a family of operations whose names match ``pattern``; groups are passed as ints."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _PATTERNS.append((re.compile(pattern), factory))
        return factory

    return wrap


def build_op(name: str, cin: int, cout: int, stride: int = 1) -> nn.Module:
    """A fresh module for operation ``name``; ValueError naming the known operations otherwise."""
    if name in _OPS:
        return _OPS[name](cin, cout, stride)
    for pattern, factory in _PATTERNS:
        match = pattern.fullmatch(name)
        if match:
            return factory(cin, cout, stride, *(int(g) for g in match.groups()))
    known = sorted(_OPS) + [p.pattern for p, _ in _PATTERNS]
    raise ValueError(f"unknown operation {name!r}; registered operations: {known}")


class ReLUConvBN(nn.Sequential):
    """NAS-Bench-201's convolution: ReLU, k x k convolution, BatchNorm."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, affine: bool = False):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cout, kernel, stride, padding=dilation * (kernel - 1) // 2, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout, affine=affine),
        )


class Zero(nn.Module):
    """The ``none`` operation. Skeletons skip it on a single path; this module exists for multi-path use."""

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Skip connection that halves resolution / changes width: two offset 1x1 stride-2 convs, concatenated."""

    def __init__(self, cin: int, cout: int, affine: bool = False):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(cin, cout // 2, 1, 2, bias=False)
        self.conv2 = nn.Conv2d(cin, cout - cout // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv1(x), self.conv2(x[:, :, 1:, 1:] if x.shape[-1] > 1 else x)], dim=1))


class MBConv(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expansion (none at ratio 1), k x k depthwise, 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int, kernel: int, expand: int, affine: bool = False):
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid, affine=affine), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False),
            nn.BatchNorm2d(mid, affine=affine),
            nn.ReLU6(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.BatchNorm2d(cout, affine=affine),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


@register_op("none")
def _none(cin: int, cout: int, stride: int) -> nn.Module:
    return Zero(stride)


@register_op("skip_connect")
def _skip(cin: int, cout: int, stride: int) -> nn.Module:
    return nn.Identity() if stride == 1 and cin == cout else FactorizedReduce(cin, cout)


@register_op("identity")
def _identity(cin: int, cout: int, stride: int) -> nn.Module:
    if stride != 1 or cin != cout:
        raise ValueError(f"identity cannot map {cin}->{cout} channels at stride {stride}")
    return nn.Identity()


@register_op_pattern(r"nor_conv_(\d+)x\d+")
def _nor_conv(cin: int, cout: int, stride: int, kernel: int) -> nn.Module:
    return ReLUConvBN(cin, cout, kernel, stride)


@register_op_pattern(r"avg_pool_(\d+)x\d+")
def _avg_pool(cin: int, cout: int, stride: int, kernel: int) -> nn.Module:
    pool = nn.AvgPool2d(kernel, stride, kernel // 2, count_include_pad=False)
    return pool if cin == cout else nn.Sequential(ReLUConvBN(cin, cout, 1), pool)


@register_op_pattern(r"mb_k(\d+)_e(\d+)")
def _mbconv(cin: int, cout: int, stride: int, kernel: int, expand: int) -> nn.Module:
    return MBConv(cin, cout, stride, kernel, expand)
