"""SE-NAS vs SPOS rank correlation on NAS-Bench-201 (CIFAR-10): common samples, equal steps, paired seeds.

    python -m benchmarks.senas_rank --seeds 0 --normalization mean min-max \\
        --out benchmarks/results/senas/senas_rank_seed0.json           # choose settings on seed 0
    python -m benchmarks.senas_rank --seeds 1 2 3 4 5 --normalization mean   # report on seeds 1-5

Setting (FACTS.md's CPU rank setting): 16x16 CIFAR-10, NAS-Bench-201 supernet C=16, N=1, SGD with one
cosine learning rate over all training, batch 128, BatchNorm recalibrated per scored cell; ground truth
is the table's CIFAR-10 accuracy. SE-NAS (``SENASSearcher``, in-process) runs 2 shrink-and-expand stages
of ``--epochs-per-stage`` epochs and then trains its final, expanded space for ``--final-epochs`` (Eq. 4:
K=5 snapshots over each phase's last epoch; Eq. 5: ``--samples-per-op`` child models per operator;
k = ``--drop`` operators dropped per stage; T=50 over the layers that shrank).

SPOS gets the same number of training steps and the same learning-rate schedule. Stage 1 is plain SPOS
training of the full space for both (SE-NAS only adds snapshots), so the supernet is checkpointed there and
SPOS continues it: each seed's pair shares initialisation, data order and stage 1, a real pairing.

Both supernets rank the same cells:
  * F: a fixed sample of 200 cells of the full space (``spos_rank``'s);
  * S: up to ``--final-archs`` cells of SE-NAS's final space (all of it when smaller), at least 50: with
    k=7 per stage, 16 of 30 operators stay, and any 16 operators spread over 6 edges of at most 5 hold
    >= 5 x 5 x 3 = 75 cells (the paper's k=10 leaves <= 16 cells, where tau is noise).
Parameter count's tau on the same cells sits beside both. The paper's protocol (SE-NAS on its own final
space, SPOS on the full space) is a secondary row with its 95% confidence interval over seeds. Gains come
with Welch's p and the paired t-test's p (same seed, same stage 1, same cells). The kept-operator analysis
(Fig. 6) ranks the 30 operators by their ground-truth score and compares each stage with random shrinking.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import (
    RESULTS,
    Scheduler,
    ci95,
    new_figure,
    paired_p,
    save_figure,
    train,
    welch_p,
    write_json,
    write_markdown,
)
from benchmarks.rank import parameter_counts, rank_sample, score, table_truth

OUT = RESULTS / "senas"


# ----------------------------------------------------------------------------------------------
# One seed, in pieces: stage 1 (shared), SE-NAS's rest (per normalisation), SPOS's rest, SPOS on S
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
    spec = SupernetSpec(
        space,
        DataSpec.from_dict(cfg["data"]),
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        init_seed=seed,
        eval_images=cfg["eval_images"],
        recalibration_batches=cfg["recalibration_batches"],
    )
    return InProcessSupernet(spec, cfg["device"])


def make_searcher(cfg: dict, runner, seed: int, normalization: str):
    from tune_spacenas.searchers import SENASSearcher

    return SENASSearcher(
        space=runner.worker.space,
        metric="accuracy",
        mode="max",
        seed=seed,
        stages=cfg["stages"],
        stage_steps=cfg["stage_steps"],
        final_steps=cfg["final_steps"],
        steps_per_trial=cfg["steps_per_job"],
        lr=cfg["lr"],
        snapshots=cfg["snapshots"],
        snapshot_window=cfg["steps_per_epoch"],
        samples_per_op=cfg["samples_per_op"],
        drop_per_stage=cfg["drop"],
        merge_threshold=cfg["threshold"],
        eval_batch=cfg["eval_batch"],
        normalization=normalization,
        evaluation_stability=cfg["evaluation_stability"],
        expanding=cfg["expanding"],
        selection_confidence=cfg["selection_confidence"],
        merge_only_shrunk=cfg["merge_only_shrunk"],
    )


def drive(searcher, runner, until) -> None:
    """The suggest / complete loop of ``run_in_process``, stopped as soon as ``until()`` holds."""
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


def full_sample(cfg: dict) -> list:
    return rank_sample(cfg["archs"], seed=cfg["sample_seed"])


def scored(searcher, stage: int) -> bool:
    """Whether ``searcher`` has every operator score of ``stage`` (0-based) and has not yet shrunk from them."""
    from tune_spacenas.searchers.senas.searcher import SCORING

    return searcher.stage == stage and searcher.phase == SCORING and bool(searcher.values) and searcher.scoring.drained


def stage_one(cfg: dict, seed: int, workdir: str) -> dict:
    """Stage 1 (SPOS training of the full space with Eq. 4's snapshots) and its operator scoring, stopped just
    before the shrink so every normalisation shrinks from the same scores; the supernet (the SPOS supernet
    after a third of its training) ranks F; both are checkpointed for the continuations."""
    start = time.perf_counter()
    runner = make_runner(cfg, seed)
    searcher = make_searcher(cfg, runner, seed, cfg["normalizations"][0])
    drive(searcher, runner, until=lambda: scored(searcher, 0))
    scores = score(runner, full_sample(cfg))
    searcher.save(os.path.join(workdir, f"searcher{seed}.pkl"))
    runner.store.checkpoint(os.path.join(workdir, f"stage1_{seed}.npz"))
    _log(
        seed,
        f"stage 1 done in {time.perf_counter() - start:.0f} s: tau F {_tau(scores, table_truth(full_sample(cfg))):.3f}",
    )
    return {"seed": seed, "trials": runner.trials, "F_scores": scores, "seconds": time.perf_counter() - start}


def _restore(cfg: dict, seed: int, workdir: str, first: dict, name: str = "stage1"):
    runner = make_runner(cfg, seed)
    runner.store.load(os.path.join(workdir, f"{name}_{seed}.npz"))
    runner.trials = first["trials"]  # the store de-duplicates pushes by trial id: continue with fresh ids
    return runner


def senas_rest(cfg: dict, seed: int, workdir: str, first: dict, normalization: str) -> dict:
    """SE-NAS from the shared stage-1 scores: the shrinks and expansions, the final space's training, and its
    P(a) (Eq. 4 weights, expanded supernet) on F and on a sample S of its final space (also before the final
    training, to show what that training adds)."""
    from tune_spacenas.searchers.base import TRAINING

    start = time.perf_counter()
    runner = _restore(cfg, seed, workdir, first)
    searcher = make_searcher(cfg, runner, seed, normalization)
    with open(os.path.join(workdir, f"searcher{seed}.pkl"), "rb") as f:
        state = pickle.load(f)
    searcher.set_state(state | {"normalization": normalization})  # the variant shrinks from the same scores
    drive(searcher, runner, until=lambda: scored(searcher, cfg["stages"] - 1))
    last_stage = list(searcher.snapshot_names)  # Eq. (4) weights of the last stage's training
    trial = f"bench-{runner.trials}"
    job = searcher.suggest(trial)  # the last shrink and expansion; the final space's first training job
    final = searcher.shrunk_space
    cells = (
        list(final.enumerate())
        if final.size <= cfg["final_archs"]
        else final.sample_many(np.random.default_rng(cfg["sample_seed"]), cfg["final_archs"], distinct=True)
    )
    # What the search would rank without the final training: the last stage's averaged weights, expanded.
    before = score(runner, cells, senas=replace(searcher.expansion(), average=last_stage))
    if cfg["final_steps"]:
        searcher.on_trial_complete(trial, result=runner(job))
        drive(searcher, runner, until=lambda: searcher.phase == TRAINING and searcher.training.finished)
    senas = {
        name: searcher.rank_correlation(runner, truth_of, archs=archs)["scores"]
        for name, archs in (("F", full_sample(cfg)), ("S", cells))
    }
    _log(
        seed,
        f"SE-NAS ({normalization}) done in {time.perf_counter() - start:.0f} s: final space {final.size} cells, "
        f"tau S {_tau(senas['S'], table_truth(cells)):.3f} (before its training {_tau(before, table_truth(cells)):.3f}), "
        f"F {_tau(senas['F'], table_truth(full_sample(cfg))):.3f}",
    )
    return {
        "seed": seed,
        "normalization": normalization,
        "stage_log": searcher.stage_log,
        "final_space_size": final.size,
        "S": [searcher.space.to_string(a) for a in cells],
        "S_scores_before_final": before if cfg["final_steps"] else None,
        "F_scores": senas["F"],
        "S_scores": senas["S"],
        "seconds": time.perf_counter() - start,
    }


def spos_rest(cfg: dict, seed: int, workdir: str, first: dict) -> dict:
    """SPOS continued from the shared stage-1 supernet for SE-NAS's remaining steps, on the same schedule."""
    start = time.perf_counter()
    runner = _restore(cfg, seed, workdir, first)
    done, total = cfg["stage_steps"], cfg["stage_steps"] * cfg["stages"] + cfg["final_steps"]
    train(
        runner,
        total - done,
        cfg["steps_per_job"],
        cfg["lr"],
        seed * 7919 + 2,
        schedule_offset=done,
        schedule_steps=total,
    )
    scores = score(runner, full_sample(cfg))
    runner.store.checkpoint(os.path.join(workdir, f"spos_{seed}.npz"))
    _log(
        seed,
        f"SPOS done in {time.perf_counter() - start:.0f} s: tau F {_tau(scores, table_truth(full_sample(cfg))):.3f}",
    )
    return {"seed": seed, "F_scores": scores, "steps": total, "seconds": time.perf_counter() - start}


def spos_on_cells(cfg: dict, seed: int, workdir: str, cells: list[str]) -> list[float]:
    """The final SPOS supernet's scores of SE-NAS's final-space sample S (the same cells both rank)."""
    runner = make_runner(cfg, seed)
    runner.store.load(os.path.join(workdir, f"spos_{seed}.npz"))
    return score(runner, [runner.worker.space.from_string(s) for s in cells])


def _tau(scores, truth) -> float:
    from tune_spacenas.analysis import kendall_tau

    return kendall_tau(scores, truth) if len(scores) > 1 else float("nan")


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
        random_top = [
            len(top & set(operators(shrink_operators(space, {o: rng.random() for o in before}, len(dropped))[0])))
            for _ in range(random_trials)
        ]
        pairs = [(k, d) for k in kept for d in dropped]
        out.append(
            {
                "stage": record["stage"] + 1,
                "kept": labels(full, kept),
                "dropped": labels(full, dropped),
                "kept_gt_ranks": sorted(rank[o] for o in kept),
                "dropped_gt_ranks": sorted(rank[o] for o in dropped),
                "top_m": len(kept),
                "top_m_kept": len(top & set(kept)),
                "random_top_m_kept_mean": float(np.mean(random_top)),
                "pairs_kept_above_dropped": float(np.mean([gt[k] > gt[d] for k, d in pairs])) if pairs else None,
                "allowed_per_slot": [len(a) for a in record["allowed"]],
                "merged_spaces": record["merged_spaces"],
            }
        )
        space = shrunk
    return out


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
def summarise(cfg: dict, seeds: list[int], first: dict, senas: dict, spos: dict, same: dict) -> dict:
    """``senas`` and ``same`` are keyed by (seed, normalisation); ``first`` and ``spos`` by seed."""
    F = full_sample(cfg)
    truth_F, params_F = table_truth(F), parameter_counts_of(F)
    variants = {}
    for norm in cfg["normalizations"]:
        rows = []
        for s in seeds:
            run = senas[(s, norm)]
            cells = run["S"]
            truth_S, params_S = table_truth(_archs(cells)), parameter_counts_of(_archs(cells))
            best_senas, best_spos = int(np.argmax(run["S_scores"])), int(np.argmax(same[(s, norm)]))
            rows.append(
                {
                    "seed": s,
                    "S_cells": len(cells),
                    "final_space_size": run["final_space_size"],
                    "senas_F": _tau(run["F_scores"], truth_F),
                    "spos_F": _tau(spos[s]["F_scores"], truth_F),
                    "senas_F_top_half": _top_half(run["F_scores"], truth_F),
                    "spos_F_top_half": _top_half(spos[s]["F_scores"], truth_F),
                    "senas_S": _tau(run["S_scores"], truth_S),
                    "spos_S": _tau(same[(s, norm)], truth_S),
                    "senas_S_before_final": None
                    if run["S_scores_before_final"] is None
                    else _tau(run["S_scores_before_final"], truth_S),
                    "params_F": _tau(params_F, truth_F),
                    "params_S": _tau(params_S, truth_S),
                    "stage1_F": _tau(first[s]["F_scores"], truth_F),
                    "senas_pick_accuracy": truth_S[best_senas],
                    "spos_pick_accuracy": truth_S[best_spos],
                    "S_best_accuracy": max(truth_S),
                    "kept_ops": kept_ops_analysis(run["stage_log"], seed=s),
                }
            )
        col = {k: [r[k] for r in rows] for k in rows[0] if k != "kept_ops"}
        variants[norm] = {
            "per_seed": rows,
            "gain": {
                "F": _gain(col["senas_F"], col["spos_F"], "both ranking F (200 full-space cells)"),
                "S": _gain(col["senas_S"], col["spos_S"], "both ranking S (SE-NAS's final space)"),
                "paper_protocol": _gain(
                    col["senas_S"], col["spos_F"], "SE-NAS on its final space S vs SPOS on F", paired=False
                ),
                "final_training": _gain(
                    col["senas_S"],
                    col["senas_S_before_final"],
                    "SE-NAS on S after vs before the final space's training",
                )
                if None not in col["senas_S_before_final"]
                else None,
                "pick": _gain(
                    col["senas_pick_accuracy"],
                    col["spos_pick_accuracy"],
                    "table accuracy of each supernet's best-scored cell of S",
                ),
            },
            "mean": {k: float(np.mean(v)) for k, v in col.items() if None not in v and k != "seed"},
        }
    return {
        "ground_truth": "NAS-Bench-201 table, CIFAR-10 test accuracy after 200 epochs (all 15,625 cells)",
        "seeds": seeds,
        "budget": {
            "stages": cfg["stages"],
            "epochs_per_stage": cfg["epochs_per_stage"],
            "final_epochs": cfg["final_epochs"],
            "steps_per_stage": cfg["stage_steps"],
            "final_steps": cfg["final_steps"],
            "training_steps_each": cfg["stages"] * cfg["stage_steps"] + cfg["final_steps"],
            "batch_size": cfg["batch_size"],
        },
        "setting": {
            k: cfg[k]
            for k in (
                "resolution",
                "channels",
                "cells",
                "lr",
                "archs",
                "final_archs",
                "snapshots",
                "samples_per_op",
                "drop",
                "threshold",
                "eval_images",
                "recalibration_batches",
                "evaluation_stability",
                "selection_confidence",
                "expanding",
                "merge_only_shrunk",
                "normalizations",
            )
        },
        "variants": variants,
        "ground_truth_operator_ranking": ground_truth_ranking(),
        "runs": [
            {
                "seed": s,
                "stage1": first[s],
                "spos": spos[s],
                "senas": {n: senas[(s, n)] | {"spos_S_scores": same[(s, n)]} for n in cfg["normalizations"]},
            }
            for s in seeds
        ],
    }


def parameter_counts_of(archs: list) -> list[float]:
    from tune_spacenas.spaces import NASBench201Space

    return parameter_counts(NASBench201Space(), archs)


def _archs(cells: list[str]) -> list:
    from tune_spacenas.spaces import NASBench201Space

    space = NASBench201Space()
    return [space.from_string(c) for c in cells]


def _top_half(scores, truth) -> float:
    from tune_spacenas.analysis import top_half_tau

    return top_half_tau(scores, truth)


def _gain(a: list[float], b: list[float], what: str, paired: bool = True) -> dict:
    diff = np.asarray(a, float) - np.asarray(b, float)
    many = len(a) > 1
    return {
        "what": what,
        "mean": float(np.mean(diff)),
        "per_seed": diff.tolist(),
        "ci95": ci95(diff) if many else None,
        "a_ci95": ci95(a) if many else None,
        "b_ci95": ci95(b) if many else None,
        "welch_p": welch_p(a, b) if many else None,
        "paired_p": paired_p(a, b) if many and paired else None,
    }


def ground_truth_ranking() -> list[dict]:
    from tune_spacenas.searchers.senas import ground_truth_operator_scores
    from tune_spacenas.searchers.senas.scores import operator_label, ranked
    from tune_spacenas.spaces import NASBench201Space

    space = NASBench201Space()
    gt = ground_truth_operator_scores(space, truth_of)
    return [{"rank": i + 1, "operator": operator_label(space, o), "score": gt[o]} for i, o in enumerate(ranked(gt))]


def plot(payload: dict, folder: Path, name: str = "senas_rank.png") -> Path:
    variants = payload["variants"]
    fig, axes = new_figure(2, len(variants), size=(6, 4.2), squeeze=False)
    for row, (norm, v) in enumerate(variants.items()):
        ax, bx = axes[row]
        for x, (a, b, p) in enumerate((("senas_F", "spos_F", "params_F"), ("senas_S", "spos_S", "params_S"))):
            for r in v["per_seed"]:
                ax.plot([x - 0.12, x + 0.12], [r[b], r[a]], color="gray", lw=0.7, alpha=0.6)
                ax.scatter(
                    [x - 0.12], [r[b]], color="C3", s=16, label="SPOS" if r is v["per_seed"][0] and x == 0 else None
                )
                ax.scatter(
                    [x + 0.12], [r[a]], color="C0", s=16, label="SE-NAS" if r is v["per_seed"][0] and x == 0 else None
                )
                ax.scatter(
                    [x + 0.3],
                    [r[p]],
                    color="k",
                    marker="_",
                    s=60,
                    label="parameter count" if r is v["per_seed"][0] and x == 0 else None,
                )
            g = v["gain"]["F" if x == 0 else "S"]
            ax.annotate(
                f"gain {g['mean']:+.3f}"
                + (f"\np {g['welch_p']:.3f} (paired {g['paired_p']:.3f})" if g["welch_p"] is not None else ""),
                (x, ax.get_ylim()[0]),
                fontsize=7,
                ha="center",
                va="bottom",
            )
        ax.set_xticks([0, 1], [f"F ({payload['setting']['archs']} full-space cells)", "S (SE-NAS's final space)"])
        ax.set_ylabel("Kendall tau vs NAS-Bench-201 CIFAR-10")
        ax.set_title(
            f"normalize = {norm}: seeds {payload['seeds']} ({payload['budget']['training_steps_each']} steps each)",
            fontsize=9,
        )
        ax.legend(fontsize=7)
        for i, r in enumerate(v["per_seed"]):
            for entry in r["kept_ops"]:
                y = entry["stage"] + (i - len(v["per_seed"]) / 2) * 0.08
                bx.scatter(
                    entry["kept_gt_ranks"],
                    [y] * len(entry["kept_gt_ranks"]),
                    color="C2",
                    s=12,
                    label="kept" if i == 0 and entry["stage"] == 1 else None,
                )
                bx.scatter(
                    entry["dropped_gt_ranks"],
                    [y] * len(entry["dropped_gt_ranks"]),
                    color="C1",
                    marker="x",
                    s=12,
                    label="dropped" if i == 0 and entry["stage"] == 1 else None,
                )
        bx.set_xlabel("ground-truth rank of the operator (1 = best of 30)")
        bx.set_yticks([1, 2], ["stage 1", "stage 2"])
        bx.set_title(f"Fig. 6 ({norm}): operators kept and dropped, one row per seed", fontsize=9)
        bx.legend(fontsize=7)
    return save_figure(fig, folder / name)


def markdown(payload: dict, path: Path) -> None:
    sections = []
    header = [
        "normalize",
        "measure",
        "cells",
        "SE-NAS",
        "SPOS",
        "gain [95% CI]",
        "Welch p",
        "paired p",
        "parameter count",
    ]
    rows = []
    for norm, v in payload["variants"].items():
        m, g = v["mean"], v["gain"]
        for key, label, cells, a, b, p in (
            ("F", "tau on F", payload["setting"]["archs"], "senas_F", "spos_F", "params_F"),
            (
                "S",
                "tau on S",
                f"{min(r['S_cells'] for r in v['per_seed'])}-{max(r['S_cells'] for r in v['per_seed'])}",
                "senas_S",
                "spos_S",
                "params_S",
            ),
            (
                "paper_protocol",
                "paper protocol (secondary): SE-NAS on S, SPOS on F",
                "S / F",
                "senas_S",
                "spos_F",
                None,
            ),
            (
                "pick",
                "table accuracy of the top-scored cell of S (%)",
                "S",
                "senas_pick_accuracy",
                "spos_pick_accuracy",
                None,
            ),
        ):
            gain = g[key]
            rows.append(
                [
                    norm,
                    label,
                    cells,
                    _with_ci(m[a], gain["a_ci95"]),
                    _with_ci(m[b], gain["b_ci95"]),
                    _with_ci(gain["mean"], gain["ci95"], signed=True),
                    _p(gain["welch_p"]),
                    _p(gain["paired_p"]),
                    "" if p is None else f"{m[p]:.3f}",
                ]
            )
        per_seed = [
            f"seed {r['seed']}: SE-NAS F {r['senas_F']:.3f} S {r['senas_S']:.3f}"
            + (
                ""
                if r["senas_S_before_final"] is None
                else f" (before the final training {r['senas_S_before_final']:.3f})"
            )
            + f"; SPOS F {r['spos_F']:.3f} S {r['spos_S']:.3f}; after stage 1 F {r['stage1_F']:.3f}; "
            f"final space {r['final_space_size']} cells, slots {r['kept_ops'][-1]['allowed_per_slot']}, merged "
            f"{[e['merged_spaces'] for e in r['kept_ops']]}; top-m kept "
            + ", ".join(
                f"{e['top_m_kept']}/{e['top_m']} (random {e['random_top_m_kept_mean']:.1f})" for e in r["kept_ops"]
            )
            for r in v["per_seed"]
        ]
        sections += [f"normalize = {norm}:", *[f"- {line}" for line in per_seed], ""]
    budget = payload["budget"]
    notes = "\n".join(
        [
            f"Seeds {payload['seeds']}; {budget['training_steps_each']} training steps each ({budget['stages']} stages x "
            f"{budget['epochs_per_stage']} epochs + {budget['final_epochs']} epochs of the final space), batch "
            f"{budget['batch_size']}; SPOS shares SE-NAS's stage 1 (paired). CI: 95% t-interval over seeds.",
            "",
            *normalization_ablation(payload),
            *sections,
        ]
    )
    write_markdown(
        path,
        "SE-NAS vs SPOS rank correlation (NAS-Bench-201, CIFAR-10)",
        header,
        rows,
        notes=notes,
        command=payload.get("command"),
    )


def normalization_ablation(payload: dict) -> list[str]:
    """Eq. (7)'s normalize(): min-max against x / mean, paired by seed (both shrink from the same stage-1
    scores): tau on F (the same cells), the gain over SPOS on each variant's own S, final-space size."""
    variants = payload["variants"]
    if not {"mean", "min-max"} <= set(variants):
        return []
    a, b = variants["min-max"]["per_seed"], variants["mean"]["per_seed"]
    lines = ["Normalisation ablation (min-max minus x/mean, paired by seed):"]
    for label, value in (
        ("tau on F", lambda r: r["senas_F"]),
        ("gain over SPOS on own S", lambda r: r["senas_S"] - r["spos_S"]),
        ("tau on own S", lambda r: r["senas_S"]),
        ("final-space cells", lambda r: r["final_space_size"]),
    ):
        g = _gain([value(r) for r in a], [value(r) for r in b], label)
        lines.append(
            f"- {label}: min-max {np.mean([value(r) for r in a]):.3f}, mean {np.mean([value(r) for r in b]):.3f}, "
            f"difference {_with_ci(g['mean'], g['ci95'], signed=True)}, paired p {_p(g['paired_p'])}"
        )
    return [*lines, ""]


def _with_ci(value: float, ci: list[float] | None, signed: bool = False) -> str:
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    return (
        text
        if ci is None
        else f"{text} [{ci[0]:+.3f}, {ci[1]:+.3f}]"
        if signed
        else f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]"
    )


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# ----------------------------------------------------------------------------------------------
# The run: the pieces of every seed as tasks (one process by default: the machine is shared)
# ----------------------------------------------------------------------------------------------
def _kept(path: str, fn, *args):
    """``fn(*args)``, its result also pickled to ``path`` (a rerun over the same work folder reuses it)."""
    from tune_spacenas.storage import write_atomic

    result = fn(*args)
    write_atomic(path, lambda f: pickle.dump(result, f))
    return result


