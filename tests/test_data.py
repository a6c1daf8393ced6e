"""Data on a fresh machine: the table packaged with the library, CIFAR-10's lookup order, the download path
against a local HTTP server, the check before Tune starts, and the wheel that carries the table.

conftest.py hides ../shared/data, the user cache and the internet for the whole session, so every test here
sees what a fresh machine sees unless it provides the data itself.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tune_spacenas.data import DataSpec, prepare_data
from tune_spacenas.data.cifar10 import (
    ARCHIVE_FILE,
    CIFAR10_FILE,
    EXTRACTED_DIR,
    TEST_BATCH,
    TRAIN_BATCHES,
    find_cifar10,
    load_cifar10,
    write_official_archive,
)
from tune_spacenas.paths import data_dirs, shared_data_dirs
from tune_spacenas.tables import NASBench201Table
from tune_spacenas.tables.build import build, verify
from tune_spacenas.tables.nasbench201 import PACKAGED_TABLE, TABLE_FILE

ROOT = Path(__file__).resolve().parents[1]
BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
C10 = "CIFAR10TestAccuracy200Epochs"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty user cache for this test alone."""
    path = tmp_path / "cache"
    monkeypatch.setenv("TUNE_SPACENAS_CACHE", str(path))
    return path


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def sample_arrays(sample: Path) -> dict[str, np.ndarray]:
    """The sample's images decoded here, independently of the library, in file order."""
    table = pq.read_table(sample).to_pydict()
    images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in table["jpeg"]])
    split, labels = np.asarray(table["split"]), np.asarray(table["label"], dtype=np.int64)
    return {
        "x_train": images[split == "train"],
        "y_train": labels[split == "train"],
        "x_test": images[split == "test"],
        "y_test": labels[split == "test"],
    }


def cached_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the NAS-Bench-201 table -------------------------------------------------------------------------


def test_the_packaged_table_loads_with_no_argument_and_no_data_folder():
    table = NASBench201Table.load()
    assert table.path == PACKAGED_TABLE
    assert PACKAGED_TABLE.stat().st_size < 1_000_000
    assert pq.read_table(PACKAGED_TABLE).num_rows == 15625
    assert table.query(BEST_C10) == pytest.approx(94.37333, abs=1e-4)
    assert table.best("cifar100")[1] == pytest.approx(73.51, abs=0.01)


def test_a_users_export_in_the_data_folder_or_at_a_path_wins_and_may_carry_extra_columns(tmp_path, monkeypatch):
    packaged = pq.read_table(PACKAGED_TABLE)

    def export(shift: float) -> pa.Table:  # our table moved by `shift`, plus a 12-epoch column we do not read
        moved = packaged.set_column(0, C10, pc.add(packaged[C10], shift))
        return moved.append_column("CIFAR10ValidAccuracy12Epochs", pa.array(np.linspace(10, 90, packaged.num_rows)))

    folder = tmp_path / "data"
    folder.mkdir()
    pacsv.write_csv(export(1.0), folder / TABLE_FILE)
    monkeypatch.setenv("TUNE_SPACENAS_DATA", str(folder))
    from_env = NASBench201Table.load()
    assert from_env.path == folder / TABLE_FILE
    assert from_env.query(BEST_C10) == pytest.approx(94.37333 + 1.0, abs=1e-4)
    explicit = tmp_path / "mine.parquet"
    pq.write_table(export(2.0), explicit)
    assert NASBench201Table.load(explicit).query(BEST_C10) == pytest.approx(94.37333 + 2.0, abs=1e-4)
    assert NASBench201Table.load(explicit).query(BEST_C10, "cifar100") == NASBench201Table(PACKAGED_TABLE).query(
        BEST_C10, "cifar100"
    )


def test_the_build_script_rebuilds_the_packaged_table_and_checks_every_value(tmp_path, nb201_csv):
    out = tmp_path / "rebuilt.parquet"
    build(nb201_csv, out)
    assert pq.read_table(out).equals(pq.read_table(PACKAGED_TABLE))
    assert verify(nb201_csv, PACKAGED_TABLE) == 15625 * 5
    values = pq.read_table(PACKAGED_TABLE).to_pydict()
    values["CIFAR100TestAccuracy200Epochs"][7] += 1e-9  # one value off in the last digits
    tampered = tmp_path / "tampered.parquet"
    pq.write_table(pa.table(values), tampered)
    with pytest.raises(ValueError, match="row 7 column CIFAR100TestAccuracy200Epochs"):
        verify(nb201_csv, tampered)


