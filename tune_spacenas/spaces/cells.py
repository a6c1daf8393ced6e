"""AutoSpace's open cell space (Zhou et al., 2021, sections 3.1 and 4.3) and the spaces built from it.

A *cell* is a DAG between an input node and an output node that only adjust dimensions: the input node
expands the channels by a ratio r in {1, 3, 6} (a 1x1 convolution; none at r = 1) and, in a reduction
layer, halves the resolution (2x2 average pooling before it); the output node projects back with a
1x1 convolution (a residual is added when the layer keeps width and resolution). Between them four
inner nodes 0..3 are joined by six edges (0->1, 0->2, 1->2, 0->3, 1->3, 2->3), each one of the paper's
five basic operations, {conv1x1, conv3x3, depth-wise convolution, identity, zero}, where the depth-wise
convolution carries its kernel size k in {3, 5, 7} as the learned cells of Fig. 4 do (and as the manual
IRB space offers), and a node combines its incoming features by one aggregation function for the cell,
addition or dot (element-wise) product. That is 6 nodes with the IO nodes and ``7**6 * 3 * 2 = 705,894``
cells per layer (section 4.3 counts ``5**6 * 3 * 2 = 93,750`` with one depth-wise kernel).

Spaces here, all on one network plan (3x3 stem, L cell layers of given widths and strides, global
pooling and a classifier, section 3.2), so their architectures compare on equal terms:

* ``CellSpace`` (kind ``autospace_cell``): one cell, 8 slots (ratio, aggregation, six edges);
* ``OpenCellSpace`` (``autospace_open``): the full open space, one cell per layer (8 L slots); the
  space AutoSpace evolves over and the "Full" baseline of Table 2;
* ``GeneratedSpace`` (``autospace``): AutoSpace's output, L slots with K named cells each (plus ``zero``,
  skipping the layer, where its residual allows, as in the manual space); saves to and loads from a JSON
  file, so a space generated once is searched many times (section 3.3);
* ``IRBSpace`` (``irb``): the manually designed baseline of section 4.1, inverted residual blocks with
  kernel {3, 5, 7} x expansion {3, 6} plus ``zero`` (the layer is skipped) where a residual allows it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tune_spacenas import storage
from tune_spacenas.spaces import costs
from tune_spacenas.spaces.base import Architecture, SearchSpace, Slot, register_space
from tune_spacenas.spaces.costs import Cost

EDGE_OPS = ("conv1x1", "conv3x3", "dwconv3x3", "dwconv5x5", "dwconv7x7", "identity", "zero")
# The edge operations that hold weights: (kernel size, depth-wise).
EDGE_CONVS = {
    "conv1x1": (1, False),
    "conv3x3": (3, False),
    "dwconv3x3": (3, True),
    "dwconv5x5": (5, True),
    "dwconv7x7": (7, True),
}
RATIOS = ("r1", "r3", "r6")
AGGREGATIONS = ("add", "dot")
# (source, destination) among the inner nodes 0..3, in topological order.
CELL_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
CELL_SLOTS = ("ratio", "aggregation") + tuple(f"e{i}{j}" for i, j in CELL_EDGES)
CELL_SEPARATOR = "|"
NUM_NODES = 6  # V of Eq. (2): the input node, inner nodes 0..3, the output node
REFERENCE_IRB = "r6|add|zero|zero|zero|dwconv3x3|zero|zero"
"""The inverted residual block (MobileNetV2) written as a cell: expand x6, depthwise 3x3, project:
AutoSpace's default reference DAG (section 3.2.1)."""

SKIP = "zero"
"""The operation that skips a layer (its residual passes the input on), in the manual and generated spaces."""
EMPTY_CELL = "r1|add|" + "|".join(["zero"] * len(CELL_EDGES))
"""The canonical cell without a path to node 3: in a layer with a residual it is the layer skipped (``SKIP``)."""

Cell = tuple[int, ...]  # indices into (RATIOS, AGGREGATIONS, EDGE_OPS x 6), in CELL_SLOTS order
_ZERO = EDGE_OPS.index("zero")


def _cell_slots() -> list[Slot]:
    return [Slot("ratio", RATIOS), Slot("aggregation", AGGREGATIONS)] + [Slot(n, EDGE_OPS) for n in CELL_SLOTS[2:]]


