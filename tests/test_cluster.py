"""Multi-node weight sharing and faults on a real two-node Ray cluster (``ray.cluster_utils.Cluster``: a
head and a second node on this machine, 1 CPU each, a custom resource per node).

The session's embedded Ray is shut down for this module and brought back afterwards (conftest's
``start_local_ray``). Each test is a small real search (tiny supernet on digits, seconds per trial):
trials report the node they ran on; the store's ledger (pushes applied per trial, last step per trial)
is the sum check that no push was lost or applied twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
from ray import tune

from tune_spacenas.cluster import round_robin, simulated_cluster
from tune_spacenas.jobs import train_job, writer_of
from tune_spacenas.runner import InProcessSupernet, run_in_process
from tune_spacenas.searchers import ASESearcher, EvolutionSettings, SPOSSearcher
from tune_spacenas.store import SupernetStore
from tune_spacenas.trainables import supernet_trainable

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# The fault tests run against a store of one actor and a sharded one (two shards, one per node where placed).
SHARDS = pytest.mark.parametrize("shards", [1, 2], ids=["one-actor", "two-shards"])


@dataclass
class TwoNodes:
    cluster: object
    head: str
    second: str


@pytest.fixture(scope="module")
def nodes():
    """Head and second node, 1 CPU and 80 MiB of object store each (this module's own Ray)."""
    from conftest import start_local_ray

    restore_local = ray.is_initialized()
    try:
        with simulated_cluster(nodes=2, cpus_per_node=1, object_store_mb=80) as (cluster, ids):
            yield TwoNodes(cluster, *ids)
    finally:
        if restore_local:
            start_local_ray()


def _ensure_second_node(nodes: TwoNodes) -> None:
    """Add the second node back if an earlier test removed it."""
    if not any(n.node_id == nodes.second for n in nodes.cluster.worker_nodes):
        nodes.second = nodes.cluster.add_node(
            num_cpus=1, object_store_memory=80 * 1024**2, resources={"node1": 1}
        ).node_id
        nodes.cluster.wait_for_nodes()


def _alternating_nodes(trainable):
    def placed(config):  # a wrapper: with_resources marks the function it is given, for every later run
        return trainable(config)

    return tune.with_resources(placed, round_robin(nodes=2))


def _store(spec, **kwargs) -> SupernetStore:
    return SupernetStore.create(f"cluster-{uuid.uuid4().hex[:8]}", spec, **kwargs)


def _run(config, tmp_path, trainable=supernet_trainable, **kwargs):
    kwargs = {"reuse_actors": True, "storage_path": str(tmp_path / "results"), "verbose": 0, **kwargs}
    return tune.run(trainable, config=config, **kwargs)


def _train_config(store: SupernetStore, steps: int = 40, every: int = 2) -> dict:
    return {**store.param_space(), **train_job(steps, sync_every=every, report_every=every, seed=0)}


def _assert_every_push_once(store: SupernetStore, trials, expected: int) -> dict:
    """The ledger: each training job's pushes were applied exactly ``expected`` times, to its last step (on
    every shard of a sharded store)."""
    info = store.info()
    for ledger in info.get("shard_info", [info]):
        for trial in trials:
            writer = writer_of(trial.config, trial.trial_id)  # a searcher's job id, else the trial's
            assert ledger["push_counts"][writer] == expected, (writer, ledger["push_counts"])
            assert ledger["last_step"][writer] == trial.config["steps"]
    return info


def _spos(space, **kwargs) -> SPOSSearcher:
    searcher = SPOSSearcher(
        space=space,
        metric="accuracy",
        mode="max",
        seed=0,
        train_steps=20,
        steps_per_trial=10,
        eval_batch=4,
        **kwargs,
        evolution=EvolutionSettings(population=4, generations=1),
    )
    searcher.training.sync_every = 5
    return searcher


def test_spos_trials_run_on_both_nodes_and_every_push_from_both_lands(nodes, tiny_spec, tmp_path):
    store = _store(tiny_spec, node_id=nodes.head)  # placed on the head: the second node pulls across
    searcher = _spos(tiny_spec.space)
    analysis = _run(
        store.param_space(), tmp_path, _alternating_nodes(supernet_trainable), search_alg=searcher, num_samples=-1
    )
    train = [t for t in analysis.trials if t.config["task"] == "train"]
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert {t.last_result["node_id"] for t in train} == {nodes.head, nodes.second}
    info = _assert_every_push_once(store, train, expected=2)
    assert info["node_id"] == nodes.head and info["stats"]["duplicates"] == 0
    assert searcher.training.completed == 20 and len(searcher.history) == 4 and searcher.best_architecture()
    store.kill()


def test_ase_trials_run_on_both_nodes_and_every_push_from_both_lands(nodes, tiny_spec, tmp_path):
    store = _store(tiny_spec, node_id=nodes.second)  # placed on the second node: the head pulls across
    searcher = ASESearcher(
        space=tiny_spec.space,
        metric="accuracy",
        mode="max",
        seed=0,
        num_subspaces=2,
        local_distance=2,
        train_steps=20,
        steps_per_trial=10,
        max_queries=3,
    )
    searcher.training.sync_every = 5
    analysis = _run(
        store.param_space(), tmp_path, _alternating_nodes(supernet_trainable), search_alg=searcher, num_samples=-1
    )
    train = [t for t in analysis.trials if t.config["task"] == "train"]
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert {t.last_result["node_id"] for t in train} == {nodes.head, nodes.second}
    _assert_every_push_once(store, train, expected=2)
    assert store.info()["node_id"] == nodes.second and len(searcher.history) == 3
    store.kill()


class _KillWorkerOnce(tune.Callback):
    """SIGKILL a training trial's worker process once it has pushed (mid-training)."""

    def __init__(self, after_step: int):
        self.after_step, self.killed, self.results = after_step, None, []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results.append((trial.trial_id, result["steps_done"], result["worker_pid"]))
        if self.killed is None and result["steps_done"] >= self.after_step:
            self.killed = (trial.trial_id, result["worker_pid"])
            os.kill(result["worker_pid"], signal.SIGKILL)


@SHARDS
def test_a_killed_worker_is_retried_from_its_checkpoint_and_no_delta_is_applied_twice(
    nodes, tiny_spec, tmp_path, shards
):
    store = _store(tiny_spec, shards=shards)
    killer = _KillWorkerOnce(after_step=10)
    analysis = _run(_train_config(store), tmp_path, num_samples=2, max_failures=2, callbacks=[killer])
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    victim, pid = killer.killed
    assert [t.num_failures for t in analysis.trials if t.trial_id == victim] == [1]
    after = [step for trial, step, p in killer.results if trial == victim and p != pid]
    assert after and after[0] > 2  # resumed from its checkpoint, not from step 0
    info = _assert_every_push_once(store, analysis.trials, expected=20)  # 40 steps, a push every 2
    print("replayed pushes ignored:", info["stats"]["duplicates"])
    store.kill()


class _CrashStoreOnce(tune.Callback):
    def __init__(self, store: SupernetStore):
        self.store, self.crashed = store, False

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not self.crashed and result["steps_done"] >= 10:
            self.crashed = True
            ray.kill(self.store._actors[-1], no_restart=False)  # a crash (of the last shard): Ray restarts it


@SHARDS
def test_a_crashed_store_restarts_from_its_checkpoint_and_trials_carry_on(nodes, tiny_spec, tmp_path, shards):
    store = _store(tiny_spec, checkpoint_path=str(tmp_path / "store.npz"), checkpoint_every=1, shards=shards)
    crash = _CrashStoreOnce(store)
    analysis = _run(_train_config(store), tmp_path, num_samples=2, callbacks=[crash])
    assert crash.crashed and all(t.status == "TERMINATED" and t.num_failures == 0 for t in analysis.trials)
    info = _assert_every_push_once(store, analysis.trials, expected=20)  # checkpoint_every=1: nothing lost
    assert info["restarted"]
    store.kill()


def _load_example():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cluster_search", ROOT / "examples" / "cluster_search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _search_driver(nodes, tmp_path, shards: int) -> subprocess.Popen:
    # Tune's default checkpoint period (every 10 s or more): the searcher state a resume starts from is
    # older than the jobs the killed driver issued last, which the resumed searcher issues again.
    env = {**os.environ, "RAY_ADDRESS": nodes.cluster.address, "PYTHONUNBUFFERED": "1"}
    env.pop("TUNE_GLOBAL_CHECKPOINT_S", None)
    command = [
        sys.executable,
        str(ROOT / "examples" / "cluster_search.py"),
        "--storage",
        str(tmp_path / "results"),
        "--name",
        "driver-kill",
        "--train-steps",
        "40",
        "--generations",
        "2",
        "--summary",
        str(tmp_path / "summary.json"),
        "--shards",
        str(shards),
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def test_a_killed_driver_resumes_and_every_issued_training_step_is_applied_exactly_once(nodes, tiny_spec, tmp_path):
    # Run with a sharded store (two shards, the harder case: each shard comes back from its own file); the
    # one-actor store's restarts and re-creation from a checkpoint are the other tests' one-actor cases.
    shards = 2
    driver = _search_driver(nodes, tmp_path, shards)
    completed, first = [], []
    for line in driver.stdout:  # kill it (SIGKILL) once three trials have finished, mid-search
        first.append(line)
        if line.startswith("COMPLETE"):
            completed.append(line.split()[1])
            if len(completed) == 3:
                driver.send_signal(signal.SIGKILL)
                break
    driver.wait(timeout=60)
    assert len(completed) == 3, "the driver ended before it could be killed:\n" + "".join(first)[-3000:]
    resumed = _search_driver(nodes, tmp_path, shards)
    output, _ = resumed.communicate(timeout=300)
    log = f"first driver:\n{''.join(first)[-2000:]}\nresumed driver:\n{output[-6000:]}"
    assert resumed.returncode == 0 and "RESUME" in output, log
    summary = json.loads((tmp_path / "summary.json").read_text())
    print(log)  # shown when an assertion below fails

    example = _load_example()  # the same search, uninterrupted and in-process: the bookkeeping to match
    args = example.parse_args(["--storage", "unused", "--train-steps", "40", "--generations", "2"])
    reference = example.make_searcher(args)
    run_in_process(reference, InProcessSupernet(example.tiny_spec(), "cpu"))
    expected = {"issued": reference.training.issued, "completed": reference.training.completed, "failed": 0}
    assert summary["training"] == expected  # no training trial counted twice or lost
    assert summary["history"] == len(reference.history) and summary["errors"] == 0  # no suggestion lost
    # Exactly once: the store applied each issued step once, every job under its own id, 2 pushes each.
    ledger = summary["weight_store"]["push_counts"]
    assert summary["applied_steps"] == expected["issued"] == 40, summary["weight_store"]
    assert len(ledger) == 4 and set(ledger.values()) == {2} and all("/" in job for job in ledger)
    orphans = [line for line in output.splitlines() if line.startswith("ORPHAN")]
    print(
        f"re-issued jobs answered from the store: {summary['weight_store']['stats']['resumed_jobs']}; "
        f"orphaned trial folders removed: {len(orphans)}"
    )
    removed = {line.split("/")[-1] for line in orphans}
    assert not [p for p in (tmp_path / "results" / "driver-kill").iterdir() if p.name in removed]


@SHARDS
def test_removing_the_second_node_mid_run_moves_the_store_and_the_search_finishes(nodes, tiny_spec, tmp_path, shards):
    # The store (a sharded one: its shard 0) sits on the second node with a soft affinity: it must come back on
    # the head from its checkpoint; a second shard on the head stays where it is.
    _ensure_second_node(nodes)
    store = _store(
        tiny_spec,
        node_id=[nodes.second, nodes.head],
        checkpoint_path=str(tmp_path / "store.npz"),
        checkpoint_every=1,
        shards=shards,
    )
    assert [s["node_id"] for s in store.info().get("shard_info", [store.info()])] == [nodes.second, nodes.head][:shards]
    second = next(n for n in nodes.cluster.worker_nodes if n.node_id == nodes.second)

    class RemoveSecondNode(tune.Callback):
        removed = False

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if not self.removed and result["node_id"] == nodes.second and result["steps_done"] >= 10:
                RemoveSecondNode.removed = True
                nodes.cluster.remove_node(second, allow_graceful=False)

    # Fresh actors (no reuse) land wherever a CPU is free, so one trial runs on the second node.
    analysis = _run(
        _train_config(store),
        tmp_path,
        num_samples=3,
        max_failures=3,
        callbacks=[RemoveSecondNode()],
        reuse_actors=False,
    )
    assert RemoveSecondNode.removed
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert {t.last_result["node_id"] for t in analysis.trials} == {nodes.head}
    info = _assert_every_push_once(store, analysis.trials, expected=20)
    assert info["node_id"] == nodes.head and info["restarted"]


def test_other_nodes_move_tensors_through_the_stores_socket_and_fall_back_to_ray(nodes):
    """A client on another node than the shards reads and pushes through their sockets (store.transport);
    an upload a shard lost, or a socket it cannot reach, goes through Ray instead, with the same result."""
    import numpy as np

    from tune_spacenas.store.actor import WeightStore

    _ensure_second_node(nodes)
    size = 2**19  # 2 MiB per tensor: a push part above the socket's 1 MiB threshold
    store = WeightStore.create(
        f"socket-{uuid.uuid4().hex[:6]}",
        arrays={k: np.zeros(size, np.float32) for k in "uw"},
        shards=2,
        node_id=nodes.head,
    )

    @ray.remote(num_cpus=0, resources={"node1": 0.01})
    def from_the_other_node(name: str) -> dict:
        from tune_spacenas.store import actor

        client = actor.WeightStore.connect(name)
        incarnation, fresh = client.pull()
        versions = {k: v for k, (v, _) in fresh.items()}
        kept = client.push({k: np.ones(size, np.float32) for k in "uw"}, "far", 1, versions, incarnation).kept
        direct = dict(client.transfers)
        actor._LINK.upload = lambda *args: "an-upload-the-shard-lost"  # as after a shard restart: sent again via Ray
        assert client.push({k: np.ones(size, np.float32) for k in "uw"}, "far", 2)
        client._direct = {i: (("127.0.0.1", 1), "x") for i in range(2)}  # a socket nobody listens on
        values = {k: float(a[1][0]) for k, a in client.pull()[1].items()}
        return {"kept": dict(kept), "direct": direct, "after": dict(client.transfers), "values": values}

    try:
        out = ray.get(from_the_other_node.remote(store.name))
        assert out["kept"] == {"u": 1, "w": 1} and out["values"] == {"u": 2.0, "w": 2.0}
        assert out["direct"] == {
            "direct_read_bytes": 2 * 4 * size,
            "direct_upload_bytes": 2 * 4 * size,
            "ray_objects": 0,
        }
        assert out["after"]["ray_objects"] == 2 and out["after"]["direct_upload_bytes"] == 2 * 4 * size
        assert store.pull()[1]["u"][1][0] == 2.0 and store.transfers["direct_read_bytes"] == 0  # same node: Ray's
        assert store.info()["push_counts"] == {"far": 2}
    finally:
        store.kill()
