"""NSE's noise-free anchor on GPU: its single-branch special case (N_l = 1) on NAS-Bench-201 (C=16, N=5,
32x32, all of CIFAR-10) against SPOS + evolution with the same supernet training steps and the same
number of evaluated cells; each returned cell is scored by the table's CIFAR-10 test accuracy.

Budgeted by measured time: the data is loaded, NSE's training step (the dearer one: a fitness-indicator
update every two steps) and the scoring of one cell are timed first, then the rest of the budget is
split over seeds x methods: each run scores its cells and trains for what is left of its share.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.gpu.data import cifar10, device
from benchmarks.harness import new_figure, save_figure
from tune_spacenas.jobs import NSEJob, train_job

SEEDS = 2
K, ROUNDS = 3, 2  # (5 - 1) // (3 - 1) = 2 rounds until NAS-Bench-201's five operations run out
EVALUATIONS = 50  # cells each method scores on the supernet
MARGIN = 0.8  # of the budget left after timing, planned for the runs (building supernets, searcher callbacks)


def _searcher(method: str, space, steps: int, evaluations: int, seed: int):
    from tune_spacenas.searchers import EvolutionSettings, NSESearcher, SPOSSearcher

    if method == "nse":  # no resource term: the anchor asks for the most accurate cell
        return NSESearcher(space=space, ops_per_layer=K, steps_per_round=max(1, steps // ROUNDS),
                           steps_per_trial=max(1, steps // (ROUNDS * 5)), lr=0.1, alpha=0.0, tau=1.0,
                           constraint=(0.0, 1e12), samples=max(1, evaluations // ROUNDS), edge_samples=0,
                           max_rounds=ROUNDS, eval_batch=50, metric="accuracy", mode="max", seed=seed)
    population = max(2, evaluations // 2)
    return SPOSSearcher(space=space, train_steps=ROUNDS * max(1, steps // ROUNDS), steps_per_trial=max(1, steps // 10), lr=0.1, eval_batch=50, metric="accuracy", mode="max", seed=seed, evolution=EvolutionSettings(population=population, generations=2, parents=max(1, population // 5), mutations=population // 2, crossovers=population // 2))


def run(budget_s: float, smoke: bool) -> dict:
    from tune_spacenas.jobs import evaluate_batch_job
    from tune_spacenas.runner import InProcessSupernet, run_in_process
    from tune_spacenas.searchers.nse import resource_table
    from tune_spacenas.spaces import NASBench201Space
    from tune_spacenas.supernet.spec import SupernetSpec
    from tune_spacenas.tables import NASBench201Table

    start = time.perf_counter()
    space = NASBench201Space(channels=8 if smoke else 16, cells_per_stage=1 if smoke else 5, input_size=16 if smoke else 32)
    data, dev = cifar10(smoke, 16 if smoke else 32), device()
    evaluations = 8 if smoke else EVALUATIONS

    def spec(seed: int, method: str) -> SupernetSpec:
        return SupernetSpec(space, data, batch_size=256, lr=0.1, init_seed=seed, eval_images=500 if smoke else 1000,
                            skeleton="nasbench201+fitness" if method == "nse" else None)

    # Time NSE's training step (it also updates the thetas every other step) and one cell's scoring
    # (BatchNorm recalibration + validation images) on a throw-away supernet.
    probe = InProcessSupernet(spec(99, "nse"), dev)
    base, costs = resource_table(space)
    nse_job = NSEJob(every=2, lr=0.1, alpha=0.0, costs=costs.tolist(), fixed_cost=base, tau=1.0)
    cells = space.sample_many(np.random.default_rng(0), 5)
    probe(train_job(4, seed=1, lr=1e-3, nse=nse_job))  # warm-up (cuDNN autotuning)
    probe(evaluate_batch_job(space, cells[:1]))
    t0 = time.perf_counter()
    probe(train_job(20, seed=1, lr=1e-3, nse=nse_job))
    per_step = (time.perf_counter() - t0) / 20
    t0 = time.perf_counter()
    probe(evaluate_batch_job(space, cells))
    per_cell = (time.perf_counter() - t0) / len(cells)
    del probe
    per_run = MARGIN * (budget_s - (time.perf_counter() - start)) / (2 * SEEDS)
    steps = max(2 * ROUNDS, int((per_run - 1.2 * evaluations * per_cell) / per_step))
    table = NASBench201Table.load()
    runs = []
    for seed in range(SEEDS):
        for method in ("nse", "spos"):
            t = time.perf_counter()
            runner = InProcessSupernet(spec(seed, method), dev)
            searcher = _searcher(method, space, steps, evaluations, seed)
            run_in_process(searcher, runner)
            best = searcher.best_architecture()
            runs.append({"method": method, "seed": seed, "best": best, "table_accuracy": table.query(best, "cifar10"),
                         "evaluated": len(searcher.history), "seconds": time.perf_counter() - t})
    per = {m: [r["table_accuracy"] for r in runs if r["method"] == m] for m in ("nse", "spos")}
    return {"supernet": f"NAS-Bench-201 C={space.channels} N={space.cells_per_stage}, {space.input_size}x{space.input_size}",
            "ground_truth": "NAS-Bench-201 CIFAR-10 test accuracy (200 epochs)", "steps_per_method": steps,
            "epochs": steps * 256 / 45_000, "nse_seconds_per_step": per_step, "seconds_per_cell": per_cell, "evaluations": evaluations,
            "nse": per["nse"], "spos": per["spos"], "nse_mean": float(np.mean(per["nse"])),
            "spos_mean": float(np.mean(per["spos"])), "table_optimum": table.best("cifar10")[1], "runs": runs}


def plot(section: dict, folder: Path) -> None:
    fig, ax = new_figure(size=(5, 4))
    for i, name in enumerate(("nse", "spos")):
        ax.bar(i, np.mean(section[name]), alpha=0.6)
        ax.scatter([i] * len(section[name]), section[name], color="k", s=12)
    ax.axhline(section["table_optimum"], ls="--", color="gray", label="table optimum")
    ax.set_xticks([0, 1], ["NSE (N_l = 1)", "SPOS + evolution"])
    ax.set(ylabel="NAS-Bench-201 CIFAR-10 accuracy (%)", ylim=(min(section["nse"] + section["spos"]) - 2, 95),
           title=f"GPU: {section['steps_per_method']} steps ({section['epochs']:.1f} epochs) each")
    ax.legend()
    save_figure(fig, folder / "gpu_nse.png")
