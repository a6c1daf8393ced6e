"""NSE on CIFAR-10 at CPU scale: the paper's claims after the audit of issue 14 (one core, 2-3 hours).

    nice -n 10 python -m benchmarks.nse --cache /tmp/nse_tasks --out benchmarks/results/nse/nse.json

Setting: Table 5's macro-architecture at width 0.25 with two layers per stage (12 multi-branch layers:
6 normal, 6 reduction) on CIFAR-10 average-pooled to 16x16 (45,000 training / 5,000 validation images),
the 27-operation pool of A.1 shuffled layer-wise with a fixed seed, K=5, rounds until the pool runs out
((27 - 1) // (5 - 1) = 6) of 200 supernet steps each, the supernet re-initialised every round (the
official code). MAdds count the kernel applied at each layer's resolution: at 16x16 layers see inputs
of 16, 16, 8, 8, 4, 4, 2, 2, 2, 2, 1, 1 pixels, so the 27 operations are 27, 27, 27, 27, 21, 21, 9, 9, 9,
9, 6, 6 distinct computations (``distinct_operations``); 32x32 at width 0.5 is the GPU suite's
(``benchmarks/gpu/nse.py``). The MAdds target is tau = 1.5M (inside both the single-branch and the K=5
multi-branch cost ranges) with the window tau +- 5% for every method, alpha = 1e-5 (300 / tau)^2 so the
resource term weighs a relative deviation as the paper's does at 300M.

Standalone accuracy: the architecture trained alone from scratch for ``--standalone-steps`` steps (cosine
learning rate), tested on ``--test-images`` CIFAR-10 test images. Settings are chosen on seed 0 only;
every claim is reported on seeds 1 and up.

Parts:
(f) the fitness learning rate (issue 14, item 6): NSE with theta_lr in {0 (no fitness learning), 5e-3
    (the official code; its Adam betas (0, 0.999) and update every 2 steps are ours too), 0.1 (the
    paper's appendix)} on seed 0; the one whose final architecture trains best is ``--theta-lr`` for the
    rest, and the runner-up runs again on seeds 1-3 to confirm;
(a) continual convergence (Fig. 5a): standalone accuracy of the Pareto architectures of every round;
(r) per round, Kendall tau between supernet and standalone accuracy of the round's sampled architectures
    (item 9): near 0, the round's Pareto front is noise at this budget;
(b) search-space quality (Fig. 4b): random architectures of round 1's initial, simplified and aggregated
    subsets inside the MAdds window;
(c) NSE vs SPOS at matched MAdds (item 8): both answers inside tau +- 5% (NSE's window; SPOS's
    ``min_madds``/``max_madds`` on the single-branch full pool), the same supernet steps, seeds 1-5, Welch p;
(d) Lock & Rehearse on/off (seed 1);
(e) NAS-Bench-201, kept only as a test of the fitness estimator: NSE's single-branch case and SPOS +
    evolution, both with a cost window tau +- 10% around the median cell cost (NSE also with Eq. 5's
    resource term; cell costs are discrete, +- 5% would hold one cost level), scored by the table, beside
    the mean (random search's expectation) and best table accuracy inside the window.

Tasks run one after another in one process (``--parallel`` more); with ``--cache`` each task's result is
kept as JSON, so a run that stops resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    RESULTS,
    cifar10_spec,
    mean_std,
    new_figure,
    process_pool,
    save_figure,
    standalone,
    welch_p,
    write_json,
    write_markdown,
)

SMALL_STAGES = ((16, 1, 1), (24, 2, 2), (40, 2, 2), (80, 2, 2), (96, 2, 1), (192, 2, 2), (320, 1, 1))
PAPER_TAU, PAPER_ALPHA = 300.0, 1e-5
THETA_LRS = (0.0, 5e-3, 0.1)
CHOICE_SEED = 0


# --------------------------------------------------------------------------------------------------
# Set-up shared by every part
# --------------------------------------------------------------------------------------------------
def space_for(args: argparse.Namespace, max_branches: int | None = None):
    from tune_spacenas.spaces import MultiBranchSpace

    return MultiBranchSpace(
        width_mult=args.width,
        input_size=args.resolution,
        num_classes=10,
        stages=SMALL_STAGES,
        max_branches=max_branches,
    )


def spec_for(args: argparse.Namespace, space: Any, seed: int, lr: float, **kwargs: Any):
    return cifar10_spec(
        space, args.resolution, init_seed=seed, train_size=args.train_size, batch_size=args.batch_size, lr=lr, **kwargs
    )


def window(args: argparse.Namespace, tau: float | None = None, width: float | None = None) -> tuple[float, float]:
    """The matched-MAdds window every method's answer must fall in (millions)."""
    tau, width = args.tau if tau is None else tau, args.window if width is None else width
    return (1 - width) * tau, (1 + width) * tau


def alpha_for(tau: float) -> float:
    """Eq. (5)'s alpha scaled so that a relative cost deviation weighs as the paper's does at 300M."""
    return PAPER_ALPHA * (PAPER_TAU / tau) ** 2