def parse_cell(text: str | Sequence[int | str]) -> Cell:
    """A cell from its canonical string (``'r6|add|zero|...'``) or a sequence of names/indices;
    ValueError naming the bad part otherwise."""
    return _CELL_SPACE.validate(text)


def cell_string(cell: Sequence[int | str]) -> str:
    """The canonical string of a cell: ratio, aggregation, then the six edges' operations, ``|``-joined."""
    return _CELL_SPACE.to_string(cell)


def op_cell(op: str) -> Cell:
    """The cell a layer's operation names in a cell-based space: a cell string, or ``SKIP`` (the empty cell,
    which a layer with a residual turns into the identity)."""
    return parse_cell(EMPTY_CELL if op == SKIP else op)


def cell_ratio(cell: Cell) -> int:
    return int(RATIOS[cell[0]][1:])


def live_edges(cell: Cell) -> list[int]:
    """Edges that carry information from node 0 to node 3 (non-zero, source reachable, destination
    leading to node 3); the others compute nothing that reaches the output and cost nothing."""
    ops = cell[2:]
    reached, leads = {0}, {3}
    for (i, j), op in zip(CELL_EDGES, ops):
        if op != _ZERO and i in reached:
            reached.add(j)
    for (i, j), op in reversed(list(zip(CELL_EDGES, ops))):
        if op != _ZERO and j in leads:
            leads.add(i)
    return [e for e, ((i, j), op) in enumerate(zip(CELL_EDGES, ops)) if op != _ZERO and i in reached and j in leads]


def canonical_cell(cell: Sequence[int | str]) -> Cell:
    """The canonical encoding of a cell's function: dead edges (``live_edges``) set to ``zero``, the
    aggregation set to ``add`` where no node combines two features, and a cell without a path to node 3
    written ``r1|add|zero|...``. Two cells compute the same function (up to weight sharing) when their
    canonical forms agree; AutoSpace keeps its populations in this form, free of such duplicates."""
    cell = parse_cell(cell)
    edges = live_edges(cell)
    if not edges:
        return (0, 0) + (_ZERO,) * len(CELL_EDGES)
    ops = tuple(op if e in edges else _ZERO for e, op in enumerate(cell[2:]))
    fan_in = [sum(1 for e in edges if CELL_EDGES[e][1] == j) for j in (1, 2, 3)]
    return (cell[0], cell[1] if max(fan_in) > 1 else 0) + ops


def operation_matrix(cell: Sequence[int | str]) -> np.ndarray:
    """The V x V (V = 6) operation matrix G of Eq. (2): rows/columns are the input node, inner nodes 0..3,
    the output node; ``G[i, j]`` labels edge i -> j (0: no edge or ``zero``, else 1 + the operation's
    index). The IO nodes' edges carry the cell's two other decisions: input -> node 0 the expansion
    ratio (1 + its index), node 3 -> output the aggregation (1 + its index)."""
    cell = parse_cell(cell)
    g = np.zeros((NUM_NODES, NUM_NODES), dtype=np.int64)
    g[0, 1] = 1 + cell[0]
    g[4, 5] = 1 + cell[1]
    for (i, j), op in zip(CELL_EDGES, cell[2:]):
        g[i + 1, j + 1] = 0 if op == _ZERO else 1 + op
    return g


def hamming_distance(cell: Sequence[int | str], reference: Sequence[int | str]) -> float:
    """Eq. (2): ``r_H(G, G_ref) = sum_ij |G_ij - G_ref_ij| / (V (V - 1))``, the normalised Hamming distance
    between the operation matrices; ``|.|`` counts a differing entry once (what it is for 0/1
    adjacency), so that a conv3x3 is as far from a conv1x1 as from a zero edge."""
    a, b = operation_matrix(cell), operation_matrix(reference)
    return float(np.count_nonzero(a != b)) / (NUM_NODES * (NUM_NODES - 1))


