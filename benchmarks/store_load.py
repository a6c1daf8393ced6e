"""Soak of the weight store on two nodes: trials pushing as fast as they can, killed and retried, and a sum
check that proves no update was lost and none applied twice.

    python -m benchmarks.store_load --trials 8 --seconds 120 --out benchmarks/results/cluster/store_load.json

A simulated two-node cluster (``tune_spacenas.cluster.simulated_cluster``); the store on the head holds
``--tensors`` tensors. Each trial (an actor, half of them on each node) follows the supernet trainable's
protocol: at step ``s`` it pulls the tensors of a path (``--path`` of them, drawn from a seed of (trial, s)),
pushes a delta of ones to each plus one to a counter, and checkpoints ``s`` after the push (every
``--checkpoint-every`` steps). Every ``--kill-every`` seconds one trial's process is killed; Ray restarts
it and it resumes from its checkpoint, so it pushes again the steps after that checkpoint: the store must
ignore those. ``--store-crashes`` also crashes the store (then checkpointing every push) that many times
(a sharded store, ``--shards N``: one shard at a time, in turn; shards alternate between the nodes).

The sum check at the end: every trial reached step F_t, so the counter must be sum(F_t) and each tensor
must equal the number of (trial, step <= F_t) paths that contain it, element for element. ``lost_updates``
and ``doubled_updates`` count the differences. Latencies are the trials' own (pull: the changed tensors
of its path; push: the delta), store memory is sampled every second.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import RESULTS, new_figure, save_figure, write_json, write_markdown

COUNTER = "__pushes__"


def path_of(trial: str, step: int, tensors: int, length: int) -> list[str]:
    """The tensors trial ``trial`` trains at ``step``: deterministic, so the check can recompute them."""
    rng = np.random.default_rng([int(trial[1:]), step])
    return [f"t{i}" for i in sorted(rng.choice(tensors, size=length, replace=False))]


class Trial:
    """A trial stand-in: pull a path, push its delta, checkpoint the step; resumes from its checkpoint."""

    def __init__(
        self, store_name: str, trial: str, tensors: int, size: int, path: int, folder: str, checkpoint_every: int
    ):
        from tune_spacenas.store.actor import WeightStore

        self.store, self.trial, self.tensors, self.path = WeightStore.connect(store_name), trial, tensors, path
        self.delta = np.ones(size, np.float32)
        self.file, self.checkpoint_every = os.path.join(folder, f"{trial}.json"), checkpoint_every
        self.step = json.load(open(self.file))["step"] if os.path.exists(self.file) else 0
        self.versions: dict[str, int] = {}
        self.incarnation: str | None = None

    def run_for(self, seconds: float) -> dict:
        pulls, pushes, replays = [], [], 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            step = self.step + 1
            keys = path_of(self.trial, step, self.tensors, self.path)
            start = time.perf_counter()
            self.incarnation, fresh = self.store.pull(self.versions, keys, self.incarnation)
            self.versions.update({k: v for k, (v, _) in fresh.items()})
            pulled = time.perf_counter()
            deltas = {k: self.delta for k in keys} | {COUNTER: np.ones(1, np.float32)}
            replays += not self.store.push(deltas, self.trial, step)
            pushes.append(1000 * (time.perf_counter() - pulled))
            pulls.append(1000 * (pulled - start))
            self.step = step
            if step % self.checkpoint_every == 0:
                tmp = f"{self.file}.tmp"
                with open(tmp, "w") as f:
                    json.dump({"step": step}, f)
                os.replace(tmp, self.file)
        return {"step": self.step, "pull_ms": pulls, "push_ms": pushes, "replays": replays, "pid": os.getpid()}


def expected_sums(finals: dict[str, int], tensors: int, length: int) -> dict[str, float]:
    counts = {f"t{i}": 0.0 for i in range(tensors)}
    for trial, final in finals.items():
        for step in range(1, final + 1):
            for key in path_of(trial, step, tensors, length):
                counts[key] += 1
    counts[COUNTER] = float(sum(finals.values()))
    return counts


def soak(args: argparse.Namespace) -> dict:
    import ray
    from ray._private.state import available_resources_per_node, total_resources_per_node

    from tune_spacenas.cluster import simulated_cluster
    from tune_spacenas.store.actor import WeightStore

    folder = tempfile.mkdtemp(prefix="store_load.")
    size = args.tensor_kb * 1024 // 4
    arrays = {f"t{i}": np.zeros(size, np.float32) for i in range(args.tensors)} | {COUNTER: np.zeros(1, np.float32)}
    with simulated_cluster(nodes=2, cpus_per_node=2, object_store_mb=args.object_store_mb) as (_, node_ids):
        checkpoint = (
            {"checkpoint_path": os.path.join(folder, "store.npz"), "checkpoint_every": 1} if args.store_crashes else {}
        )
        placement = node_ids[0] if args.shards == 1 else [node_ids[i % 2] for i in range(args.shards)]
        store = WeightStore.create("store-load", arrays=arrays, node_id=placement, shards=args.shards, **checkpoint)
        remote = ray.remote(Trial)
        names = [f"t{i}" for i in range(args.trials)]
        trials = {
            n: remote.options(
                num_cpus=0, max_restarts=-1, max_task_retries=-1, resources={f"node{i % 2}": 0.01}
            ).remote(store.name, n, args.tensors, size, args.path, folder, args.checkpoint_every)
            for i, n in enumerate(names)
        }
        samples, kills, store_crashes = [], [], []
        start = time.monotonic()
        stop = threading.Event()

        def sample():
            while not stop.wait(1.0):
                info = store.info()
                free = available_resources_per_node()
                total = total_resources_per_node()
                used = {
                    node[:8]: total[node].get("object_store_memory", 0)
                    - free.get(node, {}).get("object_store_memory", 0)
                    for node in total
                }
                samples.append(
                    {
                        "t": round(time.monotonic() - start, 1),
                        "store_rss": info["rss"],
                        "store_objects": info["objects"],
                        "store_object_bytes": info["object_bytes"],
                        "object_store_used": used,
                        "applied": info["stats"]["applied"],
                    }
                )

        def chaos():
            rng = random.Random(0)
            crash_at = {args.seconds * (i + 1) / (args.store_crashes + 1) for i in range(args.store_crashes)}
            while not stop.wait(args.kill_every):
                victim = rng.choice(names)
                ray.kill(trials[victim], no_restart=False)
                kills.append((round(time.monotonic() - start, 1), victim))
                for moment in sorted(crash_at):
                    if time.monotonic() - start >= moment:
                        crash_at.discard(moment)
                        ray.kill(store._actors[len(store_crashes) % store.shards], no_restart=False)
                        store_crashes.append(round(time.monotonic() - start, 1))

        threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=chaos, daemon=True)]
        [t.start() for t in threads]
        latencies = {"pull_ms": [], "push_ms": []}
        finals, replays = {}, 0
        while time.monotonic() - start < args.seconds:
            chunk = min(args.chunk, args.seconds - (time.monotonic() - start))
            for name, out in zip(names, ray.get([trials[n].run_for.remote(chunk) for n in names])):
                finals[name] = out["step"]
                replays += out["replays"]
                for key in latencies:
                    latencies[key] += out[key]
        elapsed = time.monotonic() - start
        stop.set()
        [t.join() for t in threads]
        _, held = store.pull()
        info = store.info()
        store.kill()
    expected = expected_sums(finals, args.tensors, args.path)
    lost = doubled = 0  # in tensor updates: one push of a path of k tensors and the counter is k + 1 of them
    for key, want in expected.items():
        values = held[key][1]
        if values.min() != values.max():
            raise AssertionError(f"tensor {key} is not uniform: a delta was applied to part of it")
        lost += max(0, int(want - values[0]))
        doubled += max(0, int(values[0] - want))
    ledger_ok = all(info["push_counts"].get(n, 0) == finals[n] == info["last_step"].get(n, 0) for n in names)
    rss = [s["store_rss"] for s in samples]
    warm = rss[len(rss) // 4 :] or rss
    return {
        "trials": args.trials,
        "seconds": round(elapsed, 1),
        "kills": len(kills),
        "store_crashes": len(store_crashes),
        "pushes_applied": int(info["stats"]["applied"]),
        "pushes_per_s": info["stats"]["applied"] / elapsed,
        "replayed_pushes_ignored": replays,
        "lost_updates": lost,
        "doubled_updates": doubled,
        "ledger_matches": ledger_ok,
        "expected_counter": expected[COUNTER],
        "store_counter": float(held[COUNTER][1][0]),
        "pull_ms": _percentiles(latencies["pull_ms"]),
        "push_ms": _percentiles(latencies["push_ms"]),
        "store_rss_mb": {
            "first": rss[0] / 2**20,
            "last": rss[-1] / 2**20,
            "max_after_warmup": max(warm) / 2**20,
            "min_after_warmup": min(warm) / 2**20,
        }
        if rss
        else None,
        "setup": {
            "shards": args.shards,
            "tensors": args.tensors,
            "tensor_kb": args.tensor_kb,
            "path": args.path,
            "checkpoint_every": args.checkpoint_every,
            "kill_every_s": args.kill_every,
            "object_store_mb_per_node": args.object_store_mb,
        },
        "kill_log": kills,
        "store_crash_log": store_crashes,
        "memory_samples": samples,
    }


def _percentiles(values: list[float]) -> dict:
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)), "n": len(values)}


def plot(result: dict, path: Path) -> None:
    samples = result["memory_samples"]
    t = [s["t"] for s in samples]
    fig, ax = new_figure(size=(7, 3.5))
    ax.plot(t, [s["store_rss"] / 2**20 for s in samples], label="store actor RSS")
    ax.plot(t, [s["store_object_bytes"] / 2**20 for s in samples], label="store's objects (tensor versions handed out)")
    for node in samples[0]["object_store_used"]:
        ax.plot(t, [s["object_store_used"][node] / 2**20 for s in samples], label=f"object store used, node {node}")
    for moment, _ in result["kill_log"]:
        ax.axvline(moment, color="grey", alpha=0.2)
    ax.set_xlabel("seconds (grey: a trial killed)")
    ax.set_ylabel("MiB")
    ax.set_title(f"Store memory under load: {result['pushes_per_s']:.0f} pushes/s, {result['kills']} kills")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--tensors", type=int, default=64, help="tensors in the store")
    parser.add_argument("--tensor-kb", type=int, default=256, help="size of each tensor")
    parser.add_argument("--path", type=int, default=8, help="tensors a step trains (pulls and pushes)")
    parser.add_argument("--checkpoint-every", type=int, default=5, help="a trial checkpoints its step this often")
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds between trial kills")
    parser.add_argument("--shards", type=int, default=1, help="store shards (alternating between the nodes)")
    parser.add_argument("--store-crashes", type=int, default=0, help="also crash the store this many times")
    parser.add_argument("--chunk", type=float, default=5.0, help="seconds a trial runs between reports")
    parser.add_argument("--object-store-mb", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster" / "store_load.json")
    args = parser.parse_args()
    result = soak(args)
    write_json(args.out, result)
    plot(result, args.out.with_suffix(".png"))
    rows = [
        ("lost updates", result["lost_updates"]),
        ("doubled updates", result["doubled_updates"]),
        ("ledger (pushes per trial = its final step)", result["ledger_matches"]),
        ("pushes applied", result["pushes_applied"]),
        ("pushes/s", round(result["pushes_per_s"], 1)),
        ("replayed pushes ignored", result["replayed_pushes_ignored"]),
        ("trial kills", result["kills"]),
        ("store crashes", result["store_crashes"]),
        ("pull ms p50 / p99", f"{result['pull_ms']['p50']:.1f} / {result['pull_ms']['p99']:.1f}"),
        ("push ms p50 / p99", f"{result['push_ms']['p50']:.1f} / {result['push_ms']['p99']:.1f}"),
    ]
    if result["store_rss_mb"]:
        m = result["store_rss_mb"]
        rows.append(
            (
                "store RSS MiB first / last / after warm-up min-max",
                f"{m['first']:.0f} / {m['last']:.0f} / {m['min_after_warmup']:.0f}-{m['max_after_warmup']:.0f}",
            )
        )
    write_markdown(
        args.out.with_suffix(".md"),
        "Weight store soak: two nodes, trials killed and retried",
        ["measure", "value"],
        rows,
        notes=f"{result['trials']} trials for {result['seconds']} s; setup {result['setup']}. "
        f"Memory over time: {args.out.with_suffix('.png').name}.",
    )
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
