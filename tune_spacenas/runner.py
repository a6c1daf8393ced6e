"""Drive a searcher to its end: in-process without Tune, or under ``tune.run`` on a weight store.

``run_in_process`` makes the same ``suggest`` / ``on_trial_complete`` calls Tune makes, one trial at a
time, with an evaluator (any callable from trial config to result dict: the table lookup, or the
in-process supernet worker): the benchmark harness and Ray-less (GPU image) runs. ``run_with_tune`` is
the same search with trials on the shared-weight supernet trainable; both call ``on_result(config,
result)`` after every finished trial, so one progress printer serves both. Only the Tune side imports Ray.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tune_spacenas.jobs import ACCURACY, ARCH_KEY, ARCHS_KEY, EVALUATE, LOSS, OPS_KEY, TASK_KEY
from tune_spacenas.searchers.base import FINISHED
from tune_spacenas.spaces.base import SearchSpace

Evaluator = Callable[[Mapping[str, Any]], dict[str, Any]]
OnResult = Callable[[dict[str, Any], dict[str, Any]], None]


def resolve_config(param_space: Mapping[str, Any] | None, suggestion: Mapping[str, Any]) -> dict[str, Any]:
    """What Tune would hand the trainable: the param_space's constants with the suggestion merged in."""
    config: dict[str, Any] = {}
    for key, value in (param_space or {}).items():
        if isinstance(value, Mapping):
            config[key] = resolve_config(value, {})
        elif not hasattr(value, "sample"):  # Tune search domains are left for the searcher to fill
            config[key] = copy.deepcopy(value)
    for key, value in suggestion.items():
        if isinstance(value, Mapping) and isinstance(config.get(key), Mapping):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def run_in_process(
    searcher: Any,
    evaluate: Evaluator,
    max_queries: int | None = None,
    max_trials: int = 1_000_000,
    param_space: Mapping[str, Any] | None = None,
    space: SearchSpace | None = None,
    on_result: OnResult | None = None,
    max_repeats: int = 1000,
) -> int:
    """Run ``searcher`` to its end (or a budget); returns the number of trials evaluated.

    ``max_queries`` counts distinct architectures: for searchers that are not ours (Tune's
    ``OptunaSearch``), a repeated architecture is answered from this run's cache at no cost, as our
    searchers do themselves. ``space`` identifies architectures in configs for that cache. A searcher
    that only repeats itself stops after ``max_repeats`` cached answers in a row.
    """
    cache: dict[Any, dict[str, Any]] = {}
    trials = queries = suggestions = repeats = 0
    while trials < max_trials and (max_queries is None or queries < max_queries) and repeats < max_repeats:
        trial_id = f"t{suggestions:06d}"
        suggestions += 1
        suggestion = searcher.suggest(trial_id)
        if suggestion is None or suggestion == FINISHED:
            break
        config = resolve_config(param_space, suggestion)
        key = _arch_key(config, space)
        if key is not None and key in cache:
            searcher.on_trial_complete(trial_id, result=cache[key])
            repeats += 1
            continue
        repeats = 0
        result = evaluate(config)
        trials += 1
        queries += 1 if key is not None else 0
        if key is not None:
            cache[key] = result
        searcher.on_trial_complete(trial_id, result=result)
        if on_result is not None:
            on_result(config, result)
    return trials


def _arch_key(config: Mapping[str, Any], space: SearchSpace | None) -> Any:
    if ARCH_KEY in config and ARCHS_KEY not in config:
        return config[ARCH_KEY] if space is None else space.arch_from_config(config)
    if space is not None and OPS_KEY in config and config.get(TASK_KEY, EVALUATE) == EVALUATE:
        return space.arch_from_config(config)
    return None


class InProcessSupernet:
    """A supernet and its weight table in this process: ``run_in_process``'s evaluator for one-shot
    searches without Ray (benchmarks, GPU images), doing exactly what the Tune trainable does."""

    def __init__(self, spec: Any, device: Any = None):
        from tune_spacenas.store.table import WeightTable
        from tune_spacenas.trainables.worker import SupernetWorker

        self.store = WeightTable(spec.initial_weights(), spec.store_meta())
        self.worker = SupernetWorker(spec, self.store, device)
        self.trials = 0

    def __call__(self, config: Mapping[str, Any]) -> dict[str, Any]:
        self.trials += 1
        return self.worker.run(config, trial_id=f"local-{self.trials}")


def run_with_tune(
    searcher: Any,
    store: Any,
    max_concurrent: int = 2,
    on_result: OnResult | None = None,
    metric: str = "accuracy",
    mode: str = "max",
    constants: Mapping[str, Any] | None = None,
    **run_kwargs: Any,
) -> Any:
    """``tune.run`` of the supernet trainable on ``store`` (a ``WeightStore``), trials suggested by
    ``searcher`` at most ``max_concurrent`` at a time, until it is finished; returns Tune's analysis.

    ``constants`` join the store's ``param_space`` (e.g. ``{jobs.AUTOSPACE_KEY: AutoSpaceJob(madds_penalty=...)
    .to_dict()}`` for Eq. 6's regularised loss in every evaluation); ``run_kwargs``
    go to ``tune.run`` (``num_samples``, ``storage_path``, ``verbose``, ``callbacks``, ...). The supernet's
    data is found (or downloaded) here first, so a missing copy fails once, before any trial starts.
    """
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from tune_spacenas.data import prepare_data
    from tune_spacenas.trainables import supernet_trainable

    prepare_data(store.spec.data)

    callbacks = list(run_kwargs.pop("callbacks", None) or []) + ([result_callback(on_result)] if on_result else [])
    run_kwargs.setdefault("num_samples", -1)
    run_kwargs.setdefault("reuse_actors", True)
    return tune.run(
        supernet_trainable,
        config={**store.param_space(), **(constants or {})},
        metric=metric,
        mode=mode,
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
        callbacks=callbacks,
        **run_kwargs,
    )


class ProgressPrinter:
    """An ``on_result`` that prints one line per finished trial: the time, the search's ``progress()`` (a
    searcher that has none, e.g. Tune's ``OptunaSearch``, is named instead) and the trial's own
    ``metrics`` (Tune's flattened results and in-process ones alike)."""

    def __init__(self, searcher: Any, metrics: Sequence[str] = (LOSS, ACCURACY), out: Callable[[str], Any] = print):
        self.searcher, self.metrics, self.out, self.start = searcher, tuple(metrics), out, time.time()

    def __call__(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        trial = ", ".join(f"{m} {result[m]:.4g}" for m in self.metrics if isinstance(result.get(m), (int, float)))
        task = config.get(TASK_KEY, EVALUATE)
        progress = self.searcher.progress() if hasattr(self.searcher, "progress") else type(self.searcher).__name__
        self.out(f"[{time.time() - self.start:6.0f}s] {progress} | {task} trial: {trial}")


def result_callback(on_result: OnResult) -> Any:
    """A Tune ``Callback`` that calls ``on_result(config, result)`` for every finished trial: the
    in-process runner's progress hook, for ``tune.run(callbacks=...)`` or ``tune.RunConfig(callbacks=...)``."""
    from ray import tune

    class _OnResult(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if trial.last_result:
                on_result(trial.config, trial.last_result)

    return _OnResult()