def cell_cost(cell: Cell, cin: int, cout: int, stride: int, size: int) -> Cost:
    """MAdds and parameters of a cell in a layer (``size``: its input resolution). Counted: the
    expansion, the live edges' convolutions and BatchNorms, the projection; pooling, identity and the
    aggregations' element-wise additions/products are free. A cell without a path to node 3 costs 0."""
    edges = live_edges(cell)
    if not edges:
        return Cost()
    out = costs.out_size(size, stride)
    mid = cin * cell_ratio(cell)
    total = costs.conv_bn(cin, mid, 1, out) if mid != cin else Cost()
    for e in edges:
        op = EDGE_OPS[cell[2 + e]]
        if op in EDGE_CONVS:
            kernel, depthwise = EDGE_CONVS[op]
            total += costs.conv_bn(mid, mid, kernel, out, groups=mid if depthwise else 1)
    return total + costs.conv_bn(mid, cout, 1, out)


@register_space("autospace_cell")
class CellSpace(SearchSpace):
    """One AutoSpace cell (705,894 of them) in the context of one layer (for its cost model).

    Architectures are 8-tuples in ``CELL_SLOTS`` order; the string form is ``|``-joined operation names,
    e.g. ``REFERENCE_IRB``. ``operation_matrix`` / ``hamming_distance`` give Eq. (2).
    """

    separator = CELL_SEPARATOR

    def __init__(self, cin: int = 16, cout: int = 16, stride: int = 1, input_size: int = 32):
        super().__init__(_cell_slots(), name="autospace_cell")
        self.cin, self.cout, self.stride, self.input_size = cin, cout, stride, input_size

    def spec_kwargs(self) -> dict[str, Any]:
        return {"cin": self.cin, "cout": self.cout, "stride": self.stride, "input_size": self.input_size}

    def cost(self, arch: Sequence[int]) -> Cost:
        return cell_cost(self.validate(arch), self.cin, self.cout, self.stride, self.input_size)


_CELL_SPACE = CellSpace()


def plan_layers(
    widths: Sequence[int], strides: Sequence[int], stem_channels: int, input_size: int
) -> list[tuple[int, int, int, int]]:
    """(in channels, out channels, stride, input resolution) of each searchable layer of a plan."""
    plan, cin, size = [], stem_channels, costs.out_size(input_size, costs.stem_stride(input_size))
    for cout, stride in zip(widths, strides):
        plan.append((cin, cout, stride, size))
        cin, size = cout, costs.out_size(size, stride)
    return plan


class CellNetworkSpace(SearchSpace):
    """The network plan every space here shares: 3x3 stem of ``stem_channels`` (stride 2 above 64
    pixels), one searchable layer per entry of ``widths``/``strides``, global pooling, a classifier.

    Subclasses say what a layer's operations are (``layer_slots``) and what one costs (``layer_cost``).
    """

    separator = ","

    def __init__(
        self,
        slots: Sequence[Slot],
        name: str,
        widths: Sequence[int],
        strides: Sequence[int],
        stem_channels: int,
        input_size: int,
        num_classes: int,
    ):
        if not widths or len(widths) != len(strides):
            raise ValueError(f"need one stride per layer width, got widths {list(widths)} and strides {list(strides)}")
        if any(s not in (1, 2) for s in strides):
            raise ValueError(f"layer strides must be 1 or 2, got {list(strides)}")
        self.widths, self.strides = tuple(int(w) for w in widths), tuple(int(s) for s in strides)
        self.stem_channels, self.input_size, self.num_classes = int(stem_channels), int(input_size), int(num_classes)
        super().__init__(slots, name=name)

    @property
    def num_layers(self) -> int:
        return len(self.widths)

    def plan_kwargs(self) -> dict[str, Any]:
        return {
            "widths": list(self.widths),
            "strides": list(self.strides),
            "stem_channels": self.stem_channels,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
        }

    @property
    def stem_stride(self) -> int:
        return costs.stem_stride(self.input_size)

    def layer_plan(self) -> list[tuple[int, int, int, int]]:
        """(in channels, out channels, stride, input resolution) of each layer."""
        return plan_layers(self.widths, self.strides, self.stem_channels, self.input_size)

    def residual(self, layer: int) -> bool:
        cin, cout, stride, _ = self.layer_plan()[layer]
        return stride == 1 and cin == cout

    def layer_cost(self, layer: int, op: str) -> Cost:
        """Cost of operation ``op`` (a cell string here; IRBSpace: an MBConv) at layer ``layer``."""
        cin, cout, stride, size = self.layer_plan()[layer]
        return cell_cost(op_cell(op), cin, cout, stride, size)

    def layer_ops(self, arch: Sequence[int]) -> list[str]:
        """One operation name per layer (subclasses with several slots per layer override)."""
        return self.op_names(arch)

    def cost(self, arch: Sequence[int]) -> Cost:
        """Stem, every layer's choice, classifier (MAdds per image)."""
        arch = self.validate(arch)
        total = costs.conv_bn(3, self.stem_channels, 3, self.input_size, self.stem_stride)
        for layer, op in enumerate(self.layer_ops(arch)):
            total += self.layer_cost(layer, op)
        return total + costs.linear(self.widths[-1], self.num_classes)


