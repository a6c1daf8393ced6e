"""The weight store's client under faults on one node, for a store of one actor and a sharded one alike:
restarts from checkpoints (what is lost follows the checkpoint policy), refs that died with the store, a
store replaced under its name, pushes of changed tensors only, checkpoints on a pyarrow.fs URI."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
import ray

from tune_spacenas import storage
from tune_spacenas.store.actor import WeightStore

ONES = np.ones(65536, np.float32)  # 256 KiB: above the size Ray inlines, so in the object store
SHARDS = pytest.mark.parametrize("shards", [1, 2], ids=["one-actor", "two-shards"])


def _arrays() -> dict[str, np.ndarray]:
    # Two shards get {"u", "still"} and {"w"}: a push to "u" and "w" reaches both.
    return {"u": np.zeros(65536, np.float32), "w": np.zeros(65536, np.float32), "still": np.zeros(8, np.float32)}


def _store(tmp_path, shards: int = 1, **kwargs) -> WeightStore:
    return WeightStore.create(f"faults-{uuid.uuid4().hex[:8]}", arrays=_arrays(), shards=shards, **kwargs)


def _shard_info(store: WeightStore, shard: int) -> dict:
    info = store.info()
    return info["shard_info"][shard] if store.shards > 1 else info


def _crash(store: WeightStore, shard: int = -1) -> None:
    """Kill one shard's process (default: the last) the way a crash would; returns once Ray has restarted it
    (max_restarts=-1)."""
    shard %= store.shards
    pid = _shard_info(store, shard)["pid"]
    ray.kill(store._actors[shard], no_restart=False)
    while _shard_info(store, shard)["pid"] == pid:  # ray.kill is asynchronous
        time.sleep(0.05)


def _totals(store: WeightStore) -> tuple[float, float]:
    arrays = store.pull(keys=["u", "w"])[1]
    return float(arrays["u"][1][0]), float(arrays["w"][1][0])


BOTH = {"u": ONES, "w": ONES}


@SHARDS
@pytest.mark.parametrize("every, lost", [(1, 0), (3, 2)])
def test_a_crashed_store_reloads_its_checkpoint_and_loses_at_most_every_minus_one(
    ray_session, tmp_path, shards, every, lost
):
    store = _store(tmp_path, shards, checkpoint_path=str(tmp_path / "w.npz"), checkpoint_every=every)
    try:
        acknowledged = sum(bool(store.push(BOTH, "trial", step)) for step in range(1, 6))
        _crash(store)  # a sharded store: one shard crashes, the other keeps everything
        survived = acknowledged - lost
        u, w = (acknowledged if shards > 1 else survived), survived
        assert _totals(store) == (u, w)  # the sum check: each push added exactly one
        crashed = _shard_info(store, -1)
        assert crashed["restarted"] and crashed["stats"]["restored_from"].endswith(".npz")
        assert store.info()["push_counts"]["trial"] == survived  # the ledger: what every shard holds
        # The dedup marks came back with the weights: a replay of a step the checkpoint holds is ignored ...
        assert store.progress("trial")[0] == 5 - lost
        assert not store.push(BOTH, "trial", 5 - lost)
        if lost:  # ... and a step the crash lost is applied again where it was lost, and only there
            assert store.push(BOTH, "trial", 5 - lost + 1)
            u, w = u + (shards == 1), w + 1
            assert _totals(store) == (u, w)
        assert store.push(BOTH, "trial", 6) and _totals(store) == (u + 1, w + 1)
    finally:
        store.kill()


@SHARDS
def test_after_a_restart_clients_fetch_every_tensor_again(ray_session, tmp_path, shards):
    store = _store(tmp_path, shards, checkpoint_path=str(tmp_path / "w.npz"), checkpoint_every=1)
    try:
        store.push(BOTH, "t", 1)
        incarnation, before = store.pull()
        _crash(store)  # the refs it handed out die with it (OwnerDiedError where a trial still holds them)
        fresh_incarnation, arrays = store.pull({k: v for k, (v, _) in before.items()}, None, incarnation)
        crashed_keys = {"w"} if shards > 1 else {"u", "w", "still"}  # only the restarted shard's tensors
        assert fresh_incarnation != incarnation and set(arrays) == crashed_keys
        assert arrays["w"][1][0] == 1.0
    finally:
        store.kill()


@SHARDS
def test_a_store_recreated_under_its_name_is_found_again_by_old_clients(ray_session, tmp_path, shards):
    path = storage.store_checkpoint_path("file://" + str(tmp_path), "exp")  # a pyarrow.fs URI, as Tune's storage
    store = _store(tmp_path, shards, checkpoint_path=path, checkpoint_every=1)
    old_client = WeightStore.connect(store.name)
    store.push(BOTH, "t", 1)
    store.kill()  # for good: no restart
    replacement = WeightStore.create(store.name, arrays=_arrays(), checkpoint_path=path, shards=shards)
    try:
        assert replacement.info()["stats"]["restored_from"].endswith(".npz")
        assert _totals(old_client) == (1.0, 1.0)  # the old client reconnected by name and sees the checkpoint
        assert not old_client.push(BOTH, "t", 1)
    finally:
        replacement.kill()


@SHARDS
def test_a_store_gone_for_good_says_how_to_bring_it_back(ray_session, tmp_path, monkeypatch, shards):
    store = _store(tmp_path, shards)
    store.kill()
    monkeypatch.setattr(WeightStore, "reconnect_timeout_s", 1.0)
    with pytest.raises(RuntimeError, match=r"did not come back.*WeightStore.create\("):
        store.info()


@SHARDS
def test_pushes_carry_only_changed_tensors(ray_session, tmp_path, shards):
    store = _store(tmp_path, shards)
    try:
        incarnation, before = store.pull()
        assert store.push({"w": ONES, "still": np.zeros(8, np.float32)}, "t", 1)
        _, changed = store.pull({k: v for k, (v, _) in before.items()}, None, incarnation)
        assert list(changed) == ["w"]  # an all-zero delta neither travelled nor bumped a version
        assert store.push({"still": np.zeros(8, np.float32)}, "t", 2)  # an empty push still marks the step
        assert store.info()["last_step"]["t"] == 2
    finally:
        store.kill()


def test_store_placement_on_a_node_and_info_reports_it(ray_session, tmp_path):
    node = ray.get_runtime_context().get_node_id()
    store = _store(tmp_path, node_id=node)
    try:
        info = store.info()
        assert info["node_id"] == node and info["pid"] > 0 and info["rss"] > 0 and not info["restarted"]
    finally:
        store.kill()


def test_every_pushed_step_reaches_a_checkpoint_even_between_report_steps(tiny_spec):
    """A retried trial resumes from its last checkpointed step; a push made between two reports must be
    checkpointed at the next report, or the retry would redo (and re-push) more than it needs to."""
    from tune_spacenas.store.table import WeightTable
    from tune_spacenas.trainables.worker import SupernetWorker

    table = WeightTable(tiny_spec.initial_weights(), {"spec": tiny_spec.to_dict()})
    worker = SupernetWorker(tiny_spec, table, "cpu")
    reports = []
    worker.run(
        {"task": "train", "steps": 12, "sync_every": 5, "report_every": 3, "seed": 0},
        "t",
        lambda metrics, synced: reports.append((metrics["steps_done"], synced)),
    )
    assert reports == [(3, None), (6, 5), (9, None), (12, 12)]
    # A crash before Tune saw the last report: Tune retries from the checkpoint at step 5, but the store has
    # every step of the job and its result, so the retry is answered from it and trains nothing again.
    before = {k: v.copy() for k, v in table.arrays.items()}
    resumed = []
    worker.run(
        {"task": "train", "steps": 12, "sync_every": 5, "report_every": 3, "seed": 0},
        "t",
        lambda metrics, synced: resumed.append((metrics["steps_done"], metrics.get("replayed"))),
        start_step=5,
    )
    assert resumed == [(12, True)] and table.stats["duplicates"] == 0 and table.push_counts["t"] == 3
    assert all(np.array_equal(before[k], table.arrays[k]) for k in before)


def test_versions_share_objects_and_stale_objects_are_compacted(ray_session, tmp_path):
    """A pull puts every tensor it needs anew into one object; an object less than half current is folded
    into the next one, so the store's objects hold at most twice the bytes handed out."""
    keys = ["a", "b", "c", "d"]
    store = WeightStore.create(f"groups-{uuid.uuid4().hex[:8]}", arrays={k: np.zeros(65536, np.float32) for k in keys})
    try:
        incarnation, _ = store.pull()
        assert store.info()["objects"] == 1  # a, b, c, d (and nothing else) in one object
        for step, key in enumerate(["a", "b", "c"], start=1):
            store.push({key: ONES}, "t", step)
            store.pull()
            info = store.info()
            assert info["object_bytes"] <= 2 * info["object_live_bytes"]
        # {a}, {b}, then c's pull found the first object holding only d: d moved in with c.
        assert info["objects"] == 3 and info["object_bytes"] == info["object_live_bytes"] == 4 * ONES.nbytes
        _, arrays = store.pull()
        assert [arrays[k][1][0] for k in keys] == [1.0, 1.0, 1.0, 0.0]
    finally:
        store.kill()
