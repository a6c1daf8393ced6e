"""Shared fixtures: one local Ray per test session, tiny spaces and supernets on real (tiny) data."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest
import torch

torch.set_num_threads(1)


def start_local_ray():
    """The session's embedded Ray; a test module that runs its own multi-node cluster calls it to bring
    the local one back when it is done (tests/test_cluster.py)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=300 * 1024**2)
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
