"""Data and supernet specs the GPU sections share: CIFAR-10 at 32x32 in full (a slice under --smoke)."""

from __future__ import annotations

from tune_spacenas.data import DataSpec


def cifar10(smoke: bool, resolution: int = 32) -> DataSpec:
    """All 45,000 training images (5,000 held out for validation); 16x16 and 2,000 images for a smoke run."""
    if smoke:
        return DataSpec("cifar10", resolution=16, train_size=2000, val_size=1000)
    return DataSpec("cifar10", resolution=resolution)


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
