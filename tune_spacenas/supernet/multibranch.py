"""NSE's multi-branch supernet (Ci et al., CVPR 2021, section 3.2) and its fitness indicators (3.3.1).

* Operations of A.1 (``dw_k5_e3``, ``dw_k3_e6_d2``, ``conv1xk_k7_e2``, ``gdw_k3_e1_g12``) registered by name.
* ``MultiBranchLayer``: Eq. (1), the mean of the selected branches, with the identity path counted as
  one more always-on branch in normal layers (A.3; the official code averages it in the same way).
* ``MultiBranchSupernet``: Table 5's macro-architecture over a ``MultiBranchSpace``.
* ``FitnessIndicators``: one theta per (layer, operation), a supernet parameter (so it lives in the weight
  store and concurrent trials add their deltas to it) that the worker's SGD leaves alone; every
  ``every`` training steps ``after_step`` updates it with Adam on a validation batch, by the simulated
  gradient of Eq. (7) with the resource term of Eqs. (5) and (8).
* ``NASBench201FitnessSupernet``: the same indicators on the NAS-Bench-201 skeleton, NSE's single-branch
  special case (``N_l = 1``); build it with ``SupernetSpec(..., skeleton="nasbench201+fitness")``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tune_spacenas.jobs import SUBSPACE_KEY
from tune_spacenas.spaces.base import Architecture, SearchSpace
from tune_spacenas.spaces.multibranch import (HEAD_CHANNELS, STEM_CHANNELS, MultiBranchSpace, branches_of,
                                              configuration_selectors, subsets_of)
from tune_spacenas.spaces.mobilenet import scaled
from tune_spacenas.spaces.nasbench201 import NB201_EDGES, NASBench201Space
from tune_spacenas.supernet.base import Supernet
from tune_spacenas.supernet.nasbench201 import Cell, NASBench201Supernet
from tune_spacenas.supernet.ops import build_op, register_op_pattern

FITNESS_KEY = "fitness_indicators"
NSE_JOB_KEY = "nse"
MAX_ENUMERATED_BRANCHES = 16


# --------------------------------------------------------------------------------------------------
# Operations (A.1, Figure 6): no residual inside a branch, the identity path is the layer's (A.3)
# --------------------------------------------------------------------------------------------------
class CroppedConv2d(nn.Conv2d):
    """A 'same'-padded convolution that skips the kernel taps which only ever meet padding: on an input
    smaller than the kernel (late layers at CIFAR resolution) the result is identical and much cheaper."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        rh, rw = min(kh // 2, (x.shape[2] - 1) // dh), min(kw // 2, (x.shape[3] - 1) // dw)
        if (rh, rw) == (kh // 2, kw // 2):
            return super().forward(x)
        weight = self.weight[:, :, kh // 2 - rh:kh // 2 + rh + 1, kw // 2 - rw:kw // 2 + rw + 1]
        return nn.functional.conv2d(x, weight, None, self.stride, (rh * dh, rw * dw), self.dilation, self.groups)


def _conv_bn(cin: int, cout: int, kernel: int | tuple[int, int], stride: int | tuple[int, int] = 1,
             groups: int = 1, dilation: int = 1, relu: bool = True) -> list[nn.Module]:
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
    layers = [CroppedConv2d(cin, cout, (kh, kw), stride, padding, dilation=dilation, groups=groups, bias=False),
              nn.BatchNorm2d(cout, affine=False)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class DepthwiseBranch(nn.Sequential):
    """1x1 expansion (``groups_in``), k x k depthwise (``dilation``), 1x1 projection (``groups_out``)."""

    def __init__(self, cin: int, cout: int, stride: int, kernel: int, expand: int, dilation: int = 1,
                 groups_in: int = 1, groups_out: int = 1):
        mid = cin * expand
        super().__init__(*_conv_bn(cin, mid, 1, groups=groups_in),
                         *_conv_bn(mid, mid, kernel, stride, groups=mid, dilation=dilation),
                         *_conv_bn(mid, cout, 1, groups=groups_out, relu=False))


class Conv1xKBranch(nn.Sequential):
    """Inception-ResNet's factorised convolution: 1x1 expansion, dense 1xk then kx1, 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int, kernel: int, expand: int):
        mid = cin * expand
        super().__init__(*_conv_bn(cin, mid, 1), *_conv_bn(mid, mid, (1, kernel), (1, stride)),
                         *_conv_bn(mid, mid, (kernel, 1), (stride, 1)), *_conv_bn(mid, cout, 1, relu=False))


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


def layer_probability(p: Any, selectors: Any) -> Any:
    """Eq. (4): ``p_l(s) = prod_n (s_n p_n + (1 - s_n)(1 - p_n))`` (numpy or torch, over the last axis)."""
    return (selectors * p + (1 - selectors) * (1 - p)).prod(-1)


class FitnessIndicators:
    """Mixin for a ``Supernet``: NSE's fitness indicators ``Theta`` (3.3.1) and their update.

    A training job enables the update with ``job["nse"] = {"every": 2, "lr": 0.1, "betas": [0, 0.999],
    "alpha": 1e-5, "beta": 2, "tau": 300, "costs": [[...] per slot and op], "fixed_cost": ...}``
    (``costs``/``tau`` in one unit, e.g. millions of MAdds, or a latency lookup table's milliseconds).
    Adam's moments are local to a training trial, as the SGD momentum is (``SupernetSpec``). Training
    reports carry the thetas (``training_metrics``), so a searcher reads them from results.

    ``job["nse"]["reset"] = {"seed": s, "ops": [[slot, op], ...], "all": False}`` starts a round: after the
    trial's first step the thetas return to 0 and the listed operations (every weight with ``all``) are
    re-initialised; the changes travel to the store as this trial's deltas.
    """

    def init_fitness(self, shape: tuple[int, int]) -> None:
        self.fitness_indicators = nn.Parameter(torch.zeros(shape))
        self._fitness: dict[str, Any] = {"job": None}

    def architecture_parameter_names(self) -> list[str]:
        return [FITNESS_KEY]

    def shared_parameter_names(self) -> list[str]:
        return [n for n in super().shared_parameter_names() if n != FITNESS_KEY]

    def training_metrics(self) -> dict[str, Any]:
        return {FITNESS_KEY: self.fitness_indicators.detach().cpu().tolist()}

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
        return [n for slot, op in ops for n in self.choice_parameter_names(int(slot), int(op))] + [FITNESS_KEY]

    def after_step(self, worker: Any, step: int, arch: Architecture, job: dict) -> list[str]:
        settings = job.get(NSE_JOB_KEY)
        if not settings:
            return []
        reset = settings.get("reset")
        # Step 1 only: a trial Tune resumes from a checkpoint has applied its reset already.
        changed = self.reset_for_round(reset["ops"], int(reset["seed"]), bool(reset.get("all"))) if reset and step == 1 else []
        if step % int(settings.get("every", 2)):
            return changed
        state = self._fitness_state(worker, job, settings)
        x, y = next(state["val"])
        loss = self.fitness_loss(x, y, state["space"], settings, state["rng"])
        (grad,) = torch.autograd.grad(loss, [self.fitness_indicators], allow_unused=True)
        if grad is None:  # every layer has a single configuration left: nothing to learn
            return changed
        self.fitness_indicators.grad = grad
        state["adam"].step()
        self.fitness_indicators.grad = None
        return changed + [FITNESS_KEY]

    def _fitness_state(self, worker: Any, job: dict, settings: Mapping[str, Any]) -> dict[str, Any]:
        if self._fitness["job"] is not job:  # one Adam and one validation stream per training job
            space = self.space.restrict(job[SUBSPACE_KEY]) if SUBSPACE_KEY in job else self.space
            seed = int(job.get("seed", 0))
            batches = worker.data.fixed_batches("val", worker.spec.batch_size, None, seed=seed)
            adam = torch.optim.Adam([self.fitness_indicators], lr=float(settings.get("lr", 0.1)),
                                    betas=tuple(settings.get("betas", (0.0, 0.999))))
            self._fitness = {"job": job, "space": space, "val": itertools.cycle(batches), "adam": adam,
                             "rng": np.random.default_rng([seed, 7])}
        return self._fitness

    def fitness_loss(self, x: torch.Tensor, y: torch.Tensor, space: SearchSpace, settings: Mapping[str, Any],
                     rng: np.random.Generator) -> torch.Tensor:
        """Eq. (5) on one validation batch: cross-entropy through the simulated gradient of Eq. (7) plus
        ``alpha * |R(a, tau)|^beta`` with ``R`` the rescaled expected cost of Eq. (8) minus ``tau``."""
        pairs = self.sample_pairs(space, rng)
        loss = nn.functional.cross_entropy(self.simulated_forward(x, pairs), y)
        alpha = float(settings.get("alpha", 0.0))
        if not alpha or "costs" not in settings:
            return loss
        costs = np.asarray(settings["costs"], float)
        resource = torch.tensor(float(settings.get("fixed_cost", 0.0)) - float(settings["tau"]),
                                device=self.fitness_indicators.device)
        for slot, pair in enumerate(pairs):
            cost_a = self._config_cost(space, slot, pair.a, costs)
            if pair.b is None:
                resource = resource + cost_a
            else:
                resource = resource + pair.pa * cost_a + pair.pb * self._config_cost(space, slot, pair.b, costs)
        return loss + alpha * resource.abs() ** float(settings.get("beta", 2.0))

    @staticmethod
    def _config_cost(space: SearchSpace, slot: int, ops: Sequence[str], costs: np.ndarray) -> float:
        return float(sum(costs[slot, space.slots[slot].index(op)] for op in ops))

    def sample_pairs(self, space: SearchSpace, rng: np.random.Generator) -> list[_Pair]:
        """Per layer, two distinct configurations drawn from Eq. (4) (without replacement) and their
        probabilities rescaled to sum to one (the two-configuration approximation of Eq. 7)."""
        p = torch.sigmoid(self.fitness_indicators)
        pairs = []
        for slot, subset in enumerate(subsets_of(space)):
            configs, selectors = configuration_selectors(space, slot, subset)
            names = [[space.slots[slot].ops[n] for n in branches_of(space, slot, c)] for c in configs]
            if len(configs) < 2:
                pairs.append(_Pair(names[0]))
                continue
            if len(subset) > MAX_ENUMERATED_BRANCHES:
                raise ValueError(f"slot {slot}: {len(subset)} operations; Eq. (4) is enumerated over a subset's "
                                 f"configurations, so keep K <= {MAX_ENUMERATED_BRANCHES}")
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
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, space.stem_stride, 1, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(inplace=True))
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
