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

Tune's searcher contract, kept here once for every method:

* a metric that is NaN, inf or -inf (a diverging supernet, a broken evaluation) or missing from a result is
  a failed evaluation: it enters the history with its status, never becomes a best, a reward or a
  centre score, and is logged in one warning line per trial; a method sees such a job as failed
  (``result=None``), and in a batch only the architectures with a finite value;
* a training job carries an id from this searcher's own job counter (``jobs.JOB_ID_KEY``), saved with
  its state, so a job issued again after a restore is recognised by the weight store;
* ``set_search_properties`` checks the settings against the space (``check_space``: e.g. a cost limit
  no architecture meets) and refuses ``ray.tune.search.Repeater`` for methods whose jobs it cannot
  average (``repeat_refusal``);
* a search that finishes without a result says why, in one line (``why_no_result``).
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import sys
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from tune_spacenas import storage
from tune_spacenas.jobs import (
    ARCH_KEY,
    ARCHS_KEY,
    DIVERGED_KEY,
    EVALUATE,
    JOB_ID_KEY,
    OPS_KEY,
    PER_ARCH_KEY,
    SPACE_KEY,
    TASK_KEY,
    TRAIN,
    job_id,
)
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
# A history record's ``status``: a finite metric, or why the evaluation failed.
OK, ERROR, MISSING = "ok", "error", "missing"
log = logging.getLogger("tune_spacenas.searchers")


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
        # Training jobs issued so far; with the search's id it names each job (kept in the saved state, so
        # a restored search issues its next jobs under the same ids as before).
        self.search_id = uuid.uuid4().hex[:12]
        self.training_jobs = 0
        self._metric_seen = False  # some result carried the metric: a later one without it is a failure
        self._cache: dict[str, dict[str, Any]] = {}
        self._live: dict[str, dict[str, Any]] = {}
        self._ready = False
        self.phase = self.PHASES[0]  # the part of the method running now, one of PHASES
        self._finish_noted = False

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
        self._refuse_repeater()
        if self.space is not None:
            self.check_space()
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        self._check_ready()
        for _ in range(_MAX_CACHED_ANSWERS):
            if self.max_queries is not None and self.queries >= self.max_queries:
                return self._finished()
            job = self.propose()
            if job == FINISHED:
                return self._finished()
            if job is None:
                return None
            cached = self._cached_result(job)
            if cached is not None:
                self._complete(job, cached)
                continue
            if job.get(TASK_KEY, EVALUATE) == EVALUATE:
                self.queries += len(job.get(ARCHS_KEY, [None]))
            else:
                job = {**job, JOB_ID_KEY: job_id(self.search_id, self.training_jobs)}
                self.training_jobs += 1
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
        self._refuse_repeater()
        problems = []
        if not self._metric or not self._mode:
            problems.append("no metric/mode: pass metric= and mode= to the searcher or to tune.run / TuneConfig")
        if self.space is None:
            problems.append("no search space: pass space= to the searcher or config=space.param_space() to tune.run")
        elif self.needs_one_choice_per_slot and not self.space.one_choice_per_slot:
            problems.append(
                f"space {self.space.name!r} selects a set of operations per layer and this method picks one "
                "operation per slot: use NSESearcher, RandomSearcher or RegularizedEvolutionSearcher on it"
            )
        if problems:
            raise ValueError(f"{type(self).__name__} cannot suggest yet: " + "; ".join(problems))
        self.check_space()
        self._ready = True
        self.setup()

    def _finished(self) -> str:
        self.phase = DONE
        if not self._finish_noted:
            self._finish_noted = True
            if self.best_architecture() is None:
                log.warning("%s finished without a result: %s", type(self).__name__, self.why_no_result())
        return FINISHED

    def _refuse_repeater(self) -> None:
        reason = self.repeat_refusal()
        if reason is not None and wrapped_in_repeater(self):
            raise ValueError(
                f"{type(self).__name__} cannot run under ray.tune.search.Repeater: {reason}, and Repeater hands "
                "the searcher only {metric: mean over the repeats} of the first trial. To average out evaluation "
                "noise, score on more images (SupernetSpec(eval_images=...)) or run the search with several seeds; "
                "Repeater works with RandomSearcher, RegularizedEvolutionSearcher, REINFORCESearcher and "
                "ASESearcher(train_steps=0), whose trials each evaluate one architecture"
            )

    # ------------------------------------------------------------------------------------------
    # Method hooks
    # ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Called once, when metric, mode and space are all known (before the first ``propose``)."""

    def propose(self) -> dict[str, Any] | str | None:
        raise NotImplementedError

    def observe(self, job: dict[str, Any], result: dict[str, Any] | None) -> None:
        raise NotImplementedError

    def check_space(self) -> None:
        """Called once the space is known (``set_search_properties``, the first ``suggest``): ValueError if
        this searcher's settings cannot work on it (a cost limit no architecture of the space meets)."""

    def repeat_refusal(self) -> str | None:
        """Why ``Repeater`` cannot drive this searcher (its trials train, or score batches), or None: a
        trial that evaluates one architecture averages over repeats like any Tune trial."""
        return None

    def why_no_result(self) -> str:
        """One line on why the search ended without a best architecture (logged at ``FINISHED``)."""
        if not self.history:
            return "no architecture was evaluated (the budget ended first, or a constraint left no candidate)"
        statuses = [r.get("status", OK) for r in self.history]
        counts = {status: statuses.count(status) for status in set(statuses)}
        failed = len(self.history) - counts.pop(OK, 0)
        details = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + f" for metric {self._metric!r}"
        if failed == len(self.history):
            return f"all {failed} evaluations failed ({details})"
        return (
            f"{failed} of {len(self.history)} evaluations failed ({details}), among them every one the answer "
            "is picked from"
        )

    # ------------------------------------------------------------------------------------------
    # Results
    # ------------------------------------------------------------------------------------------
    def score(self, value: float) -> float:
        """The metric as a quantity to maximise (negated for ``mode='min'``)."""
        return value if self._mode == "max" else -value

    def arch_values(self, job: Mapping[str, Any], result: Mapping[str, Any]) -> list[tuple[Architecture, float]]:
        """(architecture, metric value) for every architecture an evaluation job named whose value is finite."""
        return [
            (arch, value)
            for arch, value in self._reported_values(job, result)
            if value is not None and math.isfinite(value)
        ]

    def _reported_values(
        self, job: Mapping[str, Any], result: Mapping[str, Any]
    ) -> list[tuple[Architecture, float | None]]:
        """(architecture, reported value) for every architecture of an evaluation job; None where the metric
        is missing (ValueError naming what the trainable reports if no result of this search carried it)."""
        if ARCHS_KEY not in job:
            return [(self.space.arch_from_config(job), _as_float(self._value(result)))]
        archs = [self.space.from_string(s) for s in job[ARCHS_KEY]]
        # Tune hands searchers flattened results ("per_arch/accuracy"); in-process runs keep them nested.
        prefix = f"{PER_ARCH_KEY}/"
        per_arch = result.get(PER_ARCH_KEY)
        if not isinstance(per_arch, Mapping):
            per_arch = {k[len(prefix) :]: v for k, v in result.items() if k.startswith(prefix)}
        if not per_arch:
            raise ValueError(
                f"a batch evaluation must report {PER_ARCH_KEY!r}: {{metric: [one value per architecture]}}, got "
                f"keys {sorted(result)}; a result of only {{{self._metric!r}: mean}} is what Tune's Repeater hands "
                "on, and Repeater cannot drive searchers that evaluate in batches"
            )
        values = self._value(per_arch)
        values = [values] * len(archs) if values is None else values
        if len(values) != len(archs):
            raise ValueError(
                f"a batch evaluation must report {PER_ARCH_KEY!r}: {{metric: [one value per architecture]}}"
            )
        return [(arch, _as_float(v)) for arch, v in zip(archs, values)]

    def _value(self, result: Mapping[str, Any]) -> Any:
        """``result[metric]``; None when one result lacks it after earlier ones carried it."""
        if self._metric in result:
            self._metric_seen = True
            return result[self._metric]
        if self._metric_seen:
            return None
        return self._metric_of(result)

    def batch_scores(
        self, job: Mapping[str, Any], result: Mapping[str, Any] | None
    ) -> tuple[list[Architecture], dict[Architecture, float]]:
        """An evaluation job's architectures, and the scores to maximise of those with a finite value (none
        when the trial failed): what every method that evaluates in batches learns from."""
        archs = self._job_archs(job)
        scores = {} if result is None else {a: self.score(v) for a, v in self.arch_values(job, result)}
        return archs, scores

    def _metric_of(self, result: Mapping[str, Any]) -> Any:
        if self._metric not in result:
            reported = sorted(k for k, v in result.items() if isinstance(v, (int, float, list)))
            raise ValueError(
                f"trial result has no metric {self._metric!r}; the trainable reports {reported}. "
                "Pass one of those as metric="
            )
        return result[self._metric]

    def _complete(self, job: dict[str, Any], result: dict[str, Any] | None, trial_id: str | None = None) -> None:
        if job.get(TASK_KEY, EVALUATE) == TRAIN:
            self._cache.clear()  # weights moved: earlier supernet evaluations are stale
            if result is not None and not self._training_ok(job, result, trial_id):
                result = None
            self.observe(job, result)
            return
        reported = [(a, None) for a in self._job_archs(job)] if result is None else self._reported_values(job, result)
        failures = []
        for arch, value in reported:
            text = self.space.to_string(arch)
            status = ERROR if result is None else _status(value)
            self.history.append(
                {
                    "order": len(self.history),
                    "trial_id": trial_id or "cache",
                    ARCH_KEY: text,
                    self._metric: value if status == OK else math.nan,
                    "status": status,
                }
            )
            if status != OK:
                failures.append(status)
            elif self.cache_evaluations and ARCHS_KEY not in job:
                self._cache[text] = result
        if result is not None and failures:
            log.warning(
                "trial %s: metric %r is %s for %d of %d architectures: recorded as failed evaluations "
                "(never a best, a reward or a centre)",
                trial_id or "cache",
                self._metric,
                "/".join(sorted(set(failures))),
                len(failures),
                len(reported),
            )
            if len(failures) == len(reported):
                result = None
        self.observe(job, result)

    def _training_ok(self, job: Mapping[str, Any], result: Mapping[str, Any], trial_id: str | None) -> bool:
        """False (with one warning line) for a training job that diverged or reported a non-finite metric."""
        value = _as_float(result.get(self._metric))
        if value is not None:
            self._metric_seen = True
        if DIVERGED_KEY not in result and (value is None or math.isfinite(value)):
            return True
        where = (
            f"diverged at step {result[DIVERGED_KEY]}" if DIVERGED_KEY in result else f"reported {self._metric}={value}"
        )
        log.warning(
            "trial %s: training job %s %s: counted as failed (its steps before that stay in the store)",
            trial_id,
            job.get(JOB_ID_KEY, ""),
            where,
        )
        return False

    def _job_archs(self, job: Mapping[str, Any]) -> list[Architecture]:
        if ARCHS_KEY in job:
            return [self.space.from_string(s) for s in job[ARCHS_KEY]]
        return [self.space.arch_from_config(job)]

    def _cached_result(self, job: Mapping[str, Any]) -> dict[str, Any] | None:
        if not self.cache_evaluations or job.get(TASK_KEY, EVALUATE) != EVALUATE or ARCHS_KEY in job:
            return None
        return self._cache.get(job.get(ARCH_KEY))

    def best_architecture(self) -> str | None:
        """The best architecture evaluated so far (by metric and mode); methods may define their own."""
        record = self.best_record()
        return None if record is None else record[ARCH_KEY]

    def best_record(self) -> dict[str, Any] | None:
        """The history's best successful evaluation (failed ones never count)."""
        ok = [r for r in self.history if r.get("status", OK) == OK]
        return max(ok, key=lambda r: self.score(r[self._metric])) if ok else None

    # ------------------------------------------------------------------------------------------
    # Progress
    # ------------------------------------------------------------------------------------------
    def progress(self) -> SearchProgress:
        """Where the search stands (plain data; ``str()`` of it is a one-line progress report)."""
        return self.current_progress() if self._ready else self.make_progress()

    def current_progress(self) -> SearchProgress:
        """``progress()`` once the search has started (metric, mode and space known): methods override it."""
        return self.make_progress()

    def make_progress(
        self,
        steps: tuple[int, int] = (0, 0),
        evaluations: tuple[int, int | None] | None = None,
        best: tuple[float, str] | None = None,
        note: str = "",
    ) -> SearchProgress:
        """``SearchProgress`` with this searcher's phase and defaults: evaluations are the queries spent of
        ``max_queries``, the best is the best evaluation in the history."""
        if evaluations is None:
            evaluations = (self.queries, self.max_queries)
        if best is None:
            record = self.best_record()
            best = None if record is None else (float(record[self._metric]), record[ARCH_KEY])
        return SearchProgress(
            self.phase,
            int(steps[0]),
            int(steps[1]),
            int(evaluations[0]),
            evaluations[1],
            None if best is None else best[0],
            None if best is None else best[1],
            note,
        )

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


