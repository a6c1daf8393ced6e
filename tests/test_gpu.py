"""Weights arrive as numpy and move to the trial's device once per version; trials ask Tune for GPUs.

The version bookkeeping is checked on any device; the CUDA tests run only where a GPU is present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tune_spacenas.store.table import WeightTable
from tune_spacenas.trainables.worker import SupernetWorker

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


def _worker(spec, device: str) -> tuple[SupernetWorker, WeightTable]:
    table = WeightTable(spec.initial_weights(), {"spec": spec.to_dict()})
    return SupernetWorker(spec, table, device), table


def _copies_once_per_version(spec, device: str) -> None:
    worker, table = _worker(spec, device)
    assert worker.sync() == len(worker.params)  # the first sync copies everything
    assert worker.sync() == 0  # nothing changed: nothing crosses to the device again
    key = next(iter(worker.params))
    table.push({key: np.ones_like(table.arrays[key])}, "other-trial", 1)
    assert worker.sync() == 1  # exactly the tensor whose version moved
    assert torch.equal(worker.params[key].detach().cpu(), torch.from_numpy(table.arrays[key]))
    assert worker.params[key].device.type == torch.device(device).type


def test_weights_move_to_the_device_once_per_version(tiny_spec):
    _copies_once_per_version(tiny_spec, "cpu")


@cuda
def test_weights_move_to_the_gpu_once_per_version_and_training_pushes_numpy(tiny_spec):
    _copies_once_per_version(tiny_spec, "cuda")
    worker, table = _worker(tiny_spec, "cuda")
    before = {k: v.copy() for k, v in table.arrays.items()}
    result = worker.run({"task": "train", "steps": 5, "seed": 0}, trial_id="gpu")
    assert np.isfinite(result["loss"]) and table.stats["applied"] == 1
    assert any(not np.array_equal(before[k], table.arrays[k]) for k in before)  # deltas came back as numpy


@cuda
def test_tune_trials_ask_for_a_gpu_and_train_on_it(tiny_spec, tmp_path, request):
    pytest.importorskip("ray", reason="Ray is not installed here")
    request.getfixturevalue("ray_session")  # the session's Ray sees the GPU
    from ray import tune

    from tune_spacenas.jobs import train_job
    from tune_spacenas.store import SupernetStore
    from tune_spacenas.trainables import supernet_trainable

    store = SupernetStore.create("gpu-test", tiny_spec)
    try:

        def on_gpu(config):  # a wrapper: with_resources marks the function it is given
            return supernet_trainable(config)

        analysis = tune.run(
            tune.with_resources(on_gpu, {"cpu": 1, "gpu": 1}),
            config={**store.param_space(), **train_job(10, seed=0)},
            storage_path=str(tmp_path),
            verbose=0,
        )
        trial = analysis.trials[0]
        assert trial.status == "TERMINATED" and trial.last_result["device"].startswith("cuda")
        assert store.info()["push_counts"][trial.trial_id] == 1
    finally:
        store.kill()
