"""Rebuild cifar10_sample.parquet from the full JPEG copy (run by hand; the tests only read the result).

    python tests/data/make_cifar10_sample.py /path/to/cifar10_jpeg.parquet

Keeps, for each of the 10 classes, the images with the lowest file numbers: 50 of the training split and
10 of the test split (600 in all), rows and columns exactly as in the source (JPEG bytes not re-encoded).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

PER_CLASS = {"train": 50, "test": 10}
OUT = Path(__file__).with_name("cifar10_sample.parquet")


def main(source: str) -> None:
    table = pq.read_table(source)
    keys = list(zip(table["split"].to_pylist(), table["label"].to_pylist(), table["index"].to_pylist()))
    taken, rows = Counter(), []
    for row in sorted(range(len(keys)), key=keys.__getitem__):
        split, label, _ = keys[row]
        if taken[split, label] < PER_CLASS[split]:
            taken[split, label] += 1
            rows.append(row)
    sample = table.take(sorted(rows))
    pq.write_table(sample, OUT, compression="zstd")
    print(f"{OUT}: {sample.num_rows} images, {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
