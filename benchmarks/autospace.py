"""AutoSpace on CIFAR-10 at matched MAdds: does the generated space beat the manual and the full space under
every searcher? (Tables 2, 3 and 4 of the paper, CPU analog; Fig. 3 and Table 6 with ``--ablations``)

    nice -n 10 python -m benchmarks.autospace --seeds 1 2 3 4 5 --out benchmarks/results/autospace/autospace.json

One process, one thread (the machine is shared), every seed the whole pipeline, so the spread over seeds
is the spread of the method (space generation, supernet training, search, standalone training):

1. AutoSpace's evolution generates a space on the open space's supernet (K cells per layer, Eq. 1 caps a
   cell at the manual space's largest block in its layer; ``zero`` where a layer may be skipped);
2. the generated, the manual IRB and the full open space each get a supernet trained from scratch with
   the same budget (uniform single paths: SPOS's training, ProxylessNAS's warm-up), searched by
   * SPOS's evolution and random search (as many candidates), both only inside the cost window
     ``target +- window`` (``min_madds``/``max_madds``), ranked by the supernet's validation loss,
   * ProxylessNAS (``ProxylessSearcher``) continuing on the same weights: binary gates, Eq. (6)'s lambda,
     the derived architecture the most probable one inside the same window;
3. the nine architectures found are trained alone from scratch and scored on the 10,000 test images.

The comparison is then per searcher, space against space, at the same MAdds (within +-5%), with Welch p
over the seeds. Settings are chosen on seed 0 and reported on seeds 1-5. Results are written after every
seed; ``--resume`` skips seeds already in ``--out``.

CPU setting: CIFAR-10 at 16x16 (all 45,000 training images; 5,000 held out for the searches' validation),
the network plan of ``OpenCellSpace`` (3x3 stem of 16, five layers of widths 16-24-24-32-32 with two
reductions, pooling, classifier), batch 128, SGD with cosine learning rate.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    RESULTS,
    cifar10_spec,
    command_line,
    mean_std,
    new_figure,
    save_figure,
    standalone,
    welch_p,
    write_json,
    write_markdown,
)

OUT_DIR = RESULTS / "autospace"
SPACES = ("autospace", "manual", "full")
SEARCHERS = ("proxyless", "spos", "random")
SEARCHER_NAMES = {
    "proxyless": "ProxylessNAS (gradient, binary gates)",
    "spos": "SPOS + evolution",
    "random": "random search",
}
# Table 6's initial fitness scores (x 1e-3) for Net1, Net2, Net3.
TABLE6_INIT = (
    (-0.296, 2.670, -0.141),
    (0.023, -0.577, 0.705),
    (0.426, -0.752, -1.180),
    (-1.950, -0.061, -0.334),
    (0.304, 1.220, 0.774),
)
# Net1 < Net2 < Net3: one cell (r1, conv3x3 edges, residual where the layer allows) chained 1, 2 or 3 deep.
TABLE6_CELLS = (
    "r1|add|zero|zero|zero|conv3x3|zero|zero",
    "r1|add|conv3x3|zero|zero|zero|conv3x3|zero",
    "r1|add|conv3x3|zero|conv3x3|zero|zero|conv3x3",
)


# ----------------------------------------------------------------------------------------------
# Pieces (the GPU section calls them too)
# ----------------------------------------------------------------------------------------------
def plan(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "widths": tuple(args.widths),
        "strides": tuple(args.strides),
        "stem_channels": args.stem,
        "input_size": args.resolution,
    }


def cell_limits(args: argparse.Namespace) -> list[float] | None:
    """Eq. (1)'s MAdds_max per layer: ``irb`` caps a cell at the manual space's largest block (mb_k7_e6) in
    the same layer, so the generated and the manual space span comparable costs."""
    from tune_spacenas.spaces import IRBSpace

    if args.cell_limit == "none":
        return None
    manual = IRBSpace(**plan(args))
    return [manual.layer_cost(layer, "mb_k7_e6").madds for layer in range(manual.num_layers)]


def cost_window(args: argparse.Namespace) -> tuple[float, float]:
    """The matched-MAdds window every found architecture lies in: ``target +- window``."""
    return args.target_madds * (1 - args.window), args.target_madds * (1 + args.window)


def spec_for(args: argparse.Namespace, space, seed: int, train_size: int | None = None):
    return cifar10_spec(
        space,
        args.resolution,
        init_seed=seed,
        train_size=train_size or args.train_size,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_images=args.eval_images,
    )


def _start(args: argparse.Namespace, what: str) -> float:
    import torch

    torch.set_num_threads(args.threads)
    print(f"[start] {what}", flush=True)
    return time.perf_counter()


def _runner(args: argparse.Namespace, spec):
    from tune_spacenas.runner import InProcessSupernet

    return InProcessSupernet(spec, args.device)


def evolve(args: argparse.Namespace, use_reference: bool, seed: int = 0, runner: Any = None) -> dict[str, Any]:
    """AutoSpace's evolution on the open space: the generated space and the loss per generation
    (``runner``: an ``InProcessSupernet`` of the open space to use instead of a fresh one)."""
    from tune_spacenas.runner import run_in_process
    from tune_spacenas.searchers import AutoSpaceSearcher
    from tune_spacenas.spaces import OpenCellSpace
    from tune_spacenas.spaces.cells import REFERENCE_IRB, hamming_distance

    start = _start(args, f"seed {seed}: evolution (reference DAG {'on' if use_reference else 'off'})")
    space = OpenCellSpace(**plan(args))
    searcher = AutoSpaceSearcher(
        space=space,
        metric="loss",
        mode="min",
        seed=seed,
        cells_per_layer=args.cells,
        population_size=args.population,
        tournament_size=args.tournament,
        generations=args.generations,
        iterations_per_generation=args.iterations,
        epsilon=args.epsilon,
        use_reference=use_reference,
        alpha_lr=args.alpha_lr,
        lr=args.lr,
        madds_penalty=args.evolution_madds_penalty,
        max_cell_madds=cell_limits(args),
    )
    losses: list[float] = []

    def progress(config: dict, result: dict) -> None:
        losses.append(result["loss"])
        if len(losses) % max(1, args.generations // 4) == 0:
            print(
                f"  [evolution] generation {len(losses)}/{args.generations} loss {result['loss']:.3f} "
                f"({result['images_per_s']:.0f} img/s)",
                flush=True,
            )

    run_in_process(searcher, runner or _runner(args, spec_for(args, space, seed)), on_result=progress)
    generated = searcher.generated_space()
    cells = generated.layer_cells
    return {
        "use_reference": use_reference,
        "seconds": time.perf_counter() - start,
        "loss": losses,
        "steps": args.generations * args.iterations,
        "generated_cells": cells,
        "evaluations": generated.evaluations,
        "generated_space": generated.to_spec(),
        "cost_range": generated.cost_range(),
        "distance_to_reference": float(np.mean([hamming_distance(c, REFERENCE_IRB) for layer in cells for c in layer])),
        "population": searcher.population_table(),
    }


def _found(space, arch: str | None, **extra: Any) -> dict[str, Any]:
    madds = None if arch is None else space.cost(space.from_string(arch)).madds
    return {"arch": arch, "madds": madds, **extra}


def search(
    args: argparse.Namespace, label: str, space_spec: dict[str, Any], seed: int = 0, runner: Any = None
) -> dict[str, Any]:
    """One space, three searchers, one cost window: the supernet trains on uniform single paths, SPOS's
    evolution and random search (as many candidates) rank candidates inside the window by the supernet's
    validation loss, then ProxylessNAS continues training on the same weights with its architecture steps
    and derives the most probable architecture inside the window."""
    from tune_spacenas.jobs import IMAGES_KEY
    from tune_spacenas.runner import run_in_process
    from tune_spacenas.searchers import EvolutionSettings, ProxylessSearcher, RandomSearcher, SPOSSearcher
    from tune_spacenas.spaces import space_from_spec

    start = _start(args, f"seed {seed}: searches of the {label} space")
    space = space_from_spec(space_spec)
    runner = runner or _runner(args, spec_for(args, space, seed))
    low, high = cost_window(args)
    images = {IMAGES_KEY: args.eval_images}
    population = args.search_population
    evolution = EvolutionSettings(
        population=population,
        generations=args.search_generations,
        parents=max(2, population // 4),
        mutations=population // 2,
        crossovers=population - population // 2,
    )
    spos = SPOSSearcher(
        space=space,
        metric="loss",
        mode="min",
        seed=seed,
        train_steps=args.supernet_steps,
        steps_per_trial=max(1, args.supernet_steps // 5),
        lr=args.lr,
        evolution=evolution,
        eval_batch=25,
        min_madds=low,
        max_madds=high,
    )
    run_in_process(spos, runner, param_space=images)
    trained = time.perf_counter()
    found = spos.progress()
    out = {
        "label": label,
        "space_size": space.size,
        "cost_range": space.cost_range(),
        "spos": _found(space, found.best_arch, supernet_loss=found.best, evaluated=found.evaluations_done),
    }
    print(f"  [{label}] SPOS + evolution: {found.best_arch}", flush=True)

    # Its own draws: with SPOS's seed it would draw SPOS's first population and, where the evolution's few
    # generations improve nothing, return SPOS's answer.
    random = RandomSearcher(
        space=space,
        metric="loss",
        mode="min",
        seed=10_000 + seed,
        min_madds=low,
        max_madds=high,
        max_queries=max(1, found.evaluations_done),
    )
    run_in_process(random, runner, param_space=images, space=space)
    best = random.best_record()
    out["random"] = _found(space, best and best["arch"], supernet_loss=best and best["loss"], evaluated=random.queries)
    print(f"  [{label}] random: {out['random']['arch']}", flush=True)
    evaluated = time.perf_counter()

    proxyless = ProxylessSearcher(
        space=space,
        metric="loss",
        mode="min",
        seed=seed,
        warmup_steps=0,
        search_steps=args.proxyless_steps,
        steps_per_trial=max(1, args.proxyless_steps // 5),
        lr=args.proxyless_lr,
        arch_lr=args.arch_lr,
        update_every=args.update_every,
        madds_penalty=args.madds_penalty,
        min_madds=low,
        max_madds=high,
    )
    run_in_process(proxyless, runner)
    confidence = float(np.mean([max(p.values()) for p in proxyless.probabilities()]))
    out["proxyless"] = _found(
        space,
        proxyless.best_architecture(),
        mean_largest_p=confidence,
        alpha=proxyless.alpha,
        loss_curve=[c["loss"] for c in proxyless.curve],
    )
    print(f"  [{label}] ProxylessNAS: {out['proxyless']['arch']} (mean largest p {confidence:.3f})", flush=True)
    return out | {
        "seconds": {
            "supernet_and_evolution": trained - start,
            "random": evaluated - trained,
            "proxyless": time.perf_counter() - evaluated,
        }
    }


def trained_alone(
    args: argparse.Namespace,
    space_spec: dict[str, Any],
    arch: str,
    seed: int,
    steps: int,
    train_size: int | None = None,
) -> dict[str, Any]:
    """Train ``arch`` from scratch (its own weights only, cosine lr) and score it on the test set."""
    from tune_spacenas.spaces import space_from_spec

    _start(args, f"standalone seed {seed}: {arch[:60]}")
    spec = spec_for(args, space_from_spec(space_spec), 1000 + seed, train_size)
    return standalone(spec, arch, steps, seed, jobs=4, images=args.test_images, device=args.device)


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The whole pipeline for one seed: generation, three searches per space, standalone training of the finds."""
    from tune_spacenas.spaces import IRBSpace, OpenCellSpace

    start = time.perf_counter()
    evolution = evolve(args, True, seed)
    specs = {
        "autospace": evolution["generated_space"],
        "manual": IRBSpace(**plan(args)).to_spec(),
        "full": OpenCellSpace(**plan(args)).to_spec(),
    }
    searches = {label: search(args, label, specs[label], seed) for label in SPACES}
    results: dict[str, dict[str, Any]] = {name: {} for name in SEARCHERS}
    for name in SEARCHERS:
        for label in SPACES:
            found = searches[label][name]
            alone = trained_alone(args, specs[label], found["arch"], seed, args.standalone_steps)
            results[name][label] = {
                **found,
                "accuracy": alone["accuracy"],
                "params": alone["params"],
                "standalone_seconds": alone["seconds"],
            }
            print(
                f"  [seed {seed}] {name} / {label}: {alone['accuracy']:.2f} % at {alone['madds'] / 1e6:.2f}M MAdds",
                flush=True,
            )
    evolution.pop("population")
    return {
        "seed": seed,
        "evolution": evolution,
        "searches": searches,
        "results": results,
        "seconds": time.perf_counter() - start,
    }


