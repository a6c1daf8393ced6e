"""The NAS-Bench-201 table: load once, query by architecture and dataset.

The table ships with the library as ``nasbench201.parquet`` beside this module (361 KB):
NAS-Bench-201 (Dong & Yang, ICLR 2020) in its NATS-Bench form (Dong et al., TPAMI 2021), topology search
space, all 15,625 cells, the mean test accuracy after 200 epochs of training on CIFAR-10, CIFAR-100 and
ImageNet16-120 (percent), exported from the NATS-Bench API (``api.get_more_info(index, dataset,
hp=200)['test-accuracy']``). Source: the CSV ``nats_bench.csv`` of the public repository
v-tao/nats-bench-landscape, commit b307ae5fe6e8d7043cd4fe7d1c3532288271adb7 (sha256 ``SOURCE_SHA256``),
kept unchanged (its columns, rows and values; zstd-compressed): ``python -m tune_spacenas.tables.build
CSV`` rebuilds the file and checks every value against the CSV. Licence: NATS-Bench is released under the
MIT licence, Copyright (c) since 2020 Xuanyi Dong (https://github.com/D-X-Y/NATS-Bench, ``LICENSE.md``); its notice ships beside the table as
``NATS-Bench-LICENSE.txt``.

``NASBench201Table.load()`` needs no argument: an explicit path wins, then ``nasbench201_test200.csv`` in
``$TUNE_SPACENAS_DATA``, then the packaged file. A user's own export (CSV or Parquet, e.g. with extra
columns such as the 12-epoch validation accuracy) loads the same way as long as it has the columns below.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tune_spacenas import storage
from tune_spacenas.paths import DATA_ENV, cache_dir, cache_key, data_file
from tune_spacenas.spaces.nasbench201 import NASBench201Space

TABLE_FILE = "nasbench201_test200.csv"
PACKAGED_TABLE = Path(__file__).with_name("nasbench201.parquet")
SOURCE_SHA256 = "cb5d777ec3368be83c8f9b3aa4d520696051cb0eb8d94b8f85b519f9ea4afa3e"
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
    "The table ships with tune_spacenas (tables/nasbench201.parquet); a replacement is NATS-Bench's topology "
    "space exported to CSV or Parquet with the columns "
    + ", ".join(DATASET_COLUMNS.values())
    + ", ArchitectureString (see the docstring of tune_spacenas.tables.nasbench201)."
)


def table_path(path: str | os.PathLike | None = None) -> Path:
    """Which table to read: ``path``, else ``nasbench201_test200.csv`` in ``$TUNE_SPACENAS_DATA``, else the
    packaged copy."""
    if path is not None:
        return data_file(TABLE_FILE, path, HOW_TO_GET)
    if os.environ.get(DATA_ENV):
        candidate = Path(os.environ[DATA_ENV]).expanduser() / TABLE_FILE
        if candidate.is_file():
            return candidate
    return PACKAGED_TABLE


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

    By default the copy packaged with the library; any CSV or Parquet file with the same columns (extra
    columns are ignored) at ``path`` or in ``$TUNE_SPACENAS_DATA``; a CSV is converted once to Parquet in the
    user cache and read from there afterwards.
    Lookups are dense: an architecture's base-5 index addresses a numpy array per dataset.
    """

    metrics = (TEST_ACCURACY,)

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = table_path(path)
        try:
            table = pq.read_table(self._parquet_path())
        except pa.ArrowInvalid as err:  # a truncated or foreign Parquet file
            raise ValueError(f"cannot read {self.path} as a NAS-Bench-201 table ({err}). {HOW_TO_GET}") from err
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
            try:
                table = pacsv.read_csv(self.path)
            except pa.ArrowInvalid as err:  # a truncated or foreign file: say which and what is expected
                raise ValueError(f"cannot read {self.path} as the NAS-Bench-201 CSV ({err}). {HOW_TO_GET}") from err
            # Atomic: concurrent workers never read a half-written file.
            storage.write_atomic(target, lambda f: pq.write_table(table, f))
        return target

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> NASBench201Table:
        """The table at ``path`` (default: ``$TUNE_SPACENAS_DATA``'s, else the packaged one), loaded once per process."""
        return _load_cached(str(table_path(path)))

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
