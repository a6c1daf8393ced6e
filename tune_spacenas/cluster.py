"""Running on a Ray cluster: joining it, spreading trials over it, resuming after a killed driver.

* ``connect()``: ``ray.init`` for a laptop or an existing cluster, failing fast with the fix. A bare
  ``ray.init()`` with ``RAY_ADDRESS`` pointing nowhere retries for minutes before it gives up, one whose
  ``/tmp/ray/ray_current_cluster`` names a dead cluster hangs, and a cluster whose head turned token
  authentication on (Ray 2.60 does so by itself once ``~/.ray/auth_token`` exists) refuses drivers that
  did not (after ~20 s, as "Failed to connect"). ``connect`` probes the address first and turns each of
  these into one error that says what to do.
* ``simulated_cluster()``: a multi-node cluster on this machine, for tests and benchmarks.
* ``round_robin(n)``: trial resources that place trials on nodes ``node0..node{n-1}`` in turn.
* ``repair_experiment(path)``: Tune state files a driver killed mid-upload left damaged, restored from
  the driver's staged copy before ``Tuner.restore``; the folders of trials that ran after Tune's last
  save (``orphaned_trials``) listed, or removed.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import posixpath
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tune_spacenas import storage

CURRENT_CLUSTER_FILE = "/tmp/ray/ray_current_cluster"
_AUTH_HINT = (
    "the cluster uses token authentication or this driver does: set RAY_AUTH_MODE the same for the "
    "head, every node and the driver (RAY_AUTH_MODE=disabled, or RAY_AUTH_MODE=token with the same "
    "~/.ray/auth_token everywhere)"
)


def connect(address: str | None = None, probe_timeout_s: float = 5.0, **init_kwargs: Any) -> Any:
    """Join the cluster at ``address`` (default ``$RAY_ADDRESS``; ``"auto"``: the one ``ray start`` recorded
    on this machine), or start a local Ray when neither is set. Returns ``ray.init``'s context.

    Raises ConnectionError (nothing answers at the address, with the socket's own error), or RuntimeError
    (Ray refused: authentication, version mismatch), each naming the fix. Idempotent: a driver already
    connected gets ``None`` back.
    """
    import ray

    if ray.is_initialized():
        return None
    source = "the address argument" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address == "auto":
        address, source = _recorded_cluster(), CURRENT_CLUSTER_FILE
    if address and address != "local":
        _probe(address, source, probe_timeout_s)
    try:
        return ray.init(address=address, **init_kwargs)
    except (ConnectionError, RuntimeError) as err:
        text = str(err)
        if any(word in text.lower() for word in ("unauthenticated", "authentication", "auth token", "auth_token")):
            raise RuntimeError(f"Ray at {address} refused this driver ({text.strip()[:300]}): {_AUTH_HINT}") from err
        raise RuntimeError(
            f"ray.init(address={address!r}) failed ({text.strip()[:300]}); check that the driver's Ray "
            f"and Python versions match the cluster's ({ray.__version__}) and: {_AUTH_HINT}"
        ) from err


def _host_port(address: str) -> tuple[str, int]:
    address = address.split("://", 1)[-1]
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"Ray address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379 or ray://head:10001)")
    return host, int(port)


def _probe(address: str, source: str, timeout_s: float) -> None:
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as err:
        raise ConnectionError(
            f"no Ray cluster answers at {address} (from {source}): {err}. Start one with "
            f"`ray start --head --port={port}` on the head (and `ray start --address={host}:{port}` on each other "
            "node), fix RAY_ADDRESS, or unset it to run Ray on this machine alone. A bare ray.init() would "
            "retry this for minutes."
        ) from err


def _recorded_cluster() -> str:
    try:
        with open(CURRENT_CLUSTER_FILE) as f:
            address = f.read().strip()
    except FileNotFoundError:
        raise ConnectionError(
            f"RAY_ADDRESS=auto but no cluster was started on this machine ({CURRENT_CLUSTER_FILE} "
            "is missing): run `ray start --head` first, or give the head's HOST:PORT"
        ) from None
    try:
        _probe(address, CURRENT_CLUSTER_FILE, 2.0)
    except ConnectionError as err:
        raise ConnectionError(
            f"{err} {CURRENT_CLUSTER_FILE} names a cluster that is gone: delete that file "
            "(or run `ray stop`) before starting a new one"
        ) from err
    return address


@contextmanager
def simulated_cluster(
    nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 100, fast_failure_detection: bool = True
) -> Iterator[tuple[Any, list[str]]]:
    """A multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``) with this driver connected:
    yields ``(cluster, node_ids)``, node ``i`` carrying the custom resource ``node<i>`` for placement.

    For tests and benchmarks of multi-node behaviour (cross-node object transfer, node death) without
    machines; the real thing is ``ray start`` on each machine (examples/two_node_cluster.sh). Any Ray this
    process had running is shut down first. ``fast_failure_detection`` notices a dead node in about a
    second instead of Ray's default 15-30 s.
    """
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    checks = {"health_check_period_ms": 300, "health_check_failure_threshold": 3, "health_check_initial_delay_ms": 0}
    node_args = {"num_cpus": cpus_per_node, "object_store_memory": object_store_mb * 1024**2}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **node_args,
            "resources": {"node0": 1},
            "include_dashboard": False,
            **({"_system_config": checks} if fast_failure_detection else {}),
        },
    )
    try:
        added = [cluster.add_node(**node_args, resources={f"node{i}": 1}) for i in range(1, nodes)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster, [cluster.head_node.node_id] + [node.node_id for node in added]
    finally:
        ray.shutdown()
        cluster.shutdown()


_PLACED: dict[str, int] = {}  # config -> node; module state, so it survives Tune unpickling the function


def round_robin(nodes: int, cpus: float = 1) -> Callable[[dict], dict]:
    """Trial resources for ``tune.with_resources`` that place trials on ``node0``, ``node1``, ... in turn
    (the custom resources ``simulated_cluster`` gives its nodes): a certain spread, where Tune on its own
    keeps reusing a warm actor on one node while trials are shorter than a worker's start-up."""
    return functools.partial(_next_node, nodes=nodes, cpus=cpus)


