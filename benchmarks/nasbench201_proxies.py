"""Zero-cost proxies on NAS-Bench-201: how well they rank the table's cells, what they cost, and the
precomputed scores of all 15,625 cells that the search benchmarks use as a prior.

    python -m benchmarks.nasbench201_proxies scales --sample 1000 --scales 8x1x16,16x5x16,16x1x32 --full 200
    python -m benchmarks.nasbench201_proxies compute --scale 16x5x16      # all cells -> tune_spacenas/tables/
    python -m benchmarks.nasbench201_proxies report                        # tau of the shipped scores

A scale ``CxNxS`` is the NAS-Bench-201 network of width C with N cells per stage on SxS CIFAR-10 images
(the benchmark's own is 16x5x32). ``scales`` scores a seeded sample of distinct cells at each scale (and
``--full`` cells at the benchmark's scale) and reports each proxy's Kendall tau against the table's test
accuracy on the three datasets beside the parameter count's, with seconds per cell on one thread.
``compute`` scores every cell (resumable: partial results are kept in the user cache) and writes the
compressed Parquet ``tune_spacenas/tables/nasbench201_proxies.parquet``; ``report`` reads it back.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from benchmarks.harness import RESULTS, write_json, write_markdown
from tune_spacenas.analysis import kendall_tau, rank_mean
from tune_spacenas.paths import cache_dir
from tune_spacenas.proxies import PROXIES, ProxyScorer
from tune_spacenas.spaces import NASBench201Space
from tune_spacenas.tables import NASBench201Table
from tune_spacenas.tables.nasbench201 import DATASET_COLUMNS, arch_of_index
from tune_spacenas.tables.proxies import PROXY_COLUMNS, PROXY_TABLE

OUT = RESULTS / "proxies"
BENCHMARK_SCALE = (16, 5, 32)
BATCH_SIZE = 64
# Rank-mean ensembles reported beside the single proxies (Abdelfattah et al.'s voting, as a score).
ENSEMBLES = {"synflow+naswot": ("synflow", "naswot"), "synflow+naswot+jacov": ("synflow", "naswot", "jacov")}


def parse_scale(text: str) -> tuple[int, int, int]:
    try:
        c, n, s = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise SystemExit(f"scale {text!r}: expected CxNxS, e.g. 16x5x32") from err
    return c, n, s


def scorer(scale: tuple[int, int, int]) -> ProxyScorer:
    c, n, s = scale
    return ProxyScorer(
        NASBench201Space(channels=c, cells_per_stage=n, input_size=s), proxies=PROXIES, batch_size=BATCH_SIZE
    )


def score_cells(scale: tuple[int, int, int], cells: list[tuple[int, ...]], label: str) -> tuple[dict[str, list], float]:
    """Every proxy of every cell at ``scale``; and the mean seconds per cell (one thread)."""
    proxy_scorer = scorer(scale)
    columns: dict[str, list] = {p: [] for p in PROXIES}
    start = time.perf_counter()
    for i, cell in enumerate(cells):
        for p, v in proxy_scorer.scores(cell).items():
            columns[p].append(v)
        if (i + 1) % 100 == 0:
            print(
                f"  {label}: {i + 1}/{len(cells)} cells, {(time.perf_counter() - start) / (i + 1):.3f} s/cell",
                flush=True,
            )
    return columns, (time.perf_counter() - start) / len(cells)


def taus(columns: dict[str, list], cells: list[tuple[int, ...]]) -> dict[str, dict[str, float]]:
    """Kendall tau of every proxy, ensemble and of the parameter count against each dataset's accuracy."""
    table, space = NASBench201Table.load(), NASBench201Space()
    scores = {
        **columns,
        **{name: rank_mean([columns[p] for p in parts]) for name, parts in ENSEMBLES.items()},
        "params": [space.cost(c).params for c in cells],
    }
    return {
        name: {
            d: kendall_tau(
                np.nan_to_num(np.asarray(v, float), nan=-np.inf, neginf=-1e300), [table.query(c, d) for c in cells]
            )
            for d in DATASET_COLUMNS
        }
        for name, v in scores.items()
    }


def cmd_scales(args: argparse.Namespace) -> None:
    space = NASBench201Space()
    sample = space.sample_many(np.random.default_rng(args.seed), args.sample, distinct=True)
    runs = [(parse_scale(s), sample) for s in args.scales.split(",") if s]
    if args.full:
        runs.append((BENCHMARK_SCALE, sample[: args.full]))
    out: dict[str, Any] = {}
    rows = []
    for scale, cells in runs:
        label = "x".join(map(str, scale)) + f" ({len(cells)} cells)"
        columns, seconds = score_cells(scale, cells, label)
        result = taus(columns, cells)
        out[label] = {"scale": scale, "cells": len(cells), "seconds_per_cell": seconds, "tau": result}
        for name, t in result.items():
            rows.append(
                [
                    label,
                    name,
                    *(f"{t[d]:.3f}" for d in DATASET_COLUMNS),
                    f"{seconds:.3f}" if name in PROXIES else ("free" if name == "params" else ""),
                ]
            )
        print(
            f"{label}: {seconds:.3f} s/cell; " + ", ".join(f"{n} {t['cifar10']:.3f}" for n, t in result.items()),
            flush=True,
        )
    write_json(OUT / "scales.json", {"sample_seed": args.seed, "batch_size": BATCH_SIZE, "runs": out})
    write_markdown(
        OUT / "scales.md",
        "Zero-cost proxies at several network scales: Kendall tau vs the table",
        ["scale CxNxS (cells)", "score", "tau C10", "tau C100", "tau IN16", "s/cell (all 4 proxies)"],
        rows,
        notes="Seconds: all four proxies of one cell together, one torch thread on the shared 2-core machine "
        "(niced, other jobs running). `params`: the parameter count of the benchmark's network "
        "(C=16, N=5), the baseline a proxy must beat.",
    )


