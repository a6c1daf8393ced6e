"""The shared-supernet Tune trainable: find the store by name, do the job, report as it goes."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from tune_spacenas.jobs import STORE_KEY
from tune_spacenas.spaces.base import SPACE_KEY, space_from_spec
from tune_spacenas.supernet.spec import SupernetSpec
from tune_spacenas.trainables.worker import SupernetWorker

_WORKERS: dict[tuple[str, str], SupernetWorker] = {}
_CHECKPOINT_FILE = "progress.json"


def worker_for(store_name: str) -> SupernetWorker:
    """This process's worker for the store ``store_name`` (built once; rebuilt for a new store of that name)."""
    from tune_spacenas.store.actor import WeightStore

    store = WeightStore.connect(store_name)
    meta = store.info()["meta"]
    key = (store_name, meta["uid"])
    if key not in _WORKERS:
        if "spec" not in meta:
            raise ValueError(f"weight store {store_name!r} holds no SupernetSpec; create it with WeightStore.create(name, spec)")
        _WORKERS.clear()  # one supernet per process: a finished experiment's worker is not kept around
        _WORKERS[key] = SupernetWorker(SupernetSpec.from_dict(meta["spec"]), store)
    return _WORKERS[key]


def supernet_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable for every searcher on the shared supernet.

    ``config`` is a job (``tune_spacenas.jobs``) merged with ``store.param_space()``. Training trials
    report every ``report_every`` steps and checkpoint their progress at every sync, so a trial Tune
    retries (``FailureConfig``) resumes after the last pushed step and the store ignores replays.
    """
    from ray import tune

    if STORE_KEY not in config:
        raise ValueError("trial config names no weight store: pass config=store.param_space() (or add 'store': NAME)")
    worker = worker_for(config[STORE_KEY])
    if SPACE_KEY in config and space_from_spec(config[SPACE_KEY]).full_space() != worker.space:
        raise ValueError(f"the trial's space does not match weight store {config[STORE_KEY]!r}'s supernet "
                         f"({worker.space!r}); use the store's own store.param_space()")
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = json.load(open(os.path.join(d, _CHECKPOINT_FILE)))["step"]

    def report(metrics: dict[str, Any], synced_step: int | None) -> None:
        if synced_step is None or synced_step >= int(config.get("steps", 0)):
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, _CHECKPOINT_FILE), "w") as f:
                json.dump({"step": synced_step}, f)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    worker.run(config, tune.get_context().get_trial_id(), report, start)
