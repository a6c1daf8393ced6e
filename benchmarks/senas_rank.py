"""SE-NAS vs SPOS rank correlation on the NAS-Bench-201 supernet trained on CIFAR-10 (SE-NAS Fig. 6-8).

    python -m benchmarks.senas_rank --seeds 3 --out benchmarks/results/senas/senas_rank.json

Protocol (the same ground truth and supernet as ``benchmarks.spos_rank``; CPU setting of FACTS.md): 16x16
CIFAR-10, NAS-Bench-201 supernet C=16, N=1, SGD with one cosine learning rate over both stages, batch
128; ground truth is the table's CIFAR-10 accuracy. SE-NAS runs its own searcher (``SENASSearcher``,
in-process): 2 stages of ``--epochs-per-stage`` epochs, K=5 snapshots over each stage's last epoch
(Eq. 4), ``--samples-per-op`` child models per operator (Eq. 5), 10 operators dropped per stage, T=50.

SPOS gets the same number of training steps and shares SE-NAS's first stage: stage 1 is plain SPOS
training of the full space (SE-NAS only adds snapshots), so the supernet is checkpointed there and SPOS
continues it for the remaining stages with the same learning-rate schedule: a paired comparison.

Kendall tau is measured on three sets: F, a fixed sample of 200 cells of the full space (spos_rank's);
S1, a sample of the space left after stage 1's shrinking (what stage 2 trains); S2, every cell of the
final space (the paper's "current shrunk space" after two stages). The kept-operator analysis (Fig. 6)
ranks the 30 operators by their ground-truth score, the mean table accuracy of every cell containing
them, and compares what each stage kept with random shrinking under the same rules.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import RESULTS, Scheduler, new_figure, save_figure, train, welch_p, write_json, write_markdown
from benchmarks.rank import parameter_counts, rank_report, rank_sample, score, table_truth

OUT = RESULTS / "senas"


# ----------------------------------------------------------------------------------------------
# One seed, in pieces (so two processes can share the work; the GPU section runs them in a row)
# ----------------------------------------------------------------------------------------------
def make_runner(cfg: dict, seed: int):
    import torch

    from tune_spacenas.data import DataSpec
    from tune_spacenas.runner import InProcessSupernet
    from tune_spacenas.spaces import NASBench201Space
    from tune_spacenas.supernet.spec import SupernetSpec

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(seed)
    space = NASBench201Space(channels=cfg["channels"], cells_per_stage=cfg["cells"], input_size=cfg["resolution"])
    spec = SupernetSpec(space, DataSpec.from_dict(cfg["data"]), batch_size=cfg["batch_size"], lr=cfg["lr"],
                        init_seed=seed, eval_images=cfg["eval_images"])
    return InProcessSupernet(spec, cfg["device"])


def make_searcher(cfg: dict, runner, seed: int):
    from tune_spacenas.searchers import SENASSearcher

    return SENASSearcher(
        space=runner.worker.space, metric="accuracy", mode="max", seed=seed,
        stages=cfg["stages"], stage_steps=cfg["stage_steps"], steps_per_trial=cfg["steps_per_job"], lr=cfg["lr"],
        snapshots=cfg["snapshots"], snapshot_window=cfg["steps_per_epoch"], samples_per_op=cfg["samples_per_op"],
        drop_per_stage=cfg["drop"], merge_threshold=cfg["threshold"], eval_batch=cfg["eval_batch"],
        evaluation_stability=cfg.get("evaluation_stability", True), expanding=cfg.get("expanding", True),
        selection_confidence=cfg.get("selection_confidence", True))


def drive(searcher, runner, until=lambda: False) -> None:
    """The suggest / complete loop of ``run_in_process``, stopping when ``until()`` holds (a stage boundary)."""
    from tune_spacenas.searchers.base import FINISHED

    while not until():
        trial = f"bench-{runner.trials}"
        config = searcher.suggest(trial)
        if config is None or config == FINISHED:
            return
        searcher.on_trial_complete(trial, result=runner(config))


def truth_of(arch) -> float:
    from tune_spacenas.tables import NASBench201Table

    return NASBench201Table.load().query(arch, "cifar10")


def senas_taus(searcher, runner, sets: dict[str, list]) -> dict[str, dict]:
    """Tau of SE-NAS's P(a) (Eq. 4 weights, expanded supernet) on each named set of cells."""
    out = {}
    for name, archs in sets.items():
        report = searcher.rank_correlation(runner, truth_of, archs=archs)
        out[name] = _tau_entry(report["scores"], report["truth"], archs)
    return out