def partial_path(scale: tuple[int, int, int]) -> Path:
    return cache_dir() / f"nasbench201_proxies_{'x'.join(map(str, scale))}_b{BATCH_SIZE}.partial.parquet"


def cmd_compute(args: argparse.Namespace) -> None:
    scale = parse_scale(args.scale)
    partial = partial_path(scale)
    done: dict[int, dict[str, float]] = {}
    if partial.exists():
        for row in pq.read_table(partial).to_pylist():
            done[row["index"]] = row
    todo = [i for i in range(NASBench201Space().size) if i not in done]
    print(f"{len(done)} cells already scored ({partial}); {len(todo)} to go", flush=True)
    proxy_scorer, start, rate = scorer(scale), time.perf_counter(), float("nan")
    for n, index in enumerate(todo, 1):
        done[index] = {"index": index, **proxy_scorer.scores(arch_of_index(index))}
        if n % args.checkpoint_every == 0 or n == len(todo):
            pq.write_table(pa.Table.from_pylist(list(done.values())), partial)
            rate = (time.perf_counter() - start) / n
            print(
                f"{len(done)}/{NASBench201Space().size} cells, {rate:.3f} s/cell, "
                f"{rate * (len(todo) - n) / 60:.0f} min left",
                flush=True,
            )
    space = NASBench201Space()
    rows = [done[i] for i in range(space.size)]
    table = pa.table(
        {
            "arch": [space.to_string(arch_of_index(i)) for i in range(space.size)],
            **{p: pa.array([r[p] for r in rows], pa.float64()) for p in PROXY_COLUMNS},
        }
    )
    table = table.replace_schema_metadata(
        {
            "scale": args.scale,
            "batch_size": str(BATCH_SIZE),
            "data": "CIFAR-10 train",
            "init_seed": "0",
            "batch_seed": "0",
            "seconds_per_cell": f"{rate:.4f}",
            "command": f"python -m benchmarks.nasbench201_proxies compute --scale {args.scale}",
        }
    )
    target = Path(args.out)
    pq.write_table(table, target, compression="zstd", compression_level=19)
    print(f"wrote {target} ({target.stat().st_size / 1024:.0f} KiB)")


def cmd_report(args: argparse.Namespace) -> None:
    table = pq.read_table(args.table)
    space = NASBench201Space()
    cells = [space.from_string(s) for s in table.column("arch").to_pylist()]
    columns = {p: table.column(p).to_pylist() for p in PROXY_COLUMNS}
    result = taus(columns, cells)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    scales = OUT / "scales.json"
    cost = {}
    if scales.exists():
        import json

        runs = json.loads(scales.read_text())["runs"]
        cost = {label: r["seconds_per_cell"] for label, r in runs.items()}
    write_json(
        OUT / "proxies.json",
        {
            "cells": len(cells),
            "scale": meta.get("scale"),
            "batch_size": meta.get("batch_size"),
            "tau": result,
            "seconds_per_cell_by_scale": cost,
        },
    )
    rows = [[name, *(f"{t[d]:.3f}" for d in DATASET_COLUMNS)] for name, t in result.items()]
    write_markdown(
        OUT / "proxies.md",
        f"Zero-cost proxies vs the NAS-Bench-201 table: all {len(cells)} cells",
        ["score", "tau C10", "tau C100", "tau IN16"],
        rows,
        notes=f"Scores from `{args.table}` (scale {meta.get('scale')}, batch {meta.get('batch_size')} CIFAR-10 "
        "images, untrained networks). Kendall tau-b against the 200-epoch test accuracy. `params`: "
        "parameter count of the benchmark's network. Cost per cell: `scales.md`.",
    )
    print((OUT / "proxies.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("scales", help="tau and cost on a sample at several scales")
    p.add_argument("--sample", type=int, default=1000)
    p.add_argument("--scales", default="8x1x16,16x5x16")
    p.add_argument("--full", type=int, default=0, help="also this many cells of the sample at 16x5x32")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("compute", help="score all 15,625 cells and write the Parquet")
    p.add_argument("--scale", default="16x5x16")
    p.add_argument("--out", default=str(PROXY_TABLE))
    p.add_argument("--checkpoint-every", type=int, default=250)
    p = sub.add_parser("report", help="tau of the precomputed scores on all cells")
    p.add_argument("--table", default=str(PROXY_TABLE))
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"scales": cmd_scales, "compute": cmd_compute, "report": cmd_report}[args.command](args)


if __name__ == "__main__":
    main()
