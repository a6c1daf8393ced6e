"""Real datasets with seeded splits: CIFAR-10 (found or downloaded, see ``data.cifar10``) and scikit-learn digits."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from tune_spacenas.data.spec import DataSpec, SplitData


def load_data(spec: DataSpec) -> SplitData:
    """The splits ``spec`` describes, loaded once per process."""
    return _load(spec)


def prepare_data(spec: DataSpec) -> Path | None:
    """Make sure ``spec``'s data loads, in the driver before any trial starts: finds CIFAR-10 (or downloads
    it) and decodes it into the cache once, so trials only read the cache; returns that file (``None`` for
    digits, which ship with scikit-learn). A missing or damaged copy fails here in seconds, once, with the
    fix (``FileNotFoundError`` / ``ValueError``), instead of failing every trial."""
    if spec.name == "digits":
        return None
    from tune_spacenas.data.cifar10 import prepare_cifar10

    return prepare_cifar10(spec)


@lru_cache(maxsize=4)
def _load(spec: DataSpec) -> SplitData:
    if spec.name == "digits":
        from tune_spacenas.data.digits import load_digits_data

        return load_digits_data(spec)
    from tune_spacenas.data.cifar10 import load_cifar10

    return load_cifar10(spec)


def __getattr__(name: str):
    # DeviceData needs torch: imported when first asked for, so finding the data stays a light import.
    if name == "DeviceData":
        from tune_spacenas.data.batches import DeviceData

        return DeviceData
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DataSpec", "DeviceData", "SplitData", "load_data", "prepare_data"]