def distinct_operations(space: Any) -> list[int]:
    """Per layer, how many of the pool's operations compute different things at its input size (the
    kernel actually applied, a dilation that still reaches a pixel, the expand ratio and the family)."""
    from tune_spacenas.spaces.costs import effective_kernel
    from tune_spacenas.spaces.multibranch import parse_op

    out = []
    for slot, (*_, size) in zip(space.slots, space.layer_plan()):
        kinds = set()
        for op in slot.ops:
            p = parse_op(op)
            k = effective_kernel(int(p["k"]), size, int(p["d"]))
            kinds.add((p["family"], k, int(p["d"]) if k > 1 else 1, p["e"], p["gi"], p["go"]))
        out.append(len(kinds))
    return out


def _log(tag: str, message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} {tag}] {message}", flush=True)


# --------------------------------------------------------------------------------------------------
# Searches
# --------------------------------------------------------------------------------------------------
def nse_search(args: argparse.Namespace, seed: int, theta_lr: float, lock_and_rehearse: bool = True) -> dict[str, Any]:
    """One NSE search on the small multi-branch space: its rounds (with every scored candidate), its
    final architecture and per-round diagnostics of the fitness indicators."""
    from tune_spacenas.runner import InProcessSupernet, run_in_process
    from tune_spacenas.searchers import NSESearcher

    tag = f"nse lr={theta_lr:g}{'' if lock_and_rehearse else ' noLR'} s{seed}"
    space = space_for(args)
    runner = InProcessSupernet(spec_for(args, space, seed, args.lr, eval_images=args.val_images), "cpu")
    searcher = NSESearcher(
        space=space,
        seed=seed,
        lock_and_rehearse=lock_and_rehearse,
        ops_per_layer=args.k,
        steps_per_round=args.steps_per_round,
        steps_per_trial=args.steps_per_trial,
        lr=args.lr,
        theta_lr=theta_lr,
        alpha=alpha_for(args.tau),
        beta=2.0,
        tau=args.tau,
        constraint=window(args),
        samples=args.samples,
        edge_samples=args.edge_samples,
        eval_batch=25,
        metric="accuracy",
        mode="max",
    )
    start = time.perf_counter()

    def progress(config: dict, result: dict) -> None:
        if searcher.phase != "training" and searcher.queue.drained:
            _log(tag, f"{searcher.progress()} ({time.perf_counter() - start:.0f} s)")

    run_in_process(searcher, runner, on_result=progress)
    best = searcher.best_architecture()
    return {
        "seed": seed,
        "theta_lr": theta_lr,
        "lock_and_rehearse": lock_and_rehearse,
        "rounds": searcher.rounds,
        "best": best,
        "best_madds": None if best is None else space.cost(space.from_string(best)).madds,
        "steps": sum(r["steps"] for r in searcher.rounds),
        "seconds": time.perf_counter() - start,
        "diagnostics": [round_diagnostics(r) for r in searcher.rounds],
    }


def round_diagnostics(r: dict[str, Any]) -> dict[str, Any]:
    """What the fitness indicators did in a round: operations dropped by simplification, the thetas'
    range, how many samples fell inside the window, their mean supernet accuracy."""
    theta = np.asarray(r["thetas"])
    samples = [i for i, role in enumerate(r["evaluated_role"]) if role == "sample"]
    return {
        "ops_before": sum(len(s) for s in r["subsets"]),
        "ops_after": sum(len(s) for s in r["simplified"]),
        "theta_min": float(theta.min()),
        "theta_max": float(theta.max()),
        "samples_in_window": len(samples),
        "edge_samples": r["edge"],
        "sample_accuracy": float(np.mean([r["evaluated_accuracy"][i] for i in samples])) if samples else None,
        "front_size": len(r["front"]),
    }


def spos_searcher(
    args: argparse.Namespace,
    space: Any,
    seed: int,
    steps: int,
    window_m: tuple[float, float],
    population: int,
    generations: int,
) -> Any:
    """SPOS + evolution as every comparison here runs it: ``steps`` of uniform single-path training, then
    evolution of ``population`` x ``generations`` inside the MAdds window ``window_m`` (millions)."""
    from tune_spacenas.searchers import EvolutionSettings, SPOSSearcher

    low, high = window_m
    return SPOSSearcher(
        space=space,
        train_steps=steps,
        steps_per_trial=args.steps_per_trial,
        lr=args.lr,
        min_madds=low * 1e6,
        max_madds=high * 1e6,
        eval_batch=25,
        metric="accuracy",
        mode="max",
        seed=seed,
        evolution=EvolutionSettings(
            population=population,
            generations=generations,
            parents=5,
            mutations=population // 2,
            crossovers=population // 2,
        ),
    )


