"""Where ASE-NAS stands on the NAS-Bench-201 table, from the harness's JSON files (no new searches).

    python -m benchmarks.ase_summary

Reads ``results/nasbench201/<dataset>_q<budget>.json`` (and ``results/ase/ablations/<dataset>_q100.json``
when present) and writes ``results/ase/summary.{json,md}``: for every dataset and budget, ASE with the
library defaults against TPE and regularized evolution, ASE with the proxy prior against the same
baselines warm-started from that prior, and the paper's setting, each difference with Welch's t-test;
then the issue's goals at 100 queries with a verdict. From ``results/ase/seed0/`` (the K x M and prior
grids, seed 0 only) it writes ``results/ase/seed0.md``: each setting's result and its regret to the
table's optimum, averaged over the three datasets and three budgets, which is how the defaults were chosen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import RESULTS, welch_p, write_json, write_markdown

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
OPTIMUM = {"cifar10": 94.37, "cifar100": 73.51, "ImageNet16-120": 47.31}
SHORT = {"cifar10": "C10", "cifar100": "C100", "ImageNet16-120": "IN16"}
BUDGETS = (50, 100, 300)
PAIRS = (
    ("ase", "tpe"),
    ("ase", "regevo"),
    ("ase", "random"),
    ("ase_prior", "tpe_warm"),
    ("ase_prior", "regevo_warm"),
    ("ase_prior", "ase"),
    ("tpe_warm", "tpe"),
    ("ase", "ase_paper"),
)


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
        verdict = (
            _verdict(significant == 3)
            if significant == 3 or not above
            else (f"**above in the mean only**: significant on {significant} of 3, a tie within noise elsewhere")
        )
        rows.append(
            [
                "ASE with the prior above tpe_warm on all three",
                _diffs(vs_warm) + f"; {significant} of 3 with p < 0.05",
                verdict,
            ]
        )
    return rows


def _diffs(comparisons: list[dict[str, float]]) -> str:
    return " / ".join(f"{c['difference']:+.3f} (p {c['welch_p']:.2g})" for c in comparisons)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def seed0_choice() -> None:
    """The tuning grids on seed 0: final accuracy per dataset and budget, and the mean regret."""
    folder = RESULTS / "ase" / "seed0"
    if not folder.is_dir():
        return
    finals: dict[str, list[float]] = {}
    regrets: dict[str, list[float]] = {}
    for dataset in DATASETS:
        for budget in BUDGETS:
            for method, values in load(folder / f"{dataset}_q{budget}.json").items():
                finals.setdefault(method, []).append(values[0])
                regrets.setdefault(method, []).append(OPTIMUM[dataset] - values[0])
    rows = [
        [m, *(f"{v:.2f}" for v in finals[m]), f"{np.mean(regrets[m]):.3f}"]
        for m in sorted(finals, key=lambda m: np.mean(regrets[m]))
    ]
    write_markdown(
        RESULTS / "ase" / "seed0.md",
        "How the defaults were chosen: seed 0 only, one run per setting",
        ["setting", *(f"{SHORT[d]} @{b}" for d in DATASETS for b in BUDGETS), "mean regret"],
        rows,
        notes="Test accuracy of the architecture each setting returned (seed 0), per dataset and budget "
        "(C10 / C100 / IN16 at 50, 100, 300 queries), and its regret to the table's optimum "
        "averaged over the nine; lower is better. One run per cell: a coarse signal, used only to "
        "check the budget rule and to pick between settings, never to report.",
    )


def plot_grid(
    methods: tuple[str, ...] = ("tpe", "tpe_warm", "regevo", "regevo_warm", "ase", "ase_prior", "ase_paper"),
) -> None:
    """``results/ase/curves.png``: best-so-far curves (mean over runs, band: standard error) for every
    dataset x budget, zoomed on the last 80% of the budget where the methods separate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(DATASETS), len(BUDGETS), figsize=(15, 11))
    for row, dataset in zip(axes, DATASETS):
        for ax, budget in zip(row, BUDGETS):
            data = json.loads((RESULTS / "nasbench201" / f"{dataset}_q{budget}.json").read_text())
            start = budget // 5
            x = np.arange(start + 1, budget + 1)
            for m in (m for m in methods if m in data["methods"]):
                mean = np.asarray(data["methods"][m]["curve_mean"])[start:]
                sem = np.asarray(data["methods"][m]["curve_std"])[start:] / np.sqrt(data["runs"])
                ax.plot(x, mean, label=m, ls="--" if m.endswith(("warm", "prior")) else "-")
                ax.fill_between(x, mean - sem, mean + sem, alpha=0.2)
            ax.axhline(OPTIMUM[dataset], color="k", lw=0.8)
            ax.set_title(f"{dataset}, {budget} queries")
            ax.set_xlabel("distinct queries")
            ax.set_ylabel("best test accuracy (%)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(
        "NAS-Bench-201: best so far, mean of 100 runs (seeds 1-100), band = standard error; "
        "black line: the table's optimum"
    )
    fig.tight_layout()
    fig.savefig(RESULTS / "ase" / "curves.png", dpi=110)
    plt.close(fig)


def main() -> None:
    seed0_choice()
    plot_grid()
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
                    rows.append(
                        [
                            dataset,
                            budget,
                            ours,
                            other,
                            f"{np.mean(table[ours]):.2f}",
                            f"{np.mean(table[other]):.2f}",
                            f"{c['difference']:+.3f}",
                            f"{c['welch_p']:.2g}",
                        ]
                    )
        path = RESULTS / "ase" / "ablations" / f"{dataset}_q100.json"
        if path.is_file():
            ablations = load(path)
            out["ablations"][dataset] = {
                m: {"mean": float(np.mean(v)), **compare(v, ablations["ase"])}
                for m, v in ablations.items()
                if m != "ase"
            }
            ablation_rows += [
                [dataset, m, f"{r['mean']:.2f}", f"{r['difference']:+.3f}", f"{r['welch_p']:.2g}"]
                for m, r in out["ablations"][dataset].items()
            ]
    out["goals"] = goals(out["main"])
    target = RESULTS / "ase" / "summary.json"
    write_json(target, out)
    md = target.with_suffix(".md")
    write_markdown(
        md,
        "ASE-NAS on NAS-Bench-201: differences with Welch's t-test (100 runs, seeds 1-100)",
        ["dataset", "queries", "ours", "other", "ours mean", "other mean", "difference", "Welch p"],
        rows,
        notes="Goals at 100 queries (issue 16):\n\n| goal | differences C10 / C100 / IN16 | verdict |\n"
        "|---|---|---|\n" + "\n".join("| " + " | ".join(r) + " |" for r in out["goals"]),
    )
    if ablation_rows:
        ablation_md = RESULTS / "ase" / "summary_ablations.md"
        write_markdown(
            ablation_md,
            "ASE-NAS ablations against ase (library defaults), 100 queries, seeds 1-100",
            ["dataset", "variant", "mean test accuracy", "difference to ase", "Welch p vs ase"],
            ablation_rows,
        )
        print(ablation_md.read_text())
    print(md.read_text())


if __name__ == "__main__":
    main()
