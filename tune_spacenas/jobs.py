"""The one loop's contract: what a searcher asks a trainable to do, as plain data in the trial config.

A searcher's suggestion is a *job*; Tune merges it into the trial config (beside the ``space`` and
``store`` constants of the ``param_space``) and the trainable does it:

* ``evaluate`` one architecture (``arch``) or a batch (``archs``), reporting the metric per architecture;
* ``train`` the shared supernet for ``steps`` steps on paths sampled from ``subspace`` (or one fixed
  ``arch``), pushing weight deltas to the store.

A searcher gives every training job an id (``JOB_ID_KEY``) from its own job counter, kept in its saved
state, so a job Tune issues again (a retried trial, or a resumed searcher re-issuing what it issued
after its last save) keeps its id: the store applies each (job, step) once, and a job whose steps are
all applied is answered with its recorded result instead of training again.

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
STEPS_KEY = "steps"
# A training job's id: the store de-duplicates its pushes by (job id, step) and records its result.
JOB_ID_KEY = "job_id"
# Result keys a training job adds: the step at which its loss stopped being finite (nothing after the last
# push before it reached the store), and that it was answered from the store without training again.
DIVERGED_KEY = "diverged_at_step"
REPLAYED_KEY = "replayed"


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
    job: dict[str, Any] = {TASK_KEY: TRAIN, STEPS_KEY: int(steps), **extra}
    if subspace is not None:
        job[SUBSPACE_KEY] = [list(map(int, allowed)) for allowed in subspace.choices]
    if arch is not None:
        job[ARCH_KEY] = arch
    return job


def job_id(search_id: str, number: int) -> str:
    """The id of a search's ``number``-th training job: the same whenever that job is issued again."""
    return f"{search_id}/{number}"


def writer_of(config: Mapping[str, Any], trial_id: str) -> str:
    """Who a training job's pushes count for in the store: its job id, else (a hand-made job) its trial."""
    return str(config.get(JOB_ID_KEY) or trial_id)


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