# --- CIFAR-10: where it is found ---------------------------------------------------------------------


def test_an_explicit_path_decodes_the_real_pixels_once_into_the_cache(cifar10_sample, cache):
    spec = DataSpec("cifar10", path=str(cifar10_sample), val_size=100)
    cached = prepare_data(spec)
    assert cached.parent == cache and files_in(cache) == [cached.name]
    assert_same_arrays(cached_arrays(cached), sample_arrays(cifar10_sample))
    data = load_cifar10(spec)
    assert data.x_train.shape == (400, 32, 32, 3) and data.x_val.shape == (100, 32, 32, 3)
    assert data.x_test.dtype == np.uint8 and sorted(np.bincount(data.y_test)) == [10] * 10
    assert prepare_data(spec) == cached and files_in(cache) == [cached.name]  # decoded once


def test_the_lookup_order_and_the_switch_that_hides_shared_data(tmp_path, monkeypatch, cifar10_sample, cache):
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("TUNE_SPACENAS_DATA", str(folder))
    monkeypatch.setenv("TUNE_SPACENAS_NO_SHARED", "1")
    assert data_dirs() == [folder] and find_cifar10() is None
    monkeypatch.setenv("TUNE_SPACENAS_NO_SHARED", "0")
    assert data_dirs() == [folder, *shared_data_dirs()]
    assert all(d.parts[-2:] == ("shared", "data") for d in shared_data_dirs())
    assert ROOT.parent / "shared" / "data" in shared_data_dirs()  # beside the project
    monkeypatch.delenv("TUNE_SPACENAS_DATA")
    assert data_dirs() == shared_data_dirs()
    monkeypatch.setenv("TUNE_SPACENAS_DATA", str(folder))
    monkeypatch.setenv("TUNE_SPACENAS_NO_SHARED", "1")

    shutil.copy(cifar10_sample, folder / CIFAR10_FILE)
    assert find_cifar10() == folder / CIFAR10_FILE
    archive = tmp_path / "elsewhere" / ARCHIVE_FILE
    archive.parent.mkdir()
    write_official_archive(sample_arrays(cifar10_sample), archive)
    assert find_cifar10(archive) == archive  # an explicit path beats the data folder
    assert find_cifar10(archive.parent) == archive  # a folder holding a copy
    with pytest.raises(FileNotFoundError, match=r"no CIFAR-10 at \S*nowhere(.|\n)*1\. pass its path"):
        find_cifar10(tmp_path / "nowhere")  # an explicit path is never skipped silently


def test_the_official_format_is_read_plane_by_plane(tmp_path, cache):
    """CIFAR-10's python version: each row of ``data`` is the red, green and blue 32x32 planes, row-major."""
    data = np.zeros((2, 3072), dtype=np.uint8)
    data[0, 0] = 200  # red at (row 0, column 0) of image 0
    data[0, 1024 + 32 * 1 + 2] = 100  # green at (row 1, column 2)
    data[1, 2048 + 32 * 31 + 31] = 50  # blue at (row 31, column 31) of image 1
    folder = tmp_path / EXTRACTED_DIR
    folder.mkdir()
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": [3, 7], b"data": data}, f, protocol=2)
    arrays = cached_arrays(prepare_data(DataSpec("cifar10", path=str(folder))))
    assert arrays["x_train"].shape == (10, 32, 32, 3) and arrays["x_test"].shape == (2, 32, 32, 3)
    assert arrays["x_test"][0, 0, 0, 0] == 200 and arrays["x_test"][0, 1, 2, 1] == 100
    assert arrays["x_test"][1, 31, 31, 2] == 50 and int(arrays["x_test"].sum()) == 350
    assert arrays["y_train"].tolist() == [3, 7] * 5


