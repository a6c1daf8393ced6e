"""ASE-NAS end to end on the shared supernet against SPOS + evolution: the architecture each returns,
scored by the NAS-Bench-201 table.

    python -m benchmarks.ase_supernet --seeds 3 --epochs 10 --queries 100

Per seed: the NAS-Bench-201 supernet (C=16, N=1) trains on CIFAR-10 at 16x16 (../shared/FACTS.md's CPU
rank setting) with uniform single-path sampling: that is Algorithm 1 line 1 of ASE-NAS and SPOS's
training alike, so it runs once and every method searches the *same* trained weights (equal training
steps by construction). Then each method spends ``--queries`` evaluations (inherited weights,
BatchNorm recalibrated, 1,000 validation images):

* ``ase``: ``ASESearcher`` with the library defaults (``train_steps=0``: the supernet is trained);
* ``ase_prior``: the same with the zero-cost proxy prior of ``benchmarks.nasbench201`` (free: no query);
* ``spos``: SPOS's evolution (``SPOSSearcher(train_steps=0)``), population 20, 10 mutations and 10
  crossovers a generation, stopped at the same number of evaluations;
* ``random``: the best of ``--queries`` random cells by supernet accuracy.

Each method's returned architecture is looked up in the table (CIFAR-10 test accuracy after 200 epochs),
the number a user cares about. Seeds train in separate single-threaded processes, ``--parallel`` at a time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS, mean_std, welch_p, write_json, write_markdown

METHODS = ("ase", "ase_prior", "spos", "random")


def make_searcher(method: str, space: Any, seed: int, queries: int) -> Any:
    from benchmarks.nasbench201 import PRIOR_POOL, prior
    from tune_spacenas.searchers import ASESearcher, RandomSearcher, SPOSSearcher

    common = {"space": space, "metric": "accuracy", "mode": "max", "seed": seed, "max_queries": queries}
    if method == "ase":
        return ASESearcher(**common)
    if method == "ase_prior":
        return ASESearcher(prior=prior(), prior_pool=PRIOR_POOL, **common)
    if method == "spos":
        return SPOSSearcher(train_steps=0, population=20, generations=queries, parents=10, mutations=10,
                            crossovers=10, eval_batch=20, **common)
    return RandomSearcher(**common)


def one_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    import torch

    from benchmarks.rank import train
    from tune_spacenas.data import DataSpec
    from tune_spacenas.runner import InProcessSupernet, run_in_process
    from tune_spacenas.spaces import NASBench201Space
    from tune_spacenas.supernet.spec import SupernetSpec
    from tune_spacenas.tables import NASBench201Table

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    space = NASBench201Space(channels=16, cells_per_stage=1, input_size=16)
    spec = SupernetSpec(space, DataSpec("cifar10", resolution=16, seed=0), batch_size=128, lr=0.05, init_seed=seed,
                        eval_images=1000)
    runner = InProcessSupernet(spec)
    steps = args.epochs * runner.worker.data.size("train") // spec.batch_size
    seconds = train(runner, steps, 500, spec.lr, seed,
                    progress=lambda done, r: print(f"[seed {seed}] step {done}/{steps} loss {r['loss']:.3f} "
                                                   f"{r['images_per_s']:.0f} img/s", flush=True))
    table = NASBench201Table.load()
    out: dict[str, Any] = {"seed": seed, "train_steps": steps, "train_seconds": seconds, "methods": {}}
    for method in args.methods:
        searcher = make_searcher(method, space, seed, args.queries)
        start, evaluated = time.perf_counter(), []
        run_in_process(searcher, runner, on_result=lambda c, r: evaluated.append(len(c.get("archs", [c.get("arch")]))))
        best = searcher.best_architecture()
        out["methods"][method] = {"arch": best, "table_test_accuracy": table.query(best, "cifar10"),
                                  "evaluations": int(sum(evaluated)), "search_seconds": time.perf_counter() - start}
        print(f"[seed {seed}] {method}: {best} -> {out['methods'][method]['table_test_accuracy']:.2f}% "
              f"({sum(evaluated)} evaluations)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "ase" / "supernet.json")
    args = parser.parse_args()
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; known: {list(METHODS)}")
    with mp.get_context("spawn").Pool(args.parallel) as pool:
        runs = pool.starmap(one_seed, [(args, seed) for seed in range(1, args.seeds + 1)])
    finals = {m: [r["methods"][m]["table_test_accuracy"] for r in runs] for m in args.methods}
    write_json(args.out, {"setting": "NAS-Bench-201 supernet C=16 N=1, CIFAR-10 16x16, batch 128, SGD lr 0.05 cosine",
                          "epochs": args.epochs, "queries": args.queries, "runs": runs, "table_test_accuracy": finals})
    rows = []
    for m, values in finals.items():
        mean, std = mean_std(values)
        p = "" if m == "spos" or "spos" not in finals else f"{welch_p(values, finals['spos']):.2g}"
        rows.append([m, f"{mean:.2f} +- {std:.2f}", " / ".join(f"{v:.2f}" for v in values), p,
                     f"{np.mean([r['methods'][m]['evaluations'] for r in runs]):.0f}"])
    write_markdown(args.out.with_suffix(".md"), f"ASE-NAS vs SPOS + evolution on the supernet, {len(runs)} seeds",
                   ["method", "table test accuracy (mean +- std)", "per seed", "Welch p vs spos", "evaluations"], rows,
                   notes=f"Supernet trained once per seed ({runs[0]['train_steps']} steps, {args.epochs} epochs, "
                         f"about {np.mean([r['train_seconds'] for r in runs]) / 60:.0f} min on one thread), shared by "
                         f"every method; {args.queries} evaluations each. Table optimum 94.37.")
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