def spos_taus(runner, sets: dict[str, list]) -> dict[str, dict]:
    """Tau of the SPOS supernet (its last weights, no expansion) on each named set of cells."""
    return {name: _tau_entry(score(runner, archs), table_truth(archs), archs) for name, archs in sets.items()}


def _tau_entry(scores: list[float], truth: list[float], archs: list) -> dict[str, Any]:
    from tune_spacenas.spaces import NASBench201Space

    params = parameter_counts(NASBench201Space(), archs)
    report = rank_report(scores, truth, params) if len(archs) > 3 else {
        "kendall_tau": float("nan") if len(archs) < 2 else _tau(scores, truth)}
    return {**report, "cells": len(archs), "scores": scores}


def _tau(scores, truth) -> float:
    from tune_spacenas.analysis import kendall_tau

    return kendall_tau(scores, truth)


def stage_one(cfg: dict, seed: int, workdir: str) -> dict:
    """Stage 1 (SPOS training of the full space, snapshots, operator scores, shrink, merge); measure F and
    S1; checkpoint the supernet and the searcher for both continuations."""
    start = time.perf_counter()
    runner = make_runner(cfg, seed)
    searcher = make_searcher(cfg, runner, seed)
    drive(searcher, runner, until=lambda: searcher.stage >= 1)
    trained = time.perf_counter() - start
    full = rank_sample(cfg["archs"], seed=cfg["sample_seed"])
    shrunk = searcher.shrunk_space.sample_many(np.random.default_rng(cfg["sample_seed"]),
                                               min(cfg["shrunk_archs"], searcher.shrunk_space.size), distinct=True)
    senas = senas_taus(searcher, runner, {"F": full, "S1": shrunk})
    spos = spos_taus(runner, {"F": full})
    searcher.save(os.path.join(workdir, f"searcher{seed}.pkl"))
    runner.store.checkpoint(os.path.join(workdir, f"stage1_{seed}.npz"))
    _log(seed, f"stage 1 done in {time.perf_counter() - start:.0f} s: SE-NAS tau F {senas['F']['kendall_tau']:.3f} "
               f"S1 {senas['S1']['kendall_tau']:.3f}; SPOS F {spos['F']['kendall_tau']:.3f}")
    return {"seed": seed, "trials": runner.trials, "train_and_score_seconds": trained, "senas": senas, "spos": spos,
            "S1": [searcher.space.to_string(a) for a in shrunk]}


def _restore(cfg: dict, seed: int, workdir: str, first: dict):
    runner = make_runner(cfg, seed)
    runner.store.load(os.path.join(workdir, f"stage1_{seed}.npz"))
    runner.trials = first["trials"]  # the store de-duplicates pushes by trial id: continue with fresh ids
    return runner


