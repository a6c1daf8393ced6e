"""Cost constraints on candidate architectures (SPOS's, SE-NAS's and ASE-NAS's ``max_madds``)."""

from __future__ import annotations

from tune_spacenas.spaces.base import Architecture, SearchSpace


class CostConstraint:
    """``space.cost(arch).madds <= max_madds`` (and params), as a picklable callable."""

    def __init__(self, space: SearchSpace, max_madds: float | None = None, max_params: float | None = None):
        if not space.has_cost_model:
            raise ValueError(f"space {space.name!r} has no cost model, so it cannot take a MAdds/params constraint")
        self.space, self.max_madds, self.max_params = space, max_madds, max_params

    def __call__(self, arch: Architecture) -> bool:
        cost = self.space.cost(arch)
        return (self.max_madds is None or cost.madds <= self.max_madds) and (
            self.max_params is None or cost.params <= self.max_params
        )


def cost_constraint(space: SearchSpace, max_madds: float | None) -> CostConstraint | None:
    """The constraint a searcher's ``max_madds`` argument asks for (None: unconstrained)."""
    return None if max_madds is None else CostConstraint(space, max_madds)
