"""Supernets of AutoSpace's cell spaces (``spaces.cells``) and the fitness-weighted layer (Eqs. 3-4).

Weight sharing (section 3.3, ENAS-style): every layer owns one pool of weights, keyed by position, never
by cell: ``layers.<l>.expand`` (the input node's 1x1 expansion), ``layers.<l>.edges.<e>.<op>`` (edge e's
conv1x1 / conv3x3 / dwconv3x3 / dwconv5x5 / dwconv7x7) and ``layers.<l>.project`` (the output node's 1x1 projection). A cell is
a path through its layer's pool, so every cell with ``conv3x3`` on edge 0->2 of layer 3 trains the same
tensor, and rebuilding the supernet with new cells (a new generation) inherits every weight through the
store. Tensors are sized for the largest expansion (x6) and a cell of ratio r uses the first ``r * cin``
channels (once-for-all style), so cells differing only in ratio share too. BatchNorms are non-affine, as
in the other supernets; statistics are recalibrated per architecture before evaluation.

Skeletons (one per space kind, all with the same stem / plan / classifier, so parameter names agree):
``OpenCellSupernet`` (the open space; AutoSpace's evolution trains it), ``GeneratedSpaceSupernet`` (a
generated space: SPOS, random, RegEvo, Tune's searchers search it) and ``IRBSupernet`` (the manual space).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tune_spacenas.spaces.base import Architecture, SearchSpace
from tune_spacenas.spaces.cells import (
    CELL_EDGES,
    CELL_SLOTS,
    EDGE_CONVS,
    EDGE_OPS,
    SKIP,
    Cell,
    CellNetworkSpace,
    GeneratedSpace,
    IRBSpace,
    OpenCellSpace,
    cell_cost,
    cell_ratio,
    live_edges,
    op_cell,
    parse_cell,
)
from tune_spacenas.supernet.base import Supernet
from tune_spacenas.supernet.gates import BinaryGates, fitness_probabilities, madds_gradient
from tune_spacenas.supernet.ops import build_op

MAX_RATIO = 6


# ----------------------------------------------------------------------------------------------
# Weight-shared cell layers
# ----------------------------------------------------------------------------------------------
class SlicedBatchNorm2d(nn.BatchNorm2d):
    """Non-affine BatchNorm over the first C channels of its statistics (C = the input's channels);
    honours ``momentum=None`` (cumulative averages), which BatchNorm recalibration relies on."""

    def __init__(self, channels: int):
        super().__init__(channels, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], None, None, self.training, factor, self.eps)


class SlicedConvBN(nn.Module):
    """k x k convolution (dense or depthwise), BatchNorm and optionally ReLU6, on the first channels of
    weights sized ``cin_max -> cout_max``: ``forward(x, cout)`` uses ``weight[:cout, :x.channels]``
    (``cout`` defaults to the input's channels: the cell's edges keep the width)."""

    def __init__(self, cin_max: int, cout_max: int, kernel: int, depthwise: bool = False, act: bool = True):
        super().__init__()
        self.depthwise, self.act, self.padding = depthwise, act, kernel // 2
        shape = (cout_max, 1 if depthwise else cin_max, kernel, kernel)
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.bn = SlicedBatchNorm2d(cout_max)

    def forward(self, x: torch.Tensor, cout: int | None = None) -> torch.Tensor:
        cin = x.shape[1]
        if self.depthwise:
            out = F.conv2d(x, self.weight[:cin], padding=self.padding, groups=cin)
        else:
            out = F.conv2d(x, self.weight[: cout or cin, :cin], padding=self.padding)
        out = self.bn(out)
        return F.relu6(out) if self.act else out


class CellLayer(nn.Module):
    """One layer's weight pool; ``forward(x, cell)`` runs one cell (a path through the pool).

    Input node: 2x2 average pooling in a reduction layer, then 1x1 expansion to ``r * cin`` channels
    (BN, ReLU6; none at r = 1). Inner node j aggregates ``op(x_i)`` over its live incoming edges by sum
    or element-wise product. Output node: 1x1 projection of node 3 (BN, linear), plus the input where
    width and resolution are kept. A cell without a path to node 3 outputs the residual (or zeros).
    """

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        mid = cin * MAX_RATIO
        self.cin, self.cout, self.stride = cin, cout, stride
        self.residual = stride == 1 and cin == cout
        self.expand = SlicedConvBN(cin, mid, 1)
        self.edges = nn.ModuleList(
            nn.ModuleDict(
                {
                    op: SlicedConvBN(mid, mid, kernel, depthwise=depthwise)
                    for op, (kernel, depthwise) in EDGE_CONVS.items()
                }
            )
            for _ in CELL_EDGES
        )
        self.project = SlicedConvBN(mid, cout, 1, act=False)

    def forward(self, x: torch.Tensor, cell: Cell) -> torch.Tensor:
        edges = live_edges(cell)
        inp = F.avg_pool2d(x, 2, ceil_mode=True) if self.stride == 2 else x
        if not edges:
            return inp if self.residual else inp.new_zeros(inp.shape[0], self.cout, *inp.shape[2:])
        mid = self.cin * cell_ratio(cell)
        nodes = {0: self.expand(inp, mid) if mid != self.cin else inp}
        product = cell[1] == 1
        for j in (1, 2, 3):
            incoming = [self._edge(e, cell, nodes[CELL_EDGES[e][0]]) for e in edges if CELL_EDGES[e][1] == j]
            if incoming:
                nodes[j] = functools.reduce(torch.mul if product else torch.add, incoming)
        out = self.project(nodes[3], self.cout)
        return out + x if self.residual else out

    def _edge(self, e: int, cell: Cell, x: torch.Tensor) -> torch.Tensor:
        op = EDGE_OPS[cell[2 + e]]
        return x if op == "identity" else self.edges[e][op](x)

    def parameter_names(self, cell: Cell) -> list[str]:
        """Names (relative to this layer) of the tensors ``cell`` uses."""
        edges = live_edges(cell)
        if not edges:
            return []
        names = ["expand.weight"] if cell_ratio(cell) > 1 else []
        names += [f"edges.{e}.{EDGE_OPS[cell[2 + e]]}.weight" for e in edges if EDGE_OPS[cell[2 + e]] != "identity"]
        return names + ["project.weight"]


class CellNetworkSupernet(Supernet):
    """Stem (3x3 conv, BN, ReLU6), one module per layer of the plan, global pooling, classifier.

    Subclasses build ``self.layers`` and say how a layer runs an architecture (``run_layer``).
    """

    def __init__(self, space: CellNetworkSpace, num_classes: int | None = None):
        super().__init__(space)
        self.stem = nn.Sequential(
            nn.Conv2d(3, space.stem_channels, 3, space.stem_stride, 1, bias=False),
            nn.BatchNorm2d(space.stem_channels),
            nn.ReLU6(inplace=True),
        )
        self.layers = nn.ModuleList()
        self.classifier = nn.Linear(space.widths[-1], num_classes or space.num_classes)

    def run_layer(self, layer: int, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def layer_slots(self, layer: int) -> Sequence[int]:
        """The slots layer ``layer`` decides (one per layer; the open space's cells: eight)."""
        return (layer,)

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        x = self.stem(x)
        for layer in range(len(self.layers)):
            x = self.gated_layer(self.layer_slots(layer), x, arch, functools.partial(self.run_layer, layer))
        return self.classifier(x.mean(dim=(2, 3)))


class _CellSupernet(CellNetworkSupernet):
    """A supernet whose layers are ``CellLayer`` pools; subclasses map an architecture to its cells."""

    def __init__(self, space: CellNetworkSpace, num_classes: int | None = None):
        super().__init__(space, num_classes)
        for cin, cout, stride, _ in space.layer_plan():
            self.layers.append(CellLayer(cin, cout, stride))

    def cells(self, arch: Sequence[int]) -> list[Cell]:  # pragma: no cover - abstract
        raise NotImplementedError

    def run_layer(self, layer: int, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        return self.layers[layer](x, self.cells(arch)[layer])

    def shared_parameter_names(self) -> list[str]:
        return [n for n, _ in self.named_parameters() if not n.startswith("layers.")]

    def path_parameter_names(self, arch: Sequence[int]) -> list[str]:
        """Exactly the tensors the path's cells use (the worker pushes only those)."""
        names = self.shared_parameter_names()
        for layer, cell in enumerate(self.cells(arch)):
            names += [f"layers.{layer}.{n}" for n in self.layers[layer].parameter_names(cell)]
        return names


class GeneratedSpaceSupernet(_CellSupernet):
    """Supernet of a ``GeneratedSpace``: slot l's choice k is the k-th cell of layer l. Same parameter
    names as ``OpenCellSupernet`` on the same plan, so a store trained by the evolution can seed it."""

    def __init__(self, space: GeneratedSpace, num_classes: int | None = None):
        super().__init__(space, num_classes)
        self.layer_cells = [[op_cell(c) for c in slot.ops] for slot in space.slots]

    def cells(self, arch: Sequence[int]) -> list[Cell]:
        return [cells[k] for cells, k in zip(self.layer_cells, arch)]


# ----------------------------------------------------------------------------------------------
# The fitness-weighted layer (Eqs. 3, 4 and the MAdds term of Eq. 6)
# ----------------------------------------------------------------------------------------------
class FitnessWeightedLayer(BinaryGates):
    """K candidate paths weighted by their fitness scores alpha (Eq. 3), trained through binary gates.

    ProxylessNAS's binary gates (``supernet.gates.BinaryGates``) keep one or two paths in memory per step:
    ``sample(rng)`` draws ``gate_paths`` distinct candidates from multinomial(p) and one of them as the
    active gate; ``forward`` returns ``sum_k g_k d_k(x)`` with g one-hot, the active path with gradients and
    the others' outputs computed without (only dL/dg needs them); ``update()`` then applies Eq. (4) over the
    sampled candidates (p renormalised over them, as ProxylessNAS does), times the compensation factors,
    plus ``madds_penalty`` times Eq. (6)'s expected-MAdds gradient, as plain gradient descent with
    ``alpha_lr``. Not Adam: its per-parameter normalisation would cancel the constant compensation factor.
    Not ProxylessNAS's log-sum-exp offset either: fitness scores are compared in absolute terms across the
    population (tournaments, top-K), which is where the compensation factor acts. ``forward_dense`` is
    Eq. (3) itself, differentiable in alpha.

    Args:
        candidates: the K paths ``d_k`` (callables on a tensor).
        alpha: their initial fitness scores.
        compensation: Eq. (4)'s ``n(d_i) / n'(d_i)`` per candidate (default 1).
        madds: MAdds per candidate, for Eq. (6)'s term.
    """

    def __init__(
        self,
        candidates: Sequence[Callable[[torch.Tensor], torch.Tensor]],
        alpha: Sequence[float],
        compensation: Sequence[float] | None = None,
        madds: Sequence[float] | None = None,
        gate_paths: int = 2,
        alpha_lr: float = 0.05,
        madds_penalty: float = 0.0,
    ):
        if len(candidates) != len(alpha) or not candidates:
            raise ValueError(f"need one fitness score per candidate, got {len(alpha)} for {len(candidates)}")
        super().__init__(alpha, gate_paths)
        k = len(candidates)
        self.candidates = list(candidates)
        self.compensation = torch.tensor(
            list(compensation) if compensation is not None else [1.0] * k, dtype=torch.float64
        )
        self.madds = torch.tensor(list(madds) if madds is not None else [0.0] * k, dtype=torch.float64)
        self.alpha_lr, self.madds_penalty = alpha_lr, madds_penalty

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_k g_k d_k(x)`` over the sampled candidates, g one-hot on the active one (gradients flow
        to its weights and to every gate)."""
        if self.paths is None:
            raise RuntimeError("call sample(rng) before forward: the binary gates are drawn per step")
        out = self.candidates[self.paths[0]](x)
        with torch.no_grad():
            others = [self.candidates[k](x) for k in self.paths[1:]]
        return self.mix(out, others)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. (3) exactly: every candidate weighted by ``p = softmax(alpha)`` (set ``alpha.requires_grad_()``
        to differentiate through it)."""
        p = fitness_probabilities(self.alpha)
        return sum(p[k].to(x.dtype) * d(x) for k, d in enumerate(self.candidates))

    @torch.no_grad()
    def update(self) -> None:
        """One step on the sampled candidates' fitness scores from the gates' gradients (Eqs. 4 and 6)."""
        if self.gates is not None and self.gates.grad is not None:
            idx = torch.tensor(self.paths)
            grad = self.gradient(self.compensation)[idx]
            if self.madds_penalty:
                grad = grad + self.madds_penalty * madds_gradient(self.alpha[idx], self.madds[idx])
            self.alpha[idx] -= self.alpha_lr * grad
        self.clear()


class OpenCellSupernet(_CellSupernet):
    """Supernet of AutoSpace's open space. Plain training trains uniformly sampled cells (SPOS on the full
    space); during a generation (``begin_generation``, called by AutoSpace's worker extension for a job
    carrying one) layer l is a ``FitnessWeightedLayer`` over its K cells and paths are drawn by the
    binary gates; the extension updates the fitness scores after every step (Eq. 4) and reports them.

    Fitness scores live in the trial, not in the weight store: generations training in parallel each
    learn their own alpha* for the population (Eq. 5), while the network weights are shared.
    """

    def __init__(self, space: OpenCellSpace, num_classes: int | None = None):
        super().__init__(space, num_classes)
        self.generation: list[FitnessWeightedLayer] | None = None
        self._generation_cells: list[list[Cell]] = []

    def cells(self, arch: Sequence[int]) -> list[Cell]:
        return self.space.cells(arch)

    def layer_slots(self, layer: int) -> Sequence[int]:
        n = len(CELL_SLOTS)
        return range(n * layer, n * (layer + 1))

    def begin_generation(
        self,
        cells: Sequence[Sequence[str]],
        alpha: Sequence[Sequence[float]],
        compensation: Sequence[Sequence[float]] | None = None,
        gate_paths: int = 2,
        alpha_lr: float = 0.05,
        madds_penalty: float = 0.0,
    ) -> list[FitnessWeightedLayer]:
        """Make layer l the fitness-weighted layer over ``cells[l]`` (Eq. 3) until ``end_generation``."""
        if len(cells) != len(self.layers):
            raise ValueError(f"generation names cells for {len(cells)} layers; the supernet has {len(self.layers)}")
        generation, self._generation_cells = [], []
        for layer, (texts, scores) in enumerate(zip(cells, alpha)):
            parsed = [parse_cell(t) for t in texts]
            cin, cout, stride, size = self.space.layer_plan()[layer]
            generation.append(
                FitnessWeightedLayer(
                    [functools.partial(self.layers[layer], cell=c) for c in parsed],
                    scores,
                    compensation=(compensation or [None] * len(self.layers))[layer],
                    madds=[cell_cost(c, cin, cout, stride, size).madds for c in parsed],
                    gate_paths=int(gate_paths),
                    alpha_lr=float(alpha_lr),
                    madds_penalty=float(madds_penalty),
                )
            )
            self._generation_cells.append(parsed)
        self.generation = generation
        return generation

    def end_generation(self) -> None:
        self.generation, self._generation_cells = None, []

    def sample_path(self, subspace: SearchSpace, rng: np.random.Generator) -> Architecture:
        if self.generation is None:
            return super().sample_path(subspace, rng)
        picks = [layer.sample(rng) for layer in self.generation]
        return tuple(i for cells, k in zip(self._generation_cells, picks) for i in cells[k])

    def run_layer(self, layer: int, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        if self.generation is not None and self.generation[layer].paths is not None:
            return self.generation[layer].forward(x)
        return super().run_layer(layer, x, arch)


class IRBSupernet(CellNetworkSupernet):
    """Supernet of the manual IRB space: per layer one MBConv module per candidate; ``zero`` skips the layer."""

    def __init__(self, space: IRBSpace, num_classes: int | None = None):
        super().__init__(space, num_classes)
        for slot_index, (slot, (cin, cout, stride, _)) in enumerate(zip(space.slots, space.layer_plan())):
            layer = nn.ModuleDict({op: build_op(op, cin, cout, stride) for op in slot.ops if op != SKIP})
            for o, op in enumerate(slot.ops):
                if op != SKIP:
                    self.register_choice(slot_index, o, layer[op])
            self.layers.append(layer)
        self.op_names = [slot.ops for slot in space.slots]

    def run_layer(self, layer: int, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        op = self.op_names[layer][arch[layer]]
        return x if op == SKIP else self.layers[layer][op](x)