def check_workdir(cfg: dict, workdir: str) -> None:
    """A kept work folder serves only the configuration that filled it."""
    path = Path(workdir) / "config.json"
    if path.exists() and json.loads(path.read_text()) != json.loads(json.dumps(cfg)):
        raise ValueError(f"{workdir} holds results of another configuration ({path}): pass a fresh --workdir")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg))


def run_all(cfg: dict, seeds: list[int], parallel: int, workdir: str) -> dict:
    """Every seed's pieces; seed after seed (the next seed's stage 1 queues behind this seed's continuations),
    so a run stopped early has its first seeds complete, and each piece's result is kept in ``workdir``."""
    sched = Scheduler(parallel, cfg["threads"])
    norms = cfg["normalizations"]

    def submit(name: str, fn, *args, then=None) -> None:
        kept = os.path.join(workdir, name.replace("/", "_") + ".pkl")
        if os.path.exists(kept):
            with open(kept, "rb") as f:
                sched.results[name] = pickle.load(f)
            print(f"[kept] {name}", flush=True)
            if then is not None:
                then(sched.results[name])
            return
        sched.submit(name, _kept, kept, fn, *args, then=then)

    def after_stage_one(seed: int):
        def then(result: dict) -> None:
            submit(f"spos/{seed}", spos_rest, cfg, seed, workdir, result, then=after_continuation(seed))
            for norm in norms:
                submit(
                    f"senas/{seed}/{norm}", senas_rest, cfg, seed, workdir, result, norm, then=after_continuation(seed)
                )
            later = seeds[seeds.index(seed) + 1 :]
            if later:
                submit(f"one/{later[0]}", stage_one, cfg, later[0], workdir, then=after_stage_one(later[0]))

        return then

    def after_continuation(seed: int):
        def then(_: Any) -> None:  # once SPOS and a variant are both done, SPOS ranks that variant's S
            if f"spos/{seed}" not in sched.results:
                return
            for norm in norms:
                name = f"senas/{seed}/{norm}"
                if name in sched.results and f"same/{seed}/{norm}" not in sched.running | sched.results:
                    submit(f"same/{seed}/{norm}", spos_on_cells, cfg, seed, workdir, sched.results[name]["S"])

        return then

    submit(f"one/{seeds[0]}", stage_one, cfg, seeds[0], workdir, then=after_stage_one(seeds[0]))
    results = sched.run()
    first = {s: results[f"one/{s}"] for s in seeds}
    spos = {s: results[f"spos/{s}"] for s in seeds}
    senas = {(s, n): results[f"senas/{s}/{n}"] for s in seeds for n in norms}
    same = {(s, n): results[f"same/{s}/{n}"] for s in seeds for n in norms}
    return summarise(cfg, seeds, first, senas, spos, same)