def test_the_archive_and_its_extracted_folder_hold_the_same_pixels(tmp_path, cifar10_sample, cache):
    expected = sample_arrays(cifar10_sample)
    archive = tmp_path / ARCHIVE_FILE
    write_official_archive(expected, archive)
    assert_same_arrays(cached_arrays(prepare_data(DataSpec("cifar10", path=str(archive)))), expected)
    folder = tmp_path / "extracted" / EXTRACTED_DIR
    folder.mkdir(parents=True)
    with tarfile.open(archive) as tar:  # by hand: extractall's safety filter needs Python >= 3.11.4
        for member in tar.getmembers():
            (folder / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    assert_same_arrays(cached_arrays(prepare_data(DataSpec("cifar10", path=str(folder)))), expected)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this should never run",))


def test_a_batch_that_would_run_code_is_refused(tmp_path, cache):
    folder = tmp_path / EXTRACTED_DIR
    folder.mkdir()
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        (folder / name).write_bytes(pickle.dumps({b"data": _RunsCode(), b"labels": []}, protocol=2))
    with pytest.raises(ValueError, match="does not hold .*system"):
        prepare_data(DataSpec("cifar10", path=str(folder)))
    assert files_in(cache) == []


# --- CIFAR-10: the download path, against a local HTTP server ---------------------------------------


class _ArchiveServer(http.server.ThreadingHTTPServer):
    """Serves one archive at /cifar-10-python.tar.gz; ``cut_after`` bytes, then hangs up, when set."""

    daemon_threads = True

    def __init__(self, payload: bytes):
        super().__init__(("127.0.0.1", 0), _ArchiveHandler)
        self.payload, self.cut_after, self.requests = payload, None, 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{ARCHIVE_FILE}"


class _ArchiveHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server = self.server
        server.requests += 1
        if self.path != f"/{ARCHIVE_FILE}":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(server.payload)))
        self.end_headers()
        self.wfile.write(server.payload[: server.cut_after])  # HTTP/1.0: the connection closes after this

    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path, monkeypatch, cifar10_sample, cache):
    """The sample as an archive in the official format, served locally; the library pointed at it."""
    arrays = sample_arrays(cifar10_sample)
    archive = tmp_path / "served" / ARCHIVE_FILE
    archive.parent.mkdir()
    write_official_archive(arrays, archive)
    payload = archive.read_bytes()
    server = _ArchiveServer(payload)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("TUNE_SPACENAS_CIFAR10_URL", server.url)
    monkeypatch.setenv("TUNE_SPACENAS_CIFAR10_MD5", hashlib.md5(payload).hexdigest())
    yield server, arrays
    server.shutdown()
    server.server_close()


def test_a_download_is_verified_decoded_into_the_cache_once_and_the_archive_is_not_kept(served, cache):
    server, expected = served
    cached = prepare_data(DataSpec("cifar10"))
    assert files_in(cache) == [cached.name] and server.requests == 1  # no archive, no temporary file left
    assert_same_arrays(cached_arrays(cached), expected)
    data = load_cifar10(DataSpec("cifar10", val_size=100, seed=3))
    assert data.x_train.shape == (400, 32, 32, 3)
    assert prepare_data(DataSpec("cifar10")) == cached and server.requests == 1  # the cache answers now


def test_a_checksum_mismatch_is_a_clear_error_and_nothing_is_cached(served, cache, monkeypatch):
    server, _ = served
    monkeypatch.setenv("TUNE_SPACENAS_CIFAR10_MD5", "0" * 32)
    with pytest.raises(
        ValueError,
        match=r"MD5 [0-9a-f]{32}, not the expected 0{32}(.|\n)*nothing was kept"
        r"(.|\n)*Provide CIFAR-10 one of three ways",
    ):
        prepare_data(DataSpec("cifar10"))
    assert server.requests == 1 and files_in(cache) == []


def test_an_interrupted_download_leaves_nothing_half_written(served, cache):
    server, _ = served
    server.cut_after = len(server.payload) // 2
    with pytest.raises(FileNotFoundError, match=r"interrupted after [\d,]+ of [\d,]+ bytes(.|\n)*three ways"):
        prepare_data(DataSpec("cifar10"))
    assert server.requests == 1 and files_in(cache) == []


