"""The searcher contract as a harness: what Tune does to a searcher, done in this process, with faults.

Tune's own contract (``python/ray/tune/search/searcher.py``, ``repeater.py``, ``concurrency_limiter.py``, and
the generic checks Ray applies to its built-in searchers in ``tests/test_searchers.py`` and
``test_searcher_utils.py``): a searcher is constructed with nothing but its settings, gets metric, mode and
the ``param_space`` through ``set_search_properties``, is asked ``suggest(trial_id)`` and told
``on_trial_complete(trial_id, result, error)`` with Tune's flattened result (``None`` for a trial that
errored), may see NaN, inf or no metric at all, is saved and restored into a fresh instance mid-search,
and is wrapped by ``ConcurrencyLimiter`` and ``Repeater``.

``drive`` plays Tune's part (several trials in flight, completions in any order) against a ``Trainable``:
the case's evaluator (the NAS-Bench-201 table, or a tiny supernet in this process) with ``Faults`` that
are deterministic, so a searcher's reaction can be checked: poisoned architectures report a non-finite
metric, some trials crash, some results lack the metric. A method joins by adding a ``Case`` to ``CASES``
in ``test_searcher_contract.py``.
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ray.tune.utils import flatten_dict

from tune_spacenas.jobs import ARCHS_KEY, PER_ARCH_KEY, TASK_KEY, TRAIN
from tune_spacenas.runner import InProcessSupernet, resolve_config
from tune_spacenas.searchers.base import FINISHED
from tune_spacenas.spaces import NASBench201Space
from tune_spacenas.spaces.base import ARCH_KEY
from tune_spacenas.trainables.table import evaluate_on_table


def never(index: int) -> bool:
    return False


def poisoned(arch: str) -> bool:
    """A fixed third of the architectures: their evaluations come back with the fault's value."""
    return zlib.crc32(arch.encode()) % 3 == 0


@dataclass
class Faults:
    """What goes wrong, by trial index (the order trials complete in) and by architecture.

    ``crash``: the trial errors (Tune calls ``on_trial_complete(trial_id, error=True)``, no result).
    ``value``: the metric poisoned architectures report (NaN, inf, -inf), per architecture in a batch;
    training trials for which ``diverge`` holds report it too (a supernet whose loss blew up).
    ``drop``: the result lacks the metric.
    """

    crash: Callable[[int], bool] = never
    value: float | None = None
    diverge: Callable[[int], bool] = never
    drop: Callable[[int], bool] = never


@dataclass
class Case:
    """One searcher as a Tune user writes it: ``make(**settings)`` with a small budget and nothing else
    (no space, metric or mode: they arrive through ``set_search_properties``); ``supernet`` gives the tiny
    ``SupernetSpec`` it trains (None: it searches the NAS-Bench-201 table). ``refuses`` names features
    the searcher refuses by design, with the reason (the README's Tune compatibility table)."""

    name: str
    make: Callable[..., Any]
    supernet: Callable[[], Any] | None = None
    metric: str = "accuracy"
    mode: str = "max"
    max_trials: int = 80
    refuses: dict[str, str] = field(default_factory=dict)
    learned: Callable[[Any], list[float]] = lambda searcher: []  # the numbers the method learned from

    def space(self):
        return NASBench201Space() if self.supernet is None else self.supernet().space

    def trainable(self, faults: Faults | None = None, metric: str | None = None) -> Trainable:
        """The in-process trainable; ``metric``: the one the faults poison (default: the case's)."""
        return Trainable(self, faults or Faults(), metric or self.metric)


