"""Paper-scale SE-NAS vs SPOS rank correlation on GPU: NAS-Bench-201 C=16, N=5 at 32x32 on all of CIFAR-10.

The protocol of ``benchmarks.senas_rank`` (the same pieces, run in a row in this process, Ray-free): per
seed, SE-NAS's two stages (Eq. 4 snapshots, Eqs. 5-7 scores, k=7 operators dropped per stage, T=50 over
the layers that shrank, expanded weights) and the training of its final space, against SPOS continued
from the shared stage-1 supernet for the same number of steps; both rank the same cells: F (a sample of
the full space) and S (a sample of SE-NAS's final space), with parameter count beside them. Settings were
chosen on seed 0 on CPU; the seeds here are 1-3 (a Welch and a paired p need several). The steps per
phase are sized from the measured step and scoring rates so the section ends inside its wall budget. At
the suite's 140 s that is about an epoch per phase, far from the paper's 20: the claim is decided by
``python -m benchmarks.gpu_suite --only senas --scale 4`` (about 9 minutes, one device command).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.gpu.data import cifar10, device
from benchmarks.rank import rank_sample, score, steps_for_seconds
from benchmarks.senas_rank import make_runner, senas_rest, spos_on_cells, spos_rest, stage_one, summarise
from benchmarks.senas_rank import plot as plot_rank

SEEDS = (1, 2, 3)
NORMALIZATION = "mean"  # Eq. (7)'s normalize(), as chosen on seed 0 (benchmarks/results/senas/README.md)
TRAINING_SHARE = 0.7  # of a seed's budget left after scoring; the rest absorbs start-up and error
PHASES = 5  # training phases of equal length per seed: stage 1 (shared), SE-NAS's stage 2 and final, SPOS's two


def config(smoke: bool) -> dict:
    data = cifar10(smoke)
    batch = 256
    train_images = data.train_size or 50_000 - data.val_size
    return {
        "data": data.to_dict(),
        "resolution": data.resolution or 32,
        "channels": 8 if smoke else 16,
        "cells": 1 if smoke else 5,
        "batch_size": batch,
        "lr": 0.1,
        "stages": 2,
        "steps_per_epoch": train_images // batch,
        "snapshots": 5,
        "samples_per_op": 2 if smoke else 10,
        "drop": 7,
        "threshold": 50,
        "archs": 10 if smoke else 100,
        "final_archs": 5 if smoke else 50,
        "sample_seed": 0,
        "eval_images": 200 if smoke else 500,
        "recalibration_batches": 4,
        "eval_batch": 100,
        "threads": 4,
        "device": device(),
        "normalizations": [NORMALIZATION],
        "evaluation_stability": True,
        "selection_confidence": True,
        "expanding": True,
        "merge_only_shrunk": True,
    }


def cells_scored(cfg: dict) -> int:
    """Cells one seed scores: two stages of operator scoring (at most 5 x samples_per_op each), F after
    stage 1, SE-NAS's S before and after its final training and F, SPOS's F and S."""
    return 2 * 5 * cfg["samples_per_op"] + 3 * cfg["archs"] + 3 * cfg["final_archs"]


def run(budget_s: float, smoke: bool) -> dict:
    start = time.perf_counter()
    cfg = config(smoke)
    probe = make_runner(cfg, seed=99)  # a throwaway supernet: the probe trains it
    _, per_step = steps_for_seconds(probe, 1.0, probe_steps=10 if smoke else 40)
    clock = time.perf_counter()
    score(probe, rank_sample(20, seed=99), batch=20)
    per_cell = (time.perf_counter() - clock) / 20
    del probe
    seeds = SEEDS[:1] if smoke else SEEDS  # a smoke run checks the code path once
    per_seed = (budget_s - (time.perf_counter() - start)) / len(seeds)
    left = per_seed - cells_scored(cfg) * per_cell * 1.3
    steps = max(10, int(TRAINING_SHARE * left / (PHASES * per_step)))
    per_job = min(cfg["steps_per_epoch"], steps)
    stage_steps = per_job * max(1, steps // per_job)
    cfg |= {
        "stage_steps": stage_steps,
        "final_steps": stage_steps,
        "steps_per_job": per_job,
        "epochs_per_stage": stage_steps / cfg["steps_per_epoch"],
        "final_epochs": stage_steps / cfg["steps_per_epoch"],
    }
    print(
        f"senas: {per_step * 1e3:.1f} ms/step, {per_cell * 1e3:.0f} ms/cell -> {stage_steps} steps per phase "
        f"({cfg['epochs_per_stage']:.2f} epochs), seeds {seeds}",
        flush=True,
    )
    first, senas, spos, same = {}, {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="senas_gpu_") as workdir:
        for seed in seeds:
            first[seed] = stage_one(cfg, seed, workdir)
            senas[(seed, NORMALIZATION)] = senas_rest(cfg, seed, workdir, first[seed], NORMALIZATION)
            spos[seed] = spos_rest(cfg, seed, workdir, first[seed])
            same[(seed, NORMALIZATION)] = spos_on_cells(cfg, seed, workdir, senas[(seed, NORMALIZATION)]["S"])
    payload = summarise(cfg, list(seeds), first, senas, spos, same)
    payload |= {
        "supernet": f"NAS-Bench-201 C={cfg['channels']} N={cfg['cells']}, {cfg['resolution']}x{cfg['resolution']}",
        "ms_per_step": per_step * 1e3,
        "ms_per_cell": per_cell * 1e3,
        "within_budget": time.perf_counter() - start <= budget_s,
    }
    return payload


def plot(section: dict, folder: Path) -> None:
    plot_rank(section, Path(folder), "gpu_senas_rank.png")
