"""NSE on CIFAR-10: the paper's claims, scaled to two CPU cores (about an hour).

    flock /tmp/tune_spacenas_bench.lock nice python -m benchmarks.nse --seeds 3 \\
        --out benchmarks/results/nse/nse.json

Setting: Table 5's macro-architecture at width 0.25 with two layers per stage (12 multi-branch layers:
6 normal, 6 reduction) on CIFAR-10 average-pooled to 16x16 (45,000 training / 5,000 validation
images), the 27-operation pool of A.1 shuffled layer-wise with a fixed seed, K=5, rounds until the pool
runs out ((27 - 1) // (5 - 1) = 6). The MAdds target is scaled to the small network (tau = 1.5M, about
a third of a uniformly drawn K=5 architecture, as 300M is of the paper's 224x224 one) and alpha by
(300 / tau)^2 so the resource term weighs a relative deviation as in the paper. Standalone accuracy:
the architecture trained alone from scratch for ``--standalone-steps`` steps (cosine learning rate),
tested on 5,000 CIFAR-10 test images, mean over ``--seeds`` training seeds.

Parts: (a) continual convergence (Fig. 5a): standalone accuracy of up to 5 Pareto architectures per
round; (b) search-space quality (Fig. 4b): random architectures of round 1's initial, simplified and
aggregated subsets inside the MAdds window; (c) necessity of evolution (Table 3): NSE's final
architecture vs SPOS (single-path uniform sampling on the full 27-operation space, the same number of
training steps, evolution under the same MAdds bound); (d) Lock & Rehearse on/off; (e) the noise-free
anchor: NSE's single-branch special case on NAS-Bench-201 vs SPOS + evolution at the same training
budget, scored by the table's CIFAR-10 accuracy. Every part runs in-process (``run_in_process``) in
two single-threaded worker processes.
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
    standalone,
    welch_p,
    write_json,
    write_markdown,
)

SMALL_STAGES = ((16, 1, 1), (24, 2, 2), (40, 2, 2), (80, 2, 2), (96, 2, 1), (192, 2, 2), (320, 1, 1))
PAPER_TAU, PAPER_ALPHA = 300.0, 1e-5


# --------------------------------------------------------------------------------------------------
# Set-up shared by every part
# --------------------------------------------------------------------------------------------------
def space_for(args: argparse.Namespace, max_branches: int | None = None):
    from tune_spacenas.spaces import MultiBranchSpace

    return MultiBranchSpace(width_mult=args.width, input_size=args.resolution, num_classes=10,
                            stages=SMALL_STAGES, max_branches=max_branches)


def spec_for(args: argparse.Namespace, space: Any, seed: int, lr: float, **kwargs: Any):
    return cifar10_spec(space, args.resolution, init_seed=seed, train_size=args.train_size,
                        batch_size=args.batch_size, lr=lr, **kwargs)


def window(args: argparse.Namespace) -> tuple[float, float]:
    return 0.9 * args.tau, 1.1 * args.tau


def nse_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    alpha = PAPER_ALPHA * (PAPER_TAU / args.tau) ** 2
    return dict(ops_per_layer=args.k, steps_per_round=args.steps_per_round, steps_per_trial=args.steps_per_trial,
                lr=args.lr, theta_lr=args.theta_lr, alpha=alpha, beta=2.0, tau=args.tau, constraint=window(args),
                samples=args.samples, edge_samples=args.edge_samples, eval_batch=25, metric="accuracy", mode="max")


def _log(tag: str, message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} {tag}] {message}", flush=True)


# --------------------------------------------------------------------------------------------------
# Searches
# --------------------------------------------------------------------------------------------------
def nse_search(args: argparse.Namespace, seed: int, lock_and_rehearse: bool) -> dict[str, Any]:
    """One NSE search on the small multi-branch space; its rounds, fronts and final architecture."""
    from tune_spacenas.runner import InProcessSupernet, run_in_process
    from tune_spacenas.searchers import NSESearcher

    tag = f"nse{'' if lock_and_rehearse else '-noLR'} s{seed}"
    space = space_for(args)
    runner = InProcessSupernet(spec_for(args, space, seed, args.lr, eval_images=args.val_images), "cpu")
    searcher = NSESearcher(space=space, seed=seed, lock_and_rehearse=lock_and_rehearse, **nse_kwargs(args))
    start = time.perf_counter()

    def progress(config: dict, result: dict) -> None:
        if searcher.phase != "training" and searcher.queue.drained:
            _log(tag, f"{searcher.progress()} ({time.perf_counter() - start:.0f} s)")

    run_in_process(searcher, runner, on_result=progress)
    return {"seed": seed, "lock_and_rehearse": lock_and_rehearse, "rounds": searcher.rounds,
            "best": searcher.best_architecture(), "steps": sum(r["steps"] for r in searcher.rounds),
            "seconds": time.perf_counter() - start}


def spos_search(args: argparse.Namespace, seed: int, steps: int) -> dict[str, Any]:
    """SPOS on the full 27-operation pool: single-path uniform sampling (N_l = 1), then evolution under
    the MAdds bound of NSE's window."""
    from tune_spacenas.runner import InProcessSupernet, run_in_process
    from tune_spacenas.searchers import EvolutionSettings, SPOSSearcher

    space = space_for(args, max_branches=1)
    runner = InProcessSupernet(spec_for(args, space, seed, args.lr, eval_images=args.val_images), "cpu")
    searcher = SPOSSearcher(space=space, train_steps=steps, steps_per_trial=args.steps_per_trial, lr=args.lr, max_madds=window(args)[1] * 1e6, eval_batch=25, metric="accuracy", mode="max", seed=seed, evolution=EvolutionSettings(population=args.population, generations=args.generations, parents=5, mutations=args.population // 2, crossovers=args.population // 2))
    start = time.perf_counter()
    run_in_process(searcher, runner)
    best = searcher.best_architecture()
    _log(f"spos s{seed}", f"{steps} steps, best {best} ({time.perf_counter() - start:.0f} s)")
    return {"seed": seed, "best": best, "steps": steps, "evaluated": len(searcher.history),
            "seconds": time.perf_counter() - start}


def nb201_search(args: argparse.Namespace, method: str, seed: int) -> dict[str, Any]:
    """(e): NSE's single-branch case or SPOS + evolution on NAS-Bench-201 (C=16, N=1, 16x16) with the same
    training steps; the returned cell is scored by the table's CIFAR-10 test accuracy."""
    from tune_spacenas.runner import InProcessSupernet, run_in_process
    from tune_spacenas.searchers import EvolutionSettings, NSESearcher, SPOSSearcher
    from tune_spacenas.spaces import NASBench201Space
    from tune_spacenas.tables import NASBench201Table

    space = NASBench201Space(channels=16, cells_per_stage=1, input_size=args.resolution)
    steps = args.nb201_rounds * args.nb201_steps_per_round
    skeleton = "nasbench201+fitness" if method == "nse" else None
    runner = InProcessSupernet(spec_for(args, space, seed, args.lr, eval_images=args.val_images, skeleton=skeleton), "cpu")
    evaluations = args.nb201_evaluations
    if method == "nse":  # no resource term: the anchor asks for the most accurate cell
        searcher = NSESearcher(space=space, ops_per_layer=args.nb201_k, steps_per_round=args.nb201_steps_per_round,
                               steps_per_trial=args.steps_per_trial, lr=args.lr, theta_lr=args.theta_lr, alpha=0.0,
                               tau=1.0, constraint=(0.0, 1e9), samples=evaluations // args.nb201_rounds,
                               edge_samples=0, max_rounds=args.nb201_rounds, eval_batch=25, metric="accuracy",
                               mode="max", seed=seed)
    else:
        generations = 2
        searcher = SPOSSearcher(space=space, train_steps=steps, steps_per_trial=args.steps_per_trial, lr=args.lr, eval_batch=25, metric="accuracy", mode="max", seed=seed, evolution=EvolutionSettings(population=evaluations // generations, generations=generations, parents=5, mutations=evaluations // generations // 2, crossovers=evaluations // generations // 2))
    start = time.perf_counter()
    run_in_process(searcher, runner)
    best = searcher.best_architecture()
    table = NASBench201Table.load()
    truth = table.query(best, "cifar10")
    _log(f"nb201-{method} s{seed}", f"{best}: table {truth:.2f}% ({time.perf_counter() - start:.0f} s)")
    return {"method": method, "seed": seed, "best": best, "table_accuracy": truth, "steps": steps,
            "evaluated": len(searcher.history), "seconds": time.perf_counter() - start}


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
    sub = space.restrict([[o for o in ops] for ops in subset])
    low, high = window(args)
    rng, found = np.random.default_rng(seed), {}
    for _ in range(200_000):
        if len(found) >= count:
            break
        arch = sub.sample(rng)
        if low <= space.cost(arch).madds / 1e6 <= high:
            found.setdefault(space.to_string(arch), None)
    return list(found)


# --------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------
def _run(task: tuple) -> Any:
    kind, args, *rest = task
    return {"nse": nse_search, "spos": spos_search, "nb201": nb201_search, "standalone": trained_alone}[kind](args, *rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="standalone training seeds, and NAS-Bench-201 search seeds")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--tau", type=float, default=1.5, help="MAdds target in millions")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--theta-lr", type=float, default=0.1)
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
    parser.add_argument("--pareto-per-round", type=int, default=5)
    parser.add_argument("--quality-archs", type=int, default=6, help="(b): architectures per subset")
    parser.add_argument("--nb201-k", type=int, default=3)
    parser.add_argument("--nb201-rounds", type=int, default=2)
    parser.add_argument("--nb201-steps-per-round", type=int, default=600)
    parser.add_argument("--nb201-evaluations", type=int, default=60)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "nse" / "nse.json")
    args = parser.parse_args()
    start = time.perf_counter()
    seeds = list(range(args.seeds))

    with process_pool(args.parallel) as pool:
        searches = [("nse", args, 0, True), ("nse", args, 0, False)]
        searches += [("nb201", args, m, s) for s in seeds for m in ("nse", "spos")]
        found = pool.map(_run, searches, chunksize=1)
        main_run, ablation, nb201 = found[0], found[1], found[2:]
        # SPOS gets exactly NSE's training steps; it runs beside the first standalone trainings.
        spos_job = pool.apply_async(_run, (("spos", args, 0, main_run["steps"]),))
        _log("searches", f"NSE done after {time.perf_counter() - start:.0f} s")

        rng = np.random.default_rng(0)
        per_round = [_pick(r["front"], args.pareto_per_round, rng) for r in main_run["rounds"]]
        ablation_final = _pick(ablation["rounds"][-1]["front"], args.pareto_per_round, rng)
        first = main_run["rounds"][0]
        quality = {name: in_window(args, first[key], args.quality_archs, i)
                   for i, (name, key) in enumerate((("initial", "subsets"), ("simplified", "simplified"),
                                                    ("aggregated", "aggregated")))}
        archs = {a for group in per_round for a in group} | set(ablation_final) | {main_run["best"]}
        archs = (archs | {a for group in quality.values() for a in group}) - {None}
        tasks = [("standalone", args, a, s) for a in sorted(archs) for s in seeds]
        _log("standalone", f"{len(tasks)} trainings of {len(archs)} architectures")
        trained = pool.map(_run, tasks, chunksize=1)
        spos = spos_job.get()
        if spos["best"] not in archs | {None}:
            trained += pool.map(_run, [("standalone", args, spos["best"], s) for s in seeds], chunksize=1)
    accuracy: dict[str, list[float]] = {}
    for t in trained:
        accuracy.setdefault(t["arch"], []).append(t["accuracy"])
    madds = {t["arch"]: t["madds"] for t in trained}

    def summary(group: list[str]) -> dict[str, Any]:
        means = [float(np.mean(accuracy[a])) for a in group]
        return {"archs": group, "madds": [madds[a] for a in group], "per_seed": [accuracy[a] for a in group],
                "mean_per_arch": means, "mean": float(np.mean(means)) if means else None,
                "best": float(np.max(means)) if means else None}

    rounds = [{"front": r["front"], "front_supernet_accuracy": r["front_accuracy"], "front_madds": r["front_cost"],
               "subsets": r["subsets"], "simplified": r["simplified"], "aggregated": r["aggregated"],
               "locked": r["locked"], "sampled": r["sampled"], "edge": r["edge"], "rehearsed": r["rehearsed"],
               "standalone": summary(group)} for r, group in zip(main_run["rounds"], per_round)]
    payload = {
        "data": f"CIFAR-10 (shared JPEG Parquet) average-pooled to {args.resolution}x{args.resolution}, 45,000 train / "
                f"5,000 validation (supernet scoring, {args.val_images} images) / test ({args.test_images} images, standalone)",
        "budget": {"steps_per_round": args.steps_per_round, "rounds": len(main_run["rounds"]), "nse_steps": main_run["steps"],
                   "spos_steps": spos["steps"], "samples": args.samples, "edge_samples": args.edge_samples,
                   "standalone_steps": args.standalone_steps, "batch_size": args.batch_size,
                   "nb201_steps": args.nb201_rounds * args.nb201_steps_per_round, "nb201_evaluations": args.nb201_evaluations},
        "setting": {"space": f"Table 5 at width {args.width}, two layers per stage (12 layers), 27-op pool", "k": args.k,
                    "tau_madds_millions": args.tau, "window_millions": window(args),
                    "alpha": PAPER_ALPHA * (PAPER_TAU / args.tau) ** 2, "theta_lr": args.theta_lr},
        "seeds": seeds,
        "rounds": rounds,
        "space_quality": {name: summary(group) for name, group in quality.items()},
        "vs_spos": {"nse": accuracy.get(main_run["best"], []), "spos": accuracy.get(spos["best"], []),
                    "archs": {"nse": main_run["best"], "spos": spos["best"]},
                    "madds": {"nse": madds.get(main_run["best"]), "spos": madds.get(spos["best"])},
                    "welch_p": welch_p(accuracy[main_run["best"]], accuracy[spos["best"]])
                    if main_run["best"] and spos["best"] else None},
        "ablation": {"with_lr": rounds[-1]["standalone"], "without_lr": summary(ablation_final),
                     "rounds_with_lr": [r["front_accuracy"] for r in main_run["rounds"]],
                     "rounds_without_lr": [r["front_accuracy"] for r in ablation["rounds"]]},
        "nasbench201": {"nse": [r["table_accuracy"] for r in nb201 if r["method"] == "nse"],
                        "spos": [r["table_accuracy"] for r in nb201 if r["method"] == "spos"],
                        "runs": nb201, "table_optimum": _nb201_optimum()},
        "searches": {"nse": _strip(main_run), "nse_without_lr": _strip(ablation), "spos": spos},
        "wall_seconds": time.perf_counter() - start,
    }
    write_json(args.out, payload)
    write_markdown(args.out.with_suffix(".md"), "NSE on CIFAR-10 (CPU scale)", *report_rows(payload), notes=notes(payload))
    plot(payload, args.out.parent)
    _log("done", f"{payload['wall_seconds']:.0f} s; wrote {args.out}")


def _pick(front: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """Up to ``count`` Pareto architectures chosen at random (section 5.2)."""
    return list(front) if len(front) <= count else [front[i] for i in sorted(rng.choice(len(front), count, replace=False))]


def _strip(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "rounds"}


def _nb201_optimum() -> float:
    from tune_spacenas.tables import NASBench201Table

    return NASBench201Table.load().best("cifar10")[1]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.2f}"


def _mean_std(values: list[float]) -> str:
    return f"{_fmt(mean_std(values)[0])} +- {_fmt(mean_std(values)[1])}" if values else "n/a"


def report_rows(payload: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    header = ["claim", "NSE / treatment", "baseline", "note"]
    rows = []
    for i, r in enumerate(payload["rounds"]):
        s = r["standalone"]
        rows.append([f"(a) round {i + 1}: standalone mean / best of {len(s['archs'])} Pareto archs",
                     f"{_fmt(s['mean'])} / {_fmt(s['best'])}", "", f"front of {len(r['front'])}"])
    q = payload["space_quality"]
    rows.append(["(b) subset quality: mean standalone acc", f"aggregated {_fmt(q['aggregated']['mean'])}, simplified "
                 f"{_fmt(q['simplified']['mean'])}", f"initial {_fmt(q['initial']['mean'])}",
                 f"{len(q['initial']['archs'])} archs each in the MAdds window"])
    v = payload["vs_spos"]
    madds = {k: "" if m is None else f" ({m / 1e6:.2f}M MAdds)" for k, m in v["madds"].items()}
    rows.append(["(c) final architecture vs SPOS on the full pool", _mean_std(v["nse"]) + madds["nse"],
                 _mean_std(v["spos"]) + madds["spos"], f"Welch p = {_fmt(v['welch_p'])}"])
    a = payload["ablation"]
    rows.append(["(d) final-round Pareto archs: with vs without L&R (mean / best)",
                 f"{_fmt(a['with_lr']['mean'])} / {_fmt(a['with_lr']['best'])}",
                 f"{_fmt(a['without_lr']['mean'])} / {_fmt(a['without_lr']['best'])}", ""])
    n = payload["nasbench201"]
    rows.append(["(e) NAS-Bench-201 table accuracy of the returned cell", _mean_std(n["nse"]),
                 f"SPOS {_mean_std(n['spos'])}", f"optimum {n['table_optimum']:.2f}"])
    return header, rows


def notes(payload: dict[str, Any]) -> str:
    b = payload["budget"]
    return (f"Standalone accuracies: {b['standalone_steps']} steps of batch {b['batch_size']} from scratch, means over "
            f"seeds {payload['seeds']}; NSE trained {b['nse_steps']} supernet steps in {b['rounds']} rounds, SPOS the "
            f"same {b['spos_steps']}. Wall time {payload['wall_seconds'] / 60:.0f} min on 2 CPU cores.")


def plot(payload: dict[str, Any], folder: Path) -> None:
    fig, axes = new_figure(4, size=(5, 4.2))
    ax = axes[0]
    for i, r in enumerate(payload["rounds"]):
        means = r["standalone"]["mean_per_arch"]
        ax.scatter([i + 1] * len(means), means, color="tab:blue", s=14)
    ax.plot(range(1, len(payload["rounds"]) + 1), [r["standalone"]["mean"] for r in payload["rounds"]], label="mean")
    ax.plot(range(1, len(payload["rounds"]) + 1), [r["standalone"]["best"] for r in payload["rounds"]], label="best")
    ax.set(xlabel="round", ylabel="standalone test accuracy (%)", title="(a) continual convergence (Fig. 5a)")
    ax.legend()
    ax = axes[1]
    q = payload["space_quality"]
    names = ["initial", "simplified", "aggregated"]
    ax.boxplot([q[n]["mean_per_arch"] or [np.nan] for n in names])
    ax.set_xticks([1, 2, 3], names)
    ax.set(ylabel="standalone test accuracy (%)", title="(b) round-1 subsets at similar MAdds (Fig. 4b)")
    ax = axes[2]
    v, a = payload["vs_spos"], payload["ablation"]
    groups = {"NSE final": v["nse"], "SPOS full pool": v["spos"],
              "NSE w/o L&R\n(final front, per arch)": a["without_lr"]["mean_per_arch"] or [np.nan],
              "NSE w/ L&R\n(final front, per arch)": a["with_lr"]["mean_per_arch"] or [np.nan]}
    for i, values in enumerate(groups.values()):
        ax.bar(i, np.mean(values), yerr=np.std(values), alpha=0.6)
        ax.scatter([i] * len(values), values, color="k", s=10)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set(ylabel="standalone test accuracy (%)", title="(c) vs SPOS, (d) Lock & Rehearse")
    ax = axes[3]
    n = payload["nasbench201"]
    for i, name in enumerate(("nse", "spos")):
        ax.bar(i, np.mean(n[name]), yerr=np.std(n[name]), alpha=0.6)
        ax.scatter([i] * len(n[name]), n[name], color="k", s=10)
    ax.axhline(n["table_optimum"], ls="--", color="gray", label="table optimum")
    ax.set_xticks([0, 1], ["NSE (N_l = 1)", "SPOS + evolution"])
    low = min(n["nse"] + n["spos"] + [n["table_optimum"]])
    ax.set(ylabel="NAS-Bench-201 CIFAR-10 accuracy (%)", title="(e) noise-free anchor", ylim=(low - 2, 95))
    ax.legend()
    save_figure(fig, folder / "nse.png", dpi=110)


if __name__ == "__main__":
    main()
