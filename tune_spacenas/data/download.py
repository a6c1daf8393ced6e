"""Download a file once, checksum-verified, without ever leaving a half-written file behind.

The bytes go to a temporary file beside the destination; it is checked (length, then MD5) and handed to
the caller, and removed afterwards whatever happens (an interrupted transfer, a checksum mismatch,
Ctrl-C). The server must answer within ``TUNE_SPACENAS_DOWNLOAD_TIMEOUT`` seconds (default 5, name
lookup included), and a transfer that stalls that long fails, so an offline machine learns it in seconds.
"""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TIMEOUT_ENV = "TUNE_SPACENAS_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT_S = 5.0
CHUNK = 1 << 20


class DownloadError(ConnectionError):
    """The file could not be fetched (no answer, an HTTP error, a transfer cut short); nothing was kept."""


class ChecksumError(ValueError):
    """The fetched bytes are not the file the checksum names; nothing was kept."""


def timeout_s() -> float:
    return float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)


@contextmanager
def downloaded(url: str, md5: str, folder: Path, desc: str = "download") -> Iterator[Path]:
    """``url`` fetched into a temporary file in ``folder`` (with a tqdm progress bar) and verified against
    ``md5``; the file is yours inside the block and deleted when it ends.

    Raises ``DownloadError`` when the server cannot be reached or the transfer is cut short, and
    ``ChecksumError`` when the bytes do not match; in both cases no file is left in ``folder``.
    """
    from tqdm.auto import tqdm

    part = folder / f".{Path(urlsplit(url).path).name or 'download'}.{os.getpid()}-{os.urandom(4).hex()}.part"
    digest, received = hashlib.md5(), 0
    try:
        with _open(url, timeout_s()) as response, open(part, "wb") as out:
            expected = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, mininterval=1) as bar:
                while chunk := _read(response, url):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if expected is not None and received != expected:
            raise DownloadError(f"download of {url} was interrupted after {received:,} of {expected:,} bytes")
        if digest.hexdigest() != md5.lower():
            raise ChecksumError(
                f"{url} gave {received:,} bytes with MD5 {digest.hexdigest()}, not the expected "
                f"{md5}: the file is damaged or not the one expected; nothing was kept"
            )
        yield part
    finally:
        part.unlink(missing_ok=True)


def _read(response: Any, url: str) -> bytes:
    try:
        return response.read(CHUNK)
    except OSError as err:  # a stalled or reset connection mid-transfer
        raise DownloadError(f"download of {url} was interrupted: {err}") from err


def _open(url: str, timeout: float) -> Any:
    """``urlopen`` that gives up after ``timeout`` seconds in all, name lookup included (``urlopen``'s own
    timeout does not cover the lookup, which can hang much longer on a machine without a network)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["response"] = urllib.request.urlopen(url, timeout=timeout)
        except Exception as err:  # noqa: BLE001 - re-raised in the caller's thread below
            box["error"] = err

    thread = threading.Thread(target=target, name="tune-spacenas-download", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise DownloadError(
            f"no answer from {urlsplit(url).netloc} within {timeout:g} s (set {TIMEOUT_ENV} to wait longer)"
        )
    if "error" in box:
        err = box["error"]
        reason = getattr(err, "reason", err) if isinstance(err, urllib.error.URLError) else err
        raise DownloadError(f"cannot download {url}: {reason}") from err
    return box["response"]
