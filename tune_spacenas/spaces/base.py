"""The one model every search space shares: ordered decision slots, each with named candidate operations.

An architecture is a plain tuple of choice indices, one per slot, always indexing the slot's *full*
operation list. A subspace (``restrict``) keeps the same slots and operation lists and only narrows the
indices it allows, so an architecture keeps its meaning (and its supernet modules) while a method shrinks,
evolves or replenishes the space around it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from tune_spacenas.jobs import ARCH_KEY, OPS_KEY, SPACE_KEY
from tune_spacenas.spaces.costs import Cost

Architecture = tuple[int, ...]


_REGISTRY: dict[str, type[SearchSpace]] = {}


def register_space(name: str) -> Callable[[type[SearchSpace]], type[SearchSpace]]:
    """Class decorator: make a space constructible from its spec (``space_from_spec``) under ``name``."""

    def wrap(cls: type[SearchSpace]) -> type[SearchSpace]:
        cls.kind = name
        _REGISTRY[name] = cls
        return cls

    return wrap


@dataclass(frozen=True)
class Slot:
    """One decision: a layer or a cell edge, its candidate operations and the subset a subspace allows."""

    name: str
    ops: tuple[str, ...]
    allowed: tuple[int, ...] = field(default=())

    def __post_init__(self):
        if not self.ops:
            raise ValueError(f"slot {self.name!r} has no candidate operations")
        if len(set(self.ops)) != len(self.ops):
            raise ValueError(f"slot {self.name!r} repeats an operation: {self.ops}")
        if not self.allowed:
            object.__setattr__(self, "allowed", tuple(range(len(self.ops))))

    def index(self, op: str | int) -> int:
        """Index of ``op`` (a name or an index) in the full operation list; ValueError if unknown."""
        if isinstance(op, (int, np.integer)) and not isinstance(op, bool):
            if 0 <= int(op) < len(self.ops):
                return int(op)
            raise ValueError(f"slot {self.name!r}: choice index {op} out of range 0..{len(self.ops) - 1}")
        if op in self.ops:
            return self.ops.index(op)
        raise ValueError(f"slot {self.name!r}: unknown operation {op!r}; candidates are {list(self.ops)}")


class SearchSpace:
    """An ordered list of decision slots, or a subspace of one.

    Concrete spaces subclass this to give their string form, a cost model or a canonical form; the
    generic class itself serves spaces built from explicit slots (AutoSpace's generated spaces, tests).
    """

    kind: ClassVar[str] = "generic"
    separator: ClassVar[str] = ","
    # A slot's value is one operation index (False: a set of operations, NSE's multi-branch layers).
    one_choice_per_slot: ClassVar[bool] = True

    def __init__(self, slots: Sequence[Slot], name: str | None = None):
        if not slots:
            raise ValueError("a search space needs at least one slot")
        names = [s.name for s in slots]
        if len(set(names)) != len(names):
            raise ValueError(f"slot names must be unique, got {names}")
        self.slots: tuple[Slot, ...] = tuple(slots)
        self.name = name or self.kind

    # --- construction and identity -------------------------------------------------------------
    def spec_kwargs(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this space's full (unrestricted) form; plain data."""
        return {"slots": [[s.name, list(s.ops)] for s in self.slots], "name": self.name}

    @classmethod
    def from_spec_kwargs(cls, kwargs: Mapping[str, Any]) -> SearchSpace:
        if cls is SearchSpace:
            return SearchSpace([Slot(n, tuple(ops)) for n, ops in kwargs["slots"]], name=kwargs.get("name"))
        return cls(**kwargs)

    def to_spec(self) -> dict[str, Any]:
        """Plain-data description (JSON-able) from which ``space_from_spec`` rebuilds this (sub)space."""
        spec = {"kind": self.kind, "kwargs": self.spec_kwargs()}
        if self.is_restricted:
            spec["allowed"] = [list(s.allowed) for s in self.slots]
        return spec

    @property
    def is_restricted(self) -> bool:
        return any(len(s.allowed) != len(s.ops) for s in self.slots)

    def full_space(self) -> SearchSpace:
        """The unrestricted space this (sub)space lives in."""
        return space_from_spec({"kind": self.kind, "kwargs": self.spec_kwargs()})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(repr(self.to_spec()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, slots={len(self.slots)}, size={self.size:.4g})"

    def __len__(self) -> int:
        return len(self.slots)

    # --- size and validity ---------------------------------------------------------------------
    @property
    def choices(self) -> list[tuple[int, ...]]:
        """Allowed choice indices per slot."""
        return [s.allowed for s in self.slots]

    @property
    def size(self) -> int:
        """Number of architectures in the (sub)space (before any canonical de-duplication)."""
        return math.prod(len(s.allowed) for s in self.slots)

    def canonicalize(self, arch: Architecture) -> Architecture:
        """Map equivalent encodings to one: inactive slots set to index 0 of the full space, so one
        network has one encoding in the full space and every subspace."""
        inactive = self.inactive_slots(arch)
        return tuple(0 if i in inactive else choice for i, choice in enumerate(arch)) if inactive else arch

    def inactive_slots(self, arch: Architecture) -> frozenset[int]:
        """Slots that do not exist in ``arch``'s network (none here; OFA: layers beyond a unit's depth);
        a subspace does not constrain them."""
        return frozenset()

    def branches(self, slot: int, value: int) -> tuple[int, ...]:
        """The operations (indices into the slot's ``ops``) a slot value selects: here the one operation it
        names; a multi-branch space's value is a set of operations (NSE's configurations)."""
        return (int(value),)

    def layer_configurations(self, slot: int) -> list[int]:
        """Every value slot ``slot`` may take in this (sub)space: here its allowed operations."""
        return list(self.slots[slot].allowed)

    def validate(self, arch: Sequence[int | str]) -> Architecture:
        """Return ``arch`` as a canonical tuple of indices; ValueError naming the slot and value otherwise."""
        if isinstance(arch, str):
            return self.from_string(arch)
        arch = tuple(arch)
        if len(arch) != len(self.slots):
            raise ValueError(
                f"architecture has {len(arch)} choices but space {self.name!r} has {len(self.slots)} slots"
            )
        canonical = self.canonicalize(tuple(slot.index(choice) for slot, choice in zip(self.slots, arch)))
        inactive = self.inactive_slots(canonical)
        for i, (slot, idx) in enumerate(zip(self.slots, canonical)):
            if i not in inactive and idx not in slot.allowed:
                raise ValueError(
                    f"slot {slot.name!r}: operation {slot.ops[idx]!r} is outside this subspace; "
                    f"allowed are {[slot.ops[i] for i in slot.allowed]}"
                )
        return canonical

    def contains(self, arch: Sequence[int | str]) -> bool:
        try:
            self.validate(arch)
        except ValueError:
            return False
        return True

    # --- string form ---------------------------------------------------------------------------
    def op_names(self, arch: Architecture) -> list[str]:
        return [slot.ops[i] for slot, i in zip(self.slots, arch)]

    def to_string(self, arch: Sequence[int | str]) -> str:
        """Canonical, human-readable form; ``from_string`` inverts it."""
        return self.separator.join(self.op_names(self.validate(arch)))

    def from_string(self, text: str) -> Architecture:
        parts = text.split(self.separator)
        if len(parts) != len(self.slots):
            raise ValueError(
                f"{text!r} names {len(parts)} operations but space {self.name!r} has {len(self.slots)} slots"
            )
        return self.validate(parts)

    # --- sampling ------------------------------------------------------------------------------
    def sample_slot(self, slot: int, rng: np.random.Generator) -> int:
        """One value for slot ``slot`` uniformly from what the (sub)space allows there (multi-branch
        spaces override it: a slot's value is then a set of operations)."""
        allowed = self.slots[slot].allowed
        return int(allowed[rng.integers(len(allowed))])

    def sample(self, rng: np.random.Generator) -> Architecture:
        """One architecture uniformly from the (sub)space."""
        return self.canonicalize(tuple(self.sample_slot(i, rng) for i in range(len(self.slots))))

    def sample_many(self, rng: np.random.Generator, n: int, distinct: bool = False) -> list[Architecture]:
        if not distinct:
            return [self.sample(rng) for _ in range(n)]
        if n > self.size:
            raise ValueError(f"cannot draw {n} distinct architectures from a space of {self.size}")
        seen: dict[Architecture, None] = {}
        while len(seen) < n:
            seen.setdefault(self.sample(rng))
        return list(seen)

    def enumerate(self) -> Iterator[Architecture]:
        """Every architecture of the (sub)space, in lexicographic order of allowed indices."""
        import itertools

        seen = set()
        for arch in itertools.product(*self.choices):
            arch = self.canonicalize(arch)
            if arch not in seen:
                seen.add(arch)
                yield arch

    # --- mutation --------------------------------------------------------------------------------
    def mutate(self, arch: Sequence[int], rng: np.random.Generator, num_edits: int = 1) -> Architecture:
        """Change ``num_edits`` distinct slots to a different allowed operation (slots with one option stay)."""
        free = [i for i, s in enumerate(self.slots) if len(s.allowed) > 1]
        if not free:
            raise ValueError("every slot of this space has a single operation: nothing to mutate")
        b = list(arch)
        for i in rng.choice(free, size=min(num_edits, len(free)), replace=False):
            alts = [o for o in self.slots[i].allowed if o != b[i]]
            b[i] = int(alts[rng.integers(len(alts))])
        return self.canonicalize(tuple(b))

    # --- subspaces -----------------------------------------------------------------------------
    def restrict(self, allowed: Sequence[Sequence[int | str]] | Mapping[str, Sequence[int | str]]) -> SearchSpace:
        """The subspace that allows, per slot, only the given operations (names or indices).

        ``allowed`` is one sequence per slot, or a mapping from slot name to its operations (slots not
        named keep what they allow now). Restricting a slot to nothing is an error: shrinking and
        simplification must leave every slot at least one operation, or the topology would change.
        """
        slots = []
        for slot, idx in zip(self.slots, self._restriction(allowed, [s.allowed for s in self.slots])):
            if not idx:
                raise ValueError(f"slot {slot.name!r} restricted to no operation; keep at least one")
            slots.append(Slot(slot.name, slot.ops, idx))
        sub = self.full_space()
        sub.slots = tuple(slots)
        return sub

    def _restriction(
        self,
        allowed: Sequence[Sequence[int | str]] | Mapping[str, Sequence[int | str]],
        current: Sequence[Sequence[int]],
    ) -> list[tuple[int, ...]]:
        """``restrict``'s argument as sorted operation indices per slot; slots a mapping leaves out keep
        ``current``. ValueError for unknown slot names, a wrong slot count or unknown operations."""
        if isinstance(allowed, Mapping):
            unknown = set(allowed) - {s.name for s in self.slots}
            if unknown:
                raise ValueError(f"unknown slots {sorted(unknown)}; slots are {[s.name for s in self.slots]}")
            allowed = [allowed.get(s.name, now) for s, now in zip(self.slots, current)]
        if len(allowed) != len(self.slots):
            raise ValueError(f"restriction names {len(allowed)} slots but the space has {len(self.slots)}")
        return [tuple(sorted({slot.index(o) for o in ops})) for slot, ops in zip(self.slots, allowed)]

    # --- cost model ----------------------------------------------------------------------------
    @property
    def has_cost_model(self) -> bool:
        return type(self).cost is not SearchSpace.cost

    def cost(self, arch: Sequence[int]) -> Cost:
        """MAdds and parameters of ``arch`` where the space defines a cost model."""
        raise NotImplementedError(f"space {self.name!r} defines no cost model")

    def cost_range(self, max_evaluations: int = 20_000) -> tuple[float, float] | None:
        """(cheapest, dearest) MAdds over the (sub)space's architectures, or None where it cannot say cheaply.

        Exact for a cost model that adds up over slots (NAS-Bench-201, MobileNet-like, generated spaces):
        the extremes of each slot's choices, checked against the model on the extreme architectures and a
        few random ones. Otherwise a space of at most ``max_evaluations`` architectures is enumerated.
        """
        if not self.has_cost_model or not self.one_choice_per_slot:
            return None
        if sum(len(s.allowed) for s in self.slots) <= max_evaluations:
            reference = tuple(s.allowed[0] for s in self.slots)
            base = self.cost(reference).madds
            deltas = [
                {o: self.cost(reference[:i] + (o,) + reference[i + 1 :]).madds - base for o in slot.allowed}
                for i, slot in enumerate(self.slots)
            ]
            cheapest = tuple(min(d, key=d.get) for d in deltas)
            dearest = tuple(max(d, key=d.get) for d in deltas)
            rng = np.random.default_rng(0)
            checks = [cheapest, dearest, *self.sample_many(rng, 8)]
            if all(
                math.isclose(
                    self.cost(a).madds, base + sum(d[o] for d, o in zip(deltas, a)), rel_tol=1e-9, abs_tol=1e-3
                )
                for a in checks
            ):
                return self.cost(cheapest).madds, self.cost(dearest).madds
        if self.size <= max_evaluations:
            madds = [self.cost(a).madds for a in self.enumerate()]
            return min(madds), max(madds)
        return None

    # --- Tune ----------------------------------------------------------------------------------
    def param_space(self) -> dict[str, Any]:
        """A Tune ``param_space``: the space's spec as a constant plus one ``tune.choice`` per slot.

        Our searchers read the space back from the constant; Tune's own searchers (Optuna, HyperOpt,
        random) search the ``ops`` choices, so every method can be compared on the same space.
        """
        from ray import tune

        return {
            SPACE_KEY: self.to_spec(),
            OPS_KEY: {s.name: tune.choice([s.ops[i] for i in s.allowed]) for s in self.slots},
        }

    def to_config(self, arch: Sequence[int]) -> dict[str, Any]:
        """The trial-config entries naming one architecture: its string and its operation per slot."""
        arch = self.validate(arch)
        return {ARCH_KEY: self.to_string(arch), OPS_KEY: dict(zip((s.name for s in self.slots), self.op_names(arch)))}

    def arch_from_config(self, config: Mapping[str, Any]) -> Architecture:
        """The architecture a trial config names, from our ``arch`` string or from Tune's ``ops`` choices."""
        if ARCH_KEY in config:
            return self.from_string(config[ARCH_KEY])
        ops = config.get(OPS_KEY)
        if not isinstance(ops, Mapping):
            raise ValueError(
                f"trial config names no architecture: expected {ARCH_KEY!r} (a canonical string) or "
                f"{OPS_KEY!r} (one operation per slot, as space.param_space() gives); got keys {sorted(config)}"
            )
        missing = [s.name for s in self.slots if s.name not in ops]
        if missing:
            raise ValueError(f"trial config's {OPS_KEY!r} lacks slots {missing}")
        return self.validate([ops[s.name] for s in self.slots])


def space_from_spec(spec: Mapping[str, Any]) -> SearchSpace:
    """Rebuild a (sub)space from ``SearchSpace.to_spec()``; ValueError for a malformed spec."""
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise ValueError(
            f"malformed space spec {spec!r}: expected {{'kind': ..., 'kwargs': {{...}}}} from space.to_spec()"
        )
    kind = spec["kind"]
    if kind == SearchSpace.kind:
        cls = SearchSpace
    elif kind in _REGISTRY:
        cls = _REGISTRY[kind]
    else:
        raise ValueError(f"unknown space kind {kind!r}; known kinds are {sorted(_REGISTRY) + [SearchSpace.kind]}")
    try:
        space = cls.from_spec_kwargs(spec.get("kwargs", {}))
    except (TypeError, KeyError) as err:
        raise ValueError(f"malformed spec for space kind {kind!r}: {err}") from err
    if "allowed" in spec:
        space = space.restrict(spec["allowed"])
    return space


def space_from_config(config: Mapping[str, Any]) -> SearchSpace:
    """The space a Tune ``param_space`` (or a trial config) carries under ``'space'``."""
    if SPACE_KEY not in config:
        raise ValueError(
            f"the Tune config carries no {SPACE_KEY!r} entry; build it with space.param_space() "
            "or pass space= to the searcher"
        )
    return space_from_spec(config[SPACE_KEY])
