"""Cost of the ASE-NAS controller per decision on one CPU core: sample (pi_G then M edits) + update.

    python -m benchmarks.ase_speed --decisions 500 --out benchmarks/results/ase/speed.json

One decision is ``ASESearcher.propose`` (build the graph tensors, sample the joint policy, apply the
edits) plus ``ASESearcher.observe`` (reward, subspace update, one REINFORCE step with fused Adam); the
evaluation itself (a table lookup) is outside the timers. Times are the thread's CPU time (what the
work costs on one core, robust to other processes on a shared machine) and wall time, with torch on
one thread. Settings: the library's NAS-Bench-201 defaults for a 1,000-query budget (K=1, M=1, where
most policy samples land on known cells and are drawn again: those draws count in "sample"), the
paper's NAS-Bench-201 one (K=4, M=4, 6 slots) and its MobileNet-like one (K=10, M=3) on our 21-layer
MobileNet space, rewarded by a fixed random score per architecture.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness import RESULTS, write_json, write_markdown
from tune_spacenas.jobs import ASE_KEY, ASEJob
from tune_spacenas.searchers import ASESearcher
from tune_spacenas.spaces import MobileNetSpace, NASBench201Space
from tune_spacenas.trainables.table import evaluate_on_table

GOAL_MS = 5.0


def synthetic_reward(config: dict[str, Any]) -> dict[str, Any]:
    """A fixed pseudo-random accuracy per architecture (spaces without a table)."""
    return {"accuracy": float(np.random.default_rng(abs(hash(config["arch"])) % 2**32).uniform(60, 80))}


SETTINGS = {
    "nasbench201 defaults (K=1 M=1)": (NASBench201Space, dict(max_queries=1000), evaluate_on_table),
    "nasbench201 K=4 M=4": (NASBench201Space, dict(num_subspaces=4, local_distance=4), evaluate_on_table),
    "mobilenet K=10 M=3": (
        MobileNetSpace,
        dict(num_subspaces=10, local_distance=3, learning_rate=3e-4, entropy_weight=1e-3),
        synthetic_reward,
    ),
}


def measure(space_cls: type, kwargs: dict[str, Any], evaluate, decisions: int, warmup: int = 20) -> dict[str, Any]:
    searcher = ASESearcher(space=space_cls(), metric="accuracy", mode="max", seed=0, **kwargs)
    searcher._check_ready()
    cpu, wall = {"sample": [], "update": []}, {"sample": [], "update": []}
    while len(cpu["update"]) < decisions + warmup:
        t_cpu, t_wall = time.thread_time_ns(), time.perf_counter_ns()
        job = searcher.propose()
        sampled_cpu, sampled_wall = time.thread_time_ns(), time.perf_counter_ns()
        result = evaluate(job)
        u_cpu, u_wall = time.thread_time_ns(), time.perf_counter_ns()
        searcher.observe(job, result)
        end_cpu, end_wall = time.thread_time_ns(), time.perf_counter_ns()
        if ASE_KEY in job and ASEJob.from_dict(job[ASE_KEY]).decision is not None:
            cpu["sample"].append(sampled_cpu - t_cpu), wall["sample"].append(sampled_wall - t_wall)
            cpu["update"].append(end_cpu - u_cpu), wall["update"].append(end_wall - u_wall)
    out: dict[str, Any] = {}
    for clock, series in (("cpu", cpu), ("wall", wall)):
        sample, update = (np.array(series[k][warmup:]) / 1e6 for k in ("sample", "update"))
        total = sample + update
        out[clock] = {
            "sample_ms": float(np.median(sample)),
            "update_ms": float(np.median(update)),
            "decision_ms_median": float(np.median(total)),
            "decision_ms_mean": float(total.mean()),
            "decision_ms_p95": float(np.percentile(total, 95)),
        }
    out["parameters"] = sum(p.numel() for p in searcher.controller.parameters())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS / "ase" / "speed.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {
        name: measure(cls, kwargs, evaluate, args.decisions) for name, (cls, kwargs, evaluate) in SETTINGS.items()
    }
    for name, r in results.items():
        print(
            f"{name}: CPU {r['cpu']['decision_ms_median']:.2f} ms/decision (sample {r['cpu']['sample_ms']:.2f} + "
            f"update {r['cpu']['update_ms']:.2f}), wall {r['wall']['decision_ms_median']:.2f} ms",
            flush=True,
        )
    write_json(args.out, {"decisions": args.decisions, "goal_ms": GOAL_MS, "settings": results})
    rows = [
        [
            name,
            r["parameters"],
            f"{r['cpu']['sample_ms']:.2f}",
            f"{r['cpu']['update_ms']:.2f}",
            f"{r['cpu']['decision_ms_median']:.2f}",
            f"{r['cpu']['decision_ms_p95']:.2f}",
            f"{r['wall']['decision_ms_median']:.2f}",
            r["cpu"]["decision_ms_median"] < GOAL_MS,
        ]
        for name, r in results.items()
    ]
    write_markdown(
        args.out.with_suffix(".md"),
        f"ASE-NAS controller cost per decision, one CPU thread ({args.decisions} decisions)",
        [
            "setting",
            "parameters",
            "sample (CPU ms, median)",
            "update (CPU ms, median)",
            "decision (CPU ms, median)",
            "decision (CPU ms, p95)",
            "decision (wall ms, median)",
            f"< {GOAL_MS:g} ms",
        ],
        rows,
        notes="CPU = this thread's CPU time (time.thread_time); wall time also counts waiting for a core "
        "on the shared machine.",
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
