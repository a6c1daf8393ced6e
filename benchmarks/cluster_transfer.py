"""Moving one supernet path through the weight store: same node vs other node, against memcpy and a raw TCP
transfer of the same bytes over loopback, all in one run on a simulated two-node cluster.

    python -m benchmarks.cluster_transfer --out benchmarks/results/cluster/cluster_transfer.json

The path: one architecture of the MobileNet-like space (``MobileNetSpace``, 10 classes), about 5.2M
parameters in 68 tensors (21 MB as float32). Trials are stand-in actors pinned to a node by its custom
resource, timing the store client's calls from there:

* pull, same node: the first pull after a push (the store ``ray.put``s the new versions; zero-copy get);
* pull, other node: the same version read across nodes from the store's socket (``store.transport``, the
  default), and through Ray's object transfer (a second store made with ``direct_reads=False``);
* pull, other node again (Ray's transfer): a second process on that node pulling the same version (the
  node's cached copy);
* push, same node / other node: a delta of the whole path to the store (only changed tensors travel);
* memcpy: ``np.copyto`` of the path's arrays in one process;
* TCP loopback: the path's bytes sent by a process on one node to a process on the other over 127.0.0.1
  (``sendall`` then a one-byte acknowledgement): the physical limit of this set-up.
With CUDA present, also the host-to-device copy of the path (what a trial pays once per version).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import RESULTS, tcp_round_trips, tcp_sink, write_json, write_markdown

PORT_TIMEOUT_S = 30


class Probe:
    """A trial stand-in on one node: the store client as a trainable uses it, with timings."""

    def __init__(self, store_name: str, keys: list[str]):
        from tune_spacenas.store import SupernetStore

        self.store, self.keys = SupernetStore.connect(store_name), keys
        self.store_name = store_name
        self.versions: dict[str, int] = {}
        self.incarnation: str | None = None
        self.arrays: dict[str, np.ndarray] = {}

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def reads(self) -> dict:
        return dict(self.store.transfers)

    def pull(self) -> float:
        """ms to fetch every path tensor whose version changed (and touch its bytes, as a copy to a model does)."""
        start = time.perf_counter()
        self.incarnation, fresh = self.store.pull(self.versions, self.keys, self.incarnation)
        for key, (version, array) in fresh.items():
            self.versions[key] = version
            self.arrays[key] = array
        sum(float(a[..., :1].sum()) for _, a in fresh.values())  # touches every tensor (maps its pages)
        return 1000 * (time.perf_counter() - start)

    def push(self, trial: str, step: int) -> float:
        deltas = {k: np.full(a.shape, 1e-6, np.float32) for k, a in self.arrays.items()}
        start = time.perf_counter()
        self.store.push(deltas, trial, step)
        return 1000 * (time.perf_counter() - start)

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))

    def memcpy(self, repeats: int) -> list[float]:
        out = {k: np.empty_like(a) for k, a in self.arrays.items()}
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for key, array in self.arrays.items():
                np.copyto(out[key], array)
            times.append(1000 * (time.perf_counter() - start))
        return times

    def device_copy(self, repeats: int) -> list[float] | None:
        import torch

        if not torch.cuda.is_available():
            return None
        times = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            start = time.perf_counter()
            [torch.from_numpy(np.asarray(a)).to("cuda", non_blocking=False) for a in self.arrays.values()]
            torch.cuda.synchronize()
            times.append(1000 * (time.perf_counter() - start))
        return times

    def tcp_serve(self, nbytes: int) -> int:
        return tcp_sink(nbytes, timeout_s=PORT_TIMEOUT_S)

    def tcp_send(self, port: int, repeats: int) -> list[float]:
        payload = b"".join(np.ascontiguousarray(a).tobytes() for a in self.arrays.values())
        return tcp_round_trips(port, payload, repeats)


def path_of_mobilenet() -> tuple[object, list[str], int]:
    """The spec, the parameter names of one fixed path, and its parameter count."""
    from tune_spacenas.data import DataSpec
    from tune_spacenas.spaces import MobileNetSpace
    from tune_spacenas.supernet.spec import SupernetSpec

    spec = SupernetSpec(MobileNetSpace(), DataSpec("cifar10"))
    net = spec.build()
    arch = spec.space.sample(np.random.default_rng(0))
    keys = sorted(set(net.path_parameter_names(arch)))
    params = dict(net.named_parameters())
    return spec, keys, int(sum(params[k].numel() for k in keys))


def summary(times: list[float] | None) -> dict | None:
    if not times:
        return None
    return {
        "p50_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
        "min_ms": float(np.min(times)),
        "n": len(times),
    }


def measure(repeats: int) -> dict:
    import ray

    from tune_spacenas.cluster import simulated_cluster
    from tune_spacenas.store import SupernetStore

    spec, keys, params = path_of_mobilenet()
    with simulated_cluster(nodes=2, cpus_per_node=2, object_store_mb=600) as (_, node_ids):
        store = SupernetStore.create("cluster-transfer", spec, node_id=node_ids[0])
        through_ray = SupernetStore.create("cluster-transfer-ray", spec, node_id=node_ids[0], direct_reads=False)
        probe = ray.remote(Probe)
        here = probe.options(num_cpus=0, resources={"node0": 0.01}).remote(store.name, keys)
        there = probe.options(num_cpus=0, resources={"node1": 0.01}).remote(store.name, keys)
        ray_here = probe.options(num_cpus=0, resources={"node0": 0.01}).remote(through_ray.name, keys)
        ray_there = probe.options(num_cpus=0, resources={"node1": 0.01}).remote(through_ray.name, keys)
        ray_there_too = probe.options(num_cpus=0, resources={"node1": 0.01}).remote(through_ray.name, keys)
        probes = [here, there, ray_here, ray_there, ray_there_too]
        assert ray.get([p.node.remote() for p in probes]) == [node_ids[0], node_ids[1]] * 2 + [node_ids[1]]
        ray.get([p.pull.remote() for p in probes])  # warm-up: connections, first fetch
        times: dict[str, list[float]] = {
            k: [] for k in ("pull_same", "pull_other", "pull_other_ray", "pull_other_cached", "push_same", "push_other")
        }
        for step in range(1, repeats + 1):
            ray.get([here.push.remote("writer", 2 * step), ray_here.push.remote("writer", 2 * step)])  # new versions
            times["pull_same"].append(ray.get(here.pull.remote()))
            times["pull_other"].append(ray.get(there.pull.remote()))
            ray.get(ray_here.pull.remote())  # the store puts the new versions, as for the first pair
            times["pull_other_ray"].append(ray.get(ray_there.pull.remote()))
            times["pull_other_cached"].append(ray.get(ray_there_too.pull.remote()))
            times["push_same"].append(ray.get(here.push.remote("here", step)))
            times["push_other"].append(ray.get(there.push.remote("there", step)))
            ray.get([p.pull.remote() for p in probes])  # everyone up to date before the next round
        nbytes = ray.get(here.nbytes.remote())
        reads = {
            "direct (other node)": ray.get(there.reads.remote()),
            "ray (other node)": ray.get(ray_there.reads.remote()),
        }
        port = ray.get(here.tcp_serve.remote(nbytes))
        times["tcp_loopback"] = ray.get(there.tcp_send.remote(port, repeats))
        times["memcpy"] = ray.get(there.memcpy.remote(repeats))
        device = ray.get(there.device_copy.remote(repeats))
        info = store.info()
        store.kill()
        through_ray.kill()
    out = {
        "path": {"space": "MobileNetSpace", "params": params, "tensors": len(keys), "bytes": nbytes},
        "repeats": repeats,
        "store_duplicates": info["stats"]["duplicates"],
        "client_reads": reads,
        "timings": {k: summary(v) for k, v in times.items()},
        "raw_ms": times,
    }
    if device is not None:
        out["timings"]["host_to_device"] = summary(device)
    tcp = out["timings"]["tcp_loopback"]["p50_ms"]
    out["ratios_to_tcp"] = {k: v["p50_ms"] / tcp for k, v in out["timings"].items() if v}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster" / "cluster_transfer.json")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    result = measure(args.repeats)
    result["load_avg_1min"] = [load, os.getloadavg()[0]]  # the machine's load before and after the run
    write_json(args.out, result)
    labels = {
        "pull_same": "pull, same node (first after a push)",
        "pull_other": "pull, other node (the store's socket, the default)",
        "pull_other_ray": "pull, other node (Ray's object transfer, direct_reads=False)",
        "pull_other_cached": "pull, other node, version already on that node (Ray's transfer)",
        "push_same": "push, same node",
        "push_other": "push, other node",
        "memcpy": "memcpy",
        "tcp_loopback": "raw TCP over loopback, node to node",
        "host_to_device": "host to GPU copy",
    }
    rows = [
        (labels[k], v["p50_ms"], v["p90_ms"], v["min_ms"], result["ratios_to_tcp"][k])
        for k, v in result["timings"].items()
        if v
    ]
    path = result["path"]
    write_markdown(
        args.out.with_suffix(".md"),
        "Weight store: moving one path within and across nodes",
        ["operation", "p50 ms", "p90 ms", "min ms", "x TCP p50"],
        rows,
        notes=f"Path: {path['params'] / 1e6:.2f}M parameters in {path['tensors']} tensors "
        f"({path['bytes'] / 2**20:.1f} MiB float32), {result['repeats']} repeats; simulated "
        "two-node cluster on one machine (ray.cluster_utils), so 'other node' is a second "
        "raylet and object store over loopback. Machine load (1-min average) before / after: "
        "{:.1f} / {:.1f} on {} cores.".format(*result["load_avg_1min"], os.cpu_count()),
    )
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
