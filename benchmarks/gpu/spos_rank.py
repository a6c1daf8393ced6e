"""Paper-scale SPOS rank correlation on GPU: NAS-Bench-201 C=16, N=5 at 32x32 on all of CIFAR-10.

SE-NAS Table 1 reports tau 0.543 for SPOS after full training; here the supernet trains for the
section's wall budget (split over seeds), then 200 fixed cells are ranked against the table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.gpu.data import cifar10, device
from benchmarks.harness import new_figure, save_figure, train
from benchmarks.rank import parameter_counts, rank_report, rank_sample, score, steps_for_seconds, table_truth

SEEDS = 2
ARCHS = 200


def run(budget_s: float, smoke: bool) -> dict:
    from tune_spacenas.runner import InProcessSupernet
    from tune_spacenas.spaces import NASBench201Space
    from tune_spacenas.supernet.spec import SupernetSpec

    space = NASBench201Space(
        channels=8 if smoke else 16, cells_per_stage=1 if smoke else 5, input_size=16 if smoke else 32
    )
    archs = rank_sample(20 if smoke else ARCHS)
    truth, params = table_truth(archs), parameter_counts(space, archs)
    runs = []
    for seed in range(SEEDS):
        spec = SupernetSpec(space, cifar10(smoke), batch_size=256, lr=0.1, init_seed=seed, eval_images=1000)
        runner = InProcessSupernet(spec, device())
        # ~25% of a seed's budget goes to scoring 200 cells and start-up; the rest trains.
        steps, per_step = steps_for_seconds(runner, 0.72 * budget_s / SEEDS)
        seconds = train(runner, steps, max(1, steps // 10), spec.lr, seed)
        scores = score(runner, archs, batch=100)
        runs.append(
            {
                "seed": seed,
                "steps": steps,
                "epochs": steps * spec.batch_size / runner.worker.data.size("train"),
                "train_seconds": seconds,
                "images_per_s": spec.batch_size / per_step,
                "scores": scores,
                **rank_report(scores, truth, params),
            }
        )
    taus = [r["kendall_tau"] for r in runs]
    return {
        "supernet": f"NAS-Bench-201 C={space.channels} N={space.cells_per_stage}, {space.input_size}x{space.input_size}",
        "architectures": len(archs),
        "ground_truth": "NAS-Bench-201 CIFAR-10 test accuracy (200 epochs)",
        "kendall_tau": taus,
        "kendall_tau_mean": float(np.mean(taus)),
        "runs": runs,
        "params_tau": runs[0]["params_tau"],
        "params_tau_top_half": runs[0]["params_tau_top_half"],
        "truth": truth,
    }


def plot(section: dict, folder: Path) -> None:
    fig, axes = new_figure(len(section["runs"]), size=(5, 4), squeeze=False)
    for ax, run in zip(axes[0], section["runs"]):
        ax.scatter(section["truth"], run["scores"], s=8)
        ax.set_xlabel("NAS-Bench-201 CIFAR-10 accuracy (%)")
        ax.set_ylabel("supernet accuracy (%)")
        ax.set_title(f"seed {run['seed']}: tau {run['kendall_tau']:.3f} ({run['epochs']:.0f} epochs)")
    fig.suptitle(f"SPOS on GPU, {section['supernet']}")
    save_figure(fig, folder / "gpu_spos_rank.png")
