"""Real datasets with seeded splits: CIFAR-10 (shared Parquet or torchvision) and scikit-learn digits."""

from __future__ import annotations

from functools import lru_cache

from tune_spacenas.data.batches import DeviceData
from tune_spacenas.data.spec import DataSpec, SplitData


def load_data(spec: DataSpec) -> SplitData:
    """The splits ``spec`` describes, loaded once per process."""
    return _load(spec)


@lru_cache(maxsize=4)
def _load(spec: DataSpec) -> SplitData:
    if spec.name == "digits":
        from tune_spacenas.data.digits import load_digits_data

        return load_digits_data(spec)
    from tune_spacenas.data.cifar10 import load_cifar10

    return load_cifar10(spec)


__all__ = ["DataSpec", "DeviceData", "SplitData", "load_data"]
