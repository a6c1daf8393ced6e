"""``ArchSearcher``: the small base every method's Tune searcher is built on.

It owns what every method needs and no method should rewrite: metric and mode (from the constructor or
from Tune), the space (explicit, or from the ``param_space``'s ``space`` constant), the matching of
trial ids to the jobs that produced them, the history of (architecture, result) with its Parquet export,
a cache that answers repeated evaluations without a trial, a budget of distinct architecture queries,
and ``save``/``restore`` of the whole state as one pickle.

A method implements two hooks:

* ``propose() -> job | None | FINISHED``: the next job (see ``tune_spacenas.jobs``), ``None`` to wait
  for results in flight, or ``FINISHED``;
* ``observe(job, result)``: learn from a finished job (``result`` is ``None`` when the trial failed).

and follows one convention for its phases: ``phase`` names the part of the method running now, one of
the class's ``PHASES`` (e.g. SPOS: ``("training", "search", "finished")``), and ``progress()`` reports
it with the budget spent and the best so far as small plain data (``SearchProgress``).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from tune_spacenas import storage
from tune_spacenas.jobs import ARCH_KEY, ARCHS_KEY, EVALUATE, OPS_KEY, PER_ARCH_KEY, SPACE_KEY, TASK_KEY, TRAIN
from tune_spacenas.spaces.base import Architecture, SearchSpace, space_from_spec

try:
    from ray.tune.search import Searcher
except ImportError:  # Ray is a dependency; this only keeps the methods usable in-process on GPU images without it.

    class Searcher:  # type: ignore[no-redef]
        FINISHED = "FINISHED"

        def __init__(self, metric: str | None = None, mode: str | None = None):
            self._metric, self._mode = metric, mode


FINISHED = Searcher.FINISHED
# Phase names several methods share (a method adds its own: SE-NAS "scoring", NSE "evaluation", ...).
TRAINING, SEARCH, DONE = "training", "search", "finished"
# Repeated suggestions answered from the cache in one ``suggest`` call before giving the loop back.
_MAX_CACHED_ANSWERS = 10_000


@dataclass(frozen=True)
class SearchProgress:
    """Where a search stands, as plain data (``asdict``): its phase, the supernet training steps and the
    architecture evaluations done of their budgets (``None``: open-ended), the best metric value so far
    and its architecture, and a method's own one-line ``note`` (round, graph, generation)."""

    phase: str
    steps_done: int = 0
    steps_total: int = 0
    evaluations_done: int = 0
    evaluations_total: int | None = None
    best: float | None = None
    best_arch: str | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        parts = []
        if self.steps_total:
            parts.append(f"{self.steps_done}/{self.steps_total} training steps")
        if self.evaluations_done or self.evaluations_total:
            parts.append(f"{self.evaluations_done}/{self.evaluations_total or '?'} evaluated")
        if self.best is not None:
            parts.append(f"best so far {self.best:.4g}")
        return f"{self.phase}: " + ", ".join(parts) + (f" | {self.note}" if self.note else "")


