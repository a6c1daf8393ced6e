"""Rebuild the packaged NAS-Bench-201 table from its CSV and check that every value survived.

    python -m tune_spacenas.tables.build /path/to/nasbench201_test200.csv          # writes the packaged file
    python -m tune_spacenas.tables.build /path/to/nasbench201_test200.csv --check  # only compares

The CSV is the one ``tune_spacenas.tables.nasbench201``'s docstring names (sha256 ``SOURCE_SHA256``); the
output keeps its columns and row order, zstd-compressed. The check reads the CSV a second way (Python's
``csv`` module and ``float``), independent of pyarrow's parser, and requires every cell of the Parquet
file to equal it exactly.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tune_spacenas.tables.nasbench201 import PACKAGED_TABLE, SOURCE_SHA256


def build(csv_path: Path, out: Path = PACKAGED_TABLE) -> None:
    """Write ``csv_path`` as compressed Parquet at ``out`` (atomically), then verify it."""
    from tune_spacenas import storage

    table = pacsv.read_csv(csv_path)
    storage.write_atomic(out, lambda f: pq.write_table(table, f, compression="zstd", compression_level=19))
    verify(csv_path, out)


def verify(csv_path: Path, parquet_path: Path) -> int:
    """Raise ValueError unless ``parquet_path`` holds exactly the CSV's rows, columns and values; returns the
    number of cells compared."""
    parquet = pq.read_table(parquet_path).to_pydict()
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if list(parquet) != list(rows[0]) or any(len(v) != len(rows) for v in parquet.values()):
        raise ValueError(
            f"{parquet_path} has columns {list(parquet)} x {len(next(iter(parquet.values())))} rows; "
            f"{csv_path} has {list(rows[0])} x {len(rows)}"
        )
    compared = 0
    for column, values in parquet.items():
        for i, (value, row) in enumerate(zip(values, rows)):
            text = row[column]
            expected = float(text) if isinstance(value, float) else text
            if value != expected and not (isinstance(value, float) and math.isnan(value) and math.isnan(expected)):
                raise ValueError(f"row {i} column {column}: Parquet {value!r} != CSV {text!r}")
            compared += 1
    return compared


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path, help="nasbench201_test200.csv")
    parser.add_argument("--out", type=Path, default=PACKAGED_TABLE, help="the Parquet file to write or check")
    parser.add_argument("--check", action="store_true", help="compare only; write nothing")
    args = parser.parse_args()
    digest = sha256(args.csv)
    note = "the documented source" if digest == SOURCE_SHA256 else f"NOT the documented source {SOURCE_SHA256}"
    print(f"{args.csv}: sha256 {digest} ({note})")
    if not args.check:
        build(args.csv, args.out)
    cells = verify(args.csv, args.out)
    print(f"{args.out}: {args.out.stat().st_size:,} bytes; all {cells:,} cells equal the CSV's")


if __name__ == "__main__":
    main()