def _plan_defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The CPU-sized default plan: 5 layers, two reductions, widths 16-32 (small images, 16 or 32 px)."""
    return {
        "widths": (16, 24, 24, 32, 32),
        "strides": (1, 2, 1, 2, 1),
        "stem_channels": 16,
        "input_size": 32,
        "num_classes": 10,
    } | kwargs


@register_space("autospace_open")
class OpenCellSpace(CellNetworkSpace):
    """AutoSpace's open space: every layer picks any of the 705,894 cells (slots ``l<i>.<cell slot>``).

    Its string is the layers' cell strings joined by ``,``. AutoSpace's evolution runs on this space's
    supernet (``supernet.cells``); searched directly it is Table 2's "Full" space.
    """

    def __init__(self, **plan: Any):
        plan = _plan_defaults(plan)
        slots = [Slot(f"l{layer + 1}.{s.name}", s.ops) for layer in range(len(plan["widths"])) for s in _cell_slots()]
        super().__init__(slots, "autospace_open", **plan)

    def spec_kwargs(self) -> dict[str, Any]:
        return self.plan_kwargs()

    def cells(self, arch: Sequence[int]) -> list[Cell]:
        """The architecture's cell per layer."""
        n = len(CELL_SLOTS)
        return [tuple(arch[i : i + n]) for i in range(0, len(arch), n)]

    def from_cells(self, cells: Sequence[Sequence[int | str]]) -> Architecture:
        if len(cells) != self.num_layers:
            raise ValueError(f"{len(cells)} cells given for {self.num_layers} layers")
        return self.validate(tuple(i for cell in cells for i in parse_cell(cell)))

    def layer_ops(self, arch: Sequence[int]) -> list[str]:
        return [cell_string(c) for c in self.cells(arch)]

    def to_string(self, arch: Sequence[int | str]) -> str:
        return self.separator.join(self.layer_ops(self.validate(arch)))

    def from_string(self, text: str) -> Architecture:
        parts = text.split(self.separator)
        if len(parts) != self.num_layers:
            raise ValueError(f"{text!r} names {len(parts)} cells but space {self.name!r} has {self.num_layers} layers")
        return self.from_cells(parts)

    def generated_space(
        self,
        cells: Sequence[Sequence[str]],
        evaluations: Sequence[Sequence[int]] | None = None,
        skip_layers: bool = True,
    ) -> GeneratedSpace:
        """The space of ``cells[l]`` (K cell strings) at each layer, on this plan (``GeneratedSpace``)."""
        return GeneratedSpace(cells=cells, evaluations=evaluations, skip_layers=skip_layers, **self.plan_kwargs())


