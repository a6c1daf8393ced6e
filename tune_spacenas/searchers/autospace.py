"""AutoSpace (Zhou et al., 2021): search-space generation by a differentiable evolutionary algorithm.

One population of cells per layer (section 3.2.1), each cell with a fitness score alpha. Every
generation (one training trial of f iterations on the shared open-space supernet, Fig. 2):

1. tournament selection picks K cells per layer, paired with their fitness scores;
2. the supernet's layer l is the fitness-weighted sum of its K cells (Eq. 3, p = softmax(alpha)),
   trained through binary gates while alpha follows Eq. (4) (with the compensation factor n/n'),
   optionally with Eq. (6)'s MAdds term (``supernet.cells.FitnessWeightedLayer``, run by AutoSpace's
   worker extension for the job's ``autospace`` payload);
3. the learned alpha* returns to the population with momentum epsilon (Eq. 5);
4. the generation's best cells produce offspring by mutating one edge operation, the ratio or the
   aggregation; during the first half of the evolution a mutation is repeated until its normalised
   Hamming distance to the reference DAG (Eq. 2) is below tau; the weakest cells leave the population.

Cells are kept in canonical form (``spaces.cells.canonical_cell``: dead edges removed), and a mutation
that only rewires a dead edge is retried: the open space's encodings are highly redundant (section
3.2.1), and two encodings of one function in a generation would split its fitness between them.

At the end the top-K cells of each layer that a generation evaluated (an offspring inherits its parent's
fitness for the tournaments, never a rank: ``ranked``) form the generated space (``generated_space()``,
with ``zero`` to skip a layer where its residual allows, and the count of generations that evaluated each
cell in its JSON), which any searcher of the project (``ProxylessSearcher``, SPOS, random, ...), or Tune's
own through its ``param_space()``, then searches (section 3.3).
Generations train in parallel as Tune's ``ConcurrencyLimiter`` allows (the parallel evaluation of 3.2).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tune_spacenas.jobs import (
    ALPHA,
    AUTOSPACE_KEY,
    MADDS,
    STEPS_DONE,
    STEPS_KEY,
    TASK_KEY,
    TRAIN,
    AutoSpaceGeneration,
    AutoSpaceJob,
)
from tune_spacenas.searchers.base import DONE, FINISHED, ArchSearcher, SearchProgress, write_rows
from tune_spacenas.searchers.training import TrainingPhase
from tune_spacenas.spaces.base import SearchSpace
from tune_spacenas.spaces.cells import (
    NUM_NODES,
    REFERENCE_IRB,
    CellSpace,
    GeneratedSpace,
    OpenCellSpace,
    canonical_cell,
    cell_string,
    hamming_distance,
    parse_cell,
)
from tune_spacenas.spaces.neighbourhood import sample_neighbour

_CELLS = CellSpace()
_MAX_TRIES = 1000
log = logging.getLogger("tune_spacenas.searchers")


@dataclass
class Member:
    """One cell of a layer's population: its fitness score alpha, the iterations it has trained in the
    supernet (n'(d) of Eq. 4), the generations that evaluated it, the generation it was born in and its
    parent. An offspring starts with its parent's fitness (so tournaments can pick it) but counts as
    unevaluated until a generation has trained it."""

    cell: str
    fitness: float
    trained: int = 0
    born: int = 0
    parent: str | None = None
    evaluations: int = 0


class AutoSpaceSearcher(ArchSearcher):
    """Evolve one population of cells per layer of an ``OpenCellSpace`` supernet; output a generated space.

    Use with the open space's weight store (``config=store.param_space()``, ``supernet_trainable``),
    metric ``"loss"`` / mode ``"min"`` (the generation's training loss, recorded for Fig. 3) or
    ``"accuracy"`` / ``"max"``; fitness itself comes from the reported ``alpha``.

    Args:
        num_layers: L, layers of the supernet (checked against the space when given).
        cells_per_layer: K, cells per layer in each supernet generation and in the generated space
            (the paper evaluates 9 at once).
        population_size: cells in each layer's population.
        tournament_size: contenders per tournament (each of the K picks is one tournament).
        generations: supernet generations in the evolution.
        iterations_per_generation: f, training iterations of one generation ("the supernet is
            re-generated every f iterations").
        epsilon: Eq. (5)'s momentum: ``alpha(t) = epsilon alpha* + (1 - epsilon) alpha(t-1)``.
        offspring: cells of each generation (its best, per layer) that produce one mutated child.
        reference: the reference DAG of Eq. (2) (a cell string; default the inverted residual block).
        use_reference: the reference-DAG switch (Table 5 / Fig. 3 ablation). On, the initial population
            is drawn within tau of the reference (which it includes) and mutations repeat until within tau.
        tau: Eq. (2)'s threshold: a cell is accepted when ``r_H < tau`` (0.12: at most 3 of the 30
            off-diagonal entries of the 6-node operation matrix differ).
        reference_fraction: share of the evolution during which the reference constrains mutation
            (the paper: "only ... for the first half").
        initial_fitness_std: initial fitness scores are drawn from N(0, std) (Table 6 starts at ~1e-3).
        alpha_lr: step size of Eq. (4)'s gradient descent on the fitness scores.
        gate_paths: candidates computed per layer and step (ProxylessNAS binary gates: 2).
        compensation: scale Eq. (4) by ``n(d)/n'(d)``: the cell's iterations in this generation over its
            iterations in the whole evolution (``compensation_factor``).
        madds_penalty: lambda of Eq. (6), on the expected MAdds of each fitness-weighted layer.
        max_cell_madds: Eq. (1)'s MAdds_max: cells above it never enter a population (one number, or
            one per layer).
        lr: peak learning rate of the supernet's weights (cosine to 0 over the evolution).
        **kwargs: ``ArchSearcher`` arguments (metric, mode, seed).
    """

    PHASES = ("evolution", DONE)

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        num_layers: int | None = None,
        cells_per_layer: int = 4,
        population_size: int = 16,
        tournament_size: int = 3,
        generations: int = 20,
        iterations_per_generation: int = 100,
        epsilon: float = 0.5,
        offspring: int = 2,
        reference: str = REFERENCE_IRB,
        use_reference: bool = True,
        tau: float = 0.12,
        reference_fraction: float = 0.5,
        initial_fitness_std: float = 1e-3,
        alpha_lr: float = 0.05,
        gate_paths: int = 2,
        compensation: bool = True,
        madds_penalty: float = 0.0,
        max_cell_madds: float | Sequence[float] | None = None,
        lr: float = 0.05,
        **kwargs: Any,
    ):
        kwargs.setdefault("cache_evaluations", False)
        super().__init__(space, **kwargs)
        if not 1 <= cells_per_layer <= population_size:
            raise ValueError(f"need 1 <= cells_per_layer ({cells_per_layer}) <= population_size ({population_size})")
        if tournament_size < 1 or generations < 1 or iterations_per_generation < 1:
            raise ValueError("tournament_size, generations and iterations_per_generation must be positive")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon (Eq. 5's momentum) must lie in [0, 1], got {epsilon}")
        if not 0 <= offspring <= cells_per_layer:
            raise ValueError(f"offspring must lie in [0, cells_per_layer={cells_per_layer}], got {offspring}")
        self.reference = cell_string(canonical_cell(reference))
        self.num_layers, self.cells_per_layer, self.population_size = num_layers, cells_per_layer, population_size
        self.tournament_size, self.generations, self.iterations_per_generation = (
            tournament_size,
            generations,
            iterations_per_generation,
        )
        self.epsilon, self.offspring, self.use_reference = epsilon, offspring, use_reference
        self.tau, self.reference_fraction, self.initial_fitness_std = tau, reference_fraction, initial_fitness_std
        self.alpha_lr, self.gate_paths, self.compensation = alpha_lr, gate_paths, compensation
        self.madds_penalty, self.max_cell_madds = madds_penalty, max_cell_madds
        self.training = TrainingPhase(generations * iterations_per_generation, iterations_per_generation, lr)
        self.populations: list[list[Member]] = []
        self.issued_generations = self.completed_generations = 0
        self.population_history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------------------
    # Setup: the initial populations
    # ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        if not isinstance(self.space, OpenCellSpace):
            raise ValueError(
                f"AutoSpaceSearcher evolves the cells of an OpenCellSpace, got {self.space!r}; create the "
                "store with SupernetSpec(OpenCellSpace(...)) and pass config=store.param_space()"
            )
        if self.num_layers is not None and self.num_layers != self.space.num_layers:
            raise ValueError(f"num_layers={self.num_layers} but the space has {self.space.num_layers} layers")
        self.num_layers = self.space.num_layers
        if isinstance(self.max_cell_madds, Sequence) and len(self.max_cell_madds) != self.num_layers:
            raise ValueError(f"max_cell_madds names {len(self.max_cell_madds)} limits for {self.num_layers} layers")
        self.populations = [self._initial_population(layer) for layer in range(self.num_layers)]

    def _initial_population(self, layer: int) -> list[Member]:
        seeds = [self.reference] if self.use_reference and self._affordable(layer, self.reference) else []
        members: dict[str, None] = dict.fromkeys(seeds)
        radius = math.ceil(self.tau * NUM_NODES * (NUM_NODES - 1)) - 1
        for _ in range(_MAX_TRIES * self.population_size):
            if len(members) >= self.population_size:
                break
            cell = (
                sample_neighbour(_CELLS, parse_cell(self.reference), radius, self.rng)
                if self.use_reference
                else _CELLS.sample(self.rng)
            )
            text = cell_string(canonical_cell(cell))
            if self._acceptable(layer, text, constrained=self.use_reference):
                members.setdefault(text)
        if len(members) < self.cells_per_layer:
            raise ValueError(
                f"layer {layer + 1}: only {len(members)} cells satisfy the constraints (tau, max_cell_madds); "
                f"K={self.cells_per_layer} are needed"
            )
        return [
            Member(text, float(self.rng.normal(0.0, self.initial_fitness_std)) if self.initial_fitness_std else 0.0)
            for text in members
        ]

    def _affordable(self, layer: int, cell: str) -> bool:
        """Eq. (1)'s constraint ``MAdds(d) < MAdds_max`` (the layer's own limit where one is given per layer)."""
        limit = self.max_cell_madds
        if limit is None:
            return True
        return self.space.layer_cost(layer, cell).madds < (limit[layer] if isinstance(limit, Sequence) else limit)

    def _acceptable(self, layer: int, cell: str, constrained: bool) -> bool:
        return self._affordable(layer, cell) and (not constrained or hamming_distance(cell, self.reference) < self.tau)

    def repeat_refusal(self) -> str | None:
        return "its trials train supernet generations and report the fitness scores (alpha) they learned"

    # ------------------------------------------------------------------------------------------
    # A generation: tournament selection, then one training trial
    # ------------------------------------------------------------------------------------------
    def propose(self) -> dict[str, Any] | str | None:
        if self.training.finished:
            return FINISHED
        if self.training.all_issued:
            return None  # the last generations are still training
        job = self.training.next_job(seed=int(self.rng.integers(2**31)))
        picks = [self.tournament(layer) for layer in range(self.num_layers)]
        generation = AutoSpaceGeneration(
            generation=self.issued_generations,
            cells=[[m.cell for m in members] for members in picks],
            alpha=[[m.fitness for m in members] for members in picks],
            compensation=[[self.compensation_factor(m) for m in members] for members in picks],
            alpha_lr=self.alpha_lr,
            gate_paths=self.gate_paths,
        )
        job[AUTOSPACE_KEY] = AutoSpaceJob(madds_penalty=self.madds_penalty, generation=generation).to_dict()
        self.issued_generations += 1
        return job

    def tournament(self, layer: int) -> list[Member]:
        """K distinct winners, each the fittest of ``tournament_size`` cells drawn from those not yet picked."""
        remaining = list(self.populations[layer])
        winners = []
        for _ in range(self.cells_per_layer):
            idx = self.rng.choice(len(remaining), size=min(self.tournament_size, len(remaining)), replace=False)
            best = max(idx, key=lambda i: remaining[i].fitness)
            winners.append(remaining.pop(int(best)))
        return winners

    def compensation_factor(self, member: Member) -> float:
        """Eq. (4)'s ``n(d)/n'(d)``: the iterations the cell trains in this supernet (f) over its iterations in
        the whole evolution, this generation included: 1 for a cell trained for the first time, smaller the
        more often tournaments picked it before, so frequently picked cells do not accumulate larger fitness
        updates. (Reading n as the supernet's total iterations instead multiplies every factor of a
        generation by one constant, (iterations so far + f) / f: only alpha_lr would grow, without bound.)"""
        if not self.compensation:
            return 1.0
        f = self.iterations_per_generation
        return f / (member.trained + f)

    # ------------------------------------------------------------------------------------------
    # Results: Eq. (5), offspring, the reference constraint
    # ------------------------------------------------------------------------------------------
    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        if job.get(TASK_KEY) != TRAIN:
            return
        self.training.complete(job, ok=result is not None)
        if result is None:
            return  # a failed generation teaches nothing; its pushed weight steps stay applied
        value = self._value(result)  # recorded with the population; a result without it is kept as NaN
        value = math.nan if value is None else float(value)
        if ALPHA not in result:
            raise ValueError(
                f"the generation's trial reported no {ALPHA!r} (learned fitness scores): train AutoSpace "
                f"on an OpenCellSpace store with supernet_trainable; it reported {sorted(result)}"
            )
        generation = AutoSpaceJob.from_dict(job[AUTOSPACE_KEY]).generation
        steps = int(result.get(STEPS_DONE, job[STEPS_KEY]))
        self.completed_generations += 1
        for layer, (cells, alpha_star) in enumerate(zip(generation.cells, result[ALPHA])):
            updated = self._update_fitness(layer, cells, alpha_star, steps, generation, value)
            self._reproduce(layer, updated)

    def _update_fitness(
        self,
        layer: int,
        cells: list[str],
        alpha_star: list[float],
        steps: int,
        generation: AutoSpaceGeneration,
        value: float,
    ) -> list[Member]:
        """Eq. (5) for the generation's cells still in the population; returns them."""
        by_cell = {m.cell: m for m in self.populations[layer]}
        updated = []
        for k, (cell, learned) in enumerate(zip(cells, alpha_star)):
            member = by_cell.get(cell)
            if member is None:
                continue  # left the population while this generation trained (parallel generations)
            before = member.fitness
            member.fitness = self.epsilon * float(learned) + (1.0 - self.epsilon) * before
            member.trained += steps
            member.evaluations += 1
            updated.append(member)
            self.population_history.append(
                {
                    "generation": int(generation.generation),
                    "completed": self.completed_generations,
                    "layer": layer,
                    "cell": cell,
                    "alpha_start": float(generation.alpha[layer][k]),
                    "alpha_star": float(learned),
                    "fitness_before": before,
                    "fitness": member.fitness,
                    "trained": member.trained,
                    MADDS: self.space.layer_cost(layer, cell).madds,
                    self._metric: value,
                }
            )
        return updated

    def reference_active(self) -> bool:
        """Whether Eq. (2)'s constraint binds now: the switch is on and the evolution is in its first part."""
        return self.use_reference and self.completed_generations <= self.reference_fraction * self.generations

    def _reproduce(self, layer: int, winners: list[Member]) -> None:
        """The generation's best ``offspring`` cells each add a child; then the weakest leave."""
        population = self.populations[layer]
        present = {m.cell for m in population}
        for parent in sorted(winners, key=lambda m: -m.fitness)[: self.offspring]:
            child = self.mutate(layer, parent.cell, present)
            if child is not None:
                present.add(child)
                population.append(Member(child, parent.fitness, born=self.completed_generations, parent=parent.cell))
        # Stable sort: among equal fitness the oldest members go first.
        population.sort(key=lambda m: -m.fitness)
        del population[self.population_size :]

    def mutate(self, layer: int, cell: str, exclude: set[str]) -> str | None:
        """Change one edge operation, the ratio or the aggregation; repeated until the child is a new
        function, affordable and (while the reference binds) within tau of it (Eq. 2). None if none is found."""
        constrained = self.reference_active()
        parent = parse_cell(cell)
        for _ in range(_MAX_TRIES):
            child = cell_string(canonical_cell(_CELLS.mutate(parent, self.rng, 1)))
            if child not in exclude and self._acceptable(layer, child, constrained):
                return child
        return None

    # ------------------------------------------------------------------------------------------
    # Output
    # ------------------------------------------------------------------------------------------
    def ranked(self, layer: int) -> list[Member]:
        """A layer's population, evaluated cells first, each part fittest first: an offspring carries its
        parent's fitness but no learned score of its own, so it never outranks a cell a generation evaluated."""
        return sorted(self.populations[layer], key=lambda m: (m.evaluations == 0, -m.fitness))

    def top_cells(self, k: int | None = None) -> list[list[str]]:
        """The ``k`` (default K) fittest evaluated cells of each layer, best first. Only where fewer than ``k``
        cells of a layer were evaluated (failed generations) do unevaluated ones fill it, with a warning."""
        k = k or self.cells_per_layer
        top = [self.ranked(layer)[:k] for layer in range(len(self.populations))]
        unevaluated = sum(m.evaluations == 0 for members in top for m in members)
        if unevaluated:
            log.warning(
                "%d of the top cells were never evaluated (too few generations completed): they fill layers "
                "with fewer than %d evaluated cells",
                unevaluated,
                k,
            )
        return [[m.cell for m in members] for members in top]

    def generated_space(self, k: int | None = None) -> GeneratedSpace:
        """The generated search space: the top-K evaluated cells of each layer, on the open space's network
        plan, plus ``zero`` (skip) where a layer keeps width and resolution; its JSON records how many
        generations evaluated each cell (``GeneratedSpace.evaluations``)."""
        if not self.populations:
            raise ValueError("no populations yet: the evolution has not started (call suggest first)")
        cells = self.top_cells(k)
        counts = [{m.cell: m.evaluations for m in pop} for pop in self.populations]
        return self.space.generated_space(
            cells, evaluations=[[c[cell] for cell in layer] for c, layer in zip(counts, cells)]
        )

    def best_architecture(self) -> str | None:
        """The fittest cell of every layer, as an architecture of the open space."""
        if not self.populations:
            return None
        return self.space.to_string(self.space.from_cells([cells[0] for cells in self.top_cells(1)]))

    def current_progress(self) -> SearchProgress:
        fittest = self.top_cells(1)[0][0] if self.populations else ""
        return self.make_progress(
            (self.training.done, self.training.total_steps),
            (0, 0),
            best=None,
            note=f"generation {self.completed_generations}/{self.generations}, fittest cell of layer 1: {fittest}",
        )

    def export_history(self, path: str | os.PathLike) -> None:
        """Write the population history (one row per cell per generation: alphas before, learned and
        after Eq. 5, iterations trained, MAdds, the generation's metric) to Parquet."""
        write_rows(self.population_history, path, empty_column="cell")

    def population_table(self) -> list[list[dict[str, Any]]]:
        """The populations as plain data (per layer, fittest first)."""
        return [[asdict(m) for m in self.ranked(layer)] for layer in range(len(self.populations))]