def check_mode(mode: str | None) -> str | None:
    if mode not in (None, "min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    return mode


class ArchSearcher(Searcher):
    """Base class of our searchers: a Tune ``Searcher`` over one ``SearchSpace``.

    Args:
        space: the space to search; if omitted, Tune passes it through ``set_search_properties`` from
            the ``param_space`` (``config=space.param_space()``). An explicit space wins.
        metric, mode: what to optimise; if omitted here, taken from ``tune.run``/``TuneConfig``.
            Every argument after ``space`` is keyword-only, in every searcher.
        seed: seeds the searcher's ``numpy.random.Generator``; same seed, same suggestions.
        max_queries: budget of architecture evaluations (each architecture of a batch counts); ``FINISHED``
            once spent. With the cache on (below), a repeat costs nothing, so the budget counts distinct
            architectures; supernet searchers keep it off and count every evaluation.
        cache_evaluations: answer a repeated single-architecture evaluation from the run's cache
            instead of a trial (the benchmark protocol); the cache empties when the supernet trains.
    """

    # Methods that model a slot's value as one operation index (a softmax over ops) set this.
    needs_one_choice_per_slot: ClassVar[bool] = False
    PHASES: ClassVar[tuple[str, ...]] = (SEARCH, DONE)

    def __init__(
        self,
        space: SearchSpace | None = None,
        *,
        metric: str | None = None,
        mode: str | None = None,
        seed: int = 0,
        max_queries: int | None = None,
        cache_evaluations: bool = True,
    ):
        super().__init__(metric=metric, mode=check_mode(mode))
        if space is not None and not isinstance(space, SearchSpace):
            raise ValueError(f"space must be a SearchSpace, got {type(space).__name__}")
        if max_queries is not None and max_queries < 1:
            raise ValueError(f"max_queries must be positive, got {max_queries}")
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.max_queries = max_queries
        self.cache_evaluations = cache_evaluations
        self.history: list[dict[str, Any]] = []
        self.queries = 0
        self._cache: dict[str, dict[str, Any]] = {}
        self._live: dict[str, dict[str, Any]] = {}
        self._ready = False
        self.phase = self.PHASES[0]  # the part of the method running now, one of PHASES

    # ------------------------------------------------------------------------------------------
    # Tune's side
    # ------------------------------------------------------------------------------------------
    @property
    def metric(self) -> str | None:
        return self._metric

    @property
    def mode(self) -> str | None:
        return self._mode

    def set_search_properties(self, metric: str | None, mode: str | None, config: Mapping, **spec: Any) -> bool:
        self._metric = self._metric or metric
        self._mode = self._mode or check_mode(mode)
        if self.space is None and config and SPACE_KEY in config:
            self.space = space_from_spec(config[SPACE_KEY])
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        self._check_ready()
        for _ in range(_MAX_CACHED_ANSWERS):
            if self.max_queries is not None and self.queries >= self.max_queries:
                self.phase = DONE
                return FINISHED
            job = self.propose()
            if job == FINISHED:
                self.phase = DONE
            if job is None or job == FINISHED:
                return job
            cached = self._cached_result(job)
            if cached is not None:
                self._complete(job, cached)
                continue
            if job.get(TASK_KEY, EVALUATE) == EVALUATE:
                self.queries += len(job.get(ARCHS_KEY, [None]))
            self._live[trial_id] = job
            # Jobs that name no single architecture blank the param_space's per-slot choices.
            return {OPS_KEY: None, **job}
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        job = self._live.pop(trial_id, None)
        if job is None:  # a trial this searcher did not suggest, or one already answered before a restore
            return
        self._complete(job, None if error else result, trial_id)

    def _check_ready(self) -> None:
        if self._ready:
            return
        problems = []
        if not self._metric or not self._mode:
            problems.append(
                "no metric/mode: pass metric= and mode= to the searcher or to tune.run / TuneConfig"
            )
        if self.space is None:
            problems.append(
                "no search space: pass space= to the searcher or config=space.param_space() to tune.run"
            )
        elif self.needs_one_choice_per_slot and not self.space.one_choice_per_slot:
            problems.append(
                f"space {self.space.name!r} selects a set of operations per layer and this method picks one "
                "operation per slot: use NSESearcher, RandomSearcher or RegularizedEvolutionSearcher on it"
            )
        if problems:
            raise ValueError(f"{type(self).__name__} cannot suggest yet: " + "; ".join(problems))
        self._ready = True
        self.setup()

    # ------------------------------------------------------------------------------------------
    # Method hooks
    # ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Called once, when metric, mode and space are all known (before the first ``propose``)."""

    def propose(self) -> dict[str, Any] | str | None:
        raise NotImplementedError

    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------
    # Results
    # ------------------------------------------------------------------------------------------
    def score(self, value: float) -> float:
        """The metric as a quantity to maximise (negated for ``mode='min'``)."""
        return value if self._mode == "max" else -value

    def arch_values(self, job: Mapping[str, Any], result: Mapping[str, Any]) -> list[tuple[Architecture, float]]:
        """(architecture, metric value) for every architecture an evaluation job named."""
        if ARCHS_KEY in job:
            # Tune hands searchers flattened results ("per_arch/accuracy"); in-process runs keep them nested.
            flat = f"{PER_ARCH_KEY}/{self._metric}"
            values = result[flat] if flat in result else self._metric_of(result.get(PER_ARCH_KEY) or {})
            if len(values) != len(job[ARCHS_KEY]):
                raise ValueError(f"a batch evaluation must report {PER_ARCH_KEY!r}: {{metric: [one value per architecture]}}")
            return [(self.space.from_string(s), float(v)) for s, v in zip(job[ARCHS_KEY], values)]
        return [(self.space.arch_from_config(job), float(self._metric_of(result)))]

    def batch_scores(self, job: Mapping[str, Any], result: Mapping[str, Any] | None
                     ) -> tuple[list[Architecture], list[float] | None]:
        """An evaluation job's architectures and their scores to maximise (``None`` when the trial failed):
        what every method that evaluates in batches learns from."""
        archs = [self.space.from_string(s) for s in job[ARCHS_KEY]]
        values = None if result is None else [self.score(v) for _, v in self.arch_values(job, result)]
        return archs, values

    def _metric_of(self, result: Mapping[str, Any]) -> Any:
        if self._metric not in result:
            reported = sorted(k for k, v in result.items() if isinstance(v, (int, float, list)))
            raise ValueError(
                f"trial result has no metric {self._metric!r}; the trainable reports {reported}. "
                "Pass one of those as metric="
            )
        return result[self._metric]

    def _complete(self, job: dict[str, Any], result: dict[str, Any] | None, trial_id: str | None = None) -> None:
        task = job.get(TASK_KEY, EVALUATE)
        if task == TRAIN:
            self._cache.clear()  # weights moved: earlier supernet evaluations are stale
        elif result is not None:
            for arch, value in self.arch_values(job, result):
                text = self.space.to_string(arch)
                record = {"order": len(self.history), "trial_id": trial_id or "cache", ARCH_KEY: text,
                          self._metric: value}
                self.history.append(record)
                if self.cache_evaluations and ARCHS_KEY not in job:
                    self._cache[text] = result
        self.observe(job, result)

    def _cached_result(self, job: Mapping[str, Any]) -> dict[str, Any] | None:
        if not self.cache_evaluations or job.get(TASK_KEY, EVALUATE) != EVALUATE or ARCHS_KEY in job:
            return None
        return self._cache.get(job.get(ARCH_KEY))

    def best_architecture(self) -> str | None:
        """The best architecture evaluated so far (by metric and mode); methods may define their own."""
        record = self.best_record()
        return None if record is None else record[ARCH_KEY]

    def best_record(self) -> dict[str, Any] | None:
        if not self.history:
            return None
        return max(self.history, key=lambda r: self.score(r[self._metric]))

    # ------------------------------------------------------------------------------------------
    # Progress
    # ------------------------------------------------------------------------------------------
    def progress(self) -> SearchProgress:
        """Where the search stands (plain data; ``str()`` of it is a one-line progress report)."""
        return self.current_progress() if self._ready else self.make_progress()

    def current_progress(self) -> SearchProgress:
        """``progress()`` once the search has started (metric, mode and space known): methods override it."""
        return self.make_progress()

    def make_progress(self, steps: tuple[int, int] = (0, 0), evaluations: tuple[int, int | None] | None = None,
                      best: tuple[float, str] | None = None, note: str = "") -> SearchProgress:
        """``SearchProgress`` with this searcher's phase and defaults: evaluations are the queries spent of
        ``max_queries``, the best is the best evaluation in the history."""
        if evaluations is None:
            evaluations = (self.queries, self.max_queries)
        if best is None:
            record = self.best_record()
            best = None if record is None else (float(record[self._metric]), record[ARCH_KEY])
        return SearchProgress(self.phase, int(steps[0]), int(steps[1]), int(evaluations[0]), evaluations[1],
                              None if best is None else best[0], None if best is None else best[1], note)

    def export_history(self, path: str | os.PathLike) -> None:
        """Write the (architecture, metric) history to Parquet."""
        write_rows(self.history, path, empty_column=ARCH_KEY)

    # ------------------------------------------------------------------------------------------
    # State
    # ------------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """The complete search state as plain data; methods with torch modules override to use state_dicts."""
        state = dict(self.__dict__)
        state["space"] = None if self.space is None else self.space.to_spec()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        spec = state.pop("space")
        saved = None if spec is None else space_from_spec(spec)
        if self.space is not None and saved is not None and saved.full_space() != self.space.full_space():
            raise ValueError(
                f"checkpoint is of space {saved!r}, but this searcher searches {self.space!r}; "
                "restore it into a searcher of the same space"
            )
        self.__dict__.update(state)
        self.space = saved if saved is not None else self.space

    def save(self, checkpoint_path: str) -> None:
        state = self.get_state()  # taken first: a state that fails to pickle leaves the old file as it was
        storage.write_atomic(checkpoint_path, lambda f: pickle.dump(state, f))

    def restore(self, checkpoint_path: str) -> None:
        with storage.open_read(checkpoint_path) as f:
            self.set_state(pickle.load(f))


def write_rows(rows: list[dict[str, Any]], path: str | os.PathLike, empty_column: str) -> None:
    """Rows of plain data (a searcher's history) to a Parquet file (a path or URI, atomically); no rows: an
    empty ``empty_column``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows) if rows else pa.table({empty_column: pa.array([], pa.string())})
    storage.write_atomic(path, lambda f: pq.write_table(table, f))
