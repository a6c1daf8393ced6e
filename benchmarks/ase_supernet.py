"""ASE-NAS end to end on the shared supernet against SPOS + evolution: the architecture each returns,
scored by the NAS-Bench-201 table (issue 16, item 6).

    python -m benchmarks.ase_supernet --seeds 4 --parallel 2 --epochs 5 --queries 100

Per seed: the NAS-Bench-201 supernet (C=16, N=1) trains on CIFAR-10 at 16x16 (FACTS.md's CPU rank
setting) by uniform single-path sampling. That is Algorithm 1 line 1 of ASE-NAS and SPOS's training
alike, so it runs once per seed and every method searches the *same* trained weights: equal training
steps by construction. Then each method spends ``--queries`` evaluations on it (inherited weights,
BatchNorm recalibrated, ``--eval-images`` validation images each):

* ``ase``: ``ASESearcher`` with the library defaults (``train_steps=0``: the supernet is trained);
* ``ase_prior``: the same with the zero-cost proxy prior of ``benchmarks.nasbench201`` (free: no query);
* ``spos``: SPOS's evolution (``SPOSSearcher(train_steps=0)``), population 20, 10 mutations and 10
  crossovers a generation, stopped at the same number of evaluations;
* ``random``: the best of ``--queries`` random cells by supernet accuracy.

Each method's returned architecture is looked up in the table (CIFAR-10 test accuracy after 200 epochs):
the number a user cares about. Seeds are 1..N (seed 0 is the one settings were chosen on); each runs in
its own single-threaded process, ``--parallel`` at a time. Writes ``results/ase/supernet.{json,md,png}``.
"""

from __future__ import annotations

import argparse
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
    train,
    welch_p,
    write_json,
    write_markdown,
)

METHODS = ("ase", "ase_prior", "spos", "random")
TABLE_OPTIMUM = 94.37  # the best CIFAR-10 test accuracy in the table


def make_searcher(method: str, space: Any, seed: int, queries: int) -> Any:
    from benchmarks.nasbench201 import PRIOR_POOL, prior
    from tune_spacenas.searchers import ASESearcher, RandomSearcher, SPOSSearcher
    from tune_spacenas.searchers.evolution import EvolutionSettings

    common = {"metric": "accuracy", "mode": "max", "seed": seed, "max_queries": queries}
    if method == "ase":
        return ASESearcher(space, **common)
    if method == "ase_prior":
        return ASESearcher(space, prior=prior(), prior_pool=PRIOR_POOL, **common)
    if method == "spos":
        evolution = EvolutionSettings(population=20, generations=10**6, parents=10, mutations=10, crossovers=10)
        return SPOSSearcher(space, train_steps=0, evolution=evolution, eval_batch=10, **common)
    return RandomSearcher(space, **common)


def one_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    import torch

    from tune_spacenas.runner import InProcessSupernet, run_in_process
    from tune_spacenas.spaces import NASBench201Space
    from tune_spacenas.tables import NASBench201Table

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    space = NASBench201Space(channels=16, cells_per_stage=1, input_size=16)
    spec = cifar10_spec(
        space,
        16,
        init_seed=seed,
        batch_size=128,
        lr=0.05,
        eval_images=args.eval_images,
        recalibration_batches=args.recalibration_batches,
    )
    runner = InProcessSupernet(spec)
    steps = int(args.epochs * 45_000 / spec.batch_size)

    def progress(done: int, result: dict[str, Any]) -> None:
        print(f"[seed {seed}] step {done}/{steps} loss {result['loss']:.3f}", flush=True)

    seconds = train(runner, steps, 250, spec.lr, seed, progress=progress)
    table = NASBench201Table.load()
    out: dict[str, Any] = {"seed": seed, "train_steps": steps, "train_seconds": seconds, "methods": {}}
    for method in args.methods:
        searcher = make_searcher(method, space, seed, args.queries)
        start = time.perf_counter()
        run_in_process(searcher, runner)
        best = searcher.best_architecture()
        out["methods"][method] = {
            "arch": best,
            "table_test_accuracy": table.query(best, "cifar10"),
            "evaluations": searcher.queries,
            "search_seconds": time.perf_counter() - start,
        }
        print(
            f"[seed {seed}] {method}: {best} -> {out['methods'][method]['table_test_accuracy']:.2f}% "
            f"({searcher.queries} evaluations, {out['methods'][method]['search_seconds']:.0f} s)",
            flush=True,
        )
    return out


