"""Shared fixtures: one local Ray per test session, tiny spaces and supernets on real (tiny) data.

The suite needs nothing beside the repository, and proves it: for the whole session (Ray's workers
included) ``TUNE_SPACENAS_DATA`` is an empty folder, ``../shared/data`` is skipped, the user cache is a
fresh temporary folder and downloading is off. A test that needs CIFAR-10 uses ``cifar10_sample``
(600 real images under tests/data/); the NAS-Bench-201 table is the one packaged with the library.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

_ISOLATED = Path(tempfile.mkdtemp(prefix="tune_spacenas_tests_"))
atexit.register(shutil.rmtree, _ISOLATED, ignore_errors=True)
(_ISOLATED / "no_data").mkdir()
os.environ["TUNE_SPACENAS_DATA"] = str(_ISOLATED / "no_data")
os.environ["TUNE_SPACENAS_NO_SHARED"] = "1"
os.environ["TUNE_SPACENAS_CACHE"] = str(_ISOLATED / "cache")
os.environ["TUNE_SPACENAS_CIFAR10_URL"] = ""  # no test downloads from the internet; tests/test_data.py serves its own

import pytest  # noqa: E402  (the environment above must be set before anything reads it)
import torch  # noqa: E402

CIFAR10_SAMPLE = Path(__file__).parent / "data" / "cifar10_sample.parquet"

torch.set_num_threads(1)


def start_local_ray():
    """The session's embedded Ray; a test module that runs its own multi-node cluster calls it to bring
    the local one back when it is done (tests/test_cluster.py)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=300 * 1024**2
        )
    return ray


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for the whole session (``ray.init`` costs 3-5 s)."""
    yield start_local_ray()
    import ray

    ray.shutdown()


@pytest.fixture
def nb201():
    from tune_spacenas.spaces import NASBench201Space

    return NASBench201Space()


def tiny_supernet_spec(space=None, **kwargs):
    """The tests' tiny supernet, defined once: scikit-learn's digits (8x8), batches of 64, 300 validation
    images, 2 recalibration batches; ``space`` defaults to NAS-Bench-201 of width 8, one cell per stage
    (any tiny space of another method: ``tiny_supernet_spec(MultiBranchSpace(...), skeleton=...)``)."""
    from tune_spacenas.data import DataSpec
    from tune_spacenas.spaces import NASBench201Space
    from tune_spacenas.supernet.spec import SupernetSpec

    space = space if space is not None else NASBench201Space(channels=8, cells_per_stage=1, input_size=8)
    settings = dict(batch_size=64, eval_images=300, recalibration_batches=2) | kwargs
    return SupernetSpec(space, DataSpec("digits", val_size=300), **settings)


@pytest.fixture
def tiny_spec():
    """A NAS-Bench-201 supernet of width 8, one cell per stage, on scikit-learn's digits (8x8)."""
    return tiny_supernet_spec()


@pytest.fixture
def tune_run_kwargs(tmp_path):
    """What every Tune run in the tests shares: quiet, reused actors, results in a temp dir."""
    return dict(reuse_actors=True, storage_path=str(tmp_path / "ray_results"), verbose=0)


@pytest.fixture
def cifar10_sample() -> Path:
    """600 real CIFAR-10 images (50 train + 10 test per class) in the JPEG-in-Parquet format; see tests/data/."""
    return CIFAR10_SAMPLE


@pytest.fixture
def nb201_csv(tmp_path) -> Path:
    """The packaged NAS-Bench-201 table written out as the CSV it was built from (same columns and values)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from tune_spacenas.tables.nasbench201 import PACKAGED_TABLE, TABLE_FILE

    path = tmp_path / "csv" / TABLE_FILE
    path.parent.mkdir()
    pacsv.write_csv(pq.read_table(PACKAGED_TABLE), path)
    return path