def senas_rest(cfg: dict, seed: int, workdir: str, first: dict) -> dict:
    """SE-NAS's later stages (expanded supernet in the shrunk space), tau after each, then its final search."""
    start = time.perf_counter()
    runner = _restore(cfg, seed, workdir, first)
    searcher = make_searcher(cfg, runner, seed)
    searcher.restore(os.path.join(workdir, f"searcher{seed}.pkl"))
    space = searcher.space
    sets = {"F": rank_sample(cfg["archs"], seed=cfg["sample_seed"]), "S1": [space.from_string(s) for s in first["S1"]]}
    per_stage = []
    for stage in range(2, cfg["stages"] + 1):
        drive(searcher, runner, until=lambda stage=stage: searcher.stage >= stage)
        final = list(searcher.shrunk_space.enumerate()) if searcher.shrunk_space.size <= cfg["archs"] else \
            searcher.shrunk_space.sample_many(np.random.default_rng(cfg["sample_seed"]), cfg["archs"], distinct=True)
        per_stage.append(senas_taus(searcher, runner, {**sets, f"S{stage}": final}))
    drive(searcher, runner)  # the final evolutionary (here exhaustive) search
    best = searcher.best_architecture()
    last = f"S{cfg['stages']}"
    _log(seed, f"SE-NAS done in {time.perf_counter() - start:.0f} s: tau {last} "
               f"{per_stage[-1][last]['kendall_tau']:.3f}, best {best} ({truth_of(best):.2f}%)")
    return {"seed": seed, "per_stage": per_stage, "stage_log": searcher.stage_log, "best": best,
            "best_accuracy": truth_of(best), "final_cells": [space.to_string(a) for a in final],
            "seconds": time.perf_counter() - start}


def spos_rest(cfg: dict, seed: int, workdir: str, first: dict) -> dict:
    """SPOS continued from the shared stage-1 supernet for the same remaining steps and schedule."""
    start = time.perf_counter()
    runner = _restore(cfg, seed, workdir, first)
    space = runner.worker.space
    sets = {"F": rank_sample(cfg["archs"], seed=cfg["sample_seed"]), "S1": [space.from_string(s) for s in first["S1"]]}
    T, total = cfg["stage_steps"], cfg["stage_steps"] * cfg["stages"]
    per_stage = []
    for stage in range(2, cfg["stages"] + 1):
        train(runner, T, cfg["steps_per_job"], cfg["lr"], seed * 7919 + stage, schedule_offset=(stage - 1) * T,
              schedule_steps=total)
        per_stage.append(spos_taus(runner, sets))
    runner.store.checkpoint(os.path.join(workdir, f"spos_{seed}.npz"))
    _log(seed, f"SPOS done in {time.perf_counter() - start:.0f} s: tau F {per_stage[-1]['F']['kendall_tau']:.3f}")
    return {"seed": seed, "per_stage": per_stage, "seconds": time.perf_counter() - start, "trials": runner.trials}


def spos_on_cells(cfg: dict, seed: int, workdir: str, cells: list[str]) -> dict:
    """The final SPOS supernet on SE-NAS's final space (the same cells both rank)."""
    runner = make_runner(cfg, seed)
    runner.store.load(os.path.join(workdir, f"spos_{seed}.npz"))
    return spos_taus(runner, {"final": [runner.worker.space.from_string(s) for s in cells]})["final"]


def _log(seed: int, text: str) -> None:
    print(f"[seed {seed}] {text}", flush=True)


# ----------------------------------------------------------------------------------------------
# Fig. 6: are the operators with the best ground-truth scores kept?
# ----------------------------------------------------------------------------------------------
def kept_ops_analysis(stage_log: list[dict], random_trials: int = 2000, seed: int = 0) -> list[dict]:
    """Per stage: the ground-truth rank (1 = best of the 30 operators) of every kept and dropped operator,
    how many of the ground-truth top-m (m = operators left) were kept, and the same count for random
    shrinking (random scores, the same k and never-empty rule) from the same space."""
    from tune_spacenas.searchers.senas import ground_truth_operator_scores, shrink_operators
    from tune_spacenas.searchers.senas.scores import labels, operators, ranked
    from tune_spacenas.spaces import NASBench201Space

    full = NASBench201Space()
    gt = ground_truth_operator_scores(full, truth_of)
    rank = {op: i + 1 for i, op in enumerate(ranked(gt))}
    rng = np.random.default_rng(seed)
    space, out = full, []
    for record in stage_log:
        shrunk = full.restrict(record["allowed"])
        kept, before = operators(shrunk), operators(space)
        dropped = [o for o in before if o not in kept]
        top = {o for o in rank if rank[o] <= len(kept)}
        random_top = [len(top & set(operators(shrink_operators(space, {o: rng.random() for o in before},
                                                                len(dropped))[0]))) for _ in range(random_trials)]
        pairs = [(k, d) for k in kept for d in dropped]
        out.append({"stage": record["stage"] + 1, "kept": labels(full, kept), "dropped": labels(full, dropped),
                    "kept_gt_ranks": sorted(rank[o] for o in kept), "dropped_gt_ranks": sorted(rank[o] for o in dropped),
                    "top_m": len(kept), "top_m_kept": len(top & set(kept)),
                    "random_top_m_kept_mean": float(np.mean(random_top)),
                    "pairs_kept_above_dropped": float(np.mean([gt[k] > gt[d] for k, d in pairs])) if pairs else None})
        space = shrunk
    return out


