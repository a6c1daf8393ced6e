"""Search quality on the NAS-Bench-201 table: N independent searches per method under query budgets.

    python -m benchmarks.nasbench201 --methods random,reinforce,regevo,regevo_warm,tpe,tpe_warm,ase,ase_prior \
        --runs 100 --seed 1 --dataset cifar10 --budgets 50,100,300

Protocol (../shared/DESIGN.md): the reward is the table's 200-epoch test accuracy on ``--dataset`` (our
copy has no 12-epoch validation accuracy); the budget counts *distinct* architectures, a repeated
suggestion is answered from the run's cache at no cost. A run returns the best architecture it queried
(by reward) and is scored by its test accuracy. Run ``r`` of every method uses seed ``--seed + r``.
Searchers are driven in-process through the Searcher API (``suggest``/``on_trial_complete``);
``--check-tune`` also runs the first seed of every method through a real ``tune.run`` and checks it
returns the same architecture.

A method whose behaviour does not depend on its budget (every one but ASE, whose K and M follow the
budget) runs once at the largest budget; its result at a smaller budget is its best-so-far curve
there, which is exactly what a run with that budget would return.

Warm starts (``*_warm``, ``ase_prior``): the prior is the zero-cost proxy ensemble ``PRIOR_PROXIES``
precomputed for every cell (``tune_spacenas/tables/nasbench201_proxies.parquet``; it costs no query).
``tpe_warm`` (``points_to_evaluate``) and ``regevo_warm`` (``initial_population``) evaluate the prior's
best ``WARM_POINTS`` architectures first; ``ase_prior`` takes its initial centres (and the centres of
reseeded subspaces) from the front of the same ranking (``searchers.prior.select_by_prior``), and its
report counts how many it used, so the baselines never get fewer prior-chosen architectures than ASE.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import RESULTS, mean_std, welch_p, write_json, write_markdown
from tune_spacenas.analysis import best_so_far, plot_curves
from tune_spacenas.runner import run_in_process
from tune_spacenas.searchers import (
    RandomSearcher,
    RegularizedEvolutionSearcher,
    REINFORCESearcher,
)
from tune_spacenas.searchers.prior import select_by_prior
from tune_spacenas.spaces import NASBench201Space
from tune_spacenas.spaces.base import OPS_KEY, Architecture
from tune_spacenas.tables.nasbench201 import TEST_ACCURACY, canonical_dataset
from tune_spacenas.tables.proxies import nasbench201_prior
from tune_spacenas.trainables.table import evaluate_on_table

SearcherFactory = Callable[[NASBench201Space, int, int, str], Any]

# Independent reference implementations at 100 queries, mean over 300 runs (TPE: 100), ../shared/FACTS.md.
REFERENCE = {
    "random": {"cifar10": 93.85, "cifar100": 71.55, "ImageNet16-120": 45.61},
    "regevo": {"cifar10": 94.21, "cifar100": 72.75, "ImageNet16-120": 46.52},
    "tpe": {"cifar10": 94.33, "cifar100": 73.31, "ImageNet16-120": 46.81},
    "optimum": {"cifar10": 94.37, "cifar100": 73.51, "ImageNet16-120": 47.31},
}
# The prior: the rank mean of three proxies (chosen by Kendall tau on the 1,000-cell sample of
# benchmarks/results/proxies/scales.md, never on search results), over every cell of the space.
PRIOR_PROXIES = ("synflow", "naswot", "jacov")
PRIOR_POOL: int | None = None
WARM_POINTS = 10


def _ours(cls: type, **fixed: Any) -> SearcherFactory:
    def make(space: NASBench201Space, seed: int, queries: int, dataset: str) -> Any:
        return cls(space=space, metric="accuracy", mode="max", seed=seed, max_queries=queries, **fixed)

    return make


@lru_cache(maxsize=1)
def prior() -> dict[str, float]:
    return nasbench201_prior(PRIOR_PROXIES)


def warm_architectures(space: NASBench201Space, seed: int, count: int = WARM_POINTS) -> list[Architecture]:
    """The prior's best ``count`` architectures for run ``seed``: what every warm-started method starts from."""
    return select_by_prior(prior(), space, count, np.random.default_rng(seed), pool=PRIOR_POOL)


