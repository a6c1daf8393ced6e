"""What the README's first command spends on data, per way of getting CIFAR-10, on this machine.

    TUNE_SPACENAS_DATA=/path/to/shared/data python -m benchmarks.data_fetch [--quickstart]

* beside a data folder (offline): the first decode of ``cifar10_jpeg.parquet`` into a fresh cache, then
  a load from the cache;
* the download path: the official archive's server cannot be reached from our machines, so the benchmark
  writes an archive in the official format from the JPEG copy (60,000 images, the same layout and
  compression as the official file) and serves it from a local ``http.server``: download, MD5 check and
  decode into a fresh cache, through the library's own code. Loopback is far faster than the internet:
  add the archive's size divided by your bandwidth for a real first run;
* ``--quickstart``: ``examples/quickstart.py`` end to end, in a subprocess with a fresh cache, once
  beside the data folder and once on the download path (no data folder, ``../shared`` hidden, the local
  server as ``TUNE_SPACENAS_CIFAR10_URL``).

Writes ``benchmarks/results/data/data_fetch.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks.harness import RESULTS, write_json, write_markdown

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def env(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def serve(folder: Path):
    """``folder`` over HTTP on a free loopback port."""
    handler = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def quickstart_wall(extra_env: dict[str, str], log: Path) -> tuple[float, int]:
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py")],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **extra_env},
            check=False,
        )
    return time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quickstart", action="store_true", help="also time examples/quickstart.py both ways")
    parser.add_argument("--out", default=str(RESULTS / "data" / "data_fetch.json"))
    args = parser.parse_args()

    from tune_spacenas.data import DataSpec, prepare_data
    from tune_spacenas.data.cifar10 import (
        ARCHIVE_FILE,
        CIFAR10_FILE,
        write_official_archive,
    )
    from tune_spacenas.paths import find_data_file

    source = find_data_file(CIFAR10_FILE)
    if source is None:
        raise SystemExit(f"needs {CIFAR10_FILE}: set TUNE_SPACENAS_DATA to the folder that holds it")
    work = Path(tempfile.mkdtemp(prefix="data_fetch_"))
    rows, payload = [], {"source": str(source), "cpus": os.cpu_count()}

    spec = DataSpec("cifar10", path=str(source))
    with env(TUNE_SPACENAS_CACHE=str(work / "cache_parquet")):
        payload["parquet_first_decode_s"] = timed(lambda: prepare_data(spec))
        cached = prepare_data(spec)
    payload["cache_load_s"] = timed(lambda: load_npz(cached))
    rows.append(
        ["beside a data folder: first decode of the JPEG copy into the cache", payload["parquet_first_decode_s"]]
    )
    rows.append(["any later run: load from the cache", payload["cache_load_s"]])

    served = work / "served"
    served.mkdir()
    archive = served / ARCHIVE_FILE
    payload["archive_write_s"] = timed(lambda: write_official_archive(load_npz(cached), archive))
    payload["archive_bytes"] = archive.stat().st_size
    payload["archive_md5"] = hashlib.md5(archive.read_bytes()).hexdigest()
    with serve(served) as base:
        url = f"{base}/{ARCHIVE_FILE}"
        download_env = {
            "TUNE_SPACENAS_CACHE": str(work / "cache_download"),
            "TUNE_SPACENAS_CIFAR10_URL": url,
            "TUNE_SPACENAS_CIFAR10_MD5": payload["archive_md5"],
            "TUNE_SPACENAS_NO_SHARED": "1",
            "TUNE_SPACENAS_DATA": str(work / "empty"),
        }
        (work / "empty").mkdir()
        with env(**download_env):
            payload["download_and_decode_s"] = timed(lambda: prepare_data(DataSpec("cifar10")))
        step = f"download path: fetch {payload['archive_bytes'] / 1e6:.0f} MB over loopback, MD5, decode into the cache"
        rows.append([step, payload["download_and_decode_s"]])
        if args.quickstart:
            offline = {
                "TUNE_SPACENAS_CACHE": str(work / "cache_quickstart_offline"),
                "TUNE_SPACENAS_DATA": str(source.parent),
            }
            payload["quickstart_offline_s"], rc_a = quickstart_wall(offline, work / "quickstart_offline.log")
            online = {**download_env, "TUNE_SPACENAS_CACHE": str(work / "cache_quickstart_download")}
            payload["quickstart_download_s"], rc_b = quickstart_wall(online, work / "quickstart_download.log")
            payload["quickstart_exit_codes"] = [rc_a, rc_b]
            rows.append(["quickstart end to end, beside a data folder, cold cache", payload["quickstart_offline_s"]])
            rows.append(
                ["quickstart end to end, download path (loopback), cold cache", payload["quickstart_download_s"]]
            )
    payload["logs"] = str(work)
    out = write_json(args.out, payload)
    write_markdown(
        Path(out).with_suffix(".md"),
        "Getting CIFAR-10: time per path",
        ["step", "seconds"],
        rows,
        notes=f"On {os.cpu_count()} CPU cores. The download path's server is on loopback; over the "
        "internet add the archive's size divided by the bandwidth. Logs and caches: "
        f"{work} (not kept in the repository).",
    )
    print(Path(out).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