def spos_search(args: argparse.Namespace, seed: int, steps: int) -> dict[str, Any]:
    """SPOS on the full 27-operation pool: single-path uniform sampling (N_l = 1), then evolution inside
    the same MAdds window as NSE's (``min_madds``/``max_madds``)."""
    from tune_spacenas.runner import InProcessSupernet, run_in_process

    space = space_for(args, max_branches=1)
    runner = InProcessSupernet(spec_for(args, space, seed, args.lr, eval_images=args.val_images), "cpu")
    low, high = window(args)
    searcher = spos_searcher(args, space, seed, steps, (low, high), args.population, args.generations)
    start = time.perf_counter()
    run_in_process(searcher, runner)
    best = searcher.best_architecture()
    _log(f"spos s{seed}", f"{steps} steps, best {best} ({time.perf_counter() - start:.0f} s)")
    return {
        "seed": seed,
        "best": best,
        "best_madds": None if best is None else space.cost(space.from_string(best)).madds,
        "steps": steps,
        "evaluated": len(searcher.history),
        "seconds": time.perf_counter() - start,
    }


def nb201_setting(args: argparse.Namespace) -> tuple[Any, float]:
    """(e)'s space and its target: the median MAdds (millions) of its cells."""
    from tune_spacenas.spaces import NASBench201Space

    space = NASBench201Space(channels=16, cells_per_stage=1, input_size=args.resolution)
    return space, float(np.median([space.cost(a).madds for a in space.enumerate()]) / 1e6)


