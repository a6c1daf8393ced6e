"""Where data and caches live.

Data files are looked for in ``$TUNE_SPACENAS_DATA``, then in ``../shared/data`` beside the project (a
checkout's data folder; ``TUNE_SPACENAS_NO_SHARED=1`` skips it, so a test run can prove it does not need
it). Converted and downloaded data go to the user cache, ``$TUNE_SPACENAS_CACHE`` (default
``~/.cache/tune_spacenas``).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "TUNE_SPACENAS_DATA"
NO_SHARED_ENV = "TUNE_SPACENAS_NO_SHARED"
CACHE_ENV = "TUNE_SPACENAS_CACHE"


def shared_data_dirs() -> list[Path]:
    """``../shared/data`` beside the project (the package's checkout, then the working directory)."""
    roots = dict.fromkeys((Path(__file__).resolve().parents[1], Path.cwd().resolve()))
    return [root.parent / "shared" / "data" for root in roots]


def data_dirs() -> list[Path]:
    """The folders searched for data files, in order: ``$TUNE_SPACENAS_DATA``, then ``../shared/data``
    beside the project unless ``TUNE_SPACENAS_NO_SHARED`` is set to anything but ``0``."""
    dirs = [Path(os.environ[DATA_ENV]).expanduser()] if os.environ.get(DATA_ENV) else []
    if os.environ.get(NO_SHARED_ENV, "0") in ("", "0"):
        dirs += shared_data_dirs()
    return dirs


def describe_data_dirs() -> str:
    """Where ``data_dirs`` looked, for error messages."""
    looked = [f"${DATA_ENV} ({os.environ[DATA_ENV]})" if os.environ.get(DATA_ENV) else f"${DATA_ENV} (unset)"]
    if os.environ.get(NO_SHARED_ENV, "0") in ("", "0"):
        looked += [str(d) for d in shared_data_dirs()]
    else:
        looked.append(f"../shared/data (skipped: {NO_SHARED_ENV}={os.environ[NO_SHARED_ENV]})")
    return ", ".join(looked)


def find_data_file(name: str) -> Path | None:
    """The first ``name`` in ``data_dirs()``, or ``None``."""
    return next((d / name for d in data_dirs() if (d / name).exists()), None)


def data_file(name: str, path: str | os.PathLike | None = None, how_to_get: str = "") -> Path:
    """``path`` if given, else ``name`` in the first data folder holding it; FileNotFoundError that says
    where it looked and how to get it."""
    if path is not None:
        file = Path(path).expanduser()
        if not file.exists():
            raise FileNotFoundError(
                f"data file {file} not found. Pass an existing path, or set {DATA_ENV} to "
                f"the folder that holds {name!r}. {how_to_get}".strip()
            )
        return file
    found = find_data_file(name)
    if found is None:
        raise FileNotFoundError(
            f"data file {name!r} not found (looked in {describe_data_dirs()}). Set {DATA_ENV} "
            f"to the folder that holds it or pass its path explicitly. {how_to_get}".strip()
        )
    return found


def cache_dir() -> Path:
    """Writable cache for converted data (Parquet tables, decoded images): ``$TUNE_SPACENAS_CACHE``."""
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tune_spacenas").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_key(file: Path) -> str:
    """A name that changes when the source file changes (size and modification time)."""
    st = file.stat()
    return f"{file.stem}-{st.st_size}-{int(st.st_mtime)}"