def ground_truth_ranking() -> list[dict]:
    from tune_spacenas.searchers.senas import ground_truth_operator_scores
    from tune_spacenas.searchers.senas.scores import operator_label, ranked
    from tune_spacenas.spaces import NASBench201Space

    space = NASBench201Space()
    gt = ground_truth_operator_scores(space, truth_of)
    return [{"rank": i + 1, "operator": operator_label(space, o), "score": gt[o]} for i, o in enumerate(ranked(gt))]


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
def summarise(cfg: dict, seeds: list[int], first: dict, senas: dict, spos: dict, same_cells: dict) -> dict:
    S = cfg["stages"]
    last = f"S{S}"
    senas_per_stage = [[first[s]["senas"]["S1"]["kendall_tau"]] + [st[f"S{i + 2}"]["kendall_tau"]
                                                                    for i, st in enumerate(senas[s]["per_stage"])]
                       for s in seeds]
    senas_full = [[first[s]["senas"]["F"]["kendall_tau"]] + [st["F"]["kendall_tau"] for st in senas[s]["per_stage"]]
                  for s in seeds]
    senas_s1 = [st["S1"]["kendall_tau"] for s in seeds for st in senas[s]["per_stage"][-1:]]
    spos_full = [[first[s]["spos"]["F"]["kendall_tau"]] + [st["F"]["kendall_tau"] for st in spos[s]["per_stage"]]
                 for s in seeds]
    spos_s1 = [spos[s]["per_stage"][-1]["S1"]["kendall_tau"] for s in seeds]
    senas_final = [senas[s]["per_stage"][-1][last]["kendall_tau"] for s in seeds]
    spos_final = [row[-1] for row in spos_full]
    spos_same = [same_cells[s]["kendall_tau"] for s in seeds]
    kept = [kept_ops_analysis(senas[s]["stage_log"], seed=s) for s in seeds]
    gain = {
        "paper_protocol": _gain(senas_final, spos_final,
                                "SE-NAS on its final shrunk space vs SPOS on the full-space sample F"),
        "same_final_cells": _gain(senas_final, spos_same, "both supernets ranking SE-NAS's final cells"),
        "same_stage1_space": _gain(senas_s1, spos_s1, "both ranking the sample S1 of the space stage 2 trained"),
        "full_space_sample": _gain([row[-1] for row in senas_full], spos_final, "both ranking F"),
    }
    return {
        "ground_truth": "NAS-Bench-201 table, CIFAR-10 test accuracy after 200 epochs (all 15,625 cells)",
        "seeds": len(seeds),
        "budget": {"stages": S, "epochs_per_stage": cfg["epochs_per_stage"], "steps_per_stage": cfg["stage_steps"],
                   "training_steps_each": S * cfg["stage_steps"], "batch_size": cfg["batch_size"],
                   "images_seen_each": S * cfg["stage_steps"] * cfg["batch_size"]},
        "setting": {k: cfg.get(k, True) for k in ("resolution", "channels", "cells", "lr", "archs", "shrunk_archs",
                                                  "snapshots", "samples_per_op", "drop", "threshold", "eval_images",
                                                  "evaluation_stability", "selection_confidence", "expanding")},
        "sets": {"F": f"fixed sample of {cfg['archs']} cells of the full space (spos_rank's)",
                 "S1": f"sample of {cfg['shrunk_archs']} cells of the space after stage 1's shrinking",
                 last: "every cell of the final space (after the last stage's shrinking)"},
        "spos": {"kendall_tau": spos_final, "kendall_tau_per_stage": spos_full,
                 "kendall_tau_top_half": [spos[s]["per_stage"][-1]["F"]["kendall_tau_top_half"] for s in seeds],
                 "kendall_tau_on_senas_final_cells": spos_same, "kendall_tau_on_S1": spos_s1},
        "senas": {"kendall_tau": senas_final, "kendall_tau_per_stage": senas_per_stage,
                  "kendall_tau_full_per_stage": senas_full, "kendall_tau_on_S1": senas_s1,
                  "final_space_size": [len(senas[s]["final_cells"]) for s in seeds],
                  "best": [senas[s]["best"] for s in seeds], "best_accuracy": [senas[s]["best_accuracy"] for s in seeds],
                  "kept_ops": kept},
        "gain": gain,
        "params_tau": first[seeds[0]]["spos"]["F"]["params_tau"],
        "params_tau_top_half": first[seeds[0]]["spos"]["F"]["params_tau_top_half"],
        "ground_truth_operator_ranking": ground_truth_ranking(),
        "runs": [{"seed": s, "stage1": first[s], "senas": senas[s], "spos": spos[s], "spos_on_final_cells": same_cells[s]}
                 for s in seeds],
    }


