"""AutoSpace's claim at paper scale on GPU: at matched MAdds, every searcher finds a better network in the
generated space than in the manual IRB space and the full open space (Tables 2-4), on all of CIFAR-10 at
32x32.

One seed of the CPU benchmark's pipeline (``benchmarks.autospace``), every phase sized in wall seconds by
step times measured first: AutoSpace's evolution generates a space (K = 4 cells per layer; Eq. 1 caps each
cell at the manual space's largest block in its layer), then each of the three spaces gets a supernet with
the same wall time, searched by SPOS's evolution and random search inside the cost window ``target +- 5%``
and by ProxylessNAS continuing on the same weights (binary gates, Eq. 6, the most probable architecture in
the window); the nine architectures found are trained alone from scratch and scored on the 10,000 test
images. Ray-free and in-process (``InProcessSupernet``, ``run_in_process``). ``--scale`` buys larger
budgets; several seeds (for Welch p) are runs of the suite with ``--only autospace`` on more GPU time.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.gpu.data import device
from benchmarks.harness import new_figure, save_figure
from tune_spacenas.jobs import JOB_ID_KEY, STEPS_KEY, train_job

# Shares of the budget: evolution; then per space the supernet's training, the candidates' evaluations and
# ProxylessNAS's search; standalone training gets what is left but a margin.
EVOLUTION, SUPERNET, EVALUATION, PROXYLESS, MARGIN = 0.16, 0.06, 0.025, 0.04, 0.05
TARGET_MADDS = {False: 2.0e7, True: 5.0e5}  # the matched-MAdds target at 32x32 (smoke: the tiny plan)


def _args(smoke: bool):
    from benchmarks.autospace import parser

    if smoke:
        return parser().parse_args(
            [
                "--resolution",
                "16",
                "--train-size",
                "2000",
                "--widths",
                "8",
                "16",
                "--strides",
                "1",
                "2",
                "--stem",
                "8",
                "--batch-size",
                "64",
                "--eval-images",
                "200",
                "--test-images",
                "500",
                "--cells",
                "2",
                "--population",
                "4",
                "--target-madds",
                str(TARGET_MADDS[True]),
                "--window",
                "0.3",
            ]
        )
    return parser().parse_args(
        [
            "--resolution",
            "32",
            "--widths",
            "32",
            "48",
            "48",
            "64",
            "64",
            "--batch-size",
            "256",
            "--lr",
            "0.1",
            "--eval-images",
            "2000",
            "--madds-penalty",
            "2e-9",
            "--target-madds",
            str(TARGET_MADDS[False]),
            "--proxyless-lr",
            "0.02",
        ]
    )


def _seconds_per_step(runner, job: dict, steps: int) -> float:
    """Wall seconds per training step of ``job`` (after as many warm-up steps; CUDA synchronised). The job id is
    dropped: the store answers a job id it has seen from its record, without training (exactly-once)."""
    import torch

    job = {k: v for k, v in job.items() if k != JOB_ID_KEY}
    runner({**job, STEPS_KEY: steps})
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    runner({**job, STEPS_KEY: steps})
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def _common_target(args, spaces) -> float:
    """The requested MAdds target, or, where the generated space (known only after the evolution) or the manual
    one cannot reach its window, the middle of the costs both reach: a GPU run still compares at matched MAdds
    instead of failing after its evolution. (The open space reaches any target.)"""
    low = max(space.cost_range()[0] for space in spaces)
    high = min(space.cost_range()[1] for space in spaces)
    window_low, window_high = args.target_madds * (1 - args.window), args.target_madds * (1 + args.window)
    if low <= window_low and window_high <= high or low > high:
        return args.target_madds
    print(
        f"[target] {args.target_madds:.3g} MAdds +- {args.window:.0%} is outside the generated or the manual "
        f"space's costs ({low:.3g}-{high:.3g}): target {(low + high) / 2:.3g}",
        flush=True,
    )
    return (low + high) / 2


def _seconds_per_evaluation(runner, space, rng: np.random.Generator, count: int, images: int) -> float:
    from tune_spacenas.jobs import evaluate_batch_job

    start = time.perf_counter()
    runner(evaluate_batch_job(space, space.sample_many(rng, count), images=images))
    return (time.perf_counter() - start) / count


def run(budget_s: float, smoke: bool) -> dict:
    import torch

    # Cells slice their weights to many channel counts: cuDNN's autotuning of every new shape would cost
    # more than it saves, and would make the probes below measure tuning instead of training.
    benchmark, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False
    try:
        return _run(budget_s, smoke)
    finally:
        torch.backends.cudnn.benchmark = benchmark


def _run(budget_s: float, smoke: bool) -> dict:
    from benchmarks.autospace import (
        SEARCHERS,
        SPACES,
        cell_limits,
        cost_window,
        evolve,
        plan,
        search,
        spec_for,
        trained_alone,
    )
    from tune_spacenas.jobs import PROXYLESS_KEY, ProxylessJob
    from tune_spacenas.runner import InProcessSupernet
    from tune_spacenas.searchers import AutoSpaceSearcher
    from tune_spacenas.spaces import IRBSpace, OpenCellSpace, space_from_spec

    start = time.perf_counter()
    args = _args(smoke)
    args.device = device()
    probe = 3 if smoke else 20

    # Evolution: probe one generation's step with the gated supernet, then size the generations.
    space = OpenCellSpace(**plan(args))
    runner = InProcessSupernet(spec_for(args, space, 0), args.device)
    job = AutoSpaceSearcher(
        space=space,
        metric="loss",
        mode="min",
        cells_per_layer=args.cells,
        population_size=args.population,
        max_cell_madds=cell_limits(args),
    ).suggest("probe")
    per_step = _seconds_per_step(runner, job, probe)
    args.iterations = 5 if smoke else 50
    args.generations = max(2, int(EVOLUTION * budget_s / (per_step * args.iterations)))
    evolution = evolve(args, True, runner=runner)
    specs = {
        "autospace": evolution["generated_space"],
        "manual": IRBSpace(**plan(args)).to_spec(),
        "full": OpenCellSpace(**plan(args)).to_spec(),
    }
    requested = args.target_madds
    args.target_madds = _common_target(args, [space_from_spec(specs[label]) for label in ("autospace", "manual")])

    searches, rates = {}, {"evolution_step_s": per_step}
    rng = np.random.default_rng(0)
    for label in SPACES:
        space = space_from_spec(specs[label])
        runner = InProcessSupernet(spec_for(args, space, 0), args.device)
        rates[f"{label}_step_s"] = step = _seconds_per_step(runner, train_job(1, seed=1, lr=1e-3), probe)
        alpha = [[0.0] * len(c) for c in space.choices]
        gated = train_job(1, space, seed=1, lr=1e-3, **{PROXYLESS_KEY: ProxylessJob(alpha=alpha, arch_lr=1e-9)})
        rates[f"{label}_proxyless_step_s"] = search_step = _seconds_per_step(runner, gated, probe)
        rates[f"{label}_eval_s"] = per_eval = _seconds_per_evaluation(runner, space, rng, 4, args.eval_images)
        args.supernet_steps = max(5, int(SUPERNET * budget_s / step))
        args.proxyless_steps = max(5, int(PROXYLESS * budget_s / search_step))
        candidates = max(8, int(EVALUATION * budget_s / per_eval))
        args.search_population = max(4, candidates // 4)
        args.search_generations = 2  # random search evaluates as many: together the EVALUATION share
        searches[label] = search(args, label, specs[label], runner=runner)

    # Standalone: what is left but the margin, split over the nine architectures.
    step = max(rates[f"{label}_step_s"] for label in SPACES)
    finds = [(name, label) for name in SEARCHERS for label in SPACES]
    left = budget_s * (1 - MARGIN) - (time.perf_counter() - start) - len(finds) * 2.0  # ~2 s per build + test
    steps = max(5, int(left / (len(finds) * step)))
    accuracy, madds = {name: {} for name in SEARCHERS}, {name: {} for name in SEARCHERS}
    for name, label in finds:
        found = searches[label][name]
        if found["arch"] is None:  # nothing inside the window: recorded, not trained
            accuracy[name][label] = madds[name][label] = None
            continue
        alone = trained_alone(args, specs[label], found["arch"], 0, steps)
        accuracy[name][label], madds[name][label] = alone["accuracy"], alone["madds"]
    low, high = cost_window(args)
    return {
        "claim": "at matched MAdds the generated space beats the manual IRB and the full open space under every "
        "searcher (ProxylessNAS, SPOS + evolution, random); standalone test accuracy, one seed",
        "setting": f"CIFAR-10 {args.resolution}x{args.resolution}, plan {plan(args)}, batch {args.batch_size}, "
        f"window {low / 1e6:.1f}-{high / 1e6:.1f}M MAdds",
        "evolution": {
            k: evolution[k]
            for k in ("loss", "seconds", "generated_cells", "evaluations", "cost_range", "distance_to_reference")
        }
        | {"generations": args.generations, "iterations": args.iterations},
        "searches": searches,
        "standalone_steps": steps,
        "rates": rates,
        "window": [low, high],
        "requested_target_madds": requested,
        "accuracy": accuracy,
        "madds": madds,
        "generated_minus_manual": {n: _difference(accuracy[n], "manual") for n in SEARCHERS},
        "generated_minus_full": {n: _difference(accuracy[n], "full") for n in SEARCHERS},
    }


def _difference(accuracy: dict, other: str) -> float | None:
    if accuracy["autospace"] is None or accuracy[other] is None:
        return None
    return accuracy["autospace"] - accuracy[other]


def plot(section: dict, folder: Path) -> None:
    from benchmarks.autospace import SEARCHER_NAMES, SEARCHERS, SPACES

    fig, (left, right) = new_figure(2, size=(5, 4))
    left.plot(range(1, len(section["evolution"]["loss"]) + 1), section["evolution"]["loss"])
    left.set_xlabel("generation")
    left.set_ylabel("supernet training loss")
    left.set_title("AutoSpace evolution (with reference DAG)")
    width = 0.25
    for i, label in enumerate(SPACES):
        values = [section["accuracy"][name][label] or 0.0 for name in SEARCHERS]
        right.bar(np.arange(len(SEARCHERS)) + (i - 1) * width, values, width, label=label)
    everything = [a for acc in section["accuracy"].values() for a in acc.values() if a is not None]
    right.set_ylim(min(everything) - 3, max(everything) + 2)
    right.set_xticks(range(len(SEARCHERS)), [SEARCHER_NAMES[n].split(" (")[0] for n in SEARCHERS], fontsize=8)
    right.set_ylabel("standalone test accuracy (%)")
    low, high = section["window"]
    right.set_title(
        f"{low / 1e6:.1f}-{high / 1e6:.1f}M MAdds, {section['standalone_steps']} standalone steps", fontsize=9
    )
    right.legend(fontsize=8)
    save_figure(fig, folder / "gpu_autospace.png")