@register_space("autospace")
class GeneratedSpace(CellNetworkSpace):
    """A search space AutoSpace generated: L slots (``l1``..``lL``), each with the K cells of its layer (their
    canonical strings), plus ``zero`` (skip the layer) where the layer keeps width and resolution, as the
    manual IRB space offers it (``skip_layers``). Any searcher of the project searches it (its supernet
    shares the open space's weight names, so weights can be inherited); Tune's own searchers search
    ``param_space()``.

    ``evaluations`` (optional, per layer one count per cell) records how often the evolution evaluated each
    cell (the generations it trained in); it travels with the space's JSON. ``save(path)`` writes it as
    JSON; ``GeneratedSpace.load(path)`` reads it back.
    """

    def __init__(
        self,
        cells: Sequence[Sequence[str]],
        evaluations: Sequence[Sequence[int]] | None = None,
        skip_layers: bool = True,
        **plan: Any,
    ):
        plan = _plan_defaults(plan)
        if len(cells) != len(plan["widths"]):
            raise ValueError(
                f"a generated space needs one list of cells per layer: got {len(cells)} lists "
                f"for {len(plan['widths'])} layers"
            )
        if evaluations is not None and [len(c) for c in evaluations] != [len(c) for c in cells]:
            raise ValueError(
                "evaluations must give one count per cell of every layer, got "
                f"{[len(c) for c in evaluations]} counts for {[len(c) for c in cells]} cells"
            )
        layers = plan_layers(plan["widths"], plan["strides"], plan["stem_channels"], plan["input_size"])
        slots, counts = [], []
        for layer, (layer_cells, (cin, cout, stride, _)) in enumerate(zip(cells, layers)):
            names = [cell_string(parse_cell(c)) for c in layer_cells]
            keep = [k for k, name in enumerate(names) if not (skip_layers and name == EMPTY_CELL)]
            skip = (SKIP,) if skip_layers and stride == 1 and cin == cout else ()
            if not keep and not skip:
                raise ValueError(f"layer {layer + 1} of the generated space has no cells")
            slots.append(Slot(f"l{layer + 1}", tuple(names[k] for k in keep) + skip))
            if evaluations is not None:
                counts.append([int(evaluations[layer][k]) for k in keep])
        self.skip_layers = bool(skip_layers)
        self.evaluations = counts if evaluations is not None else None
        super().__init__(slots, "autospace", **plan)

    @property
    def layer_cells(self) -> list[list[str]]:
        """The cells of each layer (without ``zero``)."""
        return [[op for op in s.ops if op != SKIP] for s in self.slots]

    def spec_kwargs(self) -> dict[str, Any]:
        extra = {} if self.evaluations is None else {"evaluations": self.evaluations}
        return {"cells": self.layer_cells, "skip_layers": self.skip_layers, **extra, **self.plan_kwargs()}

    def save(self, path: str | os.PathLike) -> str | os.PathLike:
        """Write the space (``to_spec()``, restrictions included) as JSON, atomically, to a path or a
        ``pyarrow.fs`` URI; returns ``path``."""
        storage.write_json(path, self.to_spec())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> GeneratedSpace:
        """Read a space ``save`` wrote; FileNotFoundError / ValueError saying what is wrong."""
        from tune_spacenas.spaces.base import space_from_spec

        if not storage.exists(str(path)):
            raise FileNotFoundError(
                f"no generated space at {path}: write one with GeneratedSpace.save(path) "
                "(AutoSpaceSearcher.generated_space().save(path))"
            )
        try:
            spec = storage.read_json(path)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a saved search space (invalid JSON: {err})") from err
        space = space_from_spec(spec)
        if not isinstance(space, cls):
            raise ValueError(f"{path} holds a space of kind {space.kind!r}, not a generated AutoSpace space")
        return space


IRB_OPS = tuple(f"mb_k{k}_e{e}" for k in (3, 5, 7) for e in (3, 6))


@register_space("irb")
class IRBSpace(CellNetworkSpace):
    """The manually designed space AutoSpace compares against (section 4.1): per layer an inverted residual
    block (MBConv) with kernel {3, 5, 7} x expansion {3, 6}, plus ``zero`` to skip a layer whose residual
    keeps its input (not offered where the layer changes width or resolution, as in ProxylessNAS)."""

    def __init__(self, **plan: Any):
        plan = _plan_defaults(plan)
        layers = plan_layers(plan["widths"], plan["strides"], plan["stem_channels"], plan["input_size"])
        slots = [
            Slot(f"l{layer + 1}", IRB_OPS + ((SKIP,) if stride == 1 and cin == cout else ()))
            for layer, (cin, cout, stride, _) in enumerate(layers)
        ]
        super().__init__(slots, "irb", **plan)

    def spec_kwargs(self) -> dict[str, Any]:
        return self.plan_kwargs()

    def layer_cost(self, layer: int, op: str) -> Cost:
        if op == SKIP:
            return Cost()
        cin, cout, stride, size = self.layer_plan()[layer]
        kernel, expand = (int(part[1:]) for part in op.split("_")[1:])
        return costs.mbconv(cin, cout, kernel, expand, size, stride)
