"""CIFAR-10: the shared JPEG-in-Parquet file (decoded once, cached as uint8) or torchvision's loader."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tune_spacenas.data.spec import DataSpec, SplitData, downsample, split_train_val
from tune_spacenas.paths import cache_dir, cache_key, data_file

CIFAR10_FILE = "cifar10_jpeg.parquet"
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
HOW_TO_GET = ("It packs CIFAR-10's 60,000 images as JPEG with columns split, label, index, jpeg "
              "(see ../shared/data/README.md); or use DataSpec(source='torchvision') where the internet is reachable.")


def load_cifar10(spec: DataSpec) -> SplitData:
    x_train, y_train, x_test, y_test = _torchvision_arrays(spec) if spec.source == "torchvision" else _parquet_arrays(spec)
    x_train, y_train, x_val, y_val = split_train_val(x_train, y_train, spec)
    return SplitData(
        downsample(x_train, spec.resolution), y_train, downsample(x_val, spec.resolution), y_val,
        downsample(x_test, spec.resolution), y_test, 10, CIFAR10_MEAN, CIFAR10_STD,
    )


def _parquet_arrays(spec: DataSpec) -> tuple[np.ndarray, ...]:
    """Decode the Parquet file once (~7 s) and keep the uint8 arrays in the user cache (~ms to reload)."""
    source = data_file(CIFAR10_FILE, spec.path, HOW_TO_GET)
    cached = cache_dir() / f"{cache_key(source)}.npz"
    if not cached.exists():
        arrays = _decode_parquet(source)
        tmp = cached.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, cached)
    with np.load(cached) as f:
        return f["x_train"], f["y_train"], f["x_test"], f["y_test"]


def _decode_parquet(path: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    try:
        table = pq.read_table(path, columns=["split", "label", "jpeg"])
    except Exception as err:  # a truncated or foreign file: say which and what is expected
        raise ValueError(f"cannot read {path} as the CIFAR-10 Parquet file ({err}). {HOW_TO_GET}") from err
    split = np.asarray(table.column("split").to_pylist())
    labels = table.column("label").to_numpy().astype(np.int64)
    images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in table.column("jpeg").to_pylist()])
    train, test = split == "train", split == "test"
    return {"x_train": images[train], "y_train": labels[train], "x_test": images[test], "y_test": labels[test]}


def _torchvision_arrays(spec: DataSpec) -> tuple[np.ndarray, ...]:
    from torchvision.datasets import CIFAR10

    root = spec.path or str(cache_dir() / "torchvision")
    train, test = CIFAR10(root, train=True, download=True), CIFAR10(root, train=False, download=True)
    return (np.asarray(train.data), np.asarray(train.targets, np.int64),
            np.asarray(test.data), np.asarray(test.targets, np.int64))
