"""Search quality on the NAS-Bench-201 table: N independent searches per method under a query budget.

    python -m benchmarks.nasbench201 --methods random,reinforce,regevo,tpe --runs 100 --dataset cifar10 \
        --queries 100 --seed 0 --out benchmarks/results/nasbench201/cifar10.json

Protocol (../shared/DESIGN.md): the reward is the table's 200-epoch test accuracy on ``--dataset`` (our
copy has no 12-epoch validation accuracy); the budget counts *distinct* architectures, a repeated
suggestion is answered from the run's cache at no cost. A run returns the best architecture it queried
(by reward) and is scored by its test accuracy. Searchers are driven in-process through the Searcher API
(``suggest``/``on_trial_complete``); ``--check-tune`` also runs the first seed of every method through a
real ``tune.run`` and checks it returns the same architecture.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import RESULTS, mean_std, welch_p, write_json, write_markdown
from tune_spacenas.analysis import best_so_far, plot_curves
from tune_spacenas.runner import run_in_process
from tune_spacenas.searchers import RandomSearcher, RegularizedEvolutionSearcher, REINFORCESearcher
from tune_spacenas.spaces import NASBench201Space
from tune_spacenas.tables.nasbench201 import TEST_ACCURACY, canonical_dataset
from tune_spacenas.trainables.table import evaluate_on_table

SearcherFactory = Callable[[NASBench201Space, int, int, str], Any]

# Independent reference implementations, mean over 300 runs (TPE: 100), from ../shared/FACTS.md.
REFERENCE = {
    "random": {"cifar10": 93.85, "cifar100": 71.55, "ImageNet16-120": 45.61},
    "regevo": {"cifar10": 94.21, "cifar100": 72.75, "ImageNet16-120": 46.52},
    "tpe": {"cifar10": 94.33, "cifar100": 73.31, "ImageNet16-120": 46.81},
    "optimum": {"cifar10": 94.37, "cifar100": 73.51, "ImageNet16-120": 47.31},
}


def _ours(cls: type, **fixed: Any) -> SearcherFactory:
    def make(space: NASBench201Space, seed: int, queries: int, dataset: str) -> Any:
        return cls(space=space, metric="accuracy", mode="max", seed=seed, max_queries=queries, **fixed)

    return make


def _tpe(space: NASBench201Space, seed: int, queries: int, dataset: str) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = OptunaSearch(metric="accuracy", mode="max", seed=seed)
    searcher.set_search_properties("accuracy", "max", param_space(space, dataset))
    return searcher


METHODS: dict[str, SearcherFactory] = {
    "random": _ours(RandomSearcher),
    "reinforce": _ours(REINFORCESearcher),
    "regevo": _ours(RegularizedEvolutionSearcher, population_size=10, tournament_size=3),
    "tpe": _tpe,
}


def register_method(name: str, factory: SearcherFactory) -> None:
    """Add a method to the harness (the ASE module registers ``ase`` and its ablations this way)."""
    METHODS[name] = factory


def param_space(space: NASBench201Space, dataset: str) -> dict[str, Any]:
    return {**space.param_space(), "dataset": dataset}


def one_search(method: str, seed: int, queries: int, dataset: str) -> list[float]:
    """Rewards of the distinct architectures one search queried, in query order."""
    space = NASBench201Space()
    searcher = METHODS[method](space, seed, queries, dataset)
    rewards: list[float] = []
    run_in_process(searcher, evaluate_on_table, max_queries=queries, param_space=param_space(space, dataset),
                   space=space, on_result=lambda config, result: rewards.append(result["accuracy"]))
    return rewards


def tune_search(method: str, seed: int, queries: int, dataset: str, storage: str) -> float:
    """The same search through a real ``tune.run`` (one trial at a time, so results arrive in the same
    order as in-process): the test accuracy of the architecture it returns."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from tune_spacenas.trainables import nasbench201_trainable

    space = NASBench201Space()
    searcher = METHODS[method](space, seed, queries, dataset)
    analysis = tune.run(nasbench201_trainable, config=param_space(space, dataset), metric="accuracy", mode="max",
                        search_alg=ConcurrencyLimiter(searcher, 1), num_samples=-1, reuse_actors=True,
                        storage_path=storage, verbose=0)
    return max(t.last_result["accuracy"] for t in analysis.trials if t.last_result)