def wrapped_in_repeater(searcher: Searcher, depth: int = 40) -> bool:
    """Whether ``searcher`` is being called through a ``ray.tune.search.Repeater`` (directly or through a
    ``ConcurrencyLimiter``): Tune gives a searcher no other sign of it, so the callers' frames are read
    (only at ``set_search_properties`` and the first ``suggest``)."""
    try:
        from ray.tune.search import Repeater
    except ImportError:
        return False
    frame = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return False
        caller = frame.f_locals.get("self")
        if isinstance(caller, Repeater):
            inner = caller.searcher
            while inner is not searcher and hasattr(inner, "searcher"):
                inner = inner.searcher
            if inner is searcher:
                return True
        frame = frame.f_back
    return False


def _as_float(value: Any) -> float | None:
    """A reported value as a float (None stays None: missing; a value that is no number counts as NaN)."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _status(value: float | None) -> str:
    """``ok`` for a finite value, else what it was: ``missing``, ``nan``, ``inf`` or ``-inf``."""
    if value is None:
        return MISSING
    if math.isfinite(value):
        return OK
    return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"


def write_rows(rows: list[dict[str, Any]], path: str | os.PathLike, empty_column: str) -> None:
    """Rows of plain data (a searcher's history) to a Parquet file (a path or URI, atomically); no rows: an
    empty ``empty_column``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows) if rows else pa.table({empty_column: pa.array([], pa.string())})
    storage.write_atomic(path, lambda f: pq.write_table(table, f))