def _next_node(config: dict, nodes: int, cpus: float) -> dict:
    # Tune asks more than once per trial: the same config keeps its node.
    node = _PLACED.setdefault(json.dumps(config, sort_keys=True, default=str), len(_PLACED) % nodes)
    return {"cpu": cpus, f"node{node}": 0.01}


_TUNE_STATE_FILES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")
# A trial folder: "<trainable>_<trial id>_<index>_<params>_<date>" (ids: 8 hex digits; older Tune: "abcde_00000").
_TRIAL_FOLDER = re.compile(r"_([0-9a-f]{8}|[0-9a-f]{5}_\d{5})_\d+_")
log = logging.getLogger("tune_spacenas.cluster")


def orphaned_trials(experiment: str, staging_root: str = "/tmp/ray") -> list[str]:
    """Trial folders of ``experiment`` whose trial the newest saved Tune state does not know: trials started
    after Tune's last save by a driver that was then killed. ``Tuner.restore`` never looks at them; their
    training jobs' steps are in the weight store, and the resumed searcher's re-issue of those jobs (same
    job ids) is answered from the store, so their folders only mislead. Also their copies in the driver's
    staging directory on this machine (a restored run uploads that directory again). Empty if no state
    was saved."""
    states = storage.glob(experiment, "experiment_state-*.json")
    if not states:
        return []
    try:
        with storage.open_read(max(states)) as f:
            trial_data = json.load(f)["trial_data"]
        known = {json.loads(entry[0])["trial_id"] for entry in trial_data}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return []  # a damaged state file: repair_experiment restores it first
    newest = posixpath.basename(max(states))  # the run's own staging directory holds the same state file
    folders = storage.directories(experiment) + [
        d
        for staged in _staging_dirs(experiment, staging_root)
        if os.path.exists(os.path.join(staged, newest))
        for d in storage.directories(staged)
    ]
    return [
        d
        for d in folders
        if (match := _TRIAL_FOLDER.search(posixpath.basename(d.rstrip("/")))) and match.group(1) not in known
    ]


