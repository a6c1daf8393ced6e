"""How the weight store's cost grows with the number of trials, for 1..N shards, on one node and on two.

    python -m benchmarks.store_scaling --clients 1,2,4,8,16 --shards 1,2,4 --out benchmarks/results/store/store_scaling.json

Simulated trials, no training: each client is a process (a Ray actor) that syncs like a GPU trial on the
MobileNet-like supernet (``MobileNetSpace``, 25.7M parameters, 392 tensors): every ``1/--rate`` seconds
(flat out with ``--rate 0``) it pushes a delta of the path it trained since its last sync (one sampled
architecture, ~4-5M parameters, ~20 MB) with the versions it knows, keeps what the store kept, and pulls
the tensors of its next path whose version moved. One sync = that push + that pull; its latency is the
client's wall time for both. For each (mode, shards, clients): syncs/s over all clients, p50/p99 sync
latency, bytes/s moved (pushed + pulled), the p50 latency over a memcpy and over a raw loopback TCP
transfer of the same bytes (both measured in the same run, process to process for TCP), and each shard's
service time per sync (wall and CPU seconds inside its push and pull per sync: what one shard costs,
independent of how many cores the run had), with the machine's load average during the run.

Modes: ``local`` (one Ray node; shards and clients share its cores) and ``cluster`` (a two-node
``ray.cluster_utils.Cluster`` on this machine: clients alternate between the nodes, shards too, so half
the traffic crosses nodes over loopback). On a machine with fewer cores than clients + shards, the curves
measure CPU contention as much as the store: read the per-shard service time for what extrapolates.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import RESULTS, new_figure, save_figure, tcp_round_trips, tcp_sink, write_json, write_markdown

OUT = RESULTS / "store" / "store_scaling.json"


class SimulatedTrial:
    """A trial without training: syncs a path's deltas with the store at a rate, and times each sync."""

    def __init__(self, paths: list[list[str]], shapes: dict[str, tuple[int, ...]]):
        import torch

        torch.set_num_threads(1)
        self.paths = paths
        self.deltas = {k: np.full(shapes[k], 1e-7, np.float32) for k in {k for p in paths for k in p}}

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def run(self, store_name: str, trial: int, seconds: float, rate: float, start_at: float) -> dict:
        from tune_spacenas.store.actor import WeightStore

        store = WeightStore.connect(store_name)
        rng = np.random.default_rng(trial)
        order = rng.permutation(len(self.paths))
        path = self.paths[order[0]]
        incarnation, fresh = store.pull(None, path)
        versions = {k: v for k, (v, _) in fresh.items()}
        del fresh
        latencies, moved, kept, step = [], [], 0, 0
        time.sleep(max(0.0, start_at - time.time()))  # every client starts together
        end = time.monotonic() + seconds
        next_sync = time.monotonic()
        while time.monotonic() < end:
            step += 1
            start = time.perf_counter()
            deltas = {k: self.deltas[k] for k in path}
            receipt = store.push(deltas, f"sim{trial}", step, versions, incarnation)
            versions.update(receipt.kept)
            for key in set(path) - set(receipt.kept):
                versions.pop(key, None)
            kept += len(receipt.kept)
            path = self.paths[order[step % len(order)]]
            incarnation, fresh = store.pull(versions, path, incarnation)
            pulled = 0
            for key, (version, array) in fresh.items():
                versions[key] = version
                pulled += array.nbytes
                float(array[..., :1].sum())  # touch it, as a copy to the model would
            del fresh
            latencies.append(time.perf_counter() - start)
            moved.append(sum(d.nbytes for d in deltas.values()) + pulled)
            if rate > 0:
                next_sync += 1.0 / rate
                time.sleep(max(0.0, next_sync - time.monotonic()))
        return {"latencies_s": latencies, "bytes": moved, "kept": kept}

    # --- baselines: the same bytes by memcpy, and by a raw socket to another process -------------------------
    def memcpy_ms(self, nbytes: int, repeats: int) -> float:
        source = np.ones(nbytes // 4, np.float32)
        target = np.empty_like(source)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            np.copyto(target, source)
            times.append(time.perf_counter() - start)
        return 1e3 * float(np.median(times))

    def tcp_serve(self, nbytes: int) -> int:
        return tcp_sink(nbytes, timeout_s=60)

    def tcp_send_ms(self, port: int, nbytes: int, repeats: int) -> float:
        return float(np.median(tcp_round_trips(port, bytes(nbytes), repeats)))


def supernet_paths(count: int) -> tuple[dict, list[list[str]]]:
    """The MobileNet-like supernet's initial tensors and ``count`` sampled paths' parameter names."""
    from tune_spacenas.data import DataSpec
    from tune_spacenas.spaces import MobileNetSpace
    from tune_spacenas.supernet.spec import SupernetSpec

    spec = SupernetSpec(MobileNetSpace(), DataSpec("digits", val_size=300))  # data only names the spec
    net = spec.build()
    rng = np.random.default_rng(0)
    paths = [sorted(set(net.path_parameter_names(spec.space.sample(rng)))) for _ in range(count)]
    return spec.initial_weights(), paths


def measure_mode(mode: str, args: argparse.Namespace, arrays: dict, paths: list[list[str]]) -> list[dict]:
    import ray

    from tune_spacenas.cluster import simulated_cluster
    from tune_spacenas.store.actor import WeightStore

    nodes = 2 if mode == "cluster" else 1
    rows = []
    with simulated_cluster(nodes=nodes, cpus_per_node=2, object_store_mb=args.object_store_mb) as (_, node_ids):
        shapes = {k: a.shape for k, a in arrays.items()}
        remote = ray.remote(SimulatedTrial)
        clients = [
            remote.options(num_cpus=0, resources={f"node{i % nodes}": 0.001}).remote(paths, shapes)
            for i in range(max(args.clients))
        ]
        ray.get([c.node.remote() for c in clients])
        path_bytes = int(np.mean([sum(arrays[k].nbytes for k in p) for p in paths]))
        baseline = baselines(clients, nodes, 2 * path_bytes)
        for shards in args.shards:
            store = WeightStore.create(
                f"scaling-{mode}-{shards}", arrays, shards=shards, node_id=[node_ids[i % nodes] for i in range(shards)]
            )
            for count in args.clients:
                rows.append(run_config(store, clients[:count], args, mode, shards, baseline))
                print(_line(rows[-1]), flush=True)
            store.kill()
        for client in clients:
            ray.kill(client)
    return rows


def baselines(clients: list, nodes: int, nbytes: int) -> dict:
    """memcpy and raw TCP (client 0 to the client on the other node, or to client 1) of ``nbytes``."""
    import ray

    peer = clients[1] if len(clients) > 1 else clients[0]
    port = ray.get(peer.tcp_serve.remote(nbytes))
    return {
        "bytes": nbytes,
        "memcpy_ms": ray.get(clients[0].memcpy_ms.remote(nbytes, 20)),
        "tcp_ms": ray.get(clients[0].tcp_send_ms.remote(port, nbytes, 20)),
        "tcp_across_nodes": nodes > 1,
    }


def run_config(store, clients: list, args: argparse.Namespace, mode: str, shards: int, baseline: dict) -> dict:
    import ray

    before = _service(store)
    load_before = os.getloadavg()[0]
    start_at = time.time() + 1.0
    outs = ray.get([c.run.remote(store.name, i, args.seconds, args.rate, start_at) for i, c in enumerate(clients)])
    load_after = os.getloadavg()[0]
    after = _service(store)
    latencies = np.concatenate([o["latencies_s"] for o in outs]) * 1e3
    moved = np.concatenate([o["bytes"] for o in outs])
    syncs = len(latencies)
    per_sync = float(moved.mean())
    scale = per_sync / baseline["bytes"]  # the baselines moved ``baseline["bytes"]``; costs scale with bytes
    service = _service_delta(before, after)
    p50 = float(np.percentile(latencies, 50))
    return {
        "mode": mode,
        "shards": shards,
        "clients": len(clients),
        "rate_per_client": args.rate,
        "seconds": args.seconds,
        "syncs": syncs,
        "syncs_per_s": syncs / args.seconds,
        "p50_ms": p50,
        "p99_ms": float(np.percentile(latencies, 99)),
        "mb_per_sync": per_sync / 2**20,
        "mb_per_s": float(moved.sum()) / args.seconds / 2**20,
        "p50_over_memcpy": p50 / (baseline["memcpy_ms"] * scale),
        "p50_over_tcp": p50 / (baseline["tcp_ms"] * scale),
        "kept_per_sync": sum(o["kept"] for o in outs) / max(1, syncs),
        "shard_service": service,
        "shard_ms_per_sync": {
            "wall": 1e3 * sum(s["wall_s"] for s in service) / max(1, syncs),
            "cpu": 1e3 * sum(s["cpu_s"] for s in service) / max(1, syncs),
        },
        "busiest_shard_utilisation": max(s["wall_s"] for s in service) / args.seconds,
        "load_avg_1min": [load_before, load_after],
    }


def _service(store) -> list[dict]:
    info = store.info()
    return [s["service"] for s in info.get("shard_info", [info])]


def _service_delta(before: list[dict], after: list[dict]) -> list[dict]:
    return [
        {key: sum(a[kind][key] - b[kind][key] for kind in ("push", "pull")) for key in ("calls", "cpu_s", "wall_s")}
        for b, a in zip(before, after)
    ]


def _line(row: dict) -> str:
    return (
        f"{row['mode']:7s} shards={row['shards']} clients={row['clients']:2d}: {row['syncs_per_s']:6.1f} syncs/s, "
        f"p50 {row['p50_ms']:6.1f} ms, p99 {row['p99_ms']:6.1f} ms, {row['mb_per_s']:6.0f} MB/s, "
        f"{row['p50_over_memcpy']:.1f}x memcpy, {row['p50_over_tcp']:.1f}x TCP, shard "
        f"{row['shard_ms_per_sync']['cpu']:.1f} ms CPU/sync, load {row['load_avg_1min'][0]:.1f}-{row['load_avg_1min'][1]:.1f}"
    )


def plot(rows: list[dict], path: Path) -> None:
    modes = sorted({r["mode"] for r in rows}, reverse=True)
    fig, axes = new_figure(columns=3, rows=len(modes), size=(4.6, 3.4), squeeze=False)
    for line, mode in enumerate(modes):
        for shards in sorted({r["shards"] for r in rows}):
            sel = sorted((r for r in rows if r["mode"] == mode and r["shards"] == shards), key=lambda r: r["clients"])
            x = [r["clients"] for r in sel]
            label = f"{shards} shard{'s' * (shards > 1)}"
            axes[line][0].plot(x, [r["syncs_per_s"] for r in sel], marker="o", label=label)
            axes[line][1].plot(x, [r["p50_ms"] for r in sel], marker="o", label=f"{label} p50")
            axes[line][1].plot(x, [r["p99_ms"] for r in sel], marker="x", linestyle="--", label=f"{label} p99")
            axes[line][2].plot(x, [r["shard_ms_per_sync"]["cpu"] for r in sel], marker="o", label=label)
        for ax, ylabel in zip(axes[line], ("syncs/s (all clients)", "sync latency ms", "shard CPU ms per sync")):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("clients (simulated trials)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{mode}: {ylabel}", fontsize=9)
            ax.legend(fontsize=6)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,2,4,8,16", help="comma-separated client counts")
    parser.add_argument("--shards", default="1,2,4", help="comma-separated shard counts")
    parser.add_argument("--modes", default="local,cluster", help="local (one node) and/or cluster (two nodes)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per configuration")
    parser.add_argument("--rate", type=float, default=2.0, help="syncs per second per client (0: flat out)")
    parser.add_argument("--paths", type=int, default=16, help="distinct sampled paths the clients cycle through")
    parser.add_argument("--object-store-mb", type=int, default=1500, help="object store per node")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    args.shards = [int(s) for s in args.shards.split(",")]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    arrays, paths = supernet_paths(args.paths)
    rows = []
    for mode in args.modes.split(","):
        rows += measure_mode(mode, args, arrays, paths)
        write_json(args.out, {"rows": rows, "setting": vars(args) | {"out": str(args.out)}, "cpus": os.cpu_count()})
    plot(rows, args.out.with_suffix(".png"))
    header = [
        "mode",
        "shards",
        "clients",
        "syncs/s",
        "p50 ms",
        "p99 ms",
        "MB/sync",
        "MB/s",
        "p50 / memcpy",
        "p50 / TCP",
        "shard CPU ms/sync",
        "shard wall ms/sync",
        "busiest shard busy",
        "load (1 min)",
    ]
    table = [
        [
            r["mode"],
            r["shards"],
            r["clients"],
            r["syncs_per_s"],
            r["p50_ms"],
            r["p99_ms"],
            r["mb_per_sync"],
            r["mb_per_s"],
            r["p50_over_memcpy"],
            r["p50_over_tcp"],
            r["shard_ms_per_sync"]["cpu"],
            r["shard_ms_per_sync"]["wall"],
            f"{100 * r['busiest_shard_utilisation']:.0f}%",
            "{:.1f}-{:.1f}".format(*r["load_avg_1min"]),
        ]
        for r in rows
    ]
    write_markdown(
        args.out.with_suffix(".md"),
        "Weight store scaling: simulated trials against 1..N shards",
        header,
        table,
        notes=f"{os.cpu_count()} cores; clients sync {args.rate or 'flat out'}/s each for "
        f"{args.seconds} s per row; see the module docstring and README.md beside it.",
    )
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
