"""Analytic MAdds / parameter counts of the layers our skeletons are made of (per image, no batch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    """Multiply-adds and parameter count of one architecture (or one layer of it)."""

    madds: float = 0.0
    params: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.madds + other.madds, self.params + other.params)

    def scale(self, factor: float) -> Cost:
        return Cost(self.madds * factor, self.params * factor)


def out_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded layer of this stride."""
    return (size + stride - 1) // stride


def effective_kernel(kernel: int, size: int, dilation: int = 1) -> int:
    """The side of the kernel a 'same'-padded convolution applies on a ``size``-pixel side: taps farther from
    the centre than the input reaches (beyond ``(size - 1) // dilation`` pixels) only ever meet padding, so
    a 7x7 kernel on a 2x2 input is a 3x3 one and a dilation-2 3x3 kernel on it a 1x1 one. The multi-branch
    supernet skips those taps (``supernet.multibranch.CroppedConv2d``) and its cost model counts the rest."""
    return 2 * min(kernel // 2, (size - 1) // dilation) + 1


def conv(
    cin: int, cout: int, kernel: int | tuple[int, int], size: int, stride: int = 1, groups: int = 1, bias: bool = False
) -> Cost:
    """A (grouped) convolution on a ``size`` x ``size`` input; MAdds counted at the output resolution."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    weights = kh * kw * (cin // groups) * cout
    hw = out_size(size, stride) ** 2
    return Cost(madds=weights * hw, params=weights + (cout if bias else 0))


def batchnorm(channels: int, affine: bool = True) -> Cost:
    return Cost(0.0, 2 * channels if affine else 0)


def linear(fin: int, fout: int, bias: bool = True) -> Cost:
    return Cost(madds=fin * fout, params=fin * fout + (fout if bias else 0))


def stem_stride(input_size: int) -> int:
    """The 3x3 stem's stride: 2 at ImageNet sizes; images of 64 pixels or less (CIFAR at 32 or 16) keep
    their resolution through it. Every skeleton and its cost model use this one rule."""
    return 2 if input_size > 64 else 1


def conv_bn(cin: int, cout: int, kernel: int | tuple[int, int], size: int, stride: int = 1, groups: int = 1) -> Cost:
    return conv(cin, cout, kernel, size, stride, groups) + batchnorm(cout)


def mbconv(
    cin: int, cout: int, kernel: int, expand: float, size: int, stride: int = 1, squeeze_excite: bool = False
) -> Cost:
    """MobileNetV2 inverted residual: 1x1 expand (skipped at ratio 1), k x k depthwise, 1x1 project."""
    mid = int(round(cin * expand))
    total = Cost()
    if mid != cin:
        total += conv_bn(cin, mid, 1, size)
    total += conv_bn(mid, mid, kernel, size, stride, groups=mid)
    out = out_size(size, stride)
    if squeeze_excite:
        squeezed = max(8, mid // 4)
        total += linear(mid, squeezed) + linear(squeezed, mid) + Cost(madds=mid * out * out)
    return total + conv_bn(mid, cout, 1, out)
