"""The weight store's client under faults on one node: restarts from checkpoints (what is lost follows the
checkpoint policy), refs that died with the store, a store replaced under its name, pushes of changed
tensors only, checkpoints on a pyarrow.fs URI."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
import ray

from tune_spacenas import storage
from tune_spacenas.store.actor import WeightStore

ONES = np.ones(65536, np.float32)  # 256 KiB: above the size Ray inlines, so in the object store


def _store(tmp_path, **kwargs) -> WeightStore:
    arrays = {"w": np.zeros(65536, np.float32), "still": np.zeros(8, np.float32)}
    return WeightStore.create(f"faults-{uuid.uuid4().hex[:8]}", arrays=arrays, **kwargs)


def _crash(store: WeightStore) -> None:
    """Kill the actor's process the way a crash would; returns once Ray has restarted it (max_restarts=-1)."""
    pid = store.info()["pid"]
    ray.kill(store._actor, no_restart=False)
    while store.info()["pid"] == pid:  # ray.kill is asynchronous
        time.sleep(0.05)


def _total(store: WeightStore) -> float:
    return float(store.pull(keys=["w"])[1]["w"][1][0])


@pytest.mark.parametrize("every, lost", [(1, 0), (3, 2)])
def test_a_crashed_store_reloads_its_checkpoint_and_loses_at_most_every_minus_one(ray_session, tmp_path, every, lost):
    store = _store(tmp_path, checkpoint_path=str(tmp_path / "w.npz"), checkpoint_every=every)
    try:
        acknowledged = sum(store.push({"w": ONES}, "trial", step) for step in range(1, 6))
        _crash(store)
        assert _total(store) == acknowledged - lost  # the sum check: each push added exactly one
        info = store.info()
        assert info["restarted"] and info["stats"]["restored_from"] == str(tmp_path / "w.npz")
        assert info["push_counts"]["trial"] == acknowledged - lost
        # The dedup marks came back with the weights: a replay of a step the checkpoint holds is ignored.
        assert not store.push({"w": ONES}, "trial", 5 - lost)
        assert store.push({"w": ONES}, "trial", 6) and _total(store) == acknowledged - lost + 1
    finally:
        store.kill()


def test_after_a_restart_clients_fetch_every_tensor_again(ray_session, tmp_path):
    store = _store(tmp_path, checkpoint_path=str(tmp_path / "w.npz"), checkpoint_every=1)
    try:
        store.push({"w": ONES}, "t", 1)
        incarnation, before = store.pull()
        _crash(store)  # the refs it handed out die with it (OwnerDiedError where a trial still holds them)
        fresh_incarnation, arrays = store.pull({k: v for k, (v, _) in before.items()}, None, incarnation)
        assert fresh_incarnation != incarnation and set(arrays) == {"w", "still"}  # a new incarnation: all of it
        assert arrays["w"][1][0] == 1.0
    finally:
        store.kill()


def test_a_store_recreated_under_its_name_is_found_again_by_old_clients(ray_session, tmp_path):
    path = storage.store_checkpoint_path("file://" + str(tmp_path), "exp")  # a pyarrow.fs URI, as Tune's storage
    store = _store(tmp_path, checkpoint_path=path, checkpoint_every=1)
    old_client = WeightStore.connect(store.name)
    store.push({"w": ONES}, "t", 1)
    store.kill()  # for good: no restart
    replacement = WeightStore.create(store.name, arrays={"w": np.zeros(65536, np.float32)}, checkpoint_path=path)
    try:
        assert replacement.info()["stats"]["restored_from"] == path
        assert _total(old_client) == 1.0  # the old client reconnected by name and sees the checkpoint
        assert not old_client.push({"w": ONES}, "t", 1)
    finally:
        replacement.kill()


def test_a_store_gone_for_good_says_how_to_bring_it_back(ray_session, tmp_path, monkeypatch):
    store = _store(tmp_path)
    store.kill()
    monkeypatch.setattr(WeightStore, "reconnect_timeout_s", 1.0)
    with pytest.raises(RuntimeError, match=r"did not come back.*WeightStore.create\("):
        store.info()


def test_pushes_carry_only_changed_tensors(ray_session, tmp_path):
    store = _store(tmp_path)
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
    worker.run({"task": "train", "steps": 12, "sync_every": 5, "report_every": 3, "seed": 0}, "t",
               lambda metrics, synced: reports.append((metrics["steps_done"], synced)))
    assert reports == [(3, None), (6, 5), (9, None), (12, 12)]
    # A crash before Tune saw the last report: Tune retries from the checkpoint at step 5, but the store has
    # every step of the job and its result, so the retry is answered from it and trains nothing again.
    before = {k: v.copy() for k, v in table.arrays.items()}
    resumed = []
    worker.run({"task": "train", "steps": 12, "sync_every": 5, "report_every": 3, "seed": 0}, "t",
               lambda metrics, synced: resumed.append((metrics["steps_done"], metrics.get("replayed"))), start_step=5)
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
