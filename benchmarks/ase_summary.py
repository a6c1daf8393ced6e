"""Where ASE-NAS stands on the NAS-Bench-201 table, from the harness's JSON files (no new searches).

    python -m benchmarks.ase_summary

Reads ``results/nasbench201/<dataset>_q<budget>.json`` (and ``results/ase/ablations_<dataset>_q100.json``
when present) and writes ``results/ase/summary.{json,md}``: for every dataset and budget, ASE with the
library defaults against TPE and regularized evolution, ASE with the proxy prior against the same
baselines warm-started from that prior, and the paper's setting, each difference with Welch's t-test;
then the issue's goals at 100 queries with a verdict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS, welch_p, write_json, write_markdown

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
BUDGETS = (50, 100, 300)
PAIRS = (("ase", "tpe"), ("ase", "regevo"), ("ase", "random"), ("ase_prior", "tpe_warm"),
         ("ase_prior", "regevo_warm"), ("ase_prior", "ase"), ("tpe_warm", "tpe"), ("ase", "ase_paper"))


def load(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the commands in benchmarks/results/ase/README.md first")
    return {m: r["final_test"] for m, r in json.loads(path.read_text())["methods"].items()}


def compare(a: list[float], b: list[float]) -> dict[str, float]:
    return {"difference": float(np.mean(a) - np.mean(b)), "welch_p": welch_p(a, b)}


def goals(main: dict[str, Any]) -> list[list[str]]:
    """The issue's goals at 100 queries: ASE >= TPE everywhere and above it (p < 0.05) on two datasets;
    ASE with the prior above tpe_warm on all three."""
    at100 = {d: main[d][100] for d in DATASETS}
    vs_tpe = [at100[d].get("ase vs tpe") for d in DATASETS]
    vs_warm = [at100[d].get("ase_prior vs tpe_warm") for d in DATASETS]
    rows = []
    if all(vs_tpe):
        not_below = all(c["difference"] >= 0 or c["welch_p"] >= 0.05 for c in vs_tpe)
        above = sum(c["difference"] > 0 and c["welch_p"] < 0.05 for c in vs_tpe)
        rows.append(["ASE (defaults) >= TPE on all three (no significant loss)", _diffs(vs_tpe), _verdict(not_below)])
        rows.append(["ASE (defaults) above TPE with p < 0.05 on >= 2 datasets", f"{above} of 3", _verdict(above >= 2)])
    if all(vs_warm):
        above = all(c["difference"] > 0 for c in vs_warm)
        significant = sum(c["difference"] > 0 and c["welch_p"] < 0.05 for c in vs_warm)
        rows.append(["ASE with the prior above tpe_warm on all three", _diffs(vs_warm) + f"; {significant} of 3 with "
                     "p < 0.05", _verdict(above)])
    return rows


def _diffs(comparisons: list[dict[str, float]]) -> str:
    return " / ".join(f"{c['difference']:+.3f} (p {c['welch_p']:.2g})" for c in comparisons)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main() -> None:
    out: dict[str, Any] = {"main": {}, "ablations": {}}
    rows, ablation_rows = [], []
    for dataset in DATASETS:
        out["main"][dataset] = {}
        for budget in BUDGETS:
            table = load(RESULTS / "nasbench201" / f"{dataset}_q{budget}.json")
            found = out["main"][dataset][budget] = {}
            for ours, other in PAIRS:
                if ours in table and other in table:
                    c = found[f"{ours} vs {other}"] = compare(table[ours], table[other])
                    rows.append([dataset, budget, ours, other, f"{np.mean(table[ours]):.2f}",
                                 f"{np.mean(table[other]):.2f}", f"{c['difference']:+.3f}", f"{c['welch_p']:.2g}"])
        path = RESULTS / "ase" / f"ablations_{dataset}_q100.json"
        if path.is_file():
            ablations = load(path)
            out["ablations"][dataset] = {m: {"mean": float(np.mean(v)), **compare(v, ablations["ase"])}
                                         for m, v in ablations.items() if m != "ase"}
            ablation_rows += [[dataset, m, f"{r['mean']:.2f}", f"{r['difference']:+.3f}", f"{r['welch_p']:.2g}"]
                              for m, r in out["ablations"][dataset].items()]
    out["goals"] = goals(out["main"])
    target = RESULTS / "ase" / "summary.json"
    write_json(target, out)
    md = target.with_suffix(".md")
    write_markdown(md, "ASE-NAS on NAS-Bench-201: differences with Welch's t-test (100 runs, seeds 1-100)",
                   ["dataset", "queries", "ours", "other", "ours mean", "other mean", "difference", "Welch p"], rows,
                   notes="Goals at 100 queries (issue 16):\n\n| goal | differences C10 / C100 / IN16 | verdict |\n"
                         "|---|---|---|\n" + "\n".join("| " + " | ".join(r) + " |" for r in out["goals"]))
    if ablation_rows:
        ablation_md = RESULTS / "ase" / "summary_ablations.md"
        write_markdown(ablation_md, "ASE-NAS ablations against ase (library defaults), 100 queries, seeds 1-100",
                       ["dataset", "variant", "mean test accuracy", "difference to ase", "Welch p vs ase"],
                       ablation_rows)
        print(ablation_md.read_text())
    print(md.read_text())


if __name__ == "__main__":
    main()
