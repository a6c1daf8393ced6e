"""The one loop's contract: what a searcher asks a trainable to do, as plain data in the trial config.

A searcher's suggestion is a *job*; Tune merges it into the trial config (beside the ``space`` and
``store`` constants of the ``param_space``) and the trainable does it:

* ``evaluate`` one architecture (``arch``) or a batch (``archs``), reporting the metric per architecture;
* ``train`` the shared supernet for ``steps`` steps on paths sampled from ``subspace`` (or one fixed
  ``arch``), pushing weight deltas to the store.

Everything here is strings, numbers and lists of them: no handles, refs or tensors, so trial configs
pickle, restore and name trials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tune_spacenas.spaces.base import ARCH_KEY, Architecture, SearchSpace

TASK_KEY = "task"
TRAIN = "train"
EVALUATE = "evaluate"
ARCHS_KEY = "archs"
STORE_KEY = "store"
PER_ARCH_KEY = "per_arch"
SUBSPACE_KEY = "subspace"


def evaluate_job(space: SearchSpace, arch: Architecture, **extra: Any) -> dict[str, Any]:
    """Evaluate one architecture; the config also names its operation per slot (Tune's ``ops``)."""
    return {TASK_KEY: EVALUATE, **space.to_config(arch), **extra}


def evaluate_batch_job(space: SearchSpace, archs: Sequence[Architecture], **extra: Any) -> dict[str, Any]:
    """Evaluate many architectures in one trial (Tune costs ~1 s a trial; a batch amortises it)."""
    if not archs:
        raise ValueError("an evaluation batch needs at least one architecture")
    return {TASK_KEY: EVALUATE, ARCHS_KEY: [space.to_string(a) for a in archs], **extra}


def train_job(steps: int, subspace: SearchSpace | None = None, arch: str | None = None, **extra: Any) -> dict[str, Any]:
    """Train the shared supernet for ``steps`` steps on paths from ``subspace`` (default: the store's space)."""
    if steps < 1:
        raise ValueError(f"a training job needs at least one step, got {steps}")
    job: dict[str, Any] = {TASK_KEY: TRAIN, "steps": int(steps), **extra}
    if subspace is not None:
        job[SUBSPACE_KEY] = [list(map(int, allowed)) for allowed in subspace.choices]
    if arch is not None:
        job[ARCH_KEY] = arch
    return job


def task_of(config: Mapping[str, Any]) -> str:
    task = config.get(TASK_KEY, EVALUATE)
    if task not in (TRAIN, EVALUATE):
        raise ValueError(f"unknown task {task!r} in trial config; use {TRAIN!r} or {EVALUATE!r}")
    return task


def archs_of(space: SearchSpace, config: Mapping[str, Any]) -> list[Architecture]:
    """The architectures an evaluation job names (a batch, or the single ``arch`` / Tune ``ops``)."""
    if ARCHS_KEY in config:
        return [space.from_string(s) for s in config[ARCHS_KEY]]
    return [space.arch_from_config(config)]
