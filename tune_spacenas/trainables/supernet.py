"""The shared-supernet Tune trainable: find the store by name, check the job, do it, report as it goes.

Runs unchanged on a laptop and on a Ray cluster: the store is found by name (any node), weights arrive as
numpy and move to the trial's device once per version (``SupernetWorker.sync``), and a trial asks for a
GPU through ``tune.with_resources(supernet_trainable, {"cpu": 1, "gpu": 1})`` (Ray then shows it one
device, which the worker uses). Every report carries ``node_id``, ``worker_pid`` and ``device``, so a run
shows where its trials ran.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from tune_spacenas import storage
from tune_spacenas.jobs import DEVICE, NODE_ID, SPACE_KEY, STEPS_KEY, STORE_KEY, WORKER_PID, check_job
from tune_spacenas.spaces.base import space_from_spec
from tune_spacenas.supernet.spec import SupernetSpec
from tune_spacenas.trainables.worker import SupernetWorker

_WORKERS: dict[tuple[str, str], SupernetWorker] = {}
_CHECKPOINT_FILE = "progress.json"
_RESUME_STEP = "step"  # the trial checkpoint's entry: the last step pushed to the store


def worker_for(store_name: str) -> SupernetWorker:
    """This process's worker for the store ``store_name`` (built once; rebuilt for a new store of that name)."""
    from tune_spacenas.store.supernet import SupernetStore
    from tune_spacenas.store.table import LINEAGE

    store = SupernetStore.connect(store_name)
    meta = store.info()["meta"]
    key = (store_name, meta[LINEAGE])
    if key not in _WORKERS:
        spec = SupernetSpec.from_store_meta(meta, f"weight store {store_name!r}")
        _WORKERS.clear()  # one supernet per process: a finished experiment's worker is not kept around
        _WORKERS[key] = SupernetWorker(spec, store)
    _WORKERS[key].store = store  # a fresh handle: the store may have been re-created under its name
    return _WORKERS[key]


def supernet_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable for every searcher on the shared supernet.

    ``config`` is a job (``tune_spacenas.jobs``) merged with ``store.param_space()``. Training trials
    report every ``report_every`` steps and checkpoint their progress at every sync, so a trial Tune
    retries (``FailureConfig``) resumes after the last pushed step and the store ignores replays.
    """
    import ray
    from ray import tune

    if STORE_KEY not in config:
        raise ValueError("trial config names no weight store: pass config=store.param_space() (or add 'store': NAME)")
    worker = worker_for(config[STORE_KEY])
    if SPACE_KEY in config and space_from_spec(config[SPACE_KEY]).full_space() != worker.space:
        raise ValueError(
            f"the trial's space does not match weight store {config[STORE_KEY]!r}'s supernet "
            f"({worker.space!r}); use the store's own store.param_space()"
        )
    check_job(config, worker.space)
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = storage.read_json(os.path.join(d, _CHECKPOINT_FILE))[_RESUME_STEP]
    where = {NODE_ID: ray.get_runtime_context().get_node_id(), WORKER_PID: os.getpid(), DEVICE: str(worker.device)}

    def report(metrics: dict[str, Any], synced_step: int | None) -> None:
        metrics = {**metrics, **where}
        if synced_step is None or synced_step >= int(config.get(STEPS_KEY, 0)):
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            storage.write_json(os.path.join(d, _CHECKPOINT_FILE), {_RESUME_STEP: synced_step})
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    worker.run(config, tune.get_context().get_trial_id(), report, start)