def nb201_search(args: argparse.Namespace, method: str, seed: int, theta_lr: float | None = None) -> dict[str, Any]:
    """(e): NSE's single-branch case or SPOS + evolution on NAS-Bench-201 (C=16, N=1, 16x16), both with
    the cost window tau +- ``--nb201-window`` (NSE also with Eq. 5's resource term), the same training steps and
    evaluations; the returned cell is scored by the table's CIFAR-10 test accuracy. NSE runs at every
    ``theta_lr`` of (f): 0 learns no fitness, so only the non-zero ones test the fitness estimator."""
    from tune_spacenas.runner import InProcessSupernet, run_in_process
    from tune_spacenas.searchers import NSESearcher
    from tune_spacenas.tables import NASBench201Table

    space, tau = nb201_setting(args)
    low, high = window(args, tau, args.nb201_window)
    steps = args.nb201_rounds * args.nb201_steps_per_round
    skeleton = "nasbench201+fitness" if method == "nse" else None
    runner = InProcessSupernet(
        spec_for(args, space, seed, args.lr, eval_images=args.val_images, skeleton=skeleton), "cpu"
    )
    evaluations = args.nb201_evaluations
    if method == "nse":
        searcher = NSESearcher(
            space=space,
            ops_per_layer=args.nb201_k,
            steps_per_round=args.nb201_steps_per_round,
            steps_per_trial=args.steps_per_trial,
            lr=args.lr,
            theta_lr=theta_lr,
            alpha=alpha_for(tau),
            tau=tau,
            constraint=(low, high),
            samples=evaluations // args.nb201_rounds,
            edge_samples=0,
            max_rounds=args.nb201_rounds,
            eval_batch=25,
            metric="accuracy",
            mode="max",
            seed=seed,
        )
    else:
        searcher = spos_searcher(args, space, seed, steps, (low, high), evaluations // 2, 2)
    start = time.perf_counter()
    run_in_process(searcher, runner)
    best = searcher.best_architecture()
    truth = None if best is None else NASBench201Table.load().query(best, "cifar10")
    _log(f"nb201-{method} s{seed}", f"{best}: table {truth}% ({time.perf_counter() - start:.0f} s)")
    return {
        "method": method,
        "seed": seed,
        "theta_lr": theta_lr,
        "best": best,
        "table_accuracy": truth,
        "steps": steps,
        "madds": None if best is None else space.cost(space.from_string(best)).madds / 1e6,
        "evaluated": len(searcher.history),
        "seconds": time.perf_counter() - start,
    }


def nb201_window_reference(args: argparse.Namespace) -> dict[str, Any]:
    """The table inside (e)'s window: how many cells, their mean (random search's expectation) and best."""
    from tune_spacenas.tables import NASBench201Table

    space, tau = nb201_setting(args)
    low, high = window(args, tau, args.nb201_window)
    table = NASBench201Table.load()
    inside = [a for a in space.enumerate() if low <= space.cost(a).madds / 1e6 <= high]
    accuracy = [table.query(a, "cifar10") for a in inside]
    return {
        "tau": tau,
        "window": [low, high],
        "cells": len(inside),
        "mean": float(np.mean(accuracy)),
        "best": float(np.max(accuracy)),
        "table_optimum": table.best("cifar10")[1],
    }


# --------------------------------------------------------------------------------------------------
# Standalone training
# --------------------------------------------------------------------------------------------------
def trained_alone(args: argparse.Namespace, arch: str, seed: int) -> dict[str, Any]:
    """``arch`` trained alone from scratch (cosine learning rate), tested on CIFAR-10 test images."""
    spec = spec_for(args, space_for(args), 10_000 + seed, args.standalone_lr)
    return standalone(spec, arch, args.standalone_steps, seed, jobs=5, images=args.test_images)


def in_window(args: argparse.Namespace, subset: list[list[str]], count: int, seed: int) -> list[str]:
    """(b): ``count`` distinct architectures drawn uniformly from a subset, kept inside the MAdds window."""
    space = space_for(args)
    sub = space.restrict(subset)
    low, high = window(args)
    rng, found = np.random.default_rng(seed), {}
    for _ in range(200_000):
        if len(found) >= count:
            break
        arch = sub.sample(rng)
        if low <= space.cost(arch).madds / 1e6 <= high:
            found.setdefault(space.to_string(arch), None)
    return list(found)


def ranking_sample(r: dict[str, Any], front: list[str], count: int, seed: int) -> list[str]:
    """(r): the round's ``front`` architectures plus random in-window samples, ``count`` in all."""
    pool = sorted({a for a, role in zip(r["evaluated_archs"], r["evaluated_role"]) if role == "sample"} - set(front))
    rng = np.random.default_rng(seed)
    extra = max(0, count - len(front))
    return list(front) + (
        [pool[i] for i in sorted(rng.choice(len(pool), min(extra, len(pool)), replace=False))] if pool else []
    )


# --------------------------------------------------------------------------------------------------
# Running tasks, cached
# --------------------------------------------------------------------------------------------------
def _run(task: tuple) -> Any:
    kind, args, *rest = task
    import torch

    torch.set_num_threads(1)
    functions = {"nse": nse_search, "spos": spos_search, "nb201": nb201_search, "standalone": trained_alone}
    return functions[kind](args, *rest)


class Tasks:
    """Runs tasks in a pool (or here, with one process), each result kept as JSON under ``cache``."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.cache = args, args.cache
        if self.cache is not None:
            self.cache.mkdir(parents=True, exist_ok=True)
        self.pool = None

    def _path(self, task: tuple) -> Path | None:
        if self.cache is None:
            return None
        kind, _, *rest = task
        stable = json.dumps([kind, *rest, self.args.fingerprint])
        import hashlib

        return self.cache / f"{kind}-{hashlib.sha1(stable.encode()).hexdigest()[:16]}.json"

    def run(self, tasks: list[tuple]) -> list[Any]:
        results: list[Any] = [None] * len(tasks)
        todo = []
        for i, task in enumerate(tasks):
            path = self._path(task)
            if path is not None and path.exists():
                results[i] = json.loads(path.read_text())
            else:
                todo.append(i)
        runner = map if self.pool is None else (lambda f, xs: self.pool.imap(f, xs, chunksize=1))
        for i, result in zip(todo, runner(_run, [tasks[i] for i in todo])):
            results[i] = result
            path = self._path(tasks[i])
            if path is not None:
                path.write_text(json.dumps(result, default=float))
        return results


# --------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="search seeds for the claims (1..N; seed 0 chooses)")
    parser.add_argument("--confirm-seeds", type=int, default=3, help="seeds (1..N) the runner-up theta_lr reruns on")
    parser.add_argument("--standalone-seeds", type=int, default=2, help="training seeds per final architecture")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--tau", type=float, default=1.5, help="MAdds target in millions")
    parser.add_argument("--window", type=float, default=0.05, help="matched MAdds: answers within tau +- this")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument(
        "--theta-lr",
        type=float,
        default=None,
        help="skip (f) and use this fitness learning rate (default: (f) chooses on seed 0)",
    )
    parser.add_argument("--steps-per-round", type=int, default=200)
    parser.add_argument("--steps-per-trial", type=int, default=50)
    parser.add_argument("--samples", type=int, default=40, help="D")
    parser.add_argument("--edge-samples", type=int, default=8, help="D_e")
    parser.add_argument("--val-images", type=int, default=1000)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--standalone-steps", type=int, default=150)
    parser.add_argument("--standalone-lr", type=float, default=0.1)
    parser.add_argument("--test-images", type=int, default=5000)
    parser.add_argument("--pareto-per-round", type=int, default=3)
    parser.add_argument("--rank-archs", type=int, default=6, help="(r): architectures per round")
    parser.add_argument("--quality-archs", type=int, default=5, help="(b): architectures per subset")
    parser.add_argument("--nb201-seeds", type=int, default=3)
    parser.add_argument(
        "--nb201-window",
        type=float,
        default=0.1,
        help="(e)'s window, tau +- this (cell costs are discrete: +- 5%% holds one cost level)",
    )
    parser.add_argument("--nb201-k", type=int, default=3)
    parser.add_argument("--nb201-rounds", type=int, default=2)
    parser.add_argument("--nb201-steps-per-round", type=int, default=600)
    parser.add_argument("--nb201-evaluations", type=int, default=60)
    parser.add_argument(
        "--ablation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="(d): NSE without Lock & Rehearse on the first claim seed",
    )
    parser.add_argument("--parallel", type=int, default=1, help="worker processes (1: run here)")
    parser.add_argument("--cache", type=Path, default=None, help="keep each task's result here; rerun resumes")
    parser.add_argument("--out", type=Path, default=RESULTS / "nse" / "nse.json")
    args = parser.parse_args()
    skip = {"parallel", "cache", "out", "theta_lr", "seeds", "confirm_seeds", "nb201_seeds", "ablation"}
    args.fingerprint = json.dumps({k: v for k, v in sorted(vars(args).items()) if k not in skip}, default=str)
    return args


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    tasks = Tasks(args)
    seeds = list(range(1, args.seeds + 1))
    steps = 6 * args.steps_per_round  # NSE's rounds x steps; SPOS gets the same
    pool_cm = process_pool(args.parallel) if args.parallel > 1 else None
    if pool_cm is not None:
        tasks.pool = pool_cm.__enter__()
    try:
        # (f) the fitness learning rate, chosen on seed 0 by the standalone accuracy of the final architecture.
        choice = {}
        if args.theta_lr is None:
            runs = tasks.run([("nse", args, CHOICE_SEED, lr) for lr in THETA_LRS])
            trained = tasks.run([("standalone", args, r["best"], s) for r in runs if r["best"] for s in range(3)])
            for lr, run in zip(THETA_LRS, runs):
                accuracy = [t["accuracy"] for t in trained if t["arch"] == run["best"]]
                choice[lr] = {
                    "run": _strip(run),
                    "diagnostics": run["diagnostics"],
                    "standalone": accuracy,
                    "mean": float(np.mean(accuracy)) if accuracy else float("-inf"),
                }
            ranked = sorted(THETA_LRS, key=lambda lr: choice[lr]["mean"], reverse=True)
            args.theta_lr, runner_up = ranked[0], ranked[1]
            _log(
                "choice",
                f"theta_lr={args.theta_lr:g} (seed 0: "
                + ", ".join(f"{lr:g}: {choice[lr]['mean']:.2f}" for lr in THETA_LRS)
                + ")",
            )
        else:
            runner_up = None
        # The claims on seeds 1..N: NSE, SPOS at matched MAdds and steps, the runner-up theta_lr, L&R off,
        # and the NAS-Bench-201 anchor.
        nse_tasks = [("nse", args, s, args.theta_lr) for s in seeds]
        confirm_tasks = (
            [("nse", args, s, runner_up) for s in seeds[: args.confirm_seeds]] if runner_up is not None else []
        )
        ablation_tasks = [("nse", args, seeds[0], args.theta_lr, False)] if args.ablation else []
        searches = tasks.run(
            nse_tasks
            + confirm_tasks
            + ablation_tasks
            + [("spos", args, s, steps) for s in seeds]
            + [("nb201", args, "spos", s) for s in range(1, args.nb201_seeds + 1)]
            + [("nb201", args, "nse", s, lr) for lr in THETA_LRS for s in range(1, args.nb201_seeds + 1)]
        )
        nse = searches[: len(seeds)]
        confirm = searches[len(seeds) : len(seeds) + len(confirm_tasks)]
        done = len(seeds) + len(confirm_tasks)
        ablation = searches[done] if args.ablation else None
        done += len(ablation_tasks)
        spos = searches[done : done + len(seeds)]
        nb201 = searches[done + len(seeds) :]
        _log("searches", f"done after {time.perf_counter() - start:.0f} s")

        # Standalone training: the answers (several seeds), each round's ranking sample of seed 1's run
        # (its Pareto architectures first), round 1's subsets, the final front without L&R.
        main_run = nse[0]
        per_round_front = [list(r["front"][: args.pareto_per_round]) for r in main_run["rounds"]]
        ranking = [
            ranking_sample(r, front, args.rank_archs, i)
            for i, (r, front) in enumerate(zip(main_run["rounds"], per_round_front))
        ]
        first = main_run["rounds"][0]
        quality = {
            name: in_window(args, first[key], args.quality_archs, i)
            for i, (name, key) in enumerate(
                (("initial", "subsets"), ("simplified", "simplified"), ("aggregated", "aggregated"))
            )
        }
        ablation_front = list(ablation["rounds"][-1]["front"][: args.pareto_per_round]) if ablation else []
        answers = sorted({r["best"] for r in nse + confirm + spos} - {None})
        singles = sorted(
            ({a for group in ranking for a in group} | {a for g in quality.values() for a in g} | set(ablation_front))
            - set(answers)
        )
        work = [("standalone", args, a, s) for a in answers for s in range(args.standalone_seeds)]
        work += [("standalone", args, a, 0) for a in singles]
        _log("standalone", f"{len(work)} trainings")
        trained = tasks.run(work)
    finally:
        if pool_cm is not None:
            pool_cm.__exit__(None, None, None)

    accuracy: dict[str, list[float]] = {}
    for t in trained:
        accuracy.setdefault(t["arch"], []).append(t["accuracy"])
    mean = {a: float(np.mean(v)) for a, v in accuracy.items()}

    def summary(group: list[str]) -> dict[str, Any]:
        means = [mean[a] for a in group]
        return {
            "archs": group,
            "mean_per_arch": means,
            "mean": float(np.mean(means)) if means else None,
            "best": float(np.max(means)) if means else None,
        }

    rounds = []
    for i, (r, group, front) in enumerate(zip(main_run["rounds"], ranking, per_round_front)):
        supernet = dict(zip(r["evaluated_archs"], r["evaluated_accuracy"]))
        rounds.append(
            {
                "round": i + 1,
                "subsets": r["subsets"],
                "simplified": r["simplified"],
                "aggregated": r["aggregated"],
                "front": r["front"],
                "front_supernet_accuracy": r["front_accuracy"],
                "front_madds": r["front_cost"],
                "diagnostics": main_run["diagnostics"][i],
                "standalone_front": summary(front),
                "ranking": ranking_stats(group, supernet, mean),
            }
        )
    per_seed = {
        "nse": [_answer(r, mean) for r in nse],
        "spos": [_answer(r, mean) for r in spos],
        "runner_up": [_answer(r, mean) for r in confirm],
    }
    payload = {
        "data": f"CIFAR-10 (shared JPEG Parquet) average-pooled to {args.resolution}x{args.resolution}, 45,000 train / "
        f"5,000 validation (supernet scoring, {args.val_images} images) / test ({args.test_images} images, standalone)",
        "setting": {
            "space": f"Table 5 at width {args.width}, two layers per stage (12 layers), 27-op pool",
            "layer_inputs": [size for *_, size in space_for(args).layer_plan()],
            "distinct_operations_per_layer": distinct_operations(space_for(args)),
            "k": args.k,
            "tau_madds_millions": args.tau,
            "window_millions": window(args),
            "alpha": alpha_for(args.tau),
            "theta_lr": args.theta_lr,
            "reinit_weights": True,
            "cost_model": "applied kernel (effective)",
        },
        "budget": {
            "steps_per_round": args.steps_per_round,
            "rounds": len(main_run["rounds"]),
            "nse_steps": main_run["steps"],
            "spos_steps": steps,
            "samples": args.samples,
            "edge_samples": args.edge_samples,
            "standalone_steps": args.standalone_steps,
            "batch_size": args.batch_size,
            "nb201_steps": args.nb201_rounds * args.nb201_steps_per_round,
            "nb201_evaluations": args.nb201_evaluations,
        },
        "seeds": seeds,
        "theta_lr_choice": {
            "seed": CHOICE_SEED,
            "by_lr": {f"{lr:g}": v for lr, v in choice.items()},
            "chosen": args.theta_lr,
            "runner_up": runner_up,
            "confirm": _compare(per_seed["nse"][: len(confirm)], per_seed["runner_up"]),
            "runner_up_runs": per_seed["runner_up"],
        },
        "rounds": rounds,
        "space_quality": {name: summary(group) for name, group in quality.items()},
        "vs_spos": {"nse": per_seed["nse"], "spos": per_seed["spos"], **_compare(per_seed["nse"], per_seed["spos"])},
        "ablation": None
        if ablation is None
        else {
            "seed": seeds[0],
            "with_lr": rounds[-1]["standalone_front"],
            "without_lr": summary(ablation_front),
            "rounds_with_lr": [r["front_accuracy"] for r in main_run["rounds"]],
            "rounds_without_lr": [r["front_accuracy"] for r in ablation["rounds"]],
        },
        "nasbench201": {
            "nse": {
                f"{lr:g}": [
                    r["table_accuracy"] for r in nb201 if r["method"] == "nse" and r["theta_lr"] == lr and r["best"]
                ]
                for lr in THETA_LRS
            },
            "spos": [r["table_accuracy"] for r in nb201 if r["method"] == "spos" and r["best"]],
            "no_result": [f"{r['method']} s{r['seed']}" for r in nb201 if not r["best"]],
            "runs": nb201,
            "window": nb201_window_reference(args),
        },
        "searches": {
            "nse": [_strip(r) for r in nse],
            "runner_up": [_strip(r) for r in confirm],
            "nse_without_lr": None if ablation is None else _strip(ablation),
            "spos": spos,
        },
        "wall_seconds": time.perf_counter() - start,
    }
    n = payload["nasbench201"]
    n["welch_p"] = {
        lr: welch_p(v, n["spos"]) if min(len(v), len(n["spos"])) > 1 else None for lr, v in n["nse"].items()
    }
    write_json(args.out, payload)
    write_markdown(
        args.out.with_suffix(".md"), "NSE on CIFAR-10 (CPU scale)", *report_rows(payload), notes=notes(payload)
    )
    plot(payload, args.out.parent)
    _log("done", f"{payload['wall_seconds']:.0f} s; wrote {args.out}")


def ranking_stats(group: list[str], supernet: dict[str, float], standalone_mean: dict[str, float]) -> dict[str, Any]:
    """(r): Kendall tau (and its p) between supernet and standalone accuracy over one round's sample."""
    from scipy.stats import kendalltau

    group = [a for a in group if a in supernet and a in standalone_mean]
    x, y = [supernet[a] for a in group], [standalone_mean[a] for a in group]
    tau, p = kendalltau(x, y) if len(group) >= 3 else (float("nan"), float("nan"))
    return {"archs": group, "supernet": x, "standalone": y, "kendall_tau": float(tau), "p": float(p)}


def _answer(run: dict[str, Any], mean: dict[str, float]) -> dict[str, Any]:
    return {
        "seed": run["seed"],
        "arch": run["best"],
        "madds": run["best_madds"],
        "standalone": mean.get(run["best"]) if run["best"] else None,
    }


def _compare(a: list[dict], b: list[dict]) -> dict[str, Any]:
    x = [r["standalone"] for r in a if r["standalone"] is not None]
    y = [r["standalone"] for r in b if r["standalone"] is not None]
    return {
        "n": [len(x), len(y)],
        "mean": [float(np.mean(x)) if x else None, float(np.mean(y)) if y else None],
        "welch_p": welch_p(x, y) if len(x) > 1 and len(y) > 1 else None,
    }


def _strip(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "rounds"}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.2f}"


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    return f"{_fmt(mean_std(values)[0])} +- {_fmt(mean_std(values)[1])}" if values else "n/a"