def plot(finals: dict[str, list[float]], seeds: list[int], path: Path) -> None:
    fig, ax = new_figure()
    for i, values in enumerate(finals.values()):
        ax.scatter([i] * len(values), values, alpha=0.7)
        for seed, value in zip(seeds, values):
            ax.annotate(str(seed), (i + 0.05, value), fontsize=7)
        ax.errorbar(i + 0.2, np.mean(values), yerr=np.std(values, ddof=1) if len(values) > 1 else 0, fmt="ks")
    ax.axhline(TABLE_OPTIMUM, color="k", lw=0.8)
    ax.set_xticks(range(len(finals)), list(finals))
    ax.set_ylabel("returned architecture: table CIFAR-10 test accuracy (%)")
    ax.set_title("Search on a CPU-trained supernet (16x16, C=16, N=1); numbers: seeds")
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4, help="seeds 1..N")
    parser.add_argument("--epochs", type=float, default=5.0, help="supernet training epochs (45,000 images)")
    parser.add_argument("--queries", type=int, default=100, help="evaluations per method")
    parser.add_argument("--eval-images", type=int, default=500, help="validation images per evaluation")
    parser.add_argument("--recalibration-batches", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "ase" / "supernet.json")
    args = parser.parse_args()
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; known: {list(METHODS)}")
    seeds = list(range(1, args.seeds + 1))
    with process_pool(args.parallel) as pool:
        runs = pool.starmap(one_seed, [(args, seed) for seed in seeds])
    finals = {m: [r["methods"][m]["table_test_accuracy"] for r in runs] for m in args.methods}
    write_json(
        args.out,
        {
            "setting": "NAS-Bench-201 supernet C=16 N=1, CIFAR-10 16x16, batch 128, SGD lr 0.05 cosine",
            "epochs": args.epochs,
            "queries": args.queries,
            "eval_images": args.eval_images,
            "seeds": seeds,
            "runs": runs,
            "table_test_accuracy": finals,
        },
    )
    rows = []
    for m, values in finals.items():
        mean, std = mean_std(values)
        vs_spos = (
            ""
            if m == "spos" or "spos" not in finals
            else (f"{mean - np.mean(finals['spos']):+.2f} (p {welch_p(values, finals['spos']):.2g})")
        )
        rows.append(
            [
                m,
                f"{mean:.2f} +- {std:.2f}",
                " / ".join(f"{v:.2f}" for v in values),
                vs_spos,
                f"{np.mean([r['methods'][m]['evaluations'] for r in runs]):.0f}",
                f"{np.mean([r['methods'][m]['search_seconds'] for r in runs]):.0f}",
            ]
        )
    write_markdown(
        args.out.with_suffix(".md"),
        f"ASE-NAS vs SPOS + evolution on one supernet, {len(runs)} seeds",
        ["method", "table test accuracy (mean +- std)", "per seed", "vs spos (Welch p)", "evaluations", "search s"],
        rows,
        notes=f"Supernet trained once per seed ({runs[0]['train_steps']} steps = {args.epochs:g} epochs, "
        f"about {np.mean([r['train_seconds'] for r in runs]) / 60:.1f} min on one thread) and shared "
        f"by every method; {args.queries} evaluations each on {args.eval_images} validation images. "
        f"Seeds {seeds[0]}-{seeds[-1]}. Table optimum {TABLE_OPTIMUM}.",
    )
    plot(finals, seeds, args.out.with_suffix(".png"))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