def _tpe(warm: bool) -> SearcherFactory:
    def make(space: NASBench201Space, seed: int, queries: int, dataset: str) -> Any:
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # Optuna names the nested param_space's choices "ops/<slot>"
        points = (
            [
                {f"{OPS_KEY}/{slot.name}": op for slot, op in zip(space.slots, space.op_names(arch))}
                for arch in warm_architectures(space, seed)
            ]
            if warm
            else None
        )
        searcher = OptunaSearch(metric="accuracy", mode="max", seed=seed, points_to_evaluate=points)
        searcher.set_search_properties("accuracy", "max", param_space(space, dataset))
        return searcher

    return make


def _regevo_warm(space: NASBench201Space, seed: int, queries: int, dataset: str) -> Any:
    return _ours(
        RegularizedEvolutionSearcher,
        population_size=10,
        tournament_size=3,
        initial_population=warm_architectures(space, seed),
    )(space, seed, queries, dataset)


METHODS: dict[str, SearcherFactory] = {
    "random": _ours(RandomSearcher),
    "reinforce": _ours(REINFORCESearcher),
    "regevo": _ours(RegularizedEvolutionSearcher, population_size=10, tournament_size=3),
    "regevo_warm": _regevo_warm,
    "tpe": _tpe(warm=False),
    "tpe_warm": _tpe(warm=True),
}
BUDGET_AWARE: set[str] = set()


def register_method(name: str, factory: SearcherFactory, budget_aware: bool = False) -> None:
    """Add a method to the harness (the ASE module registers ``ase`` and its variants this way);
    ``budget_aware``: its searcher behaves differently under different budgets, so it runs per budget."""
    METHODS[name] = factory
    if budget_aware:
        BUDGET_AWARE.add(name)


def param_space(space: NASBench201Space, dataset: str) -> dict[str, Any]:
    return {**space.param_space(), "dataset": dataset}


def one_search(method: str, seed: int, queries: int, dataset: str) -> tuple[list[float], Any]:
    """Rewards of the distinct architectures one search queried, in query order, and the searcher."""
    space = NASBench201Space()
    searcher = METHODS[method](space, seed, queries, dataset)
    rewards: list[float] = []
    run_in_process(
        searcher,
        evaluate_on_table,
        max_queries=queries,
        param_space=param_space(space, dataset),
        space=space,
        on_result=lambda config, result: rewards.append(result["accuracy"]),
    )
    return rewards, searcher


def tune_search(method: str, seed: int, queries: int, dataset: str, storage: str) -> float:
    """The same search through a real ``tune.run`` (one trial at a time, so results arrive in the same
    order as in-process): the test accuracy of the architecture it returns."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from tune_spacenas.trainables import nasbench201_trainable

    space = NASBench201Space()
    searcher = METHODS[method](space, seed, queries, dataset)
    analysis = tune.run(
        nasbench201_trainable,
        config=param_space(space, dataset),
        metric="accuracy",
        mode="max",
        search_alg=ConcurrencyLimiter(searcher, 1),
        num_samples=-1,
        reuse_actors=True,
        storage_path=storage,
        verbose=0,
    )
    return max(t.last_result["accuracy"] for t in analysis.trials if t.last_result)


def run_method(method: str, runs: int, budgets: list[int], dataset: str, seed: int) -> dict[int, dict[str, Any]]:
    """Per budget: final test accuracies, curves and (ASE) the searcher's counters, over ``runs`` seeds."""
    plan = budgets if method in BUDGET_AWARE else [max(budgets)]
    out: dict[int, dict[str, Any]] = {}
    for budget in plan:
        curves, counters = [], []
        for r in range(runs):
            rewards, searcher = one_search(method, seed + r, budget, dataset)
            curves.append(best_so_far(rewards, budget))
            counters.append(
                {
                    k: getattr(searcher, k)
                    for k in ("prior_picks", "reseeds", "fallbacks", "resamples")
                    if hasattr(searcher, k)
                }
            )
        curves = np.array(curves)
        for b in budgets if method not in BUDGET_AWARE else [budget]:
            final = curves[:, b - 1].tolist()
            mean, std = mean_std(final)
            out[b] = {
                "test_mean": mean,
                "test_std": std,
                "final_test": final,
                "_curves": curves[:, :b],
                "curve_mean": curves[:, :b].mean(0).tolist(),
                "curve_std": curves[:, :b].std(0).tolist(),
            }
            if counters and counters[0]:
                out[b]["counters"] = {
                    k: {"mean": float(np.mean([c[k] for c in counters])), "max": int(max(c[k] for c in counters))}
                    for k in counters[0]
                }
    for b in budgets:
        print(
            f"{dataset:>15} {b:>4} queries {method:>12}: {out[b]['test_mean']:.2f} +- {out[b]['test_std']:.2f}",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="random,reinforce,regevo,regevo_warm,tpe,tpe_warm,ase,ase_prior")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--budgets", default="50,100,300", help="distinct queries, comma-separated")
    parser.add_argument("--seed", type=int, default=1, help="run r uses seed + r (settings were chosen on seed 0)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "nasbench201", help="folder for <dataset>_q<budget>.{json,md,png}"
    )
    parser.add_argument(
        "--check-tune", action="store_true", help="also run the first seed of each method through tune.run"
    )
    args = parser.parse_args()
    import_extensions()
    dataset = canonical_dataset(args.dataset)
    budgets = sorted({int(b) for b in args.budgets.split(",") if b})
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {sorted(METHODS)}")
    results = {m: run_method(m, args.runs, budgets, dataset, args.seed) for m in methods}
    by_budget = {b: {m: results[m][b] for m in methods} for b in budgets}
    if args.check_tune:
        check_tune(by_budget, methods, args.seed, dataset, budgets)
    for b in budgets:
        report(by_budget[b], args, dataset, b, args.out / f"{dataset}_q{b}.json")


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