def run_benchmark(methods: list[str], runs: int, queries: int, dataset: str, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in methods:
        curves = np.array([best_so_far(one_search(method, seed + r, queries, dataset), queries) for r in range(runs)])
        final = curves[:, -1].tolist()
        mean, std = mean_std(final)
        out[method] = {"test_mean": mean, "test_std": std, "final_test": final, "curve_mean": curves.mean(0).tolist(),
                       "curve_std": curves.std(0).tolist(), "_curves": curves}
        print(f"{dataset:>15} {method:>12}: {mean:.2f} +- {std:.2f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="random,reinforce,regevo,tpe")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--check-tune", action="store_true", help="also run seed 0 of each method through tune.run")
    args = parser.parse_args()
    import_extensions()
    dataset = canonical_dataset(args.dataset)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {sorted(METHODS)}")
    out = args.out or RESULTS / "nasbench201" / f"{dataset}.json"
    results = run_benchmark(methods, args.runs, args.queries, dataset, args.seed)
    if args.check_tune:
        check_tune(results, methods, args, dataset, out.parent)
    report(results, args, dataset, out)


def import_extensions() -> None:
    """Methods that live in other modules register themselves on import."""
    import importlib
    import sys

    # Run as ``python -m``, this module is ``__main__``: extensions importing it by name must find it here.
    sys.modules.setdefault("benchmarks.nasbench201", sys.modules[__name__])
    for module in ("benchmarks.nasbench201_ase",):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def check_tune(results: dict[str, Any], methods: list[str], args: argparse.Namespace, dataset: str, folder: Path) -> None:
    import tempfile

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as storage:
        # Tune's own TPE is not ours to check: under tune.run its repeated suggestions cost trials.
        for method in [m for m in methods if m != "tpe"]:
            via_tune = tune_search(method, args.seed, args.queries, dataset, storage)
            in_process = results[method]["final_test"][0]
            results[method]["tune_check"] = {"tune_run": via_tune, "in_process": in_process,
                                             "same": bool(abs(via_tune - in_process) < 1e-9)}
            print(f"{method}: tune.run {via_tune:.2f} vs in-process {in_process:.2f}", flush=True)
    ray.shutdown()


def report(results: dict[str, Any], args: argparse.Namespace, dataset: str, out: Path) -> None:
    curves = {m: r.pop("_curves") for m, r in results.items()}
    payload = {"dataset": dataset, "reward": f"{TEST_ACCURACY} on {dataset} (200-epoch test accuracy; our table has "
                                             "no 12-epoch validation accuracy)",
               "budget": {"queries": args.queries, "rule": "distinct architectures; repeats answered from the run's cache"},
               "runs": args.runs, "seed": args.seed, "methods": results}
    write_json(out, payload)
    baseline = results.get("random", {}).get("final_test")
    rows = []
    for method, r in results.items():
        p = "" if baseline is None or method == "random" else f"{welch_p(r['final_test'], baseline):.2g}"
        ref = REFERENCE.get(method, {}).get(dataset, "")
        tune_check = r.get("tune_check", {}).get("same", "")
        rows.append([method, f"{r['test_mean']:.2f} +- {r['test_std']:.2f}", p, ref, tune_check])
    write_markdown(out.with_suffix(".md"), f"NAS-Bench-201 search, {dataset}, {args.queries} queries, {args.runs} runs",
                   ["method", "test accuracy (mean +- std)", "Welch p vs random", "reference (FACTS.md)",
                    "tune.run == in-process"], rows,
                   notes=f"Reward: 200-epoch test accuracy on {dataset}. Optimum of the table: "
                         f"{REFERENCE['optimum'][dataset]}.")
    plot_curves(curves, out.with_suffix(".png"), title=f"NAS-Bench-201 {dataset}: best so far ({args.runs} runs, std band)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