# ----------------------------------------------------------------------------------------------
# Fig. 3 and Table 6 (``--ablations``)
# ----------------------------------------------------------------------------------------------
def table6_fitness(args: argparse.Namespace, run: int) -> dict[str, Any]:
    """Three networks as the candidates of one fitness-weighted choice (Eqs. 3-4, binary gates), from
    Table 6's initial scores; the scores after every epoch."""
    import torch
    from torch import nn

    from tune_spacenas.data import DeviceData, load_data
    from tune_spacenas.spaces import OpenCellSpace
    from tune_spacenas.supernet.cells import FitnessWeightedLayer
    from tune_spacenas.trainables.worker import default_device

    _start(args, f"Table 6 fitness run {run + 1}")
    space = OpenCellSpace(**plan(args))
    spec = spec_for(args, space, run, args.table6_train_size)
    nets = []
    for k in range(len(TABLE6_CELLS)):
        spec.init_seed = 100 * run + k  # three independent networks
        nets.append(spec.build().to(args.device or default_device()))
    archs = [space.from_cells([cell] * space.num_layers) for cell in TABLE6_CELLS]
    layer = FitnessWeightedLayer(
        [functools.partial(net, arch=a) for net, a in zip(nets, archs)],
        [1e-3 * a for a in TABLE6_INIT[run]],
        gate_paths=2,
        alpha_lr=args.alpha_lr,
    )
    data = DeviceData(load_data(spec.data), nets[0].classifier.weight.device)
    weights = [p for net in nets for p in net.parameters()]
    optimizer = torch.optim.SGD(weights, lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    epoch_steps = data.size("train") // args.batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.table6_epochs * epoch_steps)
    stream, rng = data.train_stream(args.batch_size, seed=run), np.random.default_rng(run)
    alphas = [layer.alpha.tolist()]
    for net in nets:
        net.train()
    for _ in range(args.table6_epochs):
        for _ in range(epoch_steps):
            layer.sample(rng)
            x, y = next(stream)
            loss = nn.functional.cross_entropy(layer.forward(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_([p for p in weights if p.grad is not None], 5.0)
            optimizer.step()
            schedule.step()
            layer.update()
        alphas.append(layer.alpha.tolist())
    return {
        "run": run,
        "initial": [1e-3 * a for a in TABLE6_INIT[run]],
        "alpha_per_epoch": alphas,
        "active_steps": layer.steps.tolist(),
    }


def first_correct_epoch(alphas: list[list[float]], truth: list[float]) -> int | None:
    """The first epoch from which the fitness scores order the networks as ``truth`` does, to the end."""
    order = list(np.argsort(truth))
    correct = [list(np.argsort(a)) == order for a in alphas]
    for epoch in range(len(correct)):
        if all(correct[epoch:]):
            return epoch
    return None


def ablations(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Fig. 3 (the evolution's loss with and without the reference DAG) and Table 6 (fitness robustness)."""
    from tune_spacenas.spaces import OpenCellSpace

    evolutions = {key: evolve(args, key == "reference", seed) for key in ("reference", "no_reference")}
    full = OpenCellSpace(**plan(args)).to_spec()
    steps = args.table6_epochs * args.table6_train_size // args.batch_size
    truth = [
        [
            trained_alone(args, full, ",".join([cell] * len(args.widths)), s, steps, args.table6_train_size)["accuracy"]
            for s in range(3)
        ]
        for cell in TABLE6_CELLS
    ]
    means = [float(np.mean(t)) for t in truth]
    runs = [table6_fitness(args, run) for run in range(len(TABLE6_INIT))]
    return {
        "reference_dag": {
            k: {"loss": v["loss"], "distance_to_reference": v["distance_to_reference"]} for k, v in evolutions.items()
        },
        "fitness_robustness": [
            {**r, "epochs_to_correct_ranking": first_correct_epoch(r["alpha_per_epoch"], means)} for r in runs
        ],
        "fitness_robustness_truth": {"networks": list(TABLE6_CELLS), "per_seed": truth, "standalone_accuracy": means},
    }


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def summarise(args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per searcher and space: test accuracies over the seeds, MAdds, and Welch p of the generated space
    against the others."""
    low, high = cost_window(args)
    table = {}
    for name in SEARCHERS:
        table[name] = {}
        for label in SPACES:
            entries = [run["results"][name][label] for run in runs]
            table[name][label] = {
                "accuracy": [e["accuracy"] for e in entries],
                "madds": [e["madds"] for e in entries],
                "params": [e["params"] for e in entries],
                "arch": [e["arch"] for e in entries],
                "seeds": [run["seed"] for run in runs],
                "inside_window": all(low <= e["madds"] <= high for e in entries),
            }
        auto = table[name]["autospace"]["accuracy"]
        table[name]["welch_p"] = {
            other: welch_p(auto, table[name][other]["accuracy"]) if len(auto) > 1 else None
            for other in ("manual", "full")
        }
    return {"seeds": [run["seed"] for run in runs], "window": [low, high], "table": table}


def write_report(payload: dict[str, Any], out: Path, command: str | None = None) -> None:
    summary = payload["summary"]
    rows = []
    for name in SEARCHERS:
        entry = summary["table"][name]
        for label in SPACES:
            mean, std = mean_std(entry[label]["accuracy"])
            p = "" if label == "autospace" else entry["welch_p"][label]
            rows.append(
                [
                    SEARCHER_NAMES[name],
                    label,
                    f"{mean:.2f} +- {std:.2f}",
                    f"{np.mean(entry[label]['madds']) / 1e6:.3f}",
                    f"{np.mean(entry[label]['params']) / 1e6:.3f}",
                    "" if p in ("", None) else f"{p:.3f}",
                    " ".join(f"{a:.1f}" for a in entry[label]["accuracy"]),
                ]
            )
    low, high = summary["window"]
    evolutions = [run["evolution"] for run in payload["runs"]]
    notes = [
        f"Standalone test accuracy (the test split, `--test-images` of its 10,000), mean +- std over seeds {summary['seeds']} (one "
        f"whole pipeline per seed); every architecture found lies in the window {low / 1e6:.3f}-{high / 1e6:.3f}M "
        "MAdds (target +- 5%). Welch p: the generated space against this row's space, same searcher.",
        f"Budget per seed: {payload['budget']}.",
        "Generated spaces (per seed): "
        + "; ".join(
            f"seed {run['seed']}: {sum(len(c) for c in run['evolution']['generated_cells'])} cells, "
            f"evaluated {min(min(e) for e in run['evolution']['evaluations'])}-"
            f"{max(max(e) for e in run['evolution']['evaluations'])} generations each, cost range "
            f"{run['evolution']['cost_range'][0] / 1e6:.2f}-{run['evolution']['cost_range'][1] / 1e6:.2f}M"
            for run in payload["runs"]
        )
        + ".",
        f"Design cost (evolution) per seed: {np.mean([e['seconds'] for e in evolutions]):.0f} s on average.",
    ]
    write_markdown(
        out.with_suffix(".md"),
        "AutoSpace on CIFAR-10 at matched MAdds (CPU analog of Tables 2-4)",
        ["searcher", "space", "test acc. (%)", "MAdds (M)", "params (M)", "Welch p (generated vs this)", "per seed"],
        rows,
        notes="\n".join(notes),
        command=command,
    )


def plot(payload: dict[str, Any], folder: Path) -> None:
    table = payload["summary"]["table"]
    fig, axes = new_figure(len(SEARCHERS), size=(3.6, 3.8), sharey=True)
    colours = {"autospace": "tab:red", "manual": "tab:blue", "full": "tab:gray"}
    for ax, name in zip(np.atleast_1d(axes), SEARCHERS):
        for x, label in enumerate(SPACES):
            acc = table[name][label]["accuracy"]
            ax.bar(x, np.mean(acc), color=colours[label], alpha=0.35)
            ax.scatter([x] * len(acc), acc, color=colours[label], s=12)
        ax.set_xticks(range(len(SPACES)), ["generated", "manual", "full"])
        ax.set_title(SEARCHER_NAMES[name], fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    everything = [a for name in SEARCHERS for label in SPACES for a in table[name][label]["accuracy"]]
    np.atleast_1d(axes)[0].set_ylim(min(everything) - 2, max(everything) + 1)
    np.atleast_1d(axes)[0].set_ylabel("standalone test accuracy (%)")
    low, high = payload["summary"]["window"]
    fig.suptitle(
        f"Found architectures at {low / 1e6:.2f}-{high / 1e6:.2f}M MAdds, seeds {payload['summary']['seeds']}",
        fontsize=10,
    )
    save_figure(fig, folder / "autospace_spaces.png")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[1, 2, 3, 4, 5],
        help="one whole pipeline per seed (settings were chosen on seed 0)",
    )
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--widths", type=int, nargs="+", default=[16, 24, 24, 32, 32])
    p.add_argument("--strides", type=int, nargs="+", default=[1, 2, 1, 2, 1])
    p.add_argument("--stem", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--eval-images", type=int, default=1000)
    p.add_argument("--test-images", type=int, default=10000)
    p.add_argument("--target-madds", type=float, default=2.0e6, help="the matched-MAdds target (per image)")
    p.add_argument("--window", type=float, default=0.05, help="relative half-width of the MAdds window")
    # AutoSpace's evolution
    p.add_argument("--cells", type=int, default=4, help="K cells per layer")
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--tournament", type=int, default=3)
    p.add_argument("--generations", type=int, default=12)
    p.add_argument("--iterations", type=int, default=50, help="f: iterations per supernet generation")
    p.add_argument("--epsilon", type=float, default=0.5)
    p.add_argument("--alpha-lr", type=float, default=0.05)
    p.add_argument(
        "--cell-limit",
        choices=("irb", "none"),
        default="irb",
        help="Eq. (1)'s per-cell MAdds limit: the manual space's largest block per layer, or none",
    )
    p.add_argument(
        "--evolution-madds-penalty",
        type=float,
        default=0.0,
        help="Eq. (6)'s lambda on the fitness-weighted layers during the evolution (the paper: none)",
    )
    # The searches on each space
    p.add_argument("--supernet-steps", type=int, default=600, help="uniform single-path training per space")
    p.add_argument("--search-population", type=int, default=12)
    p.add_argument("--search-generations", type=int, default=3)
    p.add_argument("--proxyless-steps", type=int, default=400, help="ProxylessNAS steps after the shared training")
    p.add_argument("--proxyless-lr", type=float, default=0.01, help="the weights' peak lr in ProxylessNAS's search")
    p.add_argument("--arch-lr", type=float, default=0.03, help="ProxylessNAS's Adam lr on alpha")
    p.add_argument("--update-every", type=int, default=5, help="weight steps per architecture step")
    p.add_argument("--madds-penalty", type=float, default=2e-8, help="Eq. (6)'s lambda in ProxylessNAS, per MAdd")
    p.add_argument("--standalone-steps", type=int, default=600)
    # Fig. 3 and Table 6
    p.add_argument("--ablations", action="store_true", help="also Fig. 3 (reference DAG) and Table 6 (seed: the first)")
    p.add_argument("--table6-epochs", type=int, default=8)
    p.add_argument("--table6-train-size", type=int, default=10000)
    # Machinery
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=None)
    p.add_argument("--resume", action="store_true", help="keep the seeds already in --out")
    p.add_argument("--out", type=Path, default=OUT_DIR / "autospace.json")
    p.add_argument("--plot", type=Path, default=None, help="only redraw the plots and Markdown from this JSON")
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="only combine the seeds of these JSONs (runs side by side, same settings) into --out",
    )
    return p


def budget(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "evolution_steps": args.generations * args.iterations,
        "supernet_steps": args.supernet_steps,
        "search_candidates": args.search_population * args.search_generations,
        "proxyless_steps": args.proxyless_steps,
        "arch_lr": args.arch_lr,
        "madds_penalty": args.madds_penalty,
        "standalone_steps": args.standalone_steps,
        "batch_size": args.batch_size,
        "eval_images": args.eval_images,
        "target_madds": args.target_madds,
        "window": args.window,
        "cell_limit": args.cell_limit,
    }


def merge(args: argparse.Namespace, payloads: list[dict[str, Any]]) -> None:
    """One report over the seeds of several runs of the same settings (e.g. two single-thread processes)."""
    if any(p["budget"] != payloads[0]["budget"] for p in payloads):
        raise ValueError(f"runs with different settings cannot be merged: {[p['budget'] for p in payloads]}")
    runs = sorted((run for p in payloads for run in p["runs"]), key=lambda run: run["seed"])
    command = " + ".join(p.get("command", "") for p in payloads)
    payload = {
        "budget": payloads[0]["budget"],
        "runs": runs,
        "summary": summarise(args, runs),
        "command": command,
        "wall_seconds": max(p.get("wall_seconds", 0.0) for p in payloads),
    }
    write_json(args.out, payload)
    write_report(payload, args.out, command=command)
    plot(payload, args.out.parent)
    print(f"merged seeds {[run['seed'] for run in runs]} into {args.out}")


def main() -> None:
    args = parser().parse_args()
    if args.plot:
        payload = json.loads(args.plot.read_text())
        write_report(payload, args.plot, command=payload["command"])
        return plot(payload, args.plot.parent)
    if args.merge:
        return merge(args, [json.loads(path.read_text()) for path in args.merge])
    start = time.perf_counter()
    runs = json.loads(args.out.read_text())["runs"] if args.resume and args.out.exists() else []
    payload: dict[str, Any] = {"budget": budget(args), "runs": runs, "command": command_line()}
    for seed in args.seeds:
        if any(run["seed"] == seed for run in runs):
            continue
        runs.append(run_seed(args, seed))
        payload["summary"] = summarise(args, runs)
        payload["wall_seconds"] = time.perf_counter() - start
        write_json(args.out, payload)
        write_report(payload, args.out, command=payload["command"])
        print(f"[seed {seed} done] {runs[-1]['seconds'] / 60:.1f} min; written {args.out}", flush=True)
    if args.ablations:
        payload["ablations"] = ablations(args, args.seeds[0])
        write_json(args.out, payload)
    plot(payload, args.out.parent)
    print(f"wrote {args.out} ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
