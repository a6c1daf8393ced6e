"""Multi-branch spaces of NSE (Ci et al., CVPR 2021): per layer a *set* of operations from a pool.

Section 3 writes an architecture as ``a = U_l e_l`` with ``e_l`` a subset of the layer's candidate operations
``E_l``, chosen by selectors ``s_n in {0, 1}``; the layer's configuration index is
``c = sum_n 2^(n-1) s_n``. Here a slot is a layer, its ``ops`` are the layer's whole pool in a fixed
layer-wise shuffled order (section 4.1), and an architecture holds one configuration index per layer,
counted over that whole pool (bit ``n`` = the slot's ``n``-th operation), so an architecture keeps its
meaning while NSE evolves the layer's subset around it. A *subspace* (``restrict``) allows per layer a
subset of the pool; unlike the one-choice model, a normal layer's subset may be empty (the identity
path remains, A.3) while a reduction layer needs at least one operation.

The string form joins a layer's operations with ``+`` (``identity`` for an empty normal layer) and the
layers with ``,``. Appendix A.1 gives the pools (``NSE27_POOL``, ``SECOND_POOL``), Table 5 the macro
architecture (``TABLE5_STAGES``), A.4 the size formula (``paper_space_size``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from tune_spacenas.jobs import OPS_KEY, SPACE_KEY
from tune_spacenas.spaces import costs
from tune_spacenas.spaces.base import Architecture, SearchSpace, Slot, register_space
from tune_spacenas.spaces.costs import Cost
from tune_spacenas.spaces.mobilenet import scaled

# A.1, in the official code's order: depthwise k3 x expand {1,3,6} x dilation {1,2,3}, depthwise
# k5..k11 x expand {1,3,6}, then 1xk-kx1 convolutions k {5,7} x expand {1,2,4}.
NSE27_POOL = tuple(
    [f"dw_k3_e{e}" + (f"_d{d}" if d > 1 else "") for e in (1, 3, 6) for d in (1, 2, 3)]
    + [f"dw_k{k}_e{e}" for k in (5, 7, 9, 11) for e in (1, 3, 6)]
    + [f"conv1xk_k{k}_e{e}" for k in (5, 7) for e in (1, 2, 4)]
)
# A.1's second space: depthwise convolutions with grouped 1x1 projections, groups (G_in, G_out) in
# {(1,2), (2,1), (2,2)} (Figure 6; the official code's 45 operations).
SECOND_POOL = tuple(
    f"gdw_k{k}_e{e}_g{gi}{go}" for k in (3, 5, 7, 9, 11) for e in (1, 3, 6) for gi, go in ((1, 2), (2, 1), (2, 2))
)
POOLS = {"nse27": NSE27_POOL, "second": SECOND_POOL}
# Table 5 (FLOPs setting): stem 3x3 conv 16 stride 2; multi-branch layers (channels, layers, stride of
# the first); 1x1 conv to 1024, pooling, classifier. 22 layers: 16 normal, 6 reduction.
TABLE5_STAGES = ((16, 1, 1), (24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))
STEM_CHANNELS, HEAD_CHANNELS = 16, 1024
IDENTITY = "identity"
BRANCH_SEP = "+"


def paper_space_size(num_ops: int = 27, k: int = 5, normal: int = 16, reduction: int = 6) -> int:
    """Appendix A.4: ``(sum_{j=0}^{K} C(n, j))^normal * (sum_{j=1}^{K} C(n, j))^reduction``, the number of
    multi-branch architectures with at most ``K`` of ``n`` operations per layer (1.4e110 for 27 ops, K=5)."""
    per_normal = sum(math.comb(num_ops, j) for j in range(k + 1))
    return per_normal**normal * (per_normal - 1) ** reduction


def parse_op(op: str) -> dict[str, int | str]:
    """``'dw_k3_e6_d2'`` -> {'family': 'dw', 'k': 3, 'e': 6, 'd': 2}; ``gdw_..._g12`` gives ``gi``, ``go``."""
    family, *parts = op.split("_")
    out: dict[str, int | str] = {"family": family, "d": 1, "gi": 1, "go": 1}
    for part in parts:
        if part[0] == "g":
            out["gi"], out["go"] = int(part[1]), int(part[2])
        else:
            out[part[0]] = int(part[1:])
    return out


def branch_cost(op: str, cin: int, cout: int, size: int, stride: int) -> Cost:
    """MAdds and parameters of one branch (Figure 6): 1x1 expansion, the spatial part, 1x1 projection.

    MAdds count the kernel actually applied at the layer's input size (``costs.effective_kernel``): on a
    2x2 input ``dw_k7_e3`` is a 3x3 depthwise convolution and ``dw_k3_e3_d2`` a 1x1 one, as the supernet
    runs them. Parameters count the whole kernel (the weights exist, and are used at larger inputs).
    Candidate operations carry BatchNorm without affine parameters (``supernet.ops``), so only
    convolution weights count as parameters.
    """
    spec = parse_op(op)
    mid, k, out = cin * int(spec["e"]), int(spec["k"]), costs.out_size(size, stride)
    applied = costs.effective_kernel(k, size, int(spec["d"]))
    total = costs.conv(cin, mid, 1, size, groups=int(spec["gi"]))
    if spec["family"] == "conv1xk":  # (1, k) at stride (1, s), then (k, 1) at stride (s, 1): dense convolutions
        total += Cost(madds=applied * mid * mid * size * out, params=k * mid * mid)
        total += Cost(madds=applied * mid * mid * out * out, params=k * mid * mid)
    else:
        spatial = costs.conv(mid, mid, k, size, stride, groups=mid)
        total += Cost(madds=spatial.madds * applied**2 / k**2, params=spatial.params)
    return total + costs.conv(mid, cout, 1, out, groups=int(spec["go"]))


@register_space("multibranch")
class MultiBranchSpace(SearchSpace):
    """NSE's multi-branch space on Table 5's macro-architecture.

    Args:
        pool: the operations every layer may hold: a pool name (``"nse27"``, ``"second"``), names joined
            by ``+`` (``"nse27+second"``: the 27 operations, then the second space's, to continue a
            finished search), or an explicit sequence of registered operation names.
        width_mult: scales every width (multiples of 8, at least 8) to train on small hardware.
        input_size: input side in pixels; MAdds are counted at it.
        num_classes: classifier outputs.
        stages: (channels, layers, stride of the first layer) per stage; Table 5 by default.
        shuffle_seed: each layer's pool order is shuffled with this seed (each named pool separately,
            so ``"nse27+second"`` keeps the 27 operations first); ``None`` keeps A.1's order.
        max_branches: at most this many operations per layer; ``1`` is the single-branch special case
            (``N_l = 1``, section 3), ``None`` the full multi-branch scheme.
    """

    separator = ","
    one_choice_per_slot = False

    def __init__(
        self,
        pool: str | Sequence[str] = "nse27",
        width_mult: float = 1.0,
        input_size: int = 224,
        num_classes: int = 1000,
        stages: Sequence[Sequence[int]] = TABLE5_STAGES,
        shuffle_seed: int | None = 0,
        max_branches: int | None = None,
    ):
        parts = _pool_parts(pool)
        rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
        self.pool = pool if isinstance(pool, str) else list(pool)
        self.width_mult, self.input_size, self.num_classes = width_mult, input_size, num_classes
        self.stages = tuple(tuple(int(v) for v in s) for s in stages)
        self.shuffle_seed, self.max_branches = shuffle_seed, max_branches
        if max_branches is not None and max_branches < 1:
            raise ValueError(f"max_branches must be at least 1 (or None for no limit), got {max_branches}")
        # Reduction layers (A.1: C_in != C_out, or a stride) are those of Table 5 at full width, so a
        # width multiplier that rounds two widths together keeps the macro-architecture's 16 + 6 layers.
        self.reduction = tuple(cin != cout or stride != 1 for cin, cout, stride, _ in self.layer_plan(1.0))
        slots = []
        for index, reduction in enumerate(self.reduction):
            ops = [
                op for part in parts for op in (part if rng is None else [part[i] for i in rng.permutation(len(part))])
            ]
            slots.append(Slot(f"l{index + 1:02d}{'r' if reduction else 'n'}", tuple(ops)))
        super().__init__(slots, name="multibranch")
        self.subsets: tuple[tuple[int, ...], ...] = tuple(tuple(range(len(s.ops))) for s in self.slots)
        self._costs: tuple[Cost, list[list[Cost]]] | None = None

    # --- identity and subspaces ----------------------------------------------------------------
    def spec_kwargs(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "width_mult": self.width_mult,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "stages": [list(s) for s in self.stages],
            "shuffle_seed": self.shuffle_seed,
            "max_branches": self.max_branches,
        }

    def to_spec(self) -> dict[str, Any]:
        spec = {"kind": self.kind, "kwargs": self.spec_kwargs()}
        if self.is_restricted:
            spec["allowed"] = [list(s) for s in self.subsets]
        return spec

    @property
    def is_restricted(self) -> bool:
        return any(len(sub) != len(s.ops) for sub, s in zip(self.subsets, self.slots))

    @property
    def choices(self) -> list[tuple[int, ...]]:
        """The operations each layer's subset holds (what a training job's ``subspace`` carries)."""
        return list(self.subsets)

    def restrict(self, allowed: Sequence[Sequence[int | str]] | Mapping[str, Sequence[int | str]]) -> MultiBranchSpace:
        """The subspace whose layer ``l`` may use only ``allowed[l]``; an empty subset is fine in a normal
        layer (only its identity path is left) and an error in a reduction layer."""
        subsets = []
        for i, (slot, idx) in enumerate(zip(self.slots, self._restriction(allowed, self.subsets))):
            if not idx and self.reduction[i]:
                raise ValueError(
                    f"reduction layer {slot.name!r} restricted to no operation; it has no identity "
                    "path, so keep at least one"
                )
            subsets.append(idx)
        sub = self.full_space()
        sub.subsets = tuple(subsets)
        return sub

    # --- configurations (the paper's selectors) ------------------------------------------------
    def branches(self, slot: int, config: int) -> tuple[int, ...]:
        """Operation indices a layer's configuration ``c = sum_n 2^n s_n`` selects."""
        return tuple(n for n in range(len(self.slots[slot].ops)) if config >> n & 1)

    @staticmethod
    def configuration(ops: Sequence[int]) -> int:
        """The configuration index of a set of operation indices."""
        return sum(1 << int(n) for n in set(ops))

    def layer_configurations(self, slot: int) -> list[int]:
        """Every configuration the layer's subset allows, by increasing index."""
        subset = self.subsets[slot]
        most = len(subset) if self.max_branches is None else min(self.max_branches, len(subset))
        least = 1 if self.reduction[slot] else 0
        out = [self.configuration(c) for k in range(least, most + 1) for c in itertools.combinations(subset, k)]
        return sorted(out)

    def _configuration_count(self, slot: int) -> int:
        n = len(self.subsets[slot])
        most = n if self.max_branches is None else min(self.max_branches, n)
        return sum(math.comb(n, k) for k in range(1 if self.reduction[slot] else 0, most + 1))

    @property
    def size(self) -> int:
        return math.prod(self._configuration_count(i) for i in range(len(self.slots)))

    # --- validation and strings ----------------------------------------------------------------
    def _layer_config(self, slot: int, value: Any) -> int:
        """One layer's configuration from an index, a ``'a+b'`` string, or a mapping ``{op: 0/1}``."""
        layer = self.slots[slot]
        if isinstance(value, Mapping):
            ops = [layer.index(op) for op, on in value.items() if on]
        elif isinstance(value, str):
            ops = [] if value == IDENTITY else [layer.index(op) for op in value.split(BRANCH_SEP)]
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if value < 0 or value >> len(layer.ops):
                raise ValueError(
                    f"layer {layer.name!r}: configuration {value} is not a subset of its "
                    f"{len(layer.ops)} operations (0 <= c < 2**{len(layer.ops)})"
                )
            return int(value)
        else:
            raise ValueError(f"layer {layer.name!r}: cannot read a configuration from {value!r}")
        return self.configuration(ops)

    def validate(self, arch: Sequence[int | str] | str) -> Architecture:
        if isinstance(arch, str):
            return self.from_string(arch)
        arch = tuple(arch)
        if len(arch) != len(self.slots):
            raise ValueError(f"architecture has {len(arch)} layers but space {self.name!r} has {len(self.slots)}")
        out = []
        for i, value in enumerate(arch):
            config, slot = self._layer_config(i, value), self.slots[i]
            chosen = self.branches(i, config)
            outside = [slot.ops[n] for n in chosen if n not in self.subsets[i]]
            if outside:
                raise ValueError(
                    f"layer {slot.name!r}: operations {outside} are outside this subspace; allowed "
                    f"are {[slot.ops[n] for n in self.subsets[i]]}"
                )
            if not chosen and self.reduction[i]:
                raise ValueError(
                    f"reduction layer {slot.name!r} needs at least one operation (it has no identity path)"
                )
            if self.max_branches is not None and len(chosen) > self.max_branches:
                raise ValueError(
                    f"layer {slot.name!r} selects {len(chosen)} operations; this space allows at "
                    f"most {self.max_branches} per layer"
                )
            out.append(config)
        return tuple(out)

    def op_names(self, arch: Architecture) -> list[str]:
        """Per layer, its selected operations joined by ``+`` (``identity`` when none is selected)."""
        return [
            BRANCH_SEP.join(slot.ops[n] for n in self.branches(i, c)) or IDENTITY
            for i, (slot, c) in enumerate(zip(self.slots, arch))
        ]

    # --- sampling ------------------------------------------------------------------------------
    def sample_slot(self, slot: int, rng: np.random.Generator) -> int:
        """A configuration uniformly from the layer's subset: Eq. (2)'s ``U_a``, i.e. every branch
        ``s ~ Bernoulli(0.5)`` conditioned on a valid configuration (non-empty in reduction layers,
        at most ``max_branches``): first the number of branches with weight ``C(n, k)``, then which."""
        subset = self.subsets[slot]
        most = len(subset) if self.max_branches is None else min(self.max_branches, len(subset))
        sizes = np.arange(1 if self.reduction[slot] else 0, most + 1)
        weights = np.array([math.comb(len(subset), int(k)) for k in sizes], float)
        k = int(rng.choice(sizes, p=weights / weights.sum()))
        return self.configuration(rng.choice(subset, size=k, replace=False).tolist() if k else [])

    def mutate(self, arch: Sequence[int], rng: np.random.Generator, num_edits: int = 1) -> Architecture:
        """Re-draw the configuration of ``num_edits`` layers that have another one to take."""
        free = [i for i in range(len(self.slots)) if self._configuration_count(i) > 1]
        if not free:
            raise ValueError("every layer of this space has a single configuration: nothing to mutate")
        out = list(arch)
        for i in rng.choice(free, size=min(num_edits, len(free)), replace=False):
            while (new := self.sample_slot(int(i), rng)) == out[i]:
                pass
            out[i] = new
        return tuple(out)

    def enumerate(self) -> Iterator[Architecture]:
        yield from itertools.product(*(self.layer_configurations(i) for i in range(len(self.slots))))

    # --- cost model ----------------------------------------------------------------------------
    def layer_plan(self, width_mult: float | None = None) -> list[tuple[int, int, int, int]]:
        """(in channels, out channels, stride, input size) of each multi-branch layer (at this width)."""
        width = self.width_mult if width_mult is None else width_mult
        plan, cin = [], scaled(STEM_CHANNELS, width)
        size = costs.out_size(self.input_size, self.stem_stride)
        for channels, layers, stride in self.stages:
            cout = scaled(channels, width)
            for layer in range(layers):
                s = stride if layer == 0 else 1
                plan.append((cin, cout, s, size))
                cin, size = cout, costs.out_size(size, s)
        return plan

    @property
    def stem_stride(self) -> int:
        """Table 5's stride-2 stem; inputs of 64 pixels or less keep their resolution (CIFAR)."""
        return costs.stem_stride(self.input_size)

    def cost_table(self) -> tuple[Cost, list[list[Cost]]]:
        """The fixed part (stem, head, classifier) and every (layer, operation) branch's cost; a
        configuration costs the sum of its branches (Eq. 8's ``C(e)``)."""
        if self._costs is None:
            stem, head = scaled(STEM_CHANNELS, self.width_mult), scaled(HEAD_CHANNELS, self.width_mult)
            plan = self.layer_plan()
            last_size = costs.out_size(plan[-1][3], plan[-1][2])
            fixed = costs.conv_bn(3, stem, 3, self.input_size, self.stem_stride)
            fixed += costs.conv_bn(plan[-1][1], head, 1, last_size) + costs.linear(head, self.num_classes)
            table = [
                [branch_cost(op, cin, cout, size, stride) for op in slot.ops]
                for slot, (cin, cout, stride, size) in zip(self.slots, plan)
            ]
            self._costs = (fixed, table)
        return self._costs

    def cost_range(self, max_evaluations: int = 20_000) -> tuple[float, float]:
        """(cheapest, dearest) MAdds over this (sub)space, exactly: per layer its cheapest configuration
        (a normal layer's identity path alone costs nothing) and its ``max_branches`` dearest branches."""
        fixed, table = self.cost_table()
        low = high = fixed.madds
        for i, subset in enumerate(self.subsets):
            branch = sorted(table[i][n].madds for n in subset)
            most = len(branch) if self.max_branches is None else self.max_branches
            low += branch[0] if self.reduction[i] else 0.0
            high += sum(branch[-most:])
        return low, high

    def cost(self, arch: Sequence[int]) -> Cost:
        arch = self.validate(arch)
        fixed, table = self.cost_table()
        total = fixed
        for i, config in enumerate(arch):
            for n in self.branches(i, config):
                total += table[i][n]
        return total

    # --- Tune ----------------------------------------------------------------------------------
    def param_space(self) -> dict[str, Any]:
        """The spec plus, per layer, one ``tune.choice([0, 1])`` selector per allowed operation, so
        Tune's own searchers can search the multi-branch space too (``arch_from_config`` reads them)."""
        from ray import tune

        return {
            SPACE_KEY: self.to_spec(),
            OPS_KEY: {s.name: {s.ops[n]: tune.choice([0, 1]) for n in sub} for s, sub in zip(self.slots, self.subsets)},
        }