def _gain(a: list[float], b: list[float], what: str) -> dict:
    diff = np.asarray(a, float) - np.asarray(b, float)
    return {"what": what, "mean": float(np.nanmean(diff)), "per_seed": diff.tolist(),
            "welch_p": welch_p(a, b) if len(a) > 1 else None}


def plot(payload: dict, folder: Path, name: str = "senas_rank.png") -> Path:
    senas, spos = payload["senas"], payload["spos"]
    stages = np.arange(1, len(senas["kendall_tau_per_stage"][0]) + 1)
    fig, (ax, bx) = new_figure(2, size=(6, 4.4))
    lines = [("SE-NAS, current shrunk space", senas["kendall_tau_per_stage"], "C0", "-"),
             ("SE-NAS, full-space sample F", senas["kendall_tau_full_per_stage"], "C0", "--"),
             ("SPOS, full-space sample F", spos["kendall_tau_per_stage"], "C3", "--")]
    for label, runs, colour, style in lines:
        runs = np.asarray(runs, float)
        for run in runs:
            ax.plot(stages, run, color=colour, ls=style, alpha=0.25, lw=0.8)
        ax.errorbar(stages, runs.mean(0), yerr=runs.std(0), color=colour, ls=style, marker="o", capsize=3, label=label)
    same_cells = [("SPOS, SE-NAS's final cells", spos["kendall_tau_on_senas_final_cells"], "C3", "s", 0.08),
                  ("SE-NAS, S1 (space stage 2 trained)", senas["kendall_tau_on_S1"], "C0", "^", -0.16),
                  ("SPOS, the same S1 cells", spos["kendall_tau_on_S1"], "C3", "^", -0.08)]
    for label, values, colour, marker, shift in same_cells:
        ax.errorbar([stages[-1] + shift], [np.mean(values)], yerr=[np.std(values)], color=colour, marker=marker,
                    capsize=3, ls="none", label=label)
    ax.axhline(payload["params_tau"], color="gray", lw=0.8, ls=":", label="parameter count on F (floor)")
    ax.set_xticks(stages, [f"after stage {s}" for s in stages])
    ax.set_ylabel("Kendall tau vs NAS-Bench-201 CIFAR-10")
    ax.set_title(f"tau per stage, {payload['seeds']} seeds ({payload['budget']['epochs_per_stage']} epochs/stage)")
    ax.legend(fontsize=7)
    for i, seed_stages in enumerate(senas["kept_ops"]):
        for entry in seed_stages:
            y = entry["stage"] + (i - 1) * 0.12
            bx.scatter(entry["kept_gt_ranks"], [y] * len(entry["kept_gt_ranks"]), color="C2", s=14,
                       label="kept" if i == 0 and entry["stage"] == 1 else None)
            bx.scatter(entry["dropped_gt_ranks"], [y] * len(entry["dropped_gt_ranks"]), color="C1", marker="x", s=14,
                       label="dropped" if i == 0 and entry["stage"] == 1 else None)
    bx.set_xlabel("ground-truth rank of the operator (1 = best of 30)")
    bx.set_yticks(stages, [f"stage {s}" for s in stages])
    bx.set_title("Fig. 6: operators kept and dropped per stage (one row per seed)")
    bx.legend(fontsize=7)
    return save_figure(fig, folder / name)


