"""The NAS-Bench-201 table: load once (CSV converted once to Parquet), query by architecture and dataset."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tune_spacenas.paths import cache_dir, cache_key, data_file
from tune_spacenas.spaces.nasbench201 import NASBench201Space

TABLE_FILE = "nasbench201_test200.csv"
DATASET_COLUMNS = {
    "cifar10": "CIFAR10TestAccuracy200Epochs",
    "cifar100": "CIFAR100TestAccuracy200Epochs",
    "ImageNet16-120": "ImageNetTestAccuracy200Epochs",
}
DATASET_ALIASES = {"imagenet16-120": "ImageNet16-120", "imagenet16": "ImageNet16-120", "imagenet": "ImageNet16-120"}
TEST_ACCURACY = "test_accuracy_200"
# What the NAS-Bench-201 search protocol would use but our copy of the table does not hold.
MISSING_METRICS = {
    "valid_accuracy_12": "the 12-epoch validation accuracy (NAS-Bench-201's search reward)",
    "train_time": "per-architecture training time",
}
HOW_TO_GET = (
    "The table is NATS-Bench's topology space exported to CSV (columns "
    + ", ".join(DATASET_COLUMNS.values())
    + ", ArchitectureString); see ../shared/data/README.md, or export it from the NATS-Bench API."
)


class MissingMetricError(ValueError):
    """The table copy lacks a metric the search protocol asks for; we say so instead of inventing it."""


def canonical_dataset(dataset: str) -> str:
    if dataset in DATASET_COLUMNS:
        return dataset
    if dataset.lower() in DATASET_ALIASES:
        return DATASET_ALIASES[dataset.lower()]
    raise ValueError(f"unknown NAS-Bench-201 dataset {dataset!r}; use one of {list(DATASET_COLUMNS)}")


class NASBench201Table:
    """All 15,625 NAS-Bench-201 cells with their 200-epoch test accuracy on three datasets.

    Accepts the CSV described in ``../shared/data/README.md`` or a Parquet file with the same columns at
    any path; a CSV is converted once to Parquet in the user cache and read from there afterwards.
    Lookups are dense: an architecture's base-5 index addresses a numpy array per dataset.
    """

    metrics = (TEST_ACCURACY,)

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = data_file(TABLE_FILE, path, HOW_TO_GET)
        table = pq.read_table(self._parquet_path())
        missing = {"ArchitectureString", *DATASET_COLUMNS.values()} - set(table.column_names)
        if missing:
            raise ValueError(f"{self.path} lacks NAS-Bench-201 columns {sorted(missing)}. {HOW_TO_GET}")
        self.space = NASBench201Space()
        strings = table.column("ArchitectureString").to_pylist()
        index = np.array([dense_index(self.space.from_string(s)) for s in strings])
        if len(set(index.tolist())) != self.space.size:
            raise ValueError(f"{self.path} does not hold all {self.space.size} NAS-Bench-201 cells exactly once")
        self._accuracy = {}
        for dataset, column in DATASET_COLUMNS.items():
            dense = np.empty(self.space.size)
            dense[index] = table.column(column).to_numpy()
            self._accuracy[dataset] = dense

    def _parquet_path(self) -> Path:
        if self.path.suffix == ".parquet":
            return self.path
        target = cache_dir() / f"{cache_key(self.path)}.parquet"
        if not target.exists():
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            try:
                table = pacsv.read_csv(self.path)
            except pa.ArrowInvalid as err:  # a truncated or foreign file: say which and what is expected
                raise ValueError(f"cannot read {self.path} as the NAS-Bench-201 CSV ({err}). {HOW_TO_GET}") from err
            pq.write_table(table, tmp)
            os.replace(tmp, target)  # atomic: concurrent workers never read a half-written file
        return target

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> NASBench201Table:
        """The table for ``path`` (default: the shared data folder), loaded once per process."""
        return _load_cached(str(data_file(TABLE_FILE, path, HOW_TO_GET)))

    def query(self, arch: Sequence[int] | str, dataset: str = "cifar10", metric: str = TEST_ACCURACY) -> float:
        """The ``metric`` of ``arch`` (a NAS-Bench-201 string or an index tuple) on ``dataset``, in percent."""
        if metric in MISSING_METRICS:
            raise MissingMetricError(
                f"{MISSING_METRICS[metric]} ({metric!r}) is not in this copy of the table ({self.path}); "
                f"use metric={TEST_ACCURACY!r} and state that the reward is the 200-epoch test accuracy"
            )
        if metric != TEST_ACCURACY:
            raise ValueError(f"unknown metric {metric!r}; this table holds {list(self.metrics)}")
        arch = self.space.validate(arch)
        return float(self._accuracy[canonical_dataset(dataset)][dense_index(arch)])

    def accuracies(self, dataset: str = "cifar10") -> np.ndarray:
        """Test accuracy of every cell, indexed by ``dense_index`` (read-only view)."""
        view = self._accuracy[canonical_dataset(dataset)].view()
        view.flags.writeable = False
        return view

    def best(self, dataset: str = "cifar10") -> tuple[str, float]:
        acc = self._accuracy[canonical_dataset(dataset)]
        i = int(np.argmax(acc))
        return self.space.to_string(arch_of_index(i)), float(acc[i])


@lru_cache(maxsize=4)
def _load_cached(path: str) -> NASBench201Table:
    return NASBench201Table(path)


def dense_index(arch: Sequence[int]) -> int:
    index = 0
    for choice in arch:
        index = index * 5 + int(choice)
    return index


def arch_of_index(index: int) -> tuple[int, ...]:
    digits = []
    for _ in range(6):
        index, d = divmod(index, 5)
        digits.append(d)
    return tuple(reversed(digits))

