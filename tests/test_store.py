import threading

import numpy as np
import pytest

from tune_spacenas.store import WeightTable, variant_key


def _table(tmp_path=None, **kw):
    arrays = {"a": np.zeros(4, np.float32), "b": np.ones((2, 2), np.float32)}
    return WeightTable(
        arrays, {"spec": {"kind": "x"}}, checkpoint_path=str(tmp_path / "store.npz") if tmp_path else None, **kw
    )


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


@pytest.mark.parametrize("shards", [1, 3])
def test_concurrent_pushes_lose_no_update(ray_session, shards):
    from tune_spacenas.store.actor import WeightStore

    arrays = {"w": np.zeros(1000, np.float32), "v": np.zeros(900, np.float32), "x": np.zeros(800, np.float32)}
    store = WeightStore.create("test-concurrent", arrays=arrays, shards=shards)
    try:

        def pusher(trial):
            for step in range(1, 21):
                store.push({k: np.ones_like(a) for k, a in arrays.items()}, trial, step)

        threads = [threading.Thread(target=pusher, args=(f"trial{i}",)) for i in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        _, pulled = store.pull()
        for key in arrays:
            np.testing.assert_array_equal(pulled[key][1], 80.0)
        assert store.info()["stats"]["applied"] == 80 and set(store.info()["push_counts"].values()) == {20}
    finally:
        store.kill()


def test_checkpoint_then_new_store_has_identical_tensors(tmp_path):
    table = _table(tmp_path)
    table.push({"b": np.full((2, 2), 2.0, np.float32)}, "t", 5)
    table.snapshot("stage1/0")
    table.ensure_variants({variant_key("a", "g0=1"): "a"})
    table.checkpoint()
    fresh = WeightTable(
        {"a": np.zeros(4), "b": np.zeros((2, 2))}, {"spec": {"kind": "x"}}, checkpoint_path=table.checkpoint_path
    )
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


# --- moving what changed, once ----------------------------------------------------------------------
def test_a_pushed_tensor_the_store_kept_is_bitwise_the_stores_and_versions_never_drift():
    """Two writers, 60 syncs: after each, every tensor a writer holds at the store's version is bitwise the
    store's, whether it kept its push (no pull) or pulled another writer's change. The steps are large
    enough that ``base + (p - base)`` is often not bitwise ``p`` (for small steps Sterbenz's lemma makes
    it exact), so keeping ``p`` itself would drift."""
    import torch

    from tune_spacenas.trainables.extensions.base import keep_pushed

    rng = np.random.default_rng(0)
    table = WeightTable({"a": rng.normal(size=4096).astype(np.float32), "b": rng.normal(size=512).astype(np.float32)})
    writers = []
    for _ in range(2):
        incarnation, fresh = table.pull()
        writers.append(
            {
                "inc": incarnation,
                "versions": {k: v for k, (v, _) in fresh.items()},
                "params": {k: torch.tensor(a) for k, (_, a) in fresh.items()},
                "base": {k: torch.tensor(a) for k, (_, a) in fresh.items()},
            }
        )
    kept_total = pulled_total = inexact = 0
    for step in range(1, 61):
        w = writers[step % 2]
        touched = ["a", "b"] if step % 3 else ["a"]
        for key in touched:  # "training": steps that flip signs and change magnitudes
            noise = rng.normal(0, 0.3, w["params"][key].shape).astype(np.float32)
            w["params"][key] = torch.from_numpy(w["params"][key].numpy() * np.float32(-0.9) + noise)
        deltas = {k: w["params"][k] - w["base"][k] for k in touched}
        inexact += sum(int((w["base"][k] + d != w["params"][k]).sum()) for k, d in deltas.items())
        receipt = table.push({k: d.numpy() for k, d in deltas.items()}, f"w{step % 2}", step, w["versions"], w["inc"])
        kept_total += len(keep_pushed(receipt.kept, deltas, w["base"], w["params"], w["versions"]))
        w["inc"], fresh = table.pull(w["versions"], None, w["inc"])
        for key, (version, array) in fresh.items():
            w["params"][key], w["base"][key], w["versions"][key] = torch.tensor(array), torch.tensor(array), version
        pulled_total += len(fresh)
        assert not set(fresh) & set(receipt.kept)  # a kept tensor never comes back
        for key, array in table.arrays.items():
            assert w["versions"][key] == table.versions[key]
            assert np.array_equal(w["params"][key].numpy(), array) and np.array_equal(w["base"][key].numpy(), array)
    assert kept_total > 0 and pulled_total > 0  # both paths ran
    assert inexact > 0  # and the float32 trap was there to fall into


def test_a_replayed_or_raced_push_keeps_nothing_and_the_next_pull_fetches_the_stores():
    table = WeightTable({"a": np.zeros(4, np.float32), "b": np.zeros(4, np.float32)})
    incarnation, fresh = table.pull()
    known = {k: v for k, (v, _) in fresh.items()}
    table.push({"b": np.ones(4, np.float32)}, "other", 1)  # another writer changes b
    receipt = table.push({"a": np.ones(4, np.float32), "b": np.ones(4, np.float32)}, "me", 1, known, incarnation)
    assert receipt and dict(receipt.kept) == {"a": 1}  # b moved under it: pulled back, not kept
    assert not table.push({"a": np.ones(4, np.float32)}, "me", 1, known, incarnation).kept  # a replay keeps nothing
    assert not table.push({"a": np.ones(4, np.float32)}, "me", 2, {"a": 1}, "another-incarnation").kept


def test_a_training_worker_keeps_its_own_pushes_and_pulls_only_what_others_changed(tiny_spec):
    """In-process: a lone worker's syncs move nothing back; a second worker's changes arrive, bitwise."""
    from tune_spacenas.jobs import train_job
    from tune_spacenas.trainables.worker import SupernetWorker

    table = WeightTable(tiny_spec.initial_weights(), {"spec": tiny_spec.to_dict()})
    first, second = SupernetWorker(tiny_spec, table, "cpu"), SupernetWorker(tiny_spec, table, "cpu")
    first.run(train_job(1, seed=9), "warm-up")  # the initial pull of every tensor
    start = first.pulled_bytes
    first.run(train_job(12, seed=0, sync_every=3), "alone")
    assert first.pulled_bytes == start and table.push_counts["alone"] == 4  # four syncs, nothing pulled back
    second.run(train_job(6, seed=1, sync_every=3), "other")
    changed = {k for k, v in table.versions.items() if first.versions.get(k) != v}
    assert changed and first.sync() == len(changed)  # exactly what the other worker pushed
    for worker in (first, second):
        for key, param in worker.params.items():
            assert worker.versions[key] == table.versions[key]
            assert np.array_equal(param.detach().numpy(), table.arrays[key]), key  # no drift, bitwise


# --- sharding ---------------------------------------------------------------------------------------
def test_partition_balances_bytes_and_keeps_private_copies_beside_their_parameter():
    from tune_spacenas.store.shards import ShardMap, partition

    sizes = {f"p{i}": 1000 * (i % 7 + 1) for i in range(40)} | {"p3#g1=2": 4000, "p3#g1=3": 4000}
    placed = partition(sizes, 4)
    load = [sum(s for k, s in sizes.items() if placed[k] == i) for i in range(4)]
    assert max(load) - min(load) <= max(sizes.values()) + 8000  # within one parameter group
    assert placed["p3#g1=2"] == placed["p3#g1=3"] == placed["p3"]
    routes = ShardMap(4, placed=placed)
    assert routes.shard_of("p3#new") == placed["p3"] and routes.shard_of("brand-new") == ShardMap(4).shard_of(
        "brand-new"
    )


def test_a_sharded_store_answers_like_one_actor_and_refuses_bad_input_whole(ray_session, tmp_path):
    from tune_spacenas.store.actor import WeightStore

    rng = np.random.default_rng(0)
    arrays = {f"t{i}": rng.normal(size=1000 * (i + 1)).astype(np.float32) for i in range(6)}
    store = WeightStore.create("test-sharded", arrays=arrays, shards=3, checkpoint_path=str(tmp_path / "w.npz"))
    try:
        info = store.info()
        assert [s["shard"] for s in info["shard_info"]] == [0, 1, 2] and info["keys"] == 6
        assert all(s["keys"] for s in info["shard_info"])
        incarnation, pulled = store.pull()
        assert incarnation.count("|") == 2 and all(np.array_equal(pulled[k][1], arrays[k]) for k in arrays)
        known = {k: v for k, (v, _) in pulled.items()}
        receipt = store.push({k: np.ones_like(a) for k, a in arrays.items()}, "w", 1, known, incarnation)
        assert dict(receipt.kept) == {k: 1 for k in arrays}  # kept on every shard
        assert store.pull(dict(receipt.kept), None, incarnation)[1] == {}  # nothing moved since
        # Bad input: refused before any shard applies its part, with the one-actor store's errors.
        with pytest.raises(KeyError, match="does not hold"):
            store.push({"t0": np.ones(1000, np.float32), "nope": np.ones(3)}, "w", 2)
        with pytest.raises(ValueError, match="shape"):
            store.push({"t0": np.ones(1000, np.float32), "t5": np.ones(3)}, "w", 2)
        assert store.progress("w") == (1, None) and store.pull(dict(receipt.kept), None, incarnation)[1] == {}
        # Private copies beside their parameter; snapshots and their average across shards.
        assert sorted(store.ensure_variants({"t5#g0=1": "t5", "t1#g0=1": ["t1#old", "t1"]})) == ["t1#g0=1", "t5#g0=1"]
        assert store.resolve({"t5#g0=1": "t5", "t2#x": "t2"}) == {"t5#g0=1": "t5#g0=1", "t2#x": "t2"}
        store.snapshot("s/0")
        store.push({k: np.ones_like(a) for k, a in arrays.items()}, "w", 2)
        store.snapshot("s/1")
        average = store.average(["s/0", "s/1"])
        assert set(average) == set(arrays) | {"t5#g0=1", "t1#g0=1"}
        np.testing.assert_allclose(average["t0"], arrays["t0"] + 1.5, rtol=1e-6)
        assert store.checkpoint() and sorted(p.name for p in tmp_path.glob("w.shard*")) == [
            "w.shard0of3.npz",
            "w.shard1of3.npz",
            "w.shard2of3.npz",
        ]
        with pytest.raises(ValueError, match="has 3 shards, 2 were asked"):
            WeightStore.create("test-sharded", arrays=arrays, shards=2, exist_ok=True)
    finally:
        store.kill()
    with pytest.raises(ValueError, match=r"written by a store of \[3\] shard\(s\), not 1: pass shards=3"):
        WeightStore.create("test-sharded", arrays=arrays, checkpoint_path=str(tmp_path / "w.npz"))
    with pytest.raises(ValueError, match="shards must be a whole number"):
        WeightStore.create("test-sharded", arrays=arrays, shards=0)
    resumed = WeightStore.create("test-sharded", arrays=arrays, shards=3, checkpoint_path=str(tmp_path / "w.npz"))
    try:
        assert resumed.progress("w")[0] == 2 and resumed.info()["keys"] == 8  # every shard's file reloaded
    finally:
        resumed.kill()
