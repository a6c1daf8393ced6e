"""The one way the project writes a file: on a local path, a shared filesystem or any ``pyarrow.fs`` URI
(``s3://``, ``gs://``, ``hdfs://``, ``file://``), the same storage Tune's ``storage_path`` accepts, so a store
restarted on another node finds its last checkpoint where the experiment keeps everything else.

Every save (weight-store checkpoints, searcher states and histories, saved spaces and subspace graphs,
plots) goes through ``write_atomic``: a temporary name, then a rename, so a crash mid-write leaves the
previous file whole.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

STORE_CHECKPOINT = "weight_store.npz"


def is_uri(path: str) -> bool:
    return "://" in str(path)


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base/parts...`` for a local path or a URI."""
    base = str(base)
    return posixpath.join(base, *parts) if is_uri(base) else os.path.join(os.path.abspath(base), *parts)


def store_checkpoint_path(storage_path: str | os.PathLike, experiment: str) -> str:
    """Where a search's weight store checkpoints: beside Tune's own files, in the experiment directory
    (``<storage_path>/<experiment>/weight_store.npz``), so ``Tuner.restore`` and a restarted store on any
    node see the same file. Pass it as ``WeightStore.create(..., checkpoint_path=...)``."""
    return join(storage_path, experiment, STORE_CHECKPOINT)


def _filesystem(path: str):
    from pyarrow import fs

    return fs.FileSystem.from_uri(path)


def exists(path: str) -> bool:
    if not is_uri(path):
        return os.path.exists(path)
    from pyarrow import fs

    filesystem, inner = _filesystem(path)
    return filesystem.get_file_info(inner).type != fs.FileType.NotFound


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` into a temporary file beside ``path``, then rename it over ``path``."""
    path = str(path)
    tmp_name = f".{posixpath.basename(path)}.{uuid.uuid4().hex[:8]}.tmp"
    if not is_uri(path):
        path = os.path.abspath(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(os.path.dirname(path), tmp_name)
        try:
            with open(tmp, "wb") as f:
                write(f)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    filesystem, inner = _filesystem(path)
    buffer = io.BytesIO()  # numpy's zip writer seeks; remote streams do not
    write(buffer)
    filesystem.create_dir(posixpath.dirname(inner), recursive=True)
    tmp = posixpath.join(posixpath.dirname(inner), tmp_name)
    with filesystem.open_output_stream(tmp) as out:
        out.write(buffer.getvalue())
    filesystem.move(tmp, inner)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """``data`` as indented JSON at ``path``, atomically."""
    text = json.dumps(data, indent=1).encode()
    write_atomic(str(path), lambda f: f.write(text))


def read_json(path: str | os.PathLike) -> Any:
    with open_read(str(path)) as f:
        return json.loads(f.read().decode())


def glob(directory: str, pattern: str) -> list[str]:
    """The files in ``directory`` (a path or URI, not recursive) whose name matches ``pattern``."""
    import fnmatch

    if not is_uri(directory):
        return (
            sorted(os.path.join(directory, n) for n in os.listdir(directory) if fnmatch.fnmatch(n, pattern))
            if os.path.isdir(directory)
            else []
        )
    from pyarrow import fs

    directory = directory.rstrip("/")
    filesystem, inner = _filesystem(directory)
    prefix = directory[: len(directory) - len(inner.rstrip("/"))]  # scheme and authority, e.g. "s3://"
    infos = filesystem.get_file_info(fs.FileSelector(inner, allow_not_found=True))
    return sorted(prefix + i.path for i in infos if fnmatch.fnmatch(posixpath.basename(i.path), pattern))


@contextmanager
def open_read(path: str) -> Iterator[BinaryIO]:
    """The file at ``path`` opened for reading (a URI's bytes are read whole)."""
    if not is_uri(path):
        with open(path, "rb") as f:
            yield f
        return
    filesystem, inner = _filesystem(path)
    with filesystem.open_input_stream(inner) as stream:
        data = stream.read()
    yield io.BytesIO(data)


def directories(directory: str) -> list[str]:
    """The folders directly in ``directory`` (a path or URI)."""
    if not is_uri(directory):
        return sorted(p for p in glob(directory, "*") if os.path.isdir(p))
    from pyarrow import fs

    directory = directory.rstrip("/")
    filesystem, inner = _filesystem(directory)
    prefix = directory[: len(directory) - len(inner.rstrip("/"))]
    infos = filesystem.get_file_info(fs.FileSelector(inner, allow_not_found=True))
    return sorted(prefix + i.path for i in infos if i.type == fs.FileType.Directory)


def remove_tree(path: str) -> None:
    """Delete the folder ``path`` and everything in it."""
    if not is_uri(path):
        import shutil

        shutil.rmtree(path)
        return
    filesystem, inner = _filesystem(path)
    filesystem.delete_dir(inner)
