"""AutoSpace on CIFAR-10: does the generated space beat the manual and the full space? (Tables 2, 4, 6, Fig. 3)

    python -m benchmarks.autospace --seeds 3 --out benchmarks/results/autospace/autospace.json

CPU setting (about an hour on 2 cores, two single-thread processes): CIFAR-10 at 16x16 (all 45,000
training images; 5,000 held out for the searches' validation), the network plan of ``OpenCellSpace``
(3x3 stem of 16, five layers of widths 16-24-24-32-32 with two reductions, pooling, classifier),
batch 128, SGD with cosine learning rate.

(a) Table 2 analog: one search algorithm (SPOS: supernet training, then evolution) with one budget on
    the full open space, the manual IRB space and the AutoSpace-generated space; the architectures it
    returns are trained standalone from scratch with ``--seeds`` seeds and scored on the test set.
(b) Table 4 analog: evolution and random search on the manual and the generated space (same supernets).
    Both searches rank candidates by Eq. (6)'s regularised loss ``CE + lambda MAdds`` on the supernet.
    The evolution itself limits each cell's MAdds (Eq. 1) to the manual space's largest block in the
    same layer, so the generated and the manual space span comparable costs.
(c) Fig. 3 analog: the evolution's training loss per generation with and without the reference DAG.
(d) Table 6 analog: three networks of the same cell at increasing depth (1, 2, 3 chained conv3x3 per
    layer) as the candidates of one fitness-weighted choice, from Table 6's five initial fitness
    settings; the epoch from which the fitness scores rank them as standalone training does.

The generated space's design cost (its evolution) is reported separately, as the paper's Table 5 does;
the three spaces' supernets then get the same training budget from scratch.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    RESULTS,
    Scheduler,
    cifar10_spec,
    mean_std,
    new_figure,
    save_figure,
    standalone,
    welch_p,
    write_json,
    write_markdown,
)

OUT_DIR = RESULTS / "autospace"
# Table 6's initial fitness scores (x 1e-3) for Net1, Net2, Net3.
TABLE6_INIT = ((-0.296, 2.670, -0.141), (0.023, -0.577, 0.705), (0.426, -0.752, -1.180), (-1.950, -0.061, -0.334),
               (0.304, 1.220, 0.774))
# Net1 < Net2 < Net3: one cell (r1, conv3x3 edges, residual where the layer allows) chained 1, 2 or 3 deep.
TABLE6_CELLS = ("r1|add|zero|zero|zero|conv3x3|zero|zero", "r1|add|conv3x3|zero|zero|zero|conv3x3|zero",
                "r1|add|conv3x3|zero|conv3x3|zero|zero|conv3x3")


# ----------------------------------------------------------------------------------------------
# Pieces (each runs in its own process; the GPU section calls them in-process)
# ----------------------------------------------------------------------------------------------
def plan(args: argparse.Namespace) -> dict[str, Any]:
    return {"widths": tuple(args.widths), "strides": tuple(args.strides), "stem_channels": args.stem,
            "input_size": args.resolution}


def cell_limits(args: argparse.Namespace) -> list[float] | None:
    """Eq. (1)'s MAdds_max per layer: ``irb`` caps a cell at the manual space's largest block (mb_k7_e6) in
    the same layer, so the generated and the manual space span comparable costs."""
    from tune_spacenas.spaces import IRBSpace

    if args.cell_limit == "none":
        return None
    manual = IRBSpace(**plan(args))
    return [manual.layer_cost(layer, "mb_k7_e6").madds for layer in range(manual.num_layers)]


def spec_for(args: argparse.Namespace, space, seed: int, train_size: int | None = None):
    return cifar10_spec(space, args.resolution, init_seed=seed, train_size=train_size or args.train_size,
                        batch_size=args.batch_size, lr=args.lr, eval_images=args.eval_images)


def _start(args: argparse.Namespace, what: str) -> float:
    import torch

    torch.set_num_threads(args.threads)
    print(f"[start] {what}", flush=True)
    return time.perf_counter()


def _runner(args: argparse.Namespace, spec):
    from tune_spacenas.runner import InProcessSupernet

    return InProcessSupernet(spec, args.device)


def evolve(args: argparse.Namespace, use_reference: bool, seed: int = 0, runner: Any = None) -> dict[str, Any]:
    """AutoSpace's evolution on the open space: the generated cells and the loss per generation
    (``runner``: an ``InProcessSupernet`` of the open space to use instead of a fresh one)."""
    from tune_spacenas.runner import run_in_process
    from tune_spacenas.searchers import AutoSpaceSearcher
    from tune_spacenas.spaces import OpenCellSpace
    from tune_spacenas.spaces.cells import REFERENCE_IRB, hamming_distance

    start = _start(args, f"evolution (reference DAG {'on' if use_reference else 'off'})")
    space = OpenCellSpace(**plan(args))
    searcher = AutoSpaceSearcher(
        space=space, metric="loss", mode="min", seed=seed, cells_per_layer=args.cells, population_size=args.population,
        tournament_size=args.tournament, generations=args.generations, iterations_per_generation=args.iterations,
        epsilon=args.epsilon, use_reference=use_reference, alpha_lr=args.alpha_lr, lr=args.lr,
        madds_penalty=args.evolution_madds_penalty, max_cell_madds=cell_limits(args))
    losses: list[float] = []

    def progress(config: dict, result: dict) -> None:
        losses.append(result["loss"])
        if len(losses) % max(1, args.generations // 6) == 0:
            print(f"  [evolution ref={use_reference}] generation {len(losses)}/{args.generations} "
                  f"loss {result['loss']:.3f} ({result['images_per_s']:.0f} img/s)", flush=True)

    run_in_process(searcher, runner or _runner(args, spec_for(args, space, seed)), on_result=progress)
    cells = searcher.top_cells()
    return {"use_reference": use_reference, "seconds": time.perf_counter() - start, "loss": losses,
            "steps": args.generations * args.iterations, "generated_cells": cells,
            "generated_space": space.generated_space(cells).to_spec(), "best": searcher.best_architecture(),
            "distance_to_reference": float(np.mean([hamming_distance(c, REFERENCE_IRB) for layer in cells for c in layer])),
            "population": searcher.population_table()}


def search(args: argparse.Namespace, label: str, space_spec: dict[str, Any], seed: int = 0, runner: Any = None,
           random_search: bool = True) -> dict[str, Any]:
    """SPOS on one space (supernet training, then evolution), then random search on the same supernet
    with as many candidates; both rank by Eq. (6)'s regularised loss."""
    from tune_spacenas.jobs import AUTOSPACE_KEY, IMAGES_KEY, AutoSpaceJob
    from tune_spacenas.runner import run_in_process
    from tune_spacenas.searchers import EvolutionSettings, RandomSearcher, SPOSSearcher
    from tune_spacenas.spaces import space_from_spec

    start = _start(args, f"search on the {label} space")
    space = space_from_spec(space_spec)
    runner = runner or _runner(args, spec_for(args, space, seed))
    constants = {AUTOSPACE_KEY: AutoSpaceJob(madds_penalty=args.madds_penalty).to_dict(), IMAGES_KEY: args.eval_images}
    population = min(args.search_population, space.size)
    evolution = EvolutionSettings(population=population, generations=args.search_generations,
                                  parents=max(2, population // 4), mutations=population // 2,
                                  crossovers=population - population // 2)
    spos = SPOSSearcher(space=space, metric="regularized_loss", mode="min", seed=seed, train_steps=args.supernet_steps,
                        steps_per_trial=max(1, args.supernet_steps // 5), lr=args.lr, evolution=evolution, eval_batch=25)
    run_in_process(spos, runner, param_space=constants)
    trained = time.perf_counter()
    found = spos.progress()
    evaluated, best_evo = found.evaluations_done, found.best_arch
    out = {"label": label, "space_size": space.size, "supernet_steps": args.supernet_steps, "evaluated": evaluated,
           "evolution": {"arch": best_evo, "supernet_score": found.best,
                         "madds": space.cost(space.from_string(best_evo)).madds},
           "train_and_evolution_seconds": trained - start}
    if random_search:
        random = RandomSearcher(space=space, metric="regularized_loss", mode="min", seed=seed,
                                max_queries=min(evaluated, space.size))
        run_in_process(random, runner, param_space=constants, space=space)
        best = random.best_record()
        out["random"] = {"arch": best["arch"], "supernet_score": best["regularized_loss"],
                         "madds": space.cost(space.from_string(best["arch"])).madds}
    print(f"  [{label}] evolution found {best_evo}", flush=True)
    return out | {"seconds": time.perf_counter() - start}


def trained_alone(args: argparse.Namespace, space_spec: dict[str, Any], arch: str, seed: int, steps: int,
                  train_size: int | None = None) -> dict[str, Any]:
    """Train ``arch`` from scratch (its own weights only, cosine lr) and score it on the test set."""
    from tune_spacenas.spaces import space_from_spec

    _start(args, f"standalone seed {seed}: {arch[:60]}")
    spec = spec_for(args, space_from_spec(space_spec), 1000 + seed, train_size)
    return standalone(spec, arch, steps, seed, jobs=4, images=args.test_images, device=args.device)


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
    layer = FitnessWeightedLayer([functools.partial(net, arch=a) for net, a in zip(nets, archs)],
                                 [1e-3 * a for a in TABLE6_INIT[run]], gate_paths=2, alpha_lr=args.alpha_lr)
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
    return {"run": run, "initial": [1e-3 * a for a in TABLE6_INIT[run]], "alpha_per_epoch": alphas,
            "active_steps": layer.steps.tolist()}


def first_correct_epoch(alphas: list[list[float]], truth: list[float]) -> int | None:
    """The first epoch from which the fitness scores order the networks as ``truth`` does, to the end."""
    order = list(np.argsort(truth))
    correct = [list(np.argsort(a)) == order for a in alphas]
    for epoch in range(len(correct)):
        if all(correct[epoch:]):
            return epoch
    return None


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    from tune_spacenas.spaces import IRBSpace, OpenCellSpace

    spaces = {"full": OpenCellSpace(**plan(args)).to_spec(), "manual": IRBSpace(**plan(args)).to_spec()}
    sched = Scheduler(args.parallel, args.threads)
    seeds = range(args.seeds)

    def train_found(label: str, result: dict) -> None:
        for algo in ("evolution", "random") if label != "full" else ("evolution",):
            for seed in seeds:
                sched.submit(f"standalone/{label}/{algo}/{seed}", trained_alone, args, spaces[label],
                             result[algo]["arch"], seed, args.standalone_steps)

    def searched(label: str) -> Callable[[dict], None]:
        return lambda result: train_found(label, result)

    def generated(result: dict) -> None:
        spaces["autospace"] = result["generated_space"]
        sched.submit("search/autospace", search, args, "autospace", spaces["autospace"], then=searched("autospace"))

    # Longest chain first: evolution -> search on its space -> standalone trainings.
    sched.submit("evolution/reference", evolve, args, True, then=generated)
    sched.submit("search/full", search, args, "full", spaces["full"], then=searched("full"))
    sched.submit("search/manual", search, args, "manual", spaces["manual"], then=searched("manual"))
    sched.submit("evolution/no_reference", evolve, args, False)
    for run in range(len(TABLE6_INIT)):
        sched.submit(f"table6/fitness/{run}", table6_fitness, args, run)
    for k, cell in enumerate(TABLE6_CELLS):
        arch = ",".join([cell] * len(args.widths))
        for seed in seeds:
            sched.submit(f"table6/truth/{k}/{seed}", trained_alone, args, spaces["full"], arch, seed,
                         args.table6_epochs * args.table6_train_size // args.batch_size, args.table6_train_size)
    return {"spaces": spaces, **sched.run()}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def summarise(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    seeds = range(args.seeds)

    def trained(label: str, algo: str) -> dict[str, Any]:
        runs = [results[f"standalone/{label}/{algo}/{s}"] for s in seeds]
        found = results[f"search/{label}"][algo]
        return {"arch": found["arch"], "supernet_score": found["supernet_score"],
                "accuracy": [r["accuracy"] for r in runs], "madds": [r["madds"] for r in runs],
                "params": runs[0]["params"], "standalone_seconds": [r["seconds"] for r in runs]}

    spaces = {label: trained(label, "evolution") for label in ("full", "manual", "autospace")}
    algorithms = {algo: {label: trained(label, algo) for label in ("manual", "autospace")}
                  for algo in ("evolution", "random")}
    truth = [float(np.mean([results[f"table6/truth/{k}/{s}"]["accuracy"] for s in seeds])) for k in range(3)]
    robustness = []
    for run in range(len(TABLE6_INIT)):
        fit = results[f"table6/fitness/{run}"]
        robustness.append({**fit, "epochs_to_correct_ranking": first_correct_epoch(fit["alpha_per_epoch"], truth)})
    evolutions = {key: results[f"evolution/{key}"] for key in ("reference", "no_reference")}
    return {
        "data": f"CIFAR-10 (shared JPEG Parquet) at {args.resolution}x{args.resolution}, "
                f"{'all 45,000' if args.train_size is None else args.train_size} training images, 5,000 validation "
                f"(search), 10,000 test (standalone)",
        "plan": plan(args),
        "budget": {"evolution_steps": args.generations * args.iterations, "supernet_steps": args.supernet_steps,
                   "candidates_evaluated": {k: results[f"search/{k}"]["evaluated"] for k in ("full", "manual", "autospace")},
                   "standalone_steps": args.standalone_steps, "batch_size": args.batch_size,
                   "madds_penalty": args.madds_penalty, "eval_images": args.eval_images,
                   "cell_limit": args.cell_limit, "evolution_madds_penalty": args.evolution_madds_penalty,
                   "design_cost_seconds": evolutions["reference"]["seconds"],
                   "search_seconds": {k: results[f"search/{k}"]["seconds"] for k in ("full", "manual", "autospace")}},
        "seeds": args.seeds,
        "spaces": spaces,
        "algorithms": algorithms,
        "reference_dag": {key: {"loss": ev["loss"], "seconds": ev["seconds"], "generated_cells": ev["generated_cells"],
                                "distance_to_reference": ev["distance_to_reference"]} for key, ev in evolutions.items()},
        "fitness_robustness": robustness,
        "fitness_robustness_truth": {"networks": list(TABLE6_CELLS), "standalone_accuracy": truth,
                                     "per_seed": [[results[f"table6/truth/{k}/{s}"]["accuracy"] for s in seeds]
                                                  for k in range(3)],
                                     "epoch_steps": args.table6_train_size // args.batch_size},
        "generated_space": results["spaces"]["autospace"],
        "evolution_population": evolutions["reference"]["population"],
    }


def write_report(payload: dict[str, Any], out: Path, command: str | None = None) -> None:
    rows = []
    for title, entries in [("(a) evolution", payload["spaces"])] + [
            (f"(b) {algo}", payload["algorithms"][algo]) for algo in ("random",)]:
        for label, entry in entries.items():
            mean, std = mean_std(entry["accuracy"])
            rows.append([title, label, f"{mean:.2f} +- {std:.2f}", f"{entry['madds'][0] / 1e6:.2f}",
                         f"{entry['params'] / 1e6:.3f}", f"{entry['supernet_score']:.3f}",
                         "`" + entry["arch"].replace("|", "\\|") + "`"])
    auto, manual, full = (payload["spaces"][k]["accuracy"] for k in ("autospace", "manual", "full"))
    rand = payload["algorithms"]["random"]
    notes = [f"Standalone test accuracy, mean +- std over {payload['seeds']} training seeds; MAdds per 16x16 image. "
             f"Supernet score: Eq. (6)'s regularised loss on {payload['budget']['eval_images']} validation images "
             "(lower is better).",
             f"Welch p (evolution): autospace vs manual {welch_p(auto, manual):.3f}, autospace vs full {welch_p(auto, full):.3f}; "
             f"(random) autospace vs manual {welch_p(rand['autospace']['accuracy'], rand['manual']['accuracy']):.3f}.",
             f"Budget: {payload['budget']}.", "",
             "(c) Reference DAG (Fig. 3): mean training loss of the last quarter of generations: " + ", ".join(
                 f"{k} {np.mean(v['loss'][-max(1, len(v['loss']) // 4):]):.3f} (mean distance of the generated cells "
                 f"to the IRB cell {v['distance_to_reference']:.3f})" for k, v in payload["reference_dag"].items()), "",
             "(d) Fitness robustness (Table 6): standalone accuracy of Net1-3 "
             f"{[round(a, 2) for a in payload['fitness_robustness_truth']['standalone_accuracy']]}; epochs to the "
             "correct ranking from the five initial fitness settings: "
             f"{[r['epochs_to_correct_ranking'] for r in payload['fitness_robustness']]} (None: not reached)."]
    write_markdown(out.with_suffix(".md"), "AutoSpace on CIFAR-10 (CPU analog of Tables 2, 4, 6 and Fig. 3)",
                   ["comparison", "space", "test acc. (%)", "MAdds (M)", "params (M)", "supernet score", "architecture"],
                   rows, notes="\n".join(notes), command=command)


def plot(payload: dict[str, Any], folder: Path) -> None:
    fig, ax = new_figure()
    for key, ev in payload["reference_dag"].items():
        ax.plot(range(1, len(ev["loss"]) + 1), ev["loss"], label=f"{'with' if key == 'reference' else 'without'} reference DAG")
    ax.set_xlabel("generation")
    ax.set_ylabel("supernet training loss")
    ax.set_title("AutoSpace evolution (Fig. 3 analog)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, folder / "autospace_reference_dag.png")

    fig, ax = new_figure()
    marks = {"evolution": "o", "random": "s"}
    colours = {"full": "tab:gray", "manual": "tab:blue", "autospace": "tab:red"}
    entries = [("evolution", k, v) for k, v in payload["spaces"].items()]
    entries += [("random", k, v) for k, v in payload["algorithms"]["random"].items()]
    for algo, label, entry in entries:
        mean, std = mean_std(entry["accuracy"])
        ax.errorbar(entry["madds"][0] / 1e6, mean, yerr=std, fmt=marks[algo], color=colours[label], capsize=3,
                    label=f"{label} / {algo}")
    ax.set_xlabel("MAdds (M, 16x16 input)")
    ax.set_ylabel("standalone test accuracy (%)")
    ax.set_title("Found architectures per space and search algorithm")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, folder / "autospace_spaces.png")

    runs = payload["fitness_robustness"]
    fig, axes = new_figure(len(runs), size=(3.2, 3.2), sharey=True)
    for ax, run in zip(np.atleast_1d(axes), runs):
        alphas = np.asarray(run["alpha_per_epoch"])
        for k in range(alphas.shape[1]):
            ax.plot(alphas[:, k], label=f"Net{k + 1}")
        ax.set_title(f"S/N {run['run'] + 1}: correct from {run['epochs_to_correct_ranking']}", fontsize=9)
        ax.set_xlabel("epoch")
    np.atleast_1d(axes)[0].set_ylabel("fitness score alpha")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    save_figure(fig, folder / "autospace_fitness_robustness.png")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3, help="standalone training seeds per found architecture")
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--widths", type=int, nargs="+", default=[16, 24, 24, 32, 32])
    p.add_argument("--strides", type=int, nargs="+", default=[1, 2, 1, 2, 1])
    p.add_argument("--stem", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--eval-images", type=int, default=1000)
    p.add_argument("--test-images", type=int, default=10000)
    p.add_argument("--madds-penalty", type=float, default=2e-8, help="Eq. (6)'s lambda, per multiply-add")
    # AutoSpace's evolution
    p.add_argument("--cells", type=int, default=4, help="K cells per layer")
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--tournament", type=int, default=3)
    p.add_argument("--generations", type=int, default=24)
    p.add_argument("--iterations", type=int, default=100, help="f: iterations per supernet generation")
    p.add_argument("--epsilon", type=float, default=0.5)
    p.add_argument("--alpha-lr", type=float, default=0.05)
    p.add_argument("--cell-limit", choices=("irb", "none"), default="irb",
                   help="Eq. (1)'s per-cell MAdds limit: the manual space's largest block per layer, or none")
    p.add_argument("--evolution-madds-penalty", type=float, default=0.0,
                   help="Eq. (6)'s lambda on the fitness-weighted layers during the evolution (the paper: none)")
    # The searches on each space
    p.add_argument("--supernet-steps", type=int, default=3000)
    p.add_argument("--search-population", type=int, default=20)
    p.add_argument("--search-generations", type=int, default=5)
    p.add_argument("--standalone-steps", type=int, default=1000)
    # Table 6
    p.add_argument("--table6-epochs", type=int, default=8)
    p.add_argument("--table6-train-size", type=int, default=10000)
    # Machinery
    p.add_argument("--parallel", type=int, default=2, help="processes, one thread each")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, default=OUT_DIR / "autospace.json")
    p.add_argument("--plot", type=Path, default=None, help="only redraw the plots and Markdown from this JSON")
    return p


def main() -> None:
    import json

    args = parser().parse_args()
    if args.plot:
        payload = json.loads(args.plot.read_text())
        write_report(payload, args.plot, command=payload["command"])
        return plot(payload, args.plot.parent)
    start = time.perf_counter()
    payload = summarise(args, run_all(args))
    payload["wall_seconds"] = time.perf_counter() - start
    write_json(args.out, payload)
    write_report(payload, args.out)
    plot(payload, args.out.parent)
    print(f"wrote {args.out} ({payload['wall_seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