def check_tune(
    by_budget: dict[int, dict[str, Any]], methods: list[str], seed: int, dataset: str, budgets: list[int]
) -> None:
    import tempfile

    import ray

    budget = 100 if 100 in budgets else budgets[0]
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as storage:
        # Tune's own TPE is not ours to check: under tune.run its repeated suggestions cost trials.
        for method in [m for m in methods if not m.startswith("tpe")]:
            via_tune = tune_search(method, seed, budget, dataset, storage)
            in_process = by_budget[budget][method]["final_test"][0]
            by_budget[budget][method]["tune_check"] = {
                "tune_run": via_tune,
                "in_process": in_process,
                "same": bool(abs(via_tune - in_process) < 1e-9),
            }
            print(f"{method}: tune.run {via_tune:.2f} vs in-process {in_process:.2f}", flush=True)
    ray.shutdown()


def report(results: dict[str, Any], args: argparse.Namespace, dataset: str, budget: int, out: Path) -> None:
    curves = {m: r.pop("_curves") for m, r in results.items()}
    payload = {
        "dataset": dataset,
        "reward": f"{TEST_ACCURACY} on {dataset} (200-epoch test accuracy; our table has "
        "no 12-epoch validation accuracy)",
        "budget": {"queries": budget, "rule": "distinct architectures; repeats answered from the run's cache"},
        "runs": args.runs,
        "seeds": [args.seed, args.seed + args.runs - 1],
        "prior": {"proxies": list(PRIOR_PROXIES), "pool": PRIOR_POOL, "warm_points": WARM_POINTS},
        "methods": results,
    }
    write_json(out, payload)
    rows = []
    for method, r in results.items():
        ps = [
            f"{welch_p(r['final_test'], results[o]['final_test']):.2g}" if o in results and o != method else ""
            for o in ("random", "tpe", "tpe_warm")
        ]
        ref = REFERENCE.get(method, {}).get(dataset, "") if budget == 100 else ""
        picks = r.get("counters", {}).get("prior_picks", {})
        rows.append(
            [
                method,
                f"{r['test_mean']:.2f} +- {r['test_std']:.2f}",
                *ps,
                ref,
                f"{picks['mean']:.1f} (max {picks['max']})" if picks else "",
                r.get("tune_check", {}).get("same", ""),
            ]
        )
    write_markdown(
        out.with_suffix(".md"),
        f"NAS-Bench-201 search, {dataset}, {budget} queries, {args.runs} runs "
        f"(seeds {args.seed}-{args.seed + args.runs - 1})",
        [
            "method",
            "test accuracy (mean +- std)",
            "Welch p vs random",
            "vs tpe",
            "vs tpe_warm",
            "reference (FACTS.md)",
            "prior-chosen archs",
            "tune.run == in-process",
        ],
        rows,
        notes=f"Reward: 200-epoch test accuracy on {dataset}. Optimum of the table: "
        f"{REFERENCE['optimum'][dataset]}. Warm starts: the best {WARM_POINTS} cells by the rank mean "
        f"of {', '.join(PRIOR_PROXIES)} (zero-cost proxies, no query).",
    )
    plot_curves(
        curves,
        out.with_suffix(".png"),
        title=f"NAS-Bench-201 {dataset}, {budget} queries: best so far ({args.runs} runs, sem band)",
        band="sem",
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
