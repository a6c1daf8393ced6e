"""``DataSpec``: which real dataset a supernet trains and is scored on, at what size, split by which seed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DataSpec:
    """Plain-data description of a dataset and its splits (it travels in the weight store's spec).

    Args:
        name: ``"cifar10"`` or ``"digits"`` (scikit-learn's 8x8 digits: smoke tests only, too easy to
            rank architectures).
        resolution: side in pixels; CIFAR-10 at 16 is average-pooled 2x2 (the CPU rank setting).
        train_size: images of the training split to use (``None``: all of it).
        val_size: images held out of the original training set for validation (SE-NAS 4.1: 5,000).
        seed: seeds the train/validation split and the subset.
        augment: random crop (padding resolution/8) and horizontal flip on training batches.
        source: ``"parquet"`` (the default: CIFAR-10 found or downloaded in the order of
            ``tune_spacenas.data.cifar10``: ``path``, ``$TUNE_SPACENAS_DATA``, ``../shared/data``, the user
            cache, a download of the official archive) or ``"torchvision"`` (torchvision's loader).
        path: an explicit data file or folder (``cifar10_jpeg.parquet``, ``cifar-10-python.tar.gz``, its
            extracted ``cifar-10-batches-py``, or a folder holding one).
    """

    name: str = "cifar10"
    resolution: int | None = None
    train_size: int | None = None
    val_size: int = 5000
    seed: int = 0
    augment: bool = True
    source: str = "parquet"
    path: str | None = None

    def __post_init__(self):
        if self.name not in ("cifar10", "digits"):
            raise ValueError(f"unknown dataset {self.name!r}; use 'cifar10' or 'digits'")
        if self.source not in ("parquet", "torchvision"):
            raise ValueError(f"unknown data source {self.source!r}; use 'parquet' or 'torchvision'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSpec:
        return cls(**data)


@dataclass
class SplitData:
    """uint8 NHWC images and int64 labels of the train / validation / test splits."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def split_train_val(x: np.ndarray, y: np.ndarray, spec: DataSpec) -> tuple[np.ndarray, ...]:
    """Seeded split of the original training set into (train, validation), then the train subset."""
    if spec.val_size >= len(x):
        raise ValueError(f"val_size {spec.val_size} leaves no training images out of {len(x)}")
    order = np.random.default_rng(spec.seed).permutation(len(x))
    val, train = order[: spec.val_size], order[spec.val_size :]
    if spec.train_size is not None:
        train = train[: spec.train_size]
    return x[train], y[train], x[val], y[val]


def downsample(images: np.ndarray, resolution: int | None) -> np.ndarray:
    """Average-pool NHWC uint8 images by an integer factor to ``resolution``."""
    if resolution is None or resolution == images.shape[1]:
        return images
    factor = images.shape[1] // resolution
    if factor * resolution != images.shape[1]:
        raise ValueError(f"resolution {resolution} must divide the native size {images.shape[1]}")
    n, h, w, c = images.shape
    pooled = images.reshape(n, resolution, factor, resolution, factor, c).mean(axis=(2, 4))
    return np.round(pooled).astype(np.uint8)
