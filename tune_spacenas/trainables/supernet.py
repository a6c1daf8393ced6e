"""The shared-supernet Tune trainable: find the store by name, check the job, do it, report as it goes.

Runs unchanged on a laptop and on a Ray cluster: the store is found by name (any node), weights arrive as
numpy and move to the trial's device once per version (``SupernetWorker.sync``), and a trial asks for a
GPU through ``tune.with_resources(supernet_trainable, {"cpu": 1, "gpu": 1})`` (Ray then shows it one
device, which the worker uses). Every report carries ``node_id``, ``worker_pid`` and ``device``, so a run
shows where its trials ran.
"""

from __future__ import annotations

import json
import numbers
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from tune_spacenas.jobs import ARCHS_KEY, STORE_KEY, SUBSPACE_KEY, TRAIN, archs_of, task_of
from tune_spacenas.spaces.base import ARCH_KEY, SPACE_KEY, SearchSpace, space_from_spec
from tune_spacenas.supernet.spec import SupernetSpec
from tune_spacenas.trainables.worker import SupernetWorker

_WORKERS: dict[tuple[str, str], SupernetWorker] = {}
_CHECKPOINT_FILE = "progress.json"
_HAND_EDITED = ("trial configs are written by the searcher (tune_spacenas.jobs); if it was edited by hand, "
                "rebuild it with jobs.train_job / jobs.evaluate_job")


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
    _WORKERS[key].store = store  # a fresh handle: the store may have been re-created under its name
    return _WORKERS[key]


def check_config(config: Mapping[str, Any], space: SearchSpace) -> None:
    """ValueError naming the key and the fix for a trial config this trainable cannot run as given."""
    def positive_int(key: str) -> None:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ValueError(f"trial config {key!r} must be a positive integer, got {value!r}; {_HAND_EDITED}")

    try:
        task = task_of(config)
        if task == TRAIN:
            if "steps" not in config:
                raise ValueError("a train job needs 'steps'")
            for key in ("steps", "sync_every", "report_every"):
                positive_int(key)
            lr = config.get("lr", 0.0)
            if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or lr < 0:
                raise ValueError(f"'lr' must be a non-negative number, got {lr!r}")
            if SUBSPACE_KEY in config:
                space.restrict(config[SUBSPACE_KEY])
            if ARCH_KEY in config:
                space.from_string(config[ARCH_KEY])
        else:
            positive_int("images")
            if config.get("split", "val") not in ("val", "test"):
                raise ValueError(f"'split' must be 'val' or 'test', got {config['split']!r}")
            if ARCHS_KEY in config and (isinstance(config[ARCHS_KEY], str) or not config[ARCHS_KEY]):
                raise ValueError(f"'{ARCHS_KEY}' must be a non-empty list of architecture strings")
            archs_of(space, config)
    except (ValueError, TypeError, KeyError) as err:
        message = str(err)
        raise ValueError(message if _HAND_EDITED in message else f"bad trial config: {message}; {_HAND_EDITED}") from err


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
        raise ValueError(f"the trial's space does not match weight store {config[STORE_KEY]!r}'s supernet "
                         f"({worker.space!r}); use the store's own store.param_space()")
    check_config(config, worker.space)
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d, open(os.path.join(d, _CHECKPOINT_FILE)) as f:
            start = json.load(f)["step"]
    where = {"node_id": ray.get_runtime_context().get_node_id(), "worker_pid": os.getpid(), "device": str(worker.device)}

    def report(metrics: dict[str, Any], synced_step: int | None) -> None:
        metrics = {**metrics, **where}
        if synced_step is None or synced_step >= int(config.get("steps", 0)):
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, _CHECKPOINT_FILE), "w") as f:
                json.dump({"step": synced_step}, f)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    worker.run(config, tune.get_context().get_trial_id(), report, start)