def _pool_parts(pool: str | Sequence[str]) -> list[tuple[str, ...]]:
    if isinstance(pool, str):
        unknown = [p for p in pool.split("+") if p not in POOLS]
        if unknown:
            raise ValueError(
                f"unknown operation pools {unknown}; named pools are {sorted(POOLS)} (join with '+'), "
                "or pass a list of operation names"
            )
        parts = [POOLS[p] for p in pool.split("+")]
    else:
        parts = [tuple(pool)]
    ops = [op for part in parts for op in part]
    if not ops or len(set(ops)) != len(ops):
        raise ValueError(f"an operation pool needs distinct operations, got {ops}")
    return parts


# --- Eq. (4) over any space: multi-branch, or one choice per slot (N_l = 1) -------------------------


def configuration_selectors(space: SearchSpace, slot: int, subset: Sequence[int]) -> tuple[list[int], np.ndarray]:
    """The configurations slot ``slot`` may take and their selectors over ``subset`` (NSE Eq. 4's binary
    vectors ``s``): ``selectors[c, n] = 1`` when configuration ``c`` uses operation ``subset[n]``."""
    configs = space.layer_configurations(slot)
    selectors = np.array([[float(n in space.branches(slot, c)) for n in subset] for c in configs])
    return configs, selectors.reshape(len(configs), len(subset))


def layer_probability(p: Any, selectors: Any) -> Any:
    """Eq. (4): ``p_l(s) = prod_n (s_n p_n + (1 - s_n)(1 - p_n))`` (numpy or torch, over the last axis)."""
    return (selectors * p + (1 - selectors) * (1 - p)).prod(-1)