class Trainable:
    """Tune's side of a trial in this process: run the job (table lookup or the in-process supernet),
    apply the faults, flatten the result as Tune hands it to a searcher."""

    def __init__(self, case: Case, faults: Faults, metric: str):
        self.case, self.faults, self.metric, self.trials = case, faults, metric, 0
        self.log: list[tuple[dict[str, Any], dict[str, Any] | None, bool]] = []  # (config, result, error)
        self.supernet = InProcessSupernet(case.supernet(), "cpu") if case.supernet is not None else None
        self.param_space = case.space().param_space()
        if self.supernet is not None:
            self.param_space["store"] = self.supernet.store

    def __call__(self, config: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        index, self.trials = self.trials, self.trials + 1
        faults, metric = self.faults, self.metric
        if faults.crash(index):
            return self._logged(config, None, True)
        result = dict(self.supernet(config) if self.supernet is not None else evaluate_on_table(config))
        if config.get(TASK_KEY) == TRAIN:
            if faults.value is not None and faults.diverge(index):
                result[metric] = faults.value
        elif faults.value is not None:
            self._poison(config, result)
        if faults.drop(index):
            result.pop(metric, None)
            result.get(PER_ARCH_KEY, {}).pop(metric, None)
        return self._logged(config, flatten_dict(result), False)

    def _logged(self, config: Mapping[str, Any], result: dict | None, error: bool) -> tuple[dict | None, bool]:
        self.log.append((plain(config), copy.deepcopy(result), error))
        return result, error

    def _poison(self, config: Mapping[str, Any], result: dict[str, Any]) -> None:
        metric, value = self.metric, self.faults.value
        if ARCHS_KEY in config:
            per_arch = {k: list(v) for k, v in result[PER_ARCH_KEY].items()}
            per_arch[metric] = [value if poisoned(a) else v for a, v in zip(config[ARCHS_KEY], per_arch[metric])]
            result[PER_ARCH_KEY] = per_arch
            result[metric] = float(sum(per_arch[metric]) / len(per_arch[metric]))
        elif poisoned(config[ARCH_KEY]):
            result[metric] = value


class Replay:
    """Answers a resumed searcher with the results the original run got, in order, and checks that it
    asks for the same jobs (its suggestions are the original's, so its state came back whole)."""

    def __init__(self, trainable: Trainable, start: int):
        self.param_space, self.log = trainable.param_space, list(trainable.log[start:])

    def __call__(self, config: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        expected, result, error = self.log.pop(0)
        assert plain(config) == expected, "the restored searcher suggested another job than the original"
        return copy.deepcopy(result), error


def plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial config without the in-process store object (what a comparison of jobs needs)."""
    return copy.deepcopy({k: v for k, v in config.items() if k != "store"})


@dataclass
class Run:
    """What ``drive`` saw: the suggested configs in order, and whether the searcher said FINISHED."""

    configs: list[dict[str, Any]]
    finished: bool
    in_flight: list[tuple[str, dict[str, Any]]]
    next_trial: int


def drive(
    search_alg: Any,
    trainable: Trainable,
    max_trials: int,
    in_flight: int = 1,
    order: str = "fifo",
    start: int = 0,
    stop_after: int | None = None,
    pending: list | None = None,
) -> Run:
    """Tune's loop: keep up to ``in_flight`` trials running, complete them first-in-first-out or last-in-
    first-out, until the searcher says FINISHED, ``max_trials`` trials ran, or ``stop_after`` completions
    (then the trials still in flight are returned, as a killed driver leaves them). A searcher that
    returns None with nothing in flight would stall Tune's loop: an AssertionError."""
    configs, running, done, finished = [], list(pending or []), 0, False
    number = start
    while done < max_trials and (stop_after is None or done < stop_after):
        while not finished and len(running) < in_flight:
            trial_id = f"t{number:05d}"
            number += 1
            suggestion = search_alg.suggest(trial_id)
            if suggestion == FINISHED:
                finished = True
            elif suggestion is not None:
                config = resolve_config(trainable.param_space, suggestion)
                configs.append(plain(config))
                running.append((trial_id, config))
                continue
            break
        if not running:
            name = type(search_alg).__name__
            assert finished, f"{name}.suggest returned None with no trial in flight: Tune would wait forever"
            break
        trial_id, config = running.pop(0 if order == "fifo" else -1)
        result, error = trainable(config)
        search_alg.on_trial_complete(trial_id, result=result, error=error)
        done += 1
    return Run(configs, finished, running, number)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def non_finite_metric(result: Mapping[str, Any] | None, metric: str) -> bool:
    """Whether a (flattened) result reports ``metric`` as NaN or inf, for one architecture or any of a batch."""
    if result is None:
        return False
    values = [result.get(metric, 0.0), *result.get(f"{PER_ARCH_KEY}/{metric}", [])]
    return not all(finite(float(v)) for v in values)
