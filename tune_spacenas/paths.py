"""Where shared data and caches live: ``TUNE_SPACENAS_DATA`` (else ``../shared/data``) and a user cache."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "TUNE_SPACENAS_DATA"
CACHE_ENV = "TUNE_SPACENAS_CACHE"


def data_dir() -> Path:
    """The shared data folder: ``$TUNE_SPACENAS_DATA``, else ``../shared/data`` beside the project."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        candidate = root.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data"


def data_file(name: str, path: str | os.PathLike | None = None, how_to_get: str = "") -> Path:
    """``path`` if given, else ``name`` in the data folder; FileNotFoundError that says where to get it."""
    file = Path(path).expanduser() if path is not None else data_dir() / name
    if not file.is_file():
        raise FileNotFoundError(
            f"data file {file} not found. Set {DATA_ENV} to the folder that holds {name!r} "
            f"or pass its path explicitly. {how_to_get}".strip()
        )
    return file


def cache_dir() -> Path:
    """Writable cache for converted data (Parquet tables, decoded images): ``$TUNE_SPACENAS_CACHE``."""
    path = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "tune_spacenas")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_key(file: Path) -> str:
    """A name that changes when the source file changes (size and modification time)."""
    st = file.stat()
    return f"{file.stem}-{st.st_size}-{int(st.st_mtime)}"