def markdown(payload: dict, path: Path) -> None:
    senas, spos, gain = payload["senas"], payload["spos"], payload["gain"]
    rows = []
    for i, run in enumerate(payload["runs"]):
        rows.append([run["seed"], *senas["kendall_tau_per_stage"][i], senas["kendall_tau_full_per_stage"][i][-1],
                     senas["kendall_tau_on_S1"][i], *spos["kendall_tau_per_stage"][i],
                     spos["kendall_tau_on_S1"][i], spos["kendall_tau_on_senas_final_cells"][i],
                     senas["final_space_size"][i], f"{senas['best_accuracy'][i]:.2f}"])
    S = len(senas["kendall_tau_per_stage"][0])
    header = (["seed"] + [f"SE-NAS S{s} (after stage {s})" for s in range(1, S + 1)] + ["SE-NAS F (end)", "SE-NAS S1 (end)"]
              + [f"SPOS F (after stage {s})" for s in range(1, S + 1)] + ["SPOS S1 (end)", f"SPOS S{S} (end)",
                                                                          f"cells in S{S}", "SE-NAS best (%)"])
    kept = [f"seed {run['seed']}, stage {e['stage']}: {e['top_m_kept']}/{e['top_m']} of the ground-truth top-{e['top_m']} "
            f"kept (random shrinking {e['random_top_m_kept_mean']:.1f}); kept above dropped in "
            f"{e['pairs_kept_above_dropped']:.0%} of pairs" for run, runs in zip(payload["runs"], senas["kept_ops"])
            for e in runs]
    notes = "\n".join([
        f"Budget: {payload['budget']['training_steps_each']} training steps each ({S} x "
        f"{payload['budget']['epochs_per_stage']} epochs); SPOS shares SE-NAS's stage 1 (paired).",
        "", "Mean gains (SE-NAS minus SPOS):", *[
            f"- {g['what']}: {g['mean']:+.3f} (per seed {', '.join(f'{d:+.3f}' for d in g['per_seed'])}; "
            f"Welch p {g['welch_p'] if g['welch_p'] is None else round(g['welch_p'], 3)})" for g in gain.values()],
        "", f"Parameter count's tau on F: {payload['params_tau']:.3f} (better half {payload['params_tau_top_half']:.3f}).",
        "", "Kept operators (Fig. 6; ground-truth operator score = mean table accuracy of all cells containing it):",
        *[f"- {k}" for k in kept]])
    write_markdown(path, "SE-NAS vs SPOS rank correlation (NAS-Bench-201, CIFAR-10)", header, rows, notes=notes,
                   command=payload.get("command"))


# ----------------------------------------------------------------------------------------------
# The CPU run: two single-thread processes share the pieces of every seed
# ----------------------------------------------------------------------------------------------
def run_parallel(cfg: dict, seeds: list[int], parallel: int, workdir: str) -> dict:
    sched = Scheduler(parallel, cfg["threads"])

    def after_stage_one(seed: int):
        def then(result: dict) -> None:
            sched.submit(f"senas/{seed}", senas_rest, cfg, seed, workdir, result, then=after_continuation(seed))
            sched.submit(f"spos/{seed}", spos_rest, cfg, seed, workdir, result, then=after_continuation(seed))
        return then

    def after_continuation(seed: int):
        def then(_: dict) -> None:  # the second of the two continuations to finish scores SE-NAS's final cells
            if f"senas/{seed}" in sched.results and f"spos/{seed}" in sched.results:
                sched.submit(f"same/{seed}", spos_on_cells, cfg, seed, workdir,
                             sched.results[f"senas/{seed}"]["final_cells"])
        return then

    for seed in seeds:
        sched.submit(f"one/{seed}", stage_one, cfg, seed, workdir, then=after_stage_one(seed))
    results = sched.run()
    return summarise(cfg, seeds, *({s: results[f"{kind}/{s}"] for s in seeds} for kind in ("one", "senas", "spos", "same")))


