"""Where ASE-NAS stands on the NAS-Bench-201 table, from the harness's JSON files (no new searches).

    python -m benchmarks.ase_summary

Reads ``results/nasbench201/<dataset>.json`` and ``results/ase/ablations_<dataset>.json`` and writes
``results/ase/summary.{json,md}``: ASE's and ASE-NAS+'s differences to every other method with Welch's
t-test, the margins over random search beside the paper's (Table I), and every ablation against ``ase``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import RESULTS, welch_p, write_json, write_markdown

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
# ASE-NAS Table I: its margins over its random search (12-epoch validation reward, 25k s budget).
PAPER = {"ase": {"cifar10": 94.23 - 93.88, "cifar100": 72.76 - 71.54, "ImageNet16-120": 46.13 - 45.19},
         "ase_plus": {"cifar100": 73.12 - 71.54, "ImageNet16-120": 46.66 - 45.19}}


def load(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the commands in benchmarks/results/ase/README.md first")
    return {m: r["final_test"] for m, r in json.loads(path.read_text())["methods"].items()}


def compare(a: list[float], b: list[float]) -> dict[str, float]:
    return {"difference": float(np.mean(a) - np.mean(b)), "welch_p": welch_p(a, b)}


def main() -> None:
    out: dict[str, Any] = {"main": {}, "ablations": {}}
    rows, ablation_rows = [], []
    for dataset in DATASETS:
        table = load(RESULTS / "nasbench201" / f"{dataset}.json")
        out["main"][dataset] = {}
        for ours in ("ase", "ase_plus"):
            if ours not in table:
                continue
            for other in (m for m in table if m != ours and not (ours == "ase" and m == "ase_plus")):
                c = compare(table[ours], table[other])
                out["main"][dataset][f"{ours} vs {other}"] = c
                paper = PAPER[ours].get(dataset) if other == "random" else None
                rows.append([dataset, ours, other, f"{np.mean(table[ours]):.2f}", f"{np.mean(table[other]):.2f}",
                             f"{c['difference']:+.2f}", f"{c['welch_p']:.2g}", "" if paper is None else f"{paper:+.2f}"])
        ablations = load(RESULTS / "ase" / f"ablations_{dataset}.json")
        out["ablations"][dataset] = {m: {"mean": float(np.mean(v)), **compare(v, ablations["ase"])}
                                     for m, v in ablations.items() if m != "ase"}
        ablation_rows += [[dataset, m, f"{r['mean']:.2f}", f"{r['difference']:+.2f}", f"{r['welch_p']:.2g}"]
                          for m, r in out["ablations"][dataset].items()]
    target = RESULTS / "ase" / "summary.json"
    write_json(target, out)
    md = target.with_suffix(".md")
    write_markdown(md, "ASE-NAS on NAS-Bench-201: differences with Welch's t-test (100 runs, 100 queries)",
                   ["dataset", "ours", "other", "ours mean", "other mean", "difference", "Welch p",
                    "paper's margin over random"], rows)
    ablation_md = RESULTS / "ase" / "summary_ablations.md"
    write_markdown(ablation_md, "ASE-NAS ablations against ase (K=4, M=4, improvement reward, update, GNN)",
                   ["dataset", "variant", "mean test accuracy", "difference to ase", "Welch p vs ase"], ablation_rows)
    print(md.read_text() + "\n" + ablation_md.read_text())


if __name__ == "__main__":
    main()
