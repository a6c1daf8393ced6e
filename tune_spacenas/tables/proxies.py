"""Zero-cost proxy scores of all 15,625 NAS-Bench-201 cells, shipped with the package.

``nasbench201_proxies.parquet`` (beside this module) holds, per cell (``arch``, NAS-Bench-201's string),
the ``tune_spacenas.proxies`` scores of the untrained network on one CIFAR-10 batch; its schema metadata
says at which scale and with which command it was made (``python -m benchmarks.nasbench201_proxies
compute``). The scores cost nothing at search time, so a searcher's prior can come from here:

    prior = nasbench201_prior("synflow")          # {architecture string: score}, higher = better
    ASESearcher(prior=prior, ...)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tune_spacenas.analysis.ranking import rank_mean

PROXY_TABLE = Path(__file__).with_name("nasbench201_proxies.parquet")
PROXY_COLUMNS = ("synflow", "naswot", "jacov", "grad_norm")


@lru_cache(maxsize=4)
def _columns(path: str) -> tuple[list[str], dict[str, np.ndarray]]:
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"no proxy scores at {path}; regenerate them with `python -m benchmarks.nasbench201_proxies compute`"
        )
    table = pq.read_table(path)
    missing = {"arch", *PROXY_COLUMNS} - set(table.column_names)
    if missing:
        raise ValueError(
            f"{path} lacks columns {sorted(missing)}; regenerate it with "
            "`python -m benchmarks.nasbench201_proxies compute`"
        )
    return table.column("arch").to_pylist(), {p: table.column(p).to_numpy() for p in PROXY_COLUMNS}


def nasbench201_prior(
    proxies: str | Sequence[str] = "synflow", path: str | os.PathLike | None = None
) -> dict[str, float]:
    """``{architecture string: score}`` for every NAS-Bench-201 cell: one proxy's score, or for several
    the mean of their rank-percentiles (higher is better in every case)."""
    names = [proxies] if isinstance(proxies, str) else list(proxies)
    unknown = [p for p in names if p not in PROXY_COLUMNS]
    if unknown or not names:
        raise ValueError(f"unknown proxies {unknown or names}; the table holds {list(PROXY_COLUMNS)}")
    archs, columns = _columns(str(path or PROXY_TABLE))
    score = columns[names[0]] if len(names) == 1 else rank_mean([columns[p] for p in names])
    return dict(zip(archs, np.nan_to_num(np.asarray(score, float), nan=-np.inf).tolist()))