def config_from_args(args: argparse.Namespace) -> dict:
    from tune_spacenas.data import DataSpec

    data = DataSpec("cifar10", resolution=args.resolution, seed=0, train_size=args.train_size)
    train_images = args.train_size or 50_000 - data.val_size
    steps_per_epoch = train_images // args.batch_size
    return {"data": data.to_dict(), "resolution": args.resolution, "channels": args.channels, "cells": args.cells,
            "batch_size": args.batch_size, "lr": args.lr, "stages": args.stages,
            "epochs_per_stage": args.epochs_per_stage, "steps_per_epoch": steps_per_epoch,
            "stage_steps": int(args.epochs_per_stage * steps_per_epoch), "steps_per_job": steps_per_epoch,
            "snapshots": args.snapshots, "samples_per_op": args.samples_per_op, "drop": args.drop,
            "threshold": args.threshold, "archs": args.archs, "shrunk_archs": args.shrunk_archs,
            "sample_seed": args.sample_seed, "eval_images": args.eval_images, "eval_batch": 50,
            "threads": args.threads, "device": args.device, "evaluation_stability": not args.no_evaluation_stability,
            "selection_confidence": not args.si_only, "expanding": not args.no_expanding}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--epochs-per-stage", type=float, default=16, help="paper: 20")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cells", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--snapshots", type=int, default=5, help="K of Eq. (4), over each stage's last epoch")
    parser.add_argument("--samples-per-op", type=int, default=30, help="child models per operator, Eq. (5)")
    parser.add_argument("--drop", type=int, default=10, help="operators dropped per stage (k)")
    parser.add_argument("--threshold", type=int, default=50, help="merging threshold T")
    parser.add_argument("--archs", type=int, default=200, help="cells of the full-space sample F")
    parser.add_argument("--shrunk-archs", type=int, default=100, help="cells of the stage-1 shrunk-space sample S1")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--train-size", type=int, default=None, help="training images (default: all 45,000)")
    parser.add_argument("--no-evaluation-stability", action="store_true", help="ablation: last weights, not Eq. (4)")
    parser.add_argument("--si-only", action="store_true", help="ablation (Table 6): Eq. (7) without Eq. (6)")
    parser.add_argument("--no-expanding", action="store_true", help="ablation (Table 6): no private weights")
    parser.add_argument("--parallel", type=int, default=2, help="processes side by side, one thread each")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=OUT / "senas_rank.json")
    parser.add_argument("--replot", type=Path, default=None, help="only redraw the PNG and Markdown of a results file")
    args = parser.parse_args()
    if args.replot:
        payload = json.loads(args.replot.read_text())
        markdown(payload, args.replot.with_suffix(".md"))
        return print(f"wrote {plot(payload, args.replot.parent, args.replot.with_suffix('.png').name)}")
    if args.stages < 2:
        parser.error("--stages must be at least 2: SPOS is compared after the stages that follow the shared first")

    cfg = config_from_args(args)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="senas_rank_") as workdir:
        payload = run_parallel(cfg, list(range(args.seeds)), args.parallel, workdir)
    payload["wall_seconds"] = time.perf_counter() - start
    write_json(args.out, payload)
    markdown(payload, args.out.with_suffix(".md"))
    png = plot(payload, args.out.parent, args.out.with_suffix(".png").name)
    for g in payload["gain"].values():
        print(f"gain {g['mean']:+.3f}: {g['what']}")
    print(f"SE-NAS tau {np.mean(payload['senas']['kendall_tau']):.3f}, SPOS {np.mean(payload['spos']['kendall_tau']):.3f}; "
          f"wrote {args.out}, {png} in {payload['wall_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