def _staging_dirs(experiment: str, staging_root: str) -> list[str]:
    """This machine's driver staging directories of ``experiment`` (where Tune writes its state first)."""
    import glob

    name = posixpath.basename(str(experiment).rstrip("/"))
    found = glob.glob(os.path.join(staging_root, "session_*", "artifacts", "*", name, "driver_artifacts"))
    return sorted({os.path.realpath(d) for d in found})  # session_latest links to one of the sessions


def repair_experiment(experiment: str, staging_root: str = "/tmp/ray", remove_orphans: bool = False) -> list[str]:
    """Make a killed driver's experiment directory restorable; returns the files it replaced.

    Tune uploads its state files (``experiment_state-*``, ``search_gen_state-*``, ``searcher-state-*``) to
    the storage path with a plain copy, so a driver killed during an upload leaves them truncated (empty,
    most often) or from different saves, and ``Tuner.restore`` then starts a broken run. Tune writes the
    same files atomically to the driver's staging directory first
    (``<staging_root>/session_*/artifacts/*/<experiment name>/driver_artifacts``): where that is still on
    this machine, its last save replaces the uploaded one, all files alike. RuntimeError, naming the fix,
    when a damaged file has no staged copy (the driver's machine is gone). Trial folders the restored
    state will not know (``orphaned_trials``) are logged, and deleted with ``remove_orphans=True``.
    """
    staging = _staging_dirs(experiment, staging_root)
    replaced = []
    for pattern in _TUNE_STATE_FILES:
        found = storage.glob(experiment, pattern)
        if not found:
            continue
        newest = max(found)  # the file Tune restores from
        staged = sorted(
            (p for p in (os.path.join(d, posixpath.basename(newest)) for d in staging) if _read_intact(p) is not None),
            key=os.path.getmtime,
        )
        uploaded = _read_intact(newest)
        if not staged:
            if uploaded is None:
                raise RuntimeError(
                    f"{newest} is damaged (the driver was killed while uploading it) and no staged copy is left "
                    f"under {staging_root}: delete the files of that session ({posixpath.basename(newest)} and "
                    "its siblings with the same timestamp) to resume from the previous session, or start the "
                    "experiment anew (the weight store keeps its checkpoint)"
                )
            continue
        data = _read_intact(staged[-1])
        if data != uploaded:
            storage.write_atomic(newest, lambda out, data=data: out.write(data))
            replaced.append(newest)
    orphans = orphaned_trials(experiment, staging_root)
    if orphans:
        log.warning(
            "%d trial folders in %s belong to trials that ran after Tune's last save (their training steps "
            "are in the weight store, and re-issued jobs are answered from it): %s; %s",
            len(orphans),
            experiment,
            ", ".join(posixpath.basename(o.rstrip("/")) for o in orphans),
            "removed" if remove_orphans else "repair_experiment(..., remove_orphans=True) deletes them",
        )
        for folder in orphans if remove_orphans else ():
            storage.remove_tree(folder)
    return replaced


def _read_intact(path: str) -> bytes | None:
    """The file's bytes if they parse (as JSON or as a pickle: Tune's ``search_gen_state-*.json`` is a
    pickle), else None: empty or truncated by a killed upload."""
    import pickle

    try:
        with storage.open_read(path) as f:
            data = f.read()
    except OSError:
        return None
    for parse in (json.loads, pickle.loads):
        try:
            parse(data)
            return data
        except Exception:  # not this format, or truncated
            continue
    return None
