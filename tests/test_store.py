import threading

import numpy as np
import pytest

from tune_spacenas.store import WeightTable, variant_key


def _table(tmp_path=None, **kw):
    arrays = {"a": np.zeros(4, np.float32), "b": np.ones((2, 2), np.float32)}
    return WeightTable(arrays, {"spec": {"kind": "x"}}, checkpoint_path=str(tmp_path / "store.npz") if tmp_path else None, **kw)


def test_pushes_add_deltas_version_and_deduplicate():
    table = _table()
    inc, first = table.pull()
    assert set(first) == {"a", "b"}
    assert table.push({"a": np.full(4, 0.5, np.float32)}, "t1", 1)
    assert table.push({"a": np.full(4, 0.25, np.float32)}, "t2", 1)  # another trial's step 1 counts too
    assert not table.push({"a": np.full(4, 9.0, np.float32)}, "t1", 1)  # a replay of t1's step 1 does not
    np.testing.assert_allclose(table.arrays["a"], 0.75)
    _, changed = table.pull({k: v for k, (v, _) in first.items()}, incarnation=inc)
    assert list(changed) == ["a"] and changed["a"][0] == 2
    assert table.stats["duplicates"] == 1
    with pytest.raises(ValueError, match="shape"):
        table.push({"a": np.ones(4, np.float32), "b": np.zeros(3)}, "t3", 1)
    np.testing.assert_allclose(table.arrays["a"], 0.75)  # a refused push changes nothing: its retry is safe
    assert table.push({"a": np.ones(4, np.float32)}, "t3", 1)
    with pytest.raises(KeyError):
        table.push({"zz": np.zeros(3)}, "t3", 2)


def test_concurrent_pushes_lose_no_update(ray_session):
    from tune_spacenas.store.actor import WeightStore

    store = WeightStore.create("test-concurrent", arrays={"w": np.zeros(1000, np.float32)})
    try:
        def pusher(trial):
            for step in range(1, 21):
                store.push({"w": np.ones(1000, np.float32)}, trial, step)

        threads = [threading.Thread(target=pusher, args=(f"trial{i}",)) for i in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        _, arrays = store.pull()
        np.testing.assert_array_equal(arrays["w"][1], 80.0)
        assert store.info()["stats"]["applied"] == 80
    finally:
        store.kill()


def test_checkpoint_then_new_store_has_identical_tensors(tmp_path):
    table = _table(tmp_path)
    table.push({"b": np.full((2, 2), 2.0, np.float32)}, "t", 5)
    table.snapshot("stage1/0")
    table.ensure_variants({variant_key("a", "g0=1"): "a"})
    table.checkpoint()
    fresh = WeightTable({"a": np.zeros(4), "b": np.zeros((2, 2))}, {"spec": {"kind": "x"}}, checkpoint_path=table.checkpoint_path)
    assert fresh.stats["restored_from"] == table.checkpoint_path
    for key in table.arrays:
        np.testing.assert_array_equal(fresh.arrays[key], table.arrays[key])
    assert fresh.versions == table.versions and fresh.snapshots.keys() == table.snapshots.keys()
    assert not fresh.push({"b": np.ones((2, 2))}, "t", 5)  # the dedup marks survive the restart
    with pytest.raises(ValueError, match="another supernet"):
        WeightTable({}, {"spec": {"kind": "other"}}, checkpoint_path=table.checkpoint_path)


def test_checkpoint_every_push_and_atomic_file(tmp_path):
    table = _table(tmp_path, checkpoint_every=1)
    table.push({"a": np.ones(4, np.float32)}, "t", 1)
    assert table.stats["checkpoints"] == 1
    assert not list(tmp_path.glob("*.tmp*"))


def test_snapshots_average_and_variants():
    table = _table()
    table.snapshot("s/0")
    table.push({"a": np.full(4, 2.0, np.float32)}, "t", 1)
    table.snapshot("s/1")
    np.testing.assert_allclose(table.average(["s/0", "s/1"])["a"], 1.0)
    with pytest.raises(KeyError, match="unknown snapshots"):
        table.average(["s/9"])
    created = table.ensure_variants({variant_key("a", "g1=2"): "a"})
    assert created == ["a#g1=2"] and table.ensure_variants({"a#g1=2": "a"}) == []
    table.push({"a#g1=2": np.ones(4, np.float32)}, "t", 2)
    np.testing.assert_allclose(table.arrays["a"], 2.0)  # the private copy trains alone
    np.testing.assert_allclose(table.arrays["a#g1=2"], 3.0)


def test_a_jobs_steps_apply_once_and_its_result_is_kept_through_a_checkpoint(tmp_path, monkeypatch):
    from tune_spacenas.store import table as table_module

    table = _table(tmp_path, checkpoint_every=1)
    assert table.progress("search/0") == (0, None) and table.stats["resumed_jobs"] == 0
    assert table.push({"a": np.ones(4, np.float32)}, "search/0", 2)
    assert not table.push({"a": np.ones(4, np.float32)}, "search/0", 2)  # the job issued again: its step 2 is in
    assert table.push({"a": np.ones(4, np.float32)}, "search/0", 4)
    table.record_result("search/0", {"loss": np.float32(0.5), "alpha": np.zeros(2)})  # numpy becomes plain data
    assert table.progress("search/0") == (4, {"loss": 0.5, "alpha": [0.0, 0.0]}) and table.stats["resumed_jobs"] == 1
    restarted = WeightTable({}, {"spec": {"kind": "x"}}, checkpoint_path=table.checkpoint_path)  # a crash after it
    assert restarted.progress("search/0") == (4, {"loss": 0.5, "alpha": [0.0, 0.0]})
    np.testing.assert_allclose(restarted.arrays["a"], 2.0)
    monkeypatch.setattr(table_module, "KEPT_RESULTS", 2)
    for job in ("search/1", "search/2", "search/3"):
        table.record_result(job, {"loss": 1.0})
    assert sorted(table.results) == ["search/2", "search/3"]  # the oldest results go, the step marks stay
    assert table.progress("search/0") == (4, None)
