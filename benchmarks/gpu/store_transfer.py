"""Weights from the store to the GPU: what a trial pays per new tensor version, and that an unchanged
version is not copied again (Ray-free: the store's ``WeightTable`` and the trainable's ``SupernetWorker``).

The path is one architecture of the MobileNet-like space (~5.2M parameters, 68 tensors, 21 MB): each
round another trial's push changes exactly those tensors, then the worker's ``sync`` moves the new
versions to the device (timed with a device synchronisation); a second ``sync`` finds nothing to copy.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.gpu.data import device


def run(budget_s: float, smoke: bool) -> dict:
    import torch

    from tune_spacenas.data import DataSpec
    from tune_spacenas.spaces import MobileNetSpace
    from tune_spacenas.store.table import WeightTable
    from tune_spacenas.supernet.spec import SupernetSpec
    from tune_spacenas.trainables.worker import SupernetWorker

    where = device()
    spec = SupernetSpec(MobileNetSpace(), DataSpec("digits", val_size=300))  # data only to build the worker
    table = WeightTable(spec.initial_weights(), {"spec": spec.to_dict()})
    worker = SupernetWorker(spec, table, where)
    arch = spec.space.sample(np.random.default_rng(0))
    path = sorted(set(worker.net.path_parameter_names(arch)))
    nbytes = int(sum(table.arrays[k].nbytes for k in path))
    deltas = {k: np.full(table.arrays[k].shape, 1e-6, np.float32) for k in path}

    def synchronize() -> None:
        if where == "cuda":
            torch.cuda.synchronize()

    first = worker.sync()
    new_version, unchanged, copied = [], [], []
    deadline = time.perf_counter() + min(budget_s * 0.8, 5 if smoke else 60)
    step = 0
    while time.perf_counter() < deadline and step < (3 if smoke else 200):
        step += 1
        table.push(deltas, "other-trial", step)
        synchronize()
        start = time.perf_counter()
        copied.append(worker.sync())
        synchronize()
        new_version.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        assert worker.sync() == 0, "an unchanged version was copied again"
        synchronize()
        unchanged.append(1000 * (time.perf_counter() - start))
    p50 = float(np.median(new_version))
    return {
        "device": where,
        "path_params": int(nbytes // 4),
        "path_tensors": len(path),
        "path_bytes": nbytes,
        "first_sync_tensors": first,
        "rounds": step,
        "tensors_copied_per_new_version": sorted(set(copied)),
        "sync_new_version_ms_p50": p50,
        "sync_new_version_ms_p90": float(np.percentile(new_version, 90)),
        "sync_unchanged_ms_p50": float(np.median(unchanged)),
        "effective_GB_per_s": nbytes / p50 / 1e6,
    }