def test_offline_with_no_copy_is_one_error_naming_the_three_ways(monkeypatch, cache):
    monkeypatch.setenv("TUNE_SPACENAS_CIFAR10_URL", f"http://127.0.0.1:{closed_port()}/{ARCHIVE_FILE}")
    with pytest.raises(FileNotFoundError) as err:
        prepare_data(DataSpec("cifar10"))
    message = str(err.value)
    assert message.startswith("CIFAR-10 not found, and cannot download http://127.0.0.1:")
    for fix in (
        "1. pass its path: DataSpec('cifar10', path=...)",
        "2. set TUNE_SPACENAS_DATA",
        "3. let the library download it once",
        "TUNE_SPACENAS_CIFAR10_URL",
    ):
        assert fix in message
    assert files_in(cache) == []
    monkeypatch.setenv("TUNE_SPACENAS_CIFAR10_URL", "")
    with pytest.raises(FileNotFoundError, match=r"downloading is turned off(.|\n)*three ways"):
        prepare_data(DataSpec("cifar10"))


def test_a_server_that_never_answers_fails_within_the_timeout(monkeypatch, cache):
    with socket.socket() as silent:  # accepts connections into its backlog and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        monkeypatch.setenv("TUNE_SPACENAS_CIFAR10_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/{ARCHIVE_FILE}")
        monkeypatch.setenv("TUNE_SPACENAS_DOWNLOAD_TIMEOUT", "0.5")
        start = time.monotonic()
        with pytest.raises(FileNotFoundError, match="timed out|no answer"):
            prepare_data(DataSpec("cifar10"))
        assert time.monotonic() - start < 30  # urlopen without a timeout would wait for ever
    assert files_in(cache) == []


# --- failing before Tune starts ----------------------------------------------------------------------


def test_run_with_tune_checks_the_data_before_any_trial_starts(ray_session, tmp_path):
    from tune_spacenas.runner import run_with_tune
    from tune_spacenas.searchers import SPOSSearcher
    from tune_spacenas.spaces import NASBench201Space
    from tune_spacenas.store import SupernetStore
    from tune_spacenas.supernet.spec import SupernetSpec

    spec = SupernetSpec(
        NASBench201Space(channels=8, cells_per_stage=1, input_size=8),
        DataSpec("cifar10", resolution=8, val_size=100, path=str(tmp_path / "missing.parquet")),
    )
    store = SupernetStore.create(f"no-data-{uuid.uuid4().hex[:6]}", spec)
    try:
        with pytest.raises(FileNotFoundError, match=r"no CIFAR-10 at \S*missing.parquet"):
            run_with_tune(SPOSSearcher(train_steps=10), store, storage_path=str(tmp_path / "results"), verbose=0)
        assert not (tmp_path / "results").exists()  # tune.run never started
    finally:
        store.kill()


def test_the_quickstart_without_data_or_network_stops_before_ray_with_the_fix(tmp_path):
    """The README's first command on a machine with neither: one message, exit status 1, Ray never imported."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TUNE_SPACENAS_CACHE": str(tmp_path / "cache"),
        "TUNE_SPACENAS_CIFAR10_URL": f"http://127.0.0.1:{closed_port()}/{ARCHIVE_FILE}",
    }
    code = (
        "import runpy, sys\nsys.argv = ['examples/quickstart.py']\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "finally:\n    print('ray imported:', 'ray' in sys.modules, file=sys.stderr)\n"
    )
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("quickstart: CIFAR-10 not found") == 1, done.stderr
    assert "Provide CIFAR-10 one of three ways" in done.stderr and "ray imported: False" in done.stderr, done.stderr
    print(f"quickstart without data stopped after {elapsed:.1f} s")


# --- the wheel ---------------------------------------------------------------------------------------


def test_the_wheel_carries_the_table_and_an_installed_copy_loads_it(tmp_path):
    source = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT / "tune_spacenas", source / "tune_spacenas", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("tune_spacenas-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo("tune_spacenas/tables/nasbench201.parquet")
        assert info.file_size == PACKAGED_TABLE.stat().st_size
        assert "tune_spacenas/tables/NATS-Bench-LICENSE.txt" in archive.namelist()  # MIT: the notice travels along
        archive.extractall(tmp_path / "site")  # a wheel unpacked into a path entry is an installed copy
    code = (
        "import tune_spacenas\nfrom tune_spacenas.tables import NASBench201Table\n"
        "table = NASBench201Table.load()\nprint(tune_spacenas.__file__)\nprint(table.path)\n"
        f"print(table.query({BEST_C10!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    module, table_path, accuracy = done.stdout.split("\n")[:3]
    site = str(tmp_path / "site")
    assert module.startswith(site) and table_path.startswith(site), done.stdout
    assert float(accuracy) == pytest.approx(94.37333, abs=1e-4)
