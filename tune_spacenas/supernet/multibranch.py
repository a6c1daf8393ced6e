"""NSE's multi-branch supernet (Ci et al., CVPR 2021, section 3.2) and its fitness indicators (3.3.1).

* Operations of A.1 (``dw_k5_e3``, ``dw_k3_e6_d2``, ``conv1xk_k7_e2``, ``gdw_k3_e1_g12``) registered by name.
* ``MultiBranchLayer``: Eq. (1), the mean of the selected branches, with the identity path counted as
  one more always-on branch in normal layers (A.3; the official code averages it in the same way).
* ``MultiBranchSupernet``: Table 5's macro-architecture over a ``MultiBranchSpace``.
* ``FitnessIndicators``: one theta per (layer, operation), a supernet parameter (so it lives in the weight
  store and concurrent trials add their deltas to it) that the worker's SGD leaves alone; the network
  gives Eq. (5)'s loss through the simulated gradient of Eq. (7) with the resource term of Eq. (8)
  (``fitness_loss``) and a round's reset; NSE's worker extension (``trainables.extensions.nse``) runs
  the Adam update on validation batches during a training job.
* ``NASBench201FitnessSupernet``: the same indicators on the NAS-Bench-201 skeleton, NSE's single-branch
  special case (``N_l = 1``); build it with ``SupernetSpec(..., skeleton="nasbench201+fitness")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tune_spacenas.spaces.base import SearchSpace
from tune_spacenas.spaces.costs import effective_kernel
from tune_spacenas.spaces.mobilenet import scaled
from tune_spacenas.spaces.multibranch import (
    HEAD_CHANNELS,
    STEM_CHANNELS,
    MultiBranchSpace,
    configuration_selectors,
    layer_probability,
)
from tune_spacenas.spaces.nasbench201 import NB201_EDGES, NASBench201Space
from tune_spacenas.supernet.base import Supernet
from tune_spacenas.supernet.nasbench201 import Cell, NASBench201Supernet
from tune_spacenas.supernet.ops import build_op, register_op_pattern

FITNESS_PARAM = "fitness_indicators"  # the thetas' parameter name, in the network and in the weight store
MAX_ENUMERATED_BRANCHES = 16


# --------------------------------------------------------------------------------------------------
# Operations (A.1, Figure 6): no residual inside a branch, the identity path is the layer's (A.3)
# --------------------------------------------------------------------------------------------------
class CroppedConv2d(nn.Conv2d):
    """A 'same'-padded convolution that skips the kernel taps which only ever meet padding: on an input
    smaller than the kernel (late layers at CIFAR resolution) the result is identical and much cheaper; the
    cost model counts the same kernel (``spaces.costs.effective_kernel``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        rh, rw = effective_kernel(kh, x.shape[2], dh) // 2, effective_kernel(kw, x.shape[3], dw) // 2
        if (rh, rw) == (kh // 2, kw // 2):
            return super().forward(x)
        weight = self.weight[:, :, kh // 2 - rh : kh // 2 + rh + 1, kw // 2 - rw : kw // 2 + rw + 1]
        return nn.functional.conv2d(x, weight, None, self.stride, (rh * dh, rw * dw), self.dilation, self.groups)


def _conv_bn(
    cin: int,
    cout: int,
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    groups: int = 1,
    dilation: int = 1,
    relu: bool = True,
) -> list[nn.Module]:
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
    layers = [
        CroppedConv2d(cin, cout, (kh, kw), stride, padding, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout, affine=False),
    ]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class DepthwiseBranch(nn.Sequential):
    """1x1 expansion (``groups_in``), k x k depthwise (``dilation``), 1x1 projection (``groups_out``)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        kernel: int,
        expand: int,
        dilation: int = 1,
        groups_in: int = 1,
        groups_out: int = 1,
    ):
        mid = cin * expand
        super().__init__(
            *_conv_bn(cin, mid, 1, groups=groups_in),
            *_conv_bn(mid, mid, kernel, stride, groups=mid, dilation=dilation),
            *_conv_bn(mid, cout, 1, groups=groups_out, relu=False),
        )


class Conv1xKBranch(nn.Sequential):
    """Inception-ResNet's factorised convolution: 1x1 expansion, dense 1xk then kx1, 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int, kernel: int, expand: int):
        mid = cin * expand
        super().__init__(
            *_conv_bn(cin, mid, 1),
            *_conv_bn(mid, mid, (1, kernel), (1, stride)),
            *_conv_bn(mid, mid, (kernel, 1), (stride, 1)),
            *_conv_bn(mid, cout, 1, relu=False),
        )


@register_op_pattern(r"dw_k(\d+)_e(\d+)")
def _dw(cin: int, cout: int, stride: int, kernel: int, expand: int) -> nn.Module:
    return DepthwiseBranch(cin, cout, stride, kernel, expand)


@register_op_pattern(r"dw_k(\d+)_e(\d+)_d(\d+)")
def _dw_dilated(cin: int, cout: int, stride: int, kernel: int, expand: int, dilation: int) -> nn.Module:
    return DepthwiseBranch(cin, cout, stride, kernel, expand, dilation=dilation)


@register_op_pattern(r"gdw_k(\d+)_e(\d+)_g(\d)(\d)")
def _dw_grouped(cin: int, cout: int, stride: int, kernel: int, expand: int, gin: int, gout: int) -> nn.Module:
    return DepthwiseBranch(cin, cout, stride, kernel, expand, groups_in=gin, groups_out=gout)


@register_op_pattern(r"conv1xk_k(\d+)_e(\d+)")
def _conv1xk(cin: int, cout: int, stride: int, kernel: int, expand: int) -> nn.Module:
    return Conv1xKBranch(cin, cout, stride, kernel, expand)


# --------------------------------------------------------------------------------------------------
# Eq. (1) and the Table 5 skeleton
# --------------------------------------------------------------------------------------------------
class MultiBranchLayer(nn.Module):
    """Eq. (1): ``e(X) = (1 / sum_n s_n) sum_n s_n op_n(X)``; a normal layer's identity path is one more
    branch that is always selected (A.3), so an empty normal layer passes its input through."""

    def __init__(self, ops: Sequence[str], cin: int, cout: int, stride: int, reduction: bool):
        super().__init__()
        self.branches = nn.ModuleDict({op: build_op(op, cin, cout, stride) for op in ops})
        self.identity = not reduction

    def forward(self, x: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
        outputs = [self.branches[op](x) for op in ops] + ([x] if self.identity else [])
        if not outputs:
            raise ValueError("a reduction layer needs at least one branch")
        return outputs[0] if len(outputs) == 1 else torch.stack(outputs).mean(0)


@dataclass
class _Pair:
    """One layer of Eq. (7): the configuration forwarded (a), the other sampled one (b), their rescaled
    probabilities; ``b is None`` for a layer with a single possible configuration."""

    a: list[str]
    b: list[str] | None = None
    pa: torch.Tensor | None = None
    pb: torch.Tensor | None = None

    def mix(self, ya: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Forward ``ya``; the gradient w.r.t. each probability is <dL/de, e> (BinaryConnect-style, Eq. 7)."""
        return ya * (self.pa + 1 - self.pa.detach()) + yb.detach() * (self.pb - self.pb.detach())


class FitnessIndicators:
    """Mixin for a ``Supernet``: NSE's fitness indicators ``Theta`` (3.3.1), Eq. (5)'s loss on them and a
    round's reset. The update itself (Adam every few training steps on validation batches, local to a
    training trial as the SGD momentum is) is NSE's worker extension, enabled by a job's ``nse`` payload
    (``jobs.NSEJob``); its reports carry the thetas, so a searcher reads them from results.
    """

    def init_fitness(self, shape: tuple[int, int]) -> None:
        self.fitness_indicators = nn.Parameter(torch.zeros(shape))

    def architecture_parameter_names(self) -> list[str]:
        return [FITNESS_PARAM]

    def shared_parameter_names(self) -> list[str]:
        return [n for n in super().shared_parameter_names() if n != FITNESS_PARAM]

    @torch.no_grad()
    def reset_for_round(self, ops: Sequence[Sequence[int]], seed: int, all_weights: bool = False) -> list[str]:
        """Thetas to 0 and fresh weights (each module's own initialisation, seeded) for the (slot, op)
        branches in ``ops``, or for every weight; returns the parameter names it changed."""
        modules = [self] if all_weights else [m for slot, op in ops for m in self._choice_modules[(int(slot), int(op))]]
        cuda = sorted({p.device.index or 0 for p in self.parameters() if p.is_cuda})
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            for module in modules:
                for sub in module.modules():
                    if sub is not self and hasattr(sub, "reset_parameters"):
                        sub.reset_parameters()
        self.fitness_indicators.zero_()
        if all_weights:
            return [n for n, _ in self.named_parameters()]
        return [n for slot, op in ops for n in self.choice_parameter_names(int(slot), int(op))] + [FITNESS_PARAM]

    def fitness_loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        space: SearchSpace,
        rng: np.random.Generator,
        *,
        alpha: float = 0.0,
        beta: float = 2.0,
        tau: float = 0.0,
        costs: Sequence[Sequence[float]] | None = None,
        fixed_cost: float = 0.0,
    ) -> torch.Tensor:
        """Eq. (5) on one validation batch: cross-entropy through the simulated gradient of Eq. (7) plus
        ``alpha * |R(a, tau)|^beta`` with ``R`` the rescaled expected cost of Eq. (8) minus ``tau``."""
        pairs = self.sample_pairs(space, rng)
        loss = nn.functional.cross_entropy(self.simulated_forward(x, pairs), y)
        if not alpha or costs is None:
            return loss
        table = np.asarray(costs, float)
        resource = torch.tensor(float(fixed_cost) - float(tau), device=self.fitness_indicators.device)
        for slot, pair in enumerate(pairs):
            cost_a = self._config_cost(space, slot, pair.a, table)
            if pair.b is None:
                resource = resource + cost_a
            else:
                resource = resource + pair.pa * cost_a + pair.pb * self._config_cost(space, slot, pair.b, table)
        return loss + float(alpha) * resource.abs() ** float(beta)

    @staticmethod
    def _config_cost(space: SearchSpace, slot: int, ops: Sequence[str], costs: np.ndarray) -> float:
        return float(sum(costs[slot, space.slots[slot].index(op)] for op in ops))

    def sample_pairs(self, space: SearchSpace, rng: np.random.Generator) -> list[_Pair]:
        """Per layer, two distinct configurations drawn from Eq. (4) (without replacement) and their
        probabilities rescaled to sum to one (the two-configuration approximation of Eq. 7)."""
        p = torch.sigmoid(self.fitness_indicators)
        pairs = []
        for slot, subset in enumerate(space.choices):
            configs, selectors = configuration_selectors(space, slot, subset)
            names = [[space.slots[slot].ops[n] for n in space.branches(slot, c)] for c in configs]
            if len(configs) < 2:
                pairs.append(_Pair(names[0]))
                continue
            if len(subset) > MAX_ENUMERATED_BRANCHES:
                raise ValueError(
                    f"slot {slot}: {len(subset)} operations; Eq. (4) is enumerated over a subset's "
                    f"configurations, so keep K <= {MAX_ENUMERATED_BRANCHES}"
                )
            probs = layer_probability(p[slot, list(subset)], torch.tensor(selectors, dtype=p.dtype, device=p.device))
            weights = probs.detach().cpu().double().numpy()
            a, b = rng.choice(len(configs), size=2, replace=False, p=weights / weights.sum())
            total = probs[a] + probs[b]
            pairs.append(_Pair(names[a], names[b], probs[a] / total, probs[b] / total))
        return pairs

    def simulated_forward(self, x: torch.Tensor, pairs: Sequence[_Pair]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class MultiBranchSupernet(FitnessIndicators, Supernet):
    """Table 5: stem, 22 multi-branch layers (one module per pool operation), 1x1 conv, pooling, classifier.

    Widths follow ``space.width_mult``; inputs of 64 pixels or less use a stride-1 stem (``space.stem_stride``).
    """

    def __init__(self, space: MultiBranchSpace, num_classes: int | None = None):
        super().__init__(space)
        stem, head = scaled(STEM_CHANNELS, space.width_mult), scaled(HEAD_CHANNELS, space.width_mult)
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, space.stem_stride, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True)
        )
        self.layers = nn.ModuleList()
        for i, (slot, (cin, cout, stride, _)) in enumerate(zip(space.slots, space.layer_plan())):
            layer = MultiBranchLayer(slot.ops, cin, cout, stride, space.reduction[i])
            for n, op in enumerate(slot.ops):
                self.register_choice(i, n, layer.branches[op])
            self.layers.append(layer)
        last = space.layer_plan()[-1][1]
        self.head = nn.Sequential(nn.Conv2d(last, head, 1, bias=False), nn.BatchNorm2d(head), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(head, num_classes or space.num_classes)
        self.init_fitness((len(space.slots), max(len(s.ops) for s in space.slots)))
        # NHWC: CPU depthwise convolutions (most of the pool) run 2-4x faster, GPUs do not mind.
        self.to(memory_format=torch.channels_last)

    def _ops(self, slot: int, config: int) -> list[str]:
        return [self.space.slots[slot].ops[n] for n in self.space.branches(slot, config)]

    def _classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for i, (layer, config) in enumerate(zip(self.layers, arch)):
            x = layer(x, self._ops(i, config))
        return self._classify(x)

    def simulated_forward(self, x: torch.Tensor, pairs: Sequence[_Pair]) -> torch.Tensor:
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for layer, pair in zip(self.layers, pairs):
            ya = layer(x, pair.a)
            if pair.b is None:
                x = ya
                continue
            with torch.no_grad():
                yb = layer(x, pair.b)
            x = pair.mix(ya, yb)
        return self._classify(x)


class NASBench201FitnessSupernet(FitnessIndicators, NASBench201Supernet):
    """NAS-Bench-201 with fitness indicators per (edge, operation): NSE's single-branch special case
    (``N_l = 1``), where Eq. (4) restricted to one-operation configurations is a softmax of the thetas."""

    def __init__(self, space: NASBench201Space, num_classes: int | None = None):
        super().__init__(space, num_classes)
        self.init_fitness((len(space.slots), max(len(s.ops) for s in space.slots)))

    def simulated_forward(self, x: torch.Tensor, pairs: Sequence[_Pair]) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = _simulated_cell(layer, x, pairs) if isinstance(layer, Cell) else layer(x)
        return self.classifier(self.lastact(x).mean(dim=(2, 3)))


def _simulated_cell(cell: Cell, x: torch.Tensor, pairs: Sequence[_Pair]) -> torch.Tensor:
    """``Cell.forward`` with every edge mixed as in Eq. (7) (``none`` gives zeros)."""

    def edge(e: int, ops: list[str], inp: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(inp) if ops[0] == "none" else cell.edges[e][ops[0]](inp)

    nodes = [x]
    for j in range(1, 4):
        total = 0
        for e, (dst, src) in enumerate(NB201_EDGES):
            if dst != j:
                continue
            pair = pairs[e]
            ya = edge(e, pair.a, nodes[src])
            if pair.b is not None:
                with torch.no_grad():
                    yb = edge(e, pair.b, nodes[src])
                ya = pair.mix(ya, yb)
            total = total + ya
        nodes.append(total)
    return nodes[3]
