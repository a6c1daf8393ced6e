"""The contract every searcher of the project must pass (in the spirit of Ray's test_searchers.py and
Optuna's pytest_samplers.py): suggest/complete to the end, save/restore resumes identically, Tune with
ConcurrencyLimiter and ASHA, bad metric/mode, a crashed trial.

A method joins by adding a ``Case`` to ``CASES`` in ``test_searcher_contract.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tune_spacenas.runner import InProcessSupernet, run_in_process
from tune_spacenas.searchers.base import FINISHED
from tune_spacenas.trainables.table import evaluate_on_table


@dataclass
class Case:
    """``make(**kwargs)`` builds the searcher (space given, metric/mode not); ``evaluator`` is "table"
    or "supernet" (then ``spec()`` gives the tiny SupernetSpec it trains)."""

    name: str
    make: Callable[..., Any]
    evaluator: str = "table"
    spec: Callable[[], Any] | None = None
    max_trials: int = 60
    tune_kwargs: dict[str, Any] = field(default_factory=dict)

    def evaluate_fn(self) -> Callable[[dict], dict]:
        return evaluate_on_table if self.evaluator == "table" else InProcessSupernet(self.spec(), "cpu")


def drive(searcher: Any, evaluate: Callable[[dict], dict], trials: int) -> list[dict]:
    """Run ``trials`` suggestions in-process, returning the suggested configs."""
    seen: list[dict] = []

    def record(config: dict, result: dict) -> None:
        seen.append(copy.deepcopy({k: v for k, v in config.items() if k != "seed"} | {"seed": config.get("seed")}))

    run_in_process(searcher, evaluate, max_trials=trials, on_result=record)
    return seen


def finishes(searcher: Any, evaluate: Callable[[dict], dict], max_trials: int) -> bool:
    run_in_process(searcher, evaluate, max_trials=max_trials)
    return searcher.suggest("after-the-end") == FINISHED
