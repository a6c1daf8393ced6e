"""NSE against SPOS at matched MAdds on GPU, at the scale where the 27 operations are distinct: Table 5's
macro-architecture (two layers per stage) at width 0.5 on all of CIFAR-10 at 32x32 (layer inputs 32 down
to 2 pixels: 27, 27, 27, 27, 27, 27, 21, 21, 21, 21, 9, 9 distinct computations per layer; at the CPU
benchmark's 16x16 / 0.25, six layers see 2x2 or less).

Per seed: NSE (K=5, six rounds until the pool runs out, the supernet re-initialised every round, the
library's fitness learning rate, D + D_e candidates per round) and SPOS (single-path uniform sampling on
the full 27-operation pool, the same supernet steps, evolution) both inside the window tau +- 5% (NSE's
constraint; SPOS's ``min_madds``/``max_madds``), tau the 70th percentile of the single-branch costs (SPOS
reaches it; NSE's resource term must pull its multi-branch samples down to it, as the paper's 300M does; the
CPU benchmark's 1.5M is the same percentile at 16x16 / 0.25).
Each answer is trained alone from scratch and tested on the 10,000 test images; Welch p over the seeds.

Budgeted by measured time: the step times of both supernets, a candidate's scoring and a standalone step
are timed first, then the seeds (5 when the budget allows, at least 2) and the steps per round and
standalone steps are sized to the rest. Ray-free (``run_in_process``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.gpu.data import cifar10, device
from benchmarks.harness import new_figure, save_figure, standalone, welch_p
from benchmarks.nse import SMALL_STAGES, alpha_for, distinct_operations
from tune_spacenas.jobs import NSEJob, evaluate_batch_job, train_job

ROUNDS, K = 6, 5  # (27 - 1) // (5 - 1)
MAX_SEEDS, MIN_SEEDS = 5, 2
WINDOW = 0.05
MARGIN = 0.8  # of the budget left after timing, planned (supernet builds, searcher callbacks, data moves)
TRAINING, STANDALONE = 0.6, 0.4  # shares of a seed's budget after the candidates' scoring


def _settings(smoke: bool) -> dict:
    if smoke:
        return {
            "width": 0.25,
            "resolution": 16,
            "batch": 64,
            "eval_images": 200,
            "test_images": 500,
            "samples": 3,
            "edge": 1,
            "population": 4,
            "generations": 1,
        }
    return {
        "width": 0.5,
        "resolution": 32,
        "batch": 256,
        "eval_images": 1000,
        "test_images": None,
        "samples": 12,
        "edge": 3,
        "population": 10,
        "generations": 2,
    }


def _timed(fn) -> float:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _step_times(multi, single, dev: str, fitness: dict, smoke: bool) -> tuple[float, float, float, float]:
    """Seconds per NSE training step (multi-branch, thetas every other step), SPOS step, candidate scored
    and standalone step, on throw-away supernets of the two specs."""
    from tune_spacenas.runner import InProcessSupernet

    space, rng = multi.space, np.random.default_rng(0)
    subset = space.restrict([list(rng.choice(len(s.ops), K, replace=False)) for s in space.slots])
    nse, spos = InProcessSupernet(multi, dev), InProcessSupernet(single, dev)
    archs = subset.sample_many(rng, 3)
    nse(train_job(2, subset, seed=1, lr=1e-3, nse=fitness))  # warm-up (cuDNN autotuning)
    spos(train_job(2, seed=1, lr=1e-3))
    nse(evaluate_batch_job(space, archs[:1]))
    n = 4 if smoke else 20
    return (
        _timed(lambda: nse(train_job(n, subset, seed=1, lr=1e-3, nse=fitness))) / n,
        _timed(lambda: spos(train_job(n, seed=1, lr=1e-3))) / n,
        _timed(lambda: nse(evaluate_batch_job(space, archs))) / len(archs),
        _timed(lambda: nse(train_job(n, seed=1, lr=1e-3, arch=space.to_string(archs[0])))) / n,
    )


def run(budget_s: float, smoke: bool) -> dict:
    from tune_spacenas.runner import InProcessSupernet, run_in_process
    from tune_spacenas.searchers import EvolutionSettings, NSESearcher, SPOSSearcher
    from tune_spacenas.searchers.nse import resource_table
    from tune_spacenas.spaces import MultiBranchSpace
    from tune_spacenas.supernet.spec import SupernetSpec

    start = time.perf_counter()
    cfg = _settings(smoke)
    space = MultiBranchSpace(width_mult=cfg["width"], input_size=cfg["resolution"], num_classes=10, stages=SMALL_STAGES)
    single = MultiBranchSpace(
        width_mult=cfg["width"], input_size=cfg["resolution"], num_classes=10, stages=SMALL_STAGES, max_branches=1
    )
    costs = [single.cost(a).madds / 1e6 for a in single.sample_many(np.random.default_rng(0), 2000)]
    tau = float(np.quantile(costs, 0.7))
    low, high = (1 - WINDOW) * tau, (1 + WINDOW) * tau
    data, dev = cifar10(smoke, cfg["resolution"]), device()

    def spec(s, seed: int, lr: float = 0.1) -> SupernetSpec:
        return SupernetSpec(s, data, batch_size=cfg["batch"], lr=lr, init_seed=seed, eval_images=cfg["eval_images"])

    fixed, table = resource_table(space)
    fitness = NSEJob(lr=0.1, alpha=alpha_for(tau), tau=tau, costs=table.tolist(), fixed_cost=fixed).to_dict()
    per_nse, per_spos, per_eval, per_alone = _step_times(spec(space, 99), spec(single, 99), dev, fitness, smoke)

    # Plan: per seed, the candidates' scoring is fixed; the rest splits into supernet training (both methods,
    # the same steps) and standalone training (both answers, one training seed each).
    evaluations = ROUNDS * (cfg["samples"] + cfg["edge"] + 2) + cfg["population"] * cfg["generations"]
    left = MARGIN * (budget_s - (time.perf_counter() - start))
    for seeds in range(MAX_SEEDS, MIN_SEEDS - 1, -1):
        per_seed = left / seeds - evaluations * per_eval
        steps_per_round = int(TRAINING * per_seed / (ROUNDS * (per_nse + per_spos)))
        if steps_per_round >= 100 or seeds == MIN_SEEDS:
            break
    steps_per_round = max(2, steps_per_round)
    standalone_steps = max(4, int(STANDALONE * per_seed / (2 * per_alone)))

    runs = []
    for seed in range(seeds):
        t = time.perf_counter()
        nse = NSESearcher(
            space=space,
            ops_per_layer=K,
            steps_per_round=steps_per_round,
            steps_per_trial=steps_per_round,
            lr=0.1,
            alpha=alpha_for(tau),
            tau=tau,
            constraint=(low, high),
            samples=cfg["samples"],
            edge_samples=cfg["edge"],
            eval_batch=25,
            metric="accuracy",
            mode="max",
            seed=seed,
        )
        run_in_process(nse, InProcessSupernet(spec(space, seed), dev))
        nse_seconds, t = time.perf_counter() - t, time.perf_counter()
        spos = SPOSSearcher(
            space=single,
            train_steps=ROUNDS * steps_per_round,
            steps_per_trial=steps_per_round,
            lr=0.1,
            min_madds=low * 1e6,
            max_madds=high * 1e6,
            eval_batch=25,
            metric="accuracy",
            mode="max",
            seed=seed,
            evolution=EvolutionSettings(
                population=cfg["population"],
                generations=cfg["generations"],
                parents=max(1, cfg["population"] // 4),
                mutations=cfg["population"] // 2,
                crossovers=cfg["population"] // 2,
            ),
        )
        run_in_process(spos, InProcessSupernet(spec(single, seed), dev))
        spos_seconds = time.perf_counter() - t
        row = {
            "seed": seed,
            "nse_seconds": nse_seconds,
            "spos_seconds": spos_seconds,
            "front_supernet_accuracy": [r["front_accuracy"] for r in nse.rounds],
        }
        for name, best in (("nse", nse.best_architecture()), ("spos", spos.best_architecture())):
            row[name] = best
            if best is None:
                continue
            alone = standalone(
                spec(space, 10_000 + seed), best, standalone_steps, seed, images=cfg["test_images"], device=dev
            )
            row[f"{name}_accuracy"], row[f"{name}_madds"] = alone["accuracy"], alone["madds"] / 1e6
        runs.append(row)
    per = {m: [r[f"{m}_accuracy"] for r in runs if f"{m}_accuracy" in r] for m in ("nse", "spos")}
    both = min(len(per["nse"]), len(per["spos"]))
    return {
        "supernet": f"Table 5, two layers per stage, width {cfg['width']}, {cfg['resolution']}x{cfg['resolution']}, "
        "27-op pool",
        "distinct_operations_per_layer": distinct_operations(space),
        "tau_madds_millions": tau,
        "window_millions": [low, high],
        "seeds": seeds,
        "steps_per_round": steps_per_round,
        "supernet_steps_per_method": ROUNDS * steps_per_round,
        "epochs_per_method": ROUNDS * steps_per_round * cfg["batch"] / 45_000,
        "standalone_steps": standalone_steps,
        "seconds_per_step": {"nse": per_nse, "spos": per_spos, "standalone": per_alone},
        "seconds_per_candidate": per_eval,
        "nse": per["nse"],
        "spos": per["spos"],
        "nse_mean": float(np.mean(per["nse"])) if per["nse"] else None,
        "spos_mean": float(np.mean(per["spos"])) if per["spos"] else None,
        "welch_p": welch_p(per["nse"], per["spos"]) if both > 1 else None,
        "runs": runs,
    }


def plot(section: dict, folder: Path) -> None:
    fig, ax = new_figure(size=(5, 4))
    for i, name in enumerate(("nse", "spos")):
        values = section[name] or [np.nan]
        ax.bar(i, np.nanmean(values), alpha=0.6)
        ax.scatter([i] * len(values), values, color="k", s=12)
    ax.set_xticks([0, 1], ["NSE (multi-branch)", "SPOS (single path)"])
    low, high = section["window_millions"]
    p = section["welch_p"]
    ax.set(
        ylabel="standalone CIFAR-10 test accuracy (%)",
        title=f"GPU, matched MAdds {low:.1f}-{high:.1f}M, {section['seeds']} seeds"
        + ("" if p is None else f", Welch p {p:.2f}"),
    )
    save_figure(fig, folder / "gpu_nse.png")