def config_from_args(args: argparse.Namespace) -> dict:
    from tune_spacenas.data import DataSpec

    data = DataSpec("cifar10", resolution=args.resolution, seed=0, train_size=args.train_size)
    train_images = args.train_size or 50_000 - data.val_size
    steps_per_epoch = train_images // args.batch_size
    return {
        "data": data.to_dict(),
        "resolution": args.resolution,
        "channels": args.channels,
        "cells": args.cells,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "stages": args.stages,
        "epochs_per_stage": args.epochs_per_stage,
        "final_epochs": args.final_epochs,
        "steps_per_epoch": steps_per_epoch,
        "stage_steps": int(args.epochs_per_stage * steps_per_epoch),
        "final_steps": int(args.final_epochs * steps_per_epoch),
        "steps_per_job": steps_per_epoch,
        "snapshots": args.snapshots,
        "samples_per_op": args.samples_per_op,
        "drop": args.drop,
        "threshold": args.threshold,
        "archs": args.archs,
        "final_archs": args.final_archs,
        "sample_seed": args.sample_seed,
        "eval_images": args.eval_images,
        "eval_batch": 50,
        "recalibration_batches": args.recalibration_batches,
        "threads": args.threads,
        "device": args.device,
        "evaluation_stability": not args.no_evaluation_stability,
        "selection_confidence": not args.si_only,
        "expanding": not args.no_expanding,
        "merge_only_shrunk": not args.merge_unshrunk,
        "normalizations": args.normalization,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[1, 2, 3, 4, 5],
        help="seeds to run (settings are chosen on seed 0, reported on others)",
    )
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--epochs-per-stage", type=float, default=10, help="paper: 20")
    parser.add_argument("--final-epochs", type=float, default=10, help="training of the final space (0: none)")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cells", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--snapshots", type=int, default=5, help="K of Eq. (4), over each phase's last epoch")
    parser.add_argument("--samples-per-op", type=int, default=30, help="child models per operator, Eq. (5)")
    parser.add_argument("--drop", type=int, default=7, help="operators dropped per stage (k; paper 10, see above)")
    parser.add_argument("--threshold", type=int, default=50, help="merging threshold T")
    parser.add_argument(
        "--normalization",
        nargs="+",
        default=["mean"],
        choices=["mean", "min-max"],
        help="Eq. (7)'s normalize(); several: each a variant from the same stage 1",
    )
    parser.add_argument("--archs", type=int, default=200, help="cells of the full-space sample F")
    parser.add_argument("--final-archs", type=int, default=100, help="cells of the final-space sample S (at most)")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--recalibration-batches", type=int, default=4, help="BatchNorm recalibration per cell")
    parser.add_argument("--train-size", type=int, default=None, help="training images (default: all 45,000)")
    parser.add_argument("--no-evaluation-stability", action="store_true", help="ablation: last weights, not Eq. (4)")
    parser.add_argument("--si-only", action="store_true", help="ablation (Table 6): Eq. (7) without Eq. (6)")
    parser.add_argument("--no-expanding", action="store_true", help="ablation (Table 6): no private weights")
    parser.add_argument("--merge-unshrunk", action="store_true", help="ablation: T over every layer, shrunk or not")
    parser.add_argument("--parallel", type=int, default=1, help="processes side by side, one thread each")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--workdir",
        default=None,
        help="keep checkpoints and each piece's result here; a rerun "
        "with the same settings reuses them (default: a temporary folder)",
    )
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
    if args.workdir:
        check_workdir(cfg, args.workdir)
        payload = run_all(cfg, args.seeds, args.parallel, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="senas_rank_") as workdir:
            payload = run_all(cfg, args.seeds, args.parallel, workdir)
    payload["wall_seconds"] = time.perf_counter() - start
    write_json(args.out, payload)
    markdown(payload, args.out.with_suffix(".md"))
    png = plot(payload, args.out.parent, args.out.with_suffix(".png").name)
    for norm, v in payload["variants"].items():
        for g in (v["gain"]["F"], v["gain"]["S"]):
            print(
                f"{norm}: gain {g['mean']:+.3f} (Welch p {_p(g['welch_p'])}, paired p {_p(g['paired_p'])}): {g['what']}"
            )
    print(f"wrote {args.out}, {png} in {payload['wall_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
