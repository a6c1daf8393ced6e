"""Cost constraints on candidate architectures: SPOS's, SE-NAS's and ASE-NAS's ``max_madds`` (and the
``min_madds`` that makes it a window, for comparisons at matched cost), built in one place."""

from __future__ import annotations

from tune_spacenas.spaces.base import Architecture, SearchSpace


class CostConstraint:
    """``min_madds <= space.cost(arch).madds <= max_madds`` (and params), as a picklable callable.

    A window that holds no architecture of the space (``SearchSpace.cost_range``: ``max_madds`` below the
    cheapest, ``min_madds`` above the dearest, or ``min_madds > max_madds``) is a ValueError naming the
    space's cost range: such a search could only end without a result.
    """

    def __init__(
        self,
        space: SearchSpace,
        max_madds: float | None = None,
        max_params: float | None = None,
        min_madds: float | None = None,
    ):
        if not space.has_cost_model:
            raise ValueError(f"space {space.name!r} has no cost model, so it cannot take a MAdds/params constraint")
        self.space, self.max_madds, self.max_params, self.min_madds = space, max_madds, max_params, min_madds
        if min_madds is not None and max_madds is not None and min_madds > max_madds:
            raise ValueError(f"min_madds={min_madds:.4g} is above max_madds={max_madds:.4g}: the window is empty")
        span = space.cost_range() if (max_madds, min_madds) != (None, None) else None
        if span is None:
            return
        if max_madds is not None and max_madds < span[0]:
            raise ValueError(
                f"max_madds={max_madds:.4g} admits no architecture of space {space!r}: its architectures "
                f"cost {span[0]:.4g} to {span[1]:.4g} MAdds (cost model min and max); raise max_madds "
                "to at least the minimum, or drop it"
            )
        if min_madds is not None and min_madds > span[1]:
            raise ValueError(
                f"min_madds={min_madds:.4g} admits no architecture of space {space!r}: its architectures "
                f"cost {span[0]:.4g} to {span[1]:.4g} MAdds (cost model min and max); lower min_madds "
                "to at most the maximum, or drop it"
            )

    def admits_some(self, space: SearchSpace) -> bool:
        """Whether ``space`` (e.g. a shrunk subspace) still reaches into the MAdds window, by its cost range
        (True where the range cannot be had cheaply: nothing to go on)."""
        span = space.cost_range()
        if span is None:
            return True
        return (self.max_madds is None or span[0] <= self.max_madds) and (
            self.min_madds is None or span[1] >= self.min_madds
        )

    def __call__(self, arch: Architecture) -> bool:
        cost = self.space.cost(arch)
        return (
            (self.max_madds is None or cost.madds <= self.max_madds)
            and (self.min_madds is None or cost.madds >= self.min_madds)
            and (self.max_params is None or cost.params <= self.max_params)
        )


class CostLimited:
    """Mixin for searchers with a ``max_madds`` (and optional ``min_madds``) setting (SPOS, SE-NAS, ASE-NAS):
    ``constraint`` (a ``CostConstraint``, or None) is built once the space is known
    (``ArchSearcher.check_space``), so an impossible limit fails at ``set_search_properties``, before any trial."""

    max_madds: float | None = None
    min_madds: float | None = None
    constraint: CostConstraint | None = None

    def check_space(self) -> None:
        super().check_space()
        limited = self.max_madds is not None or self.min_madds is not None
        self.constraint = CostConstraint(self.space, self.max_madds, min_madds=self.min_madds) if limited else None