def report_rows(payload: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    header = ["claim", "NSE / treatment", "baseline", "note"]
    rows = []
    c = payload["theta_lr_choice"]
    for lr, v in c["by_lr"].items():
        d = v["diagnostics"]
        rows.append(
            [
                f"(f) seed 0, theta_lr={lr}: final arch standalone (3 seeds)",
                _mean_std(v["standalone"]),
                "",
                f"ops dropped per round {[x['ops_before'] - x['ops_after'] for x in d]}, theta range "
                f"{min(x['theta_min'] for x in d):.2f}..{max(x['theta_max'] for x in d):.2f}",
            ]
        )
    if c["runner_up"] is not None:
        f = c["confirm"]
        rows.append(
            [
                f"(f) confirm on seeds 1-{f['n'][0]}: theta_lr={c['chosen']:g} vs {c['runner_up']:g}",
                _fmt(f["mean"][0]),
                _fmt(f["mean"][1]),
                f"Welch p = {_fmt(f['welch_p'])}",
            ]
        )
    for r in payload["rounds"]:
        s, k = r["standalone_front"], r["ranking"]
        rows.append(
            [
                f"(a, r) round {r['round']}: standalone mean / best of {len(s['archs'])} Pareto archs; tau",
                f"{_fmt(s['mean'])} / {_fmt(s['best'])}",
                "",
                f"Kendall tau {_fmt(k['kendall_tau'])} (p {_fmt(k['p'])}, {len(k['archs'])} archs); supernet "
                f"front {_fmt(max(r['front_supernet_accuracy'], default=None))}%",
            ]
        )
    q = payload["space_quality"]
    rows.append(
        [
            "(b) round-1 subsets in the window: mean standalone acc",
            f"aggregated {_fmt(q['aggregated']['mean'])}, simplified {_fmt(q['simplified']['mean'])}",
            f"initial {_fmt(q['initial']['mean'])}",
            f"{len(q['aggregated']['archs'])} / {len(q['simplified']['archs'])} / {len(q['initial']['archs'])} archs",
        ]
    )
    v = payload["vs_spos"]
    madds = {k: [r["madds"] / 1e6 for r in v[k] if r["madds"]] for k in ("nse", "spos")}
    rows.append(
        [
            f"(c) matched MAdds: NSE vs SPOS, {v['n'][0]} seeds",
            _mean_std([r["standalone"] for r in v["nse"]])
            + f" ({min(madds['nse'], default=0):.2f}-{max(madds['nse'], default=0):.2f}M)",
            _mean_std([r["standalone"] for r in v["spos"]])
            + f" ({min(madds['spos'], default=0):.2f}-{max(madds['spos'], default=0):.2f}M)",
            f"Welch p = {_fmt(v['welch_p'])}",
        ]
    )
    a = payload["ablation"]
    if a is not None:
        rows.append(
            [
                f"(d) seed {a['seed']} final front: with vs without L&R (mean / best)",
                f"{_fmt(a['with_lr']['mean'])} / {_fmt(a['with_lr']['best'])}",
                f"{_fmt(a['without_lr']['mean'])} / {_fmt(a['without_lr']['best'])}",
                "",
            ]
        )
    n, w = payload["nasbench201"], payload["nasbench201"]["window"]
    for lr, values in n["nse"].items():
        rows.append(
            [
                f"(e) NAS-Bench-201 (fitness-estimator test only), table accuracy in the window, NSE theta_lr={lr}",
                f"{_mean_std(values)} ({len(values)} runs)",
                f"SPOS {_mean_std(n['spos'])}",
                f"Welch p = {_fmt(n['welch_p'][lr])}; window {w['window'][0]:.2f}-{w['window'][1]:.2f}M: "
                f"{w['cells']} cells, mean {w['mean']:.2f}, best {w['best']:.2f}",
            ]
        )
    return header, rows


def notes(payload: dict[str, Any]) -> str:
    b, s = payload["budget"], payload["setting"]
    return (
        f"Standalone accuracies: {b['standalone_steps']} steps of batch {b['batch_size']} from scratch. NSE trained "
        f"{b['nse_steps']} supernet steps in {b['rounds']} rounds (re-initialised each round), SPOS the same "
        f"{b['spos_steps']}; theta_lr {s['theta_lr']:g}; window {s['window_millions'][0]:.3f}-"
        f"{s['window_millions'][1]:.3f}M MAdds (applied-kernel count). Wall time {payload['wall_seconds'] / 60:.0f} "
        "min, one process, one thread."
    )


def plot(payload: dict[str, Any], folder: Path) -> None:
    fig, axes = new_figure(3, 2, size=(5, 4.2))
    axes = axes.ravel()
    ax = axes[0]
    for r in payload["rounds"]:
        means = r["standalone_front"]["mean_per_arch"]
        ax.scatter([r["round"]] * len(means), means, color="tab:blue", s=14)
    xs = [r["round"] for r in payload["rounds"]]
    ax.plot(xs, [r["standalone_front"]["mean"] for r in payload["rounds"]], label="front mean")
    ax.set(xlabel="round", ylabel="standalone test accuracy (%)", title="(a) Pareto archs per round (Fig. 5a)")
    ax.legend()
    ax = axes[1]
    ax.bar(xs, [r["ranking"]["kendall_tau"] for r in payload["rounds"]], alpha=0.7)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set(xlabel="round", ylabel="Kendall tau", ylim=(-1, 1), title="(r) supernet vs standalone, per round")
    ax = axes[2]
    q = payload["space_quality"]
    names = ["initial", "simplified", "aggregated"]
    ax.boxplot([q[n]["mean_per_arch"] or [np.nan] for n in names])
    ax.set_xticks([1, 2, 3], names)
    ax.set(ylabel="standalone test accuracy (%)", title="(b) round-1 subsets in the window (Fig. 4b)")
    ax = axes[3]
    v, a = payload["vs_spos"], payload["ablation"]
    groups = {
        "NSE": [r["standalone"] for r in v["nse"]],
        "SPOS": [r["standalone"] for r in v["spos"]],
        "NSE runner-up\ntheta_lr": [r["standalone"] for r in payload["theta_lr_choice"]["runner_up_runs"]],
    }
    if a is not None:
        groups.update(
            {
                "final front\nw/o L&R": a["without_lr"]["mean_per_arch"],
                "final front\nw/ L&R": a["with_lr"]["mean_per_arch"],
            }
        )
    groups = {k: [x for x in g if x is not None] or [np.nan] for k, g in groups.items()}
    for i, values in enumerate(groups.values()):
        ax.bar(i, np.nanmean(values), alpha=0.6)
        ax.scatter([i] * len(values), values, color="k", s=10)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set(
        ylabel="standalone test accuracy (%)",
        title=f"(c) matched MAdds, p={_fmt(v['welch_p'])}" + ("; (d) L&R" if a else ""),
    )
    ax = axes[4]
    for lr, c in payload["theta_lr_choice"]["by_lr"].items():
        ax.plot(
            range(1, len(c["diagnostics"]) + 1),
            [d["ops_before"] - d["ops_after"] for d in c["diagnostics"]],
            marker="o",
            label=f"theta_lr {lr}: {c['mean']:.1f}%",
        )
    ax.set(xlabel="round", ylabel="operations dropped (simplification)", title="(f) seed 0: fitness learning rate")
    ax.legend(fontsize=8)
    ax = axes[5]
    n = payload["nasbench201"]
    groups = {**{f"NSE\ntheta_lr {lr}": v for lr, v in n["nse"].items()}, "SPOS +\nevolution": n["spos"]}
    for i, values in enumerate(groups.values()):
        ax.bar(i, np.mean(values) if values else np.nan, alpha=0.6)
        ax.scatter([i] * len(values), values, color="k", s=10)
    ax.axhline(n["window"]["mean"], ls=":", color="gray", label="window mean (random)")
    ax.axhline(n["window"]["best"], ls="--", color="gray", label="window best")
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    low = min([x for v in groups.values() for x in v] + [n["window"]["mean"]])
    ax.set(
        ylabel="NAS-Bench-201 CIFAR-10 accuracy (%)",
        title="(e) fitness-estimator test, cost window",
        ylim=(low - 2, 95),
    )
    ax.legend(fontsize=8)
    save_figure(fig, folder / "nse.png", dpi=100)


if __name__ == "__main__":
    main()
