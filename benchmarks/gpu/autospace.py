"""AutoSpace's central claim on GPU: the same search finds a better network in the generated space than in
the manual IRB space (Tables 2-4), on all of CIFAR-10 at 32x32.

In the section's wall budget, every phase sized by step times measured first: AutoSpace's evolution
generates a space (K = 4 cells per layer; Eq. 1 caps each cell at the manual space's largest block in
its layer), then SPOS (supernet training + evolution, Eq. 6's regularised loss) runs with the same wall
time on the manual IRB space and on the generated space, and
the two architectures it returns are trained standalone from scratch with two seeds and scored on
the 10,000 test images. Ray-free and in-process (``InProcessSupernet``, ``run_in_process``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.gpu.data import device
from benchmarks.harness import new_figure, save_figure
from tune_spacenas.jobs import STEPS_KEY, train_job

SEEDS = 2
# Shares of the budget: evolution, then per space supernet training and candidate evaluations; standalone
# training gets what is left but a margin.
EVOLUTION, SUPERNET, EVALUATION, MARGIN = 0.25, 0.12, 0.04, 0.05


def _args(smoke: bool):
    from benchmarks.autospace import parser

    if smoke:
        return parser().parse_args(["--resolution", "16", "--train-size", "2000", "--widths", "8", "16",
                                    "--strides", "1", "2", "--stem", "8", "--batch-size", "64", "--eval-images", "200",
                                    "--test-images", "500", "--cells", "2", "--population", "4"])
    return parser().parse_args(["--resolution", "32", "--widths", "32", "48", "48", "64", "64", "--batch-size", "256",
                                "--lr", "0.1", "--eval-images", "2000", "--madds-penalty", "5e-9"])


def _seconds_per_step(runner, job: dict, steps: int) -> float:
    """Wall seconds per training step of ``job`` (after as many warm-up steps; CUDA synchronised)."""
    import torch

    runner({**job, STEPS_KEY: steps})
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    runner({**job, STEPS_KEY: steps})
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


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
    from benchmarks.autospace import cell_limits, evolve, plan, search, spec_for, trained_alone
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
    job = AutoSpaceSearcher(space=space, metric="loss", mode="min", cells_per_layer=args.cells,
                            population_size=args.population, max_cell_madds=cell_limits(args)).suggest("probe")
    per_step = _seconds_per_step(runner, job, probe)
    args.iterations = 5 if smoke else 50
    args.generations = max(2, int(EVOLUTION * budget_s / (per_step * args.iterations)))
    evolution = evolve(args, True, runner=runner)
    spaces = {"manual": IRBSpace(**plan(args)).to_spec(), "autospace": evolution["generated_space"]}

    searches, rates = {}, {"evolution_step_s": per_step}
    rng = np.random.default_rng(0)
    for label, spec in spaces.items():
        space = space_from_spec(spec)
        runner = InProcessSupernet(spec_for(args, space, 0), args.device)
        rates[f"{label}_step_s"] = step = _seconds_per_step(runner, train_job(1, seed=1, lr=1e-3), probe)
        rates[f"{label}_eval_s"] = per_eval = _seconds_per_evaluation(runner, space, rng, 4, args.eval_images)
        args.supernet_steps = max(5, int(SUPERNET * budget_s / step))
        candidates = max(8, int(EVALUATION * budget_s / per_eval))
        args.search_population = max(4, candidates // 4)
        args.search_generations = 4
        searches[label] = search(args, label, spec, runner=runner, random_search=False)

    # Standalone: what is left but the margin, split over the architectures and seeds.
    step = max(rates["manual_step_s"], rates["autospace_step_s"])
    left = budget_s * (1 - MARGIN) - (time.perf_counter() - start) - 2 * SEEDS * 2.0  # ~2 s per build + test
    steps = max(5, int(left / (2 * SEEDS * step)))
    trained = {label: [trained_alone(args, spaces[label], searches[label]["evolution"]["arch"], seed, steps)
                       for seed in range(SEEDS)] for label in spaces}
    accuracy = {label: [r["accuracy"] for r in runs] for label, runs in trained.items()}
    return {
        "claim": "generated space vs manual IRB space, same search (SPOS evolution, Eq. 6), standalone test accuracy",
        "setting": f"CIFAR-10 {args.resolution}x{args.resolution}, plan {plan(args)}, batch {args.batch_size}",
        "evolution": {k: evolution[k] for k in ("loss", "seconds", "generated_cells", "distance_to_reference")}
                     | {"generations": args.generations, "iterations": args.iterations},
        "searches": searches, "standalone_steps": steps, "rates": rates,
        "accuracy": accuracy, "madds": {label: runs[0]["madds"] for label, runs in trained.items()},
        "mean_accuracy": {label: float(np.mean(a)) for label, a in accuracy.items()},
        "autospace_minus_manual": float(np.mean(accuracy["autospace"]) - np.mean(accuracy["manual"])),
    }


def plot(section: dict, folder: Path) -> None:
    fig, (left, right) = new_figure(2, size=(5, 4))
    left.plot(range(1, len(section["evolution"]["loss"]) + 1), section["evolution"]["loss"])
    left.set_xlabel("generation")
    left.set_ylabel("supernet training loss")
    left.set_title("AutoSpace evolution (with reference DAG)")
    everything = [a for acc in section["accuracy"].values() for a in acc]
    for x, (label, acc) in enumerate(section["accuracy"].items()):
        colour = f"C{x}"
        right.bar(x, np.mean(acc), color=colour, alpha=0.35)
        right.scatter([x] * len(acc), acc, color=colour, label=f"{label} ({section['madds'][label] / 1e6:.1f}M MAdds)")
    right.set_ylim(min(everything) - 3, max(everything) + 2)
    right.set_xticks(range(len(section["accuracy"])), list(section["accuracy"]))
    right.set_ylabel("standalone test accuracy (%)")
    right.set_title(f"SPOS's find, {section['standalone_steps']} standalone steps")
    right.legend(fontsize=8)
    save_figure(fig, folder / "gpu_autospace.png")
