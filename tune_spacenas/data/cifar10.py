"""CIFAR-10, found or fetched in one order and decoded once into a uint8 cache.

Where it comes from, first match wins:

1. ``DataSpec.path``: ``cifar10_jpeg.parquet`` (the 60,000 images as JPEG, columns split, label, index,
   jpeg), the official ``cifar-10-python.tar.gz``, its extracted ``cifar-10-batches-py`` folder, or a
   folder holding one of them;
2. one of those in ``$TUNE_SPACENAS_DATA``;
3. one of those in ``../shared/data`` beside the project (skipped when ``TUNE_SPACENAS_NO_SHARED=1``);
4. the user cache (``$TUNE_SPACENAS_CACHE``, default ``~/.cache/tune_spacenas``), holding an earlier
   download;
5. a download of the official archive (torchvision's URL and MD5; ``TUNE_SPACENAS_CIFAR10_URL`` and
   ``TUNE_SPACENAS_CIFAR10_MD5`` override them, an empty URL turns downloading off), converted into the
   cache; the archive itself is not kept.

Every source is decoded once into ``<cache>/<name>.npz`` (uint8 NHWC arrays, labels; ~180 MB) that later
loads take in milliseconds; it is written under a temporary name and renamed, so no reader ever sees half
of it. The JPEG copy's pixels went through JPEG (see ``../shared/data/README.md``); the official archive
holds the original pixels. ``DataSpec(source="torchvision")`` uses torchvision's own loader instead.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow.parquet as pq

from tune_spacenas import storage
from tune_spacenas.data.download import ChecksumError, DownloadError, downloaded
from tune_spacenas.data.spec import DataSpec, SplitData, downsample, split_train_val
from tune_spacenas.paths import (
    DATA_ENV,
    cache_dir,
    cache_key,
    data_dirs,
    describe_data_dirs,
)

CIFAR10_FILE = "cifar10_jpeg.parquet"
ARCHIVE_FILE = "cifar-10-python.tar.gz"
EXTRACTED_DIR = "cifar-10-batches-py"
SOURCE_NAMES = (CIFAR10_FILE, ARCHIVE_FILE, EXTRACTED_DIR)
URL_ENV = "TUNE_SPACENAS_CIFAR10_URL"
MD5_ENV = "TUNE_SPACENAS_CIFAR10_MD5"
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # torchvision's CIFAR10.url
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"  # torchvision's CIFAR10.tgz_md5
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def how_to_provide() -> str:
    """The three ways to give the library CIFAR-10, for error messages."""
    return (
        "Provide CIFAR-10 one of three ways:\n"
        f"  1. pass its path: DataSpec('cifar10', path=...) to {ARCHIVE_FILE} (the official archive), its "
        f"extracted {EXTRACTED_DIR} folder, or {CIFAR10_FILE};\n"
        f"  2. set {DATA_ENV} to a folder holding one of those;\n"
        f"  3. let the library download it once (170 MB from {OFFICIAL_URL}, decoded into {cache_dir()}): run "
        f"where that address is reachable, or set {URL_ENV} to a mirror."
    )


def load_cifar10(spec: DataSpec) -> SplitData:
    x_train, y_train, x_test, y_test = (
        _torchvision_arrays(spec) if spec.source == "torchvision" else _cached_arrays(spec)
    )
    x_train, y_train, x_val, y_val = split_train_val(x_train, y_train, spec)
    return SplitData(
        downsample(x_train, spec.resolution),
        y_train,
        downsample(x_val, spec.resolution),
        y_val,
        downsample(x_test, spec.resolution),
        y_test,
        10,
        CIFAR10_MEAN,
        CIFAR10_STD,
    )


def prepare_cifar10(spec: DataSpec) -> Path:
    """Find or fetch CIFAR-10 for ``spec`` and decode it into the cache, once; returns the cached file.

    Raises ``FileNotFoundError`` (where it looked and the three ways to provide it) when no copy is found
    and none can be downloaded, ``ValueError`` when a copy or a download is damaged.
    """
    if spec.source == "torchvision":
        _torchvision_arrays(spec)
        return Path(spec.path or cache_dir() / "torchvision")
    source = find_cifar10(spec.path)
    if source is not None:
        cached = cache_dir() / f"{cache_key(source)}.npz"
        if not cached.exists():
            _write_arrays(_decode(source), cached)
        return cached
    md5 = os.environ.get(MD5_ENV) or OFFICIAL_MD5
    cached = cache_dir() / f"cifar10-{md5[:12]}.npz"  # the download's name: another archive never passes for it
    if not cached.exists():
        _download_into(cached, md5)
    return cached


def find_cifar10(path: str | os.PathLike | None = None) -> Path | None:
    """The first CIFAR-10 copy of the lookup order's steps 1-3, or ``None``; an explicit ``path`` that holds
    none is an error, never skipped."""
    if path is not None:
        given = Path(path).expanduser()
        found = _source_in(given) if given.is_dir() and given.name != EXTRACTED_DIR else given
        if found is None or not found.exists():
            raise FileNotFoundError(
                f"no CIFAR-10 at {given} (DataSpec.path): expected {' or '.join(SOURCE_NAMES)} "
                f"there. {how_to_provide()}"
            )
        return found
    return next((found for d in data_dirs() if (found := _source_in(d)) is not None), None)


def _source_in(folder: Path) -> Path | None:
    return next((folder / name for name in SOURCE_NAMES if (folder / name).exists()), None)


def _download_into(cached: Path, md5: str) -> None:
    url = os.environ.get(URL_ENV, OFFICIAL_URL)
    if not url:
        raise FileNotFoundError(_not_found(f"downloading is turned off ({URL_ENV} is empty)"))
    try:
        with downloaded(url, md5, cached.parent, desc="CIFAR-10") as archive:
            _write_arrays(_decode(archive), cached)
    except DownloadError as err:
        raise FileNotFoundError(_not_found(str(err))) from err
    except ChecksumError as err:
        raise ChecksumError(f"{err}. Retry, or: {how_to_provide()}") from err


def _not_found(reason: str) -> str:
    return (
        f"CIFAR-10 not found, and {reason}. Looked in: {describe_data_dirs()}, and the cache {cache_dir()}. "
        f"{how_to_provide()}"
    )


def _cached_arrays(spec: DataSpec) -> tuple[np.ndarray, ...]:
    with np.load(prepare_cifar10(spec)) as f:
        return f["x_train"], f["y_train"], f["x_test"], f["y_test"]


def _write_arrays(arrays: dict[str, np.ndarray], cached: Path) -> None:
    storage.write_atomic(cached, lambda f: np.savez(f, **arrays))


def _decode(source: Path) -> dict[str, np.ndarray]:
    """uint8 NHWC train/test images and int64 labels of any supported copy."""
    if source.suffix == ".parquet":
        return _decode_parquet(source)
    try:
        batches = dict(_official_batches(source))
        train = [batches[name] for name in TRAIN_BATCHES]
        test = batches[TEST_BATCH]
    except (OSError, EOFError, KeyError, pickle.UnpicklingError, tarfile.TarError) as err:
        raise ValueError(
            f"cannot read {source} as CIFAR-10's python version (a {ARCHIVE_FILE} or "
            f"{EXTRACTED_DIR} holding {', '.join(TRAIN_BATCHES)} and {TEST_BATCH}): {err!r}"
        ) from err
    x_train, y_train = _batch_arrays(train)
    x_test, y_test = _batch_arrays([test])
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _decode_parquet(path: Path) -> dict[str, np.ndarray]:
    """Decode the JPEG-in-Parquet copy (~7 s for all 60,000 images)."""
    from PIL import Image

    try:
        table = pq.read_table(path, columns=["split", "label", "jpeg"])
    except Exception as err:  # a truncated or foreign file: say which and what is expected
        raise ValueError(
            f"cannot read {path} as the CIFAR-10 Parquet file ({err}). It packs CIFAR-10's images "
            f"as JPEG with columns split, label, index, jpeg (see ../shared/data/README.md)."
        ) from err
    split = np.asarray(table.column("split").to_pylist())
    labels = table.column("label").to_numpy().astype(np.int64)
    images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in table.column("jpeg").to_pylist()])
    train, test = split == "train", split == "test"
    return {"x_train": images[train], "y_train": labels[train], "x_test": images[test], "y_test": labels[test]}


def _official_batches(source: Path) -> Iterator[tuple[str, dict]]:
    """(name, batch) for every pickled batch of the archive or its extracted folder."""
    wanted = {*TRAIN_BATCHES, TEST_BATCH}
    if source.is_dir():
        for name in sorted(wanted & {p.name for p in source.iterdir()}):
            with open(source / name, "rb") as f:
                yield name, _unpickle(f)
        return
    with tarfile.open(source, "r:gz") as tar:
        for member in tar:
            name = Path(member.name).name
            if member.isfile() and name in wanted:
                yield name, _unpickle(tar.extractfile(member))


def _batch_arrays(batches: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """A batch's ``data`` rows are 3,072 bytes: the red, green and blue 32x32 planes, each row-major."""
    data = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in batches])
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10 batches and nothing else: a pickle can run code, so only numpy's array
    reconstruction is allowed (the batches are dicts of bytes, lists and one uint8 array)."""

    allowed = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )  # encode: bytes in protocol 2

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"a CIFAR-10 batch does not hold {module}.{name}")
        return super().find_class(module, name)


def _unpickle(f: BinaryIO) -> dict:
    return _BatchUnpickler(f, encoding="bytes").load()


def write_official_archive(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Write uint8 NHWC arrays (``x_train``, ``y_train``, ``x_test``, ``y_test``) as CIFAR-10's python
    version (five training batches and a test batch in ``cifar-10-batches-py/``, tar.gz): to seed a mirror
    (``TUNE_SPACENAS_CIFAR10_URL``) or a machine without the internet from a copy in another format."""
    parts = np.array_split(np.arange(len(arrays["y_train"])), len(TRAIN_BATCHES))
    batches = [(name, arrays["x_train"][i], arrays["y_train"][i]) for name, i in zip(TRAIN_BATCHES, parts)]
    batches.append((TEST_BATCH, arrays["x_test"], arrays["y_test"]))

    def write(out: BinaryIO) -> None:
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            for name, x, y in batches:
                batch = {
                    b"batch_label": name.encode(),
                    b"labels": [int(v) for v in y],
                    b"data": np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(len(x), -1),
                    b"filenames": [f"{name}_{i:05d}.png".encode() for i in range(len(x))],
                }
                payload = pickle.dumps(batch, protocol=2)  # the protocol of the official files
                info = tarfile.TarInfo(f"{EXTRACTED_DIR}/{name}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))

    storage.write_atomic(path, write)


def _torchvision_arrays(spec: DataSpec) -> tuple[np.ndarray, ...]:
    from torchvision.datasets import CIFAR10

    root = spec.path or str(cache_dir() / "torchvision")
    train, test = CIFAR10(root, train=True, download=True), CIFAR10(root, train=False, download=True)
    return (
        np.asarray(train.data),
        np.asarray(train.targets, np.int64),
        np.asarray(test.data),
        np.asarray(test.targets, np.int64),
    )
