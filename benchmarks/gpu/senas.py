"""Paper-scale SE-NAS vs SPOS rank correlation on GPU: NAS-Bench-201 C=16, N=5 at 32x32 on all of CIFAR-10.

The protocol of ``benchmarks.senas_rank`` (same pieces, run in a row in this process, Ray-free): SE-NAS's
two stages (Eq. 4 snapshots, Eqs. 5-7 scores, 10 operators dropped per stage, T=50 merging and expanded
weights) against SPOS continued from the shared stage-1 supernet for the same number of steps. The steps
per stage are sized from the measured step and scoring rates so the section ends inside its wall budget.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.gpu.data import cifar10, device
from benchmarks.rank import rank_sample, score, steps_for_seconds
from benchmarks.senas_rank import make_runner, senas_rest, spos_on_cells, spos_rest, stage_one, summarise
from benchmarks.senas_rank import plot as plot_rank

SEED = 0
TRAINING_SHARE = 0.6  # of the budget left after start-up; the rest scores (about 900 cells) and absorbs error


def config(smoke: bool) -> dict:
    data = cifar10(smoke)
    batch = 256
    train_images = (data.train_size or 50_000 - data.val_size)
    return {"data": data.to_dict(), "resolution": data.resolution or 32, "channels": 8 if smoke else 16,
            "cells": 1 if smoke else 5, "batch_size": batch, "lr": 0.1, "stages": 2, "steps_per_epoch": train_images // batch,
            "snapshots": 5, "samples_per_op": 2 if smoke else 20, "drop": 10, "threshold": 50,
            "archs": 10 if smoke else 100, "shrunk_archs": 5 if smoke else 50, "sample_seed": 0,
            "eval_images": 200 if smoke else 1000, "eval_batch": 100, "threads": 4, "device": device()}


def cells_scored(cfg: dict) -> int:
    """Cells the protocol scores, stage-2 final space and search counted at their largest (16 each)."""
    pool = 5 * cfg["samples_per_op"]
    return 2 * pool + 3 * cfg["archs"] + cfg["shrunk_archs"] + 2 * (cfg["archs"] + cfg["shrunk_archs"]) + 4 * 16


def run(budget_s: float, smoke: bool) -> dict:
    start = time.perf_counter()
    cfg = config(smoke)
    probe = make_runner(cfg, seed=99)  # a throwaway supernet: the probe trains it
    _, per_step = steps_for_seconds(probe, 1.0, probe_steps=10 if smoke else 40)
    clock = time.perf_counter()
    score(probe, rank_sample(20, seed=99), batch=20)
    per_cell = (time.perf_counter() - clock) / 20
    del probe
    left = budget_s - (time.perf_counter() - start) - cells_scored(cfg) * per_cell * 1.3
    steps = max(10, int(TRAINING_SHARE * left / (3 * per_step)))  # stage 1, SE-NAS stage 2, SPOS stage 2
    per_job = min(cfg["steps_per_epoch"], steps)
    cfg |= {"stage_steps": per_job * max(1, steps // per_job), "steps_per_job": per_job,
            "epochs_per_stage": per_job * max(1, steps // per_job) / cfg["steps_per_epoch"]}
    print(f"senas: {per_step * 1e3:.1f} ms/step, {per_cell * 1e3:.0f} ms/cell -> {cfg['stage_steps']} steps per stage "
          f"({cfg['epochs_per_stage']:.1f} epochs)", flush=True)
    with tempfile.TemporaryDirectory(prefix="senas_gpu_") as workdir:
        first = stage_one(cfg, SEED, workdir)
        senas = senas_rest(cfg, SEED, workdir, first)
        spos = spos_rest(cfg, SEED, workdir, first)
        same = spos_on_cells(cfg, SEED, workdir, senas["final_cells"])
    payload = summarise(cfg, [SEED], {SEED: first}, {SEED: senas}, {SEED: spos}, {SEED: same})
    payload |= {"supernet": f"NAS-Bench-201 C={cfg['channels']} N={cfg['cells']}, {cfg['resolution']}x{cfg['resolution']}",
                "ms_per_step": per_step * 1e3, "ms_per_cell": per_cell * 1e3,
                "within_budget": time.perf_counter() - start <= budget_s}
    return payload


def plot(section: dict, folder: Path) -> None:
    plot_rank(section, Path(folder), "gpu_senas_rank.png")

