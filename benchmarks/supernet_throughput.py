"""Supernet training throughput: Tune trials through the weight store vs a plain torch loop, side by side.

    python -m benchmarks.supernet_throughput --out benchmarks/results/supernet_throughput.json

Both train the same MobileNet-like supernet (width 1.0, a path of ~4-5M parameters, 16x16 CIFAR-10,
batch 64) the same way: a path sampled uniformly per step, SGD with Nesterov momentum. The plain loop
is one process using every core; the Tune side runs one single-threaded trial per core, each pulling
weights from the store, pushing deltas every ``--sync-every`` steps, with Tune's per-trial overhead
included (wall clock from the first trial's start to the last one's end). Also reported: the store's
mean pull and push times per sync inside those trials (both trials and the store actor share the cores),
the megabytes one sync moves (a push carries every tensor trained since the last sync, several paths'
worth, and a pull every tensor another trial changed), and a memcpy of one path and of the bytes one
sync moves: the floor any transfer pays. ``benchmarks.cluster_transfer`` times one path on an idle store.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import RESULTS, write_json, write_markdown
from tune_spacenas.data import DataSpec, DeviceData, load_data
from tune_spacenas.spaces import MobileNetSpace
from tune_spacenas.supernet.spec import SupernetSpec


def make_spec(resolution: int, batch_size: int) -> SupernetSpec:
    space = MobileNetSpace(width_mult=1.0, input_size=resolution, num_classes=10)
    return SupernetSpec(space, DataSpec("cifar10", resolution=resolution), batch_size=batch_size, lr=0.05)


def plain_loop(spec: SupernetSpec, seconds: float, device: str, threads: int) -> dict:
    """The reference: one process, one optimizer, no store."""
    torch.set_num_threads(threads)
    net = spec.build().to(device)
    data = DeviceData(load_data(spec.data), device)
    stream = data.train_stream(spec.batch_size, seed=0)
    opt = torch.optim.SGD(
        net.parameters(), lr=spec.lr, momentum=spec.momentum, nesterov=True, weight_decay=spec.weight_decay
    )
    rng = np.random.default_rng(0)
    loss_fn = torch.nn.CrossEntropyLoss()
    images, start, step = 0, None, 0
    while start is None or time.perf_counter() - start < seconds:
        if step == 2:  # two warm-up steps, then the clock starts
            _sync(device)
            start, images = time.perf_counter(), 0
        step += 1
        x, y = next(stream)
        loss = loss_fn(net(x, spec.space.sample(rng)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        images += len(y)
    _sync(device)
    return {"images_per_s": images / (time.perf_counter() - start)}


def tune_side(spec: SupernetSpec, trials: int, steps: int, sync_every: int, storage: str) -> dict:
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from tune_spacenas.jobs import train_job
    from tune_spacenas.searchers.base import ArchSearcher
    from tune_spacenas.store import SupernetStore
    from tune_spacenas.trainables import supernet_trainable

    class Train(ArchSearcher):
        def propose(self):
            self.issued = getattr(self, "issued", 0) + 1
            return train_job(steps, seed=self.issued, sync_every=sync_every) if self.issued <= trials else "FINISHED"

        def observe(self, job, result):
            pass

    store = SupernetStore.create("throughput", spec)
    cpus = int(ray.cluster_resources()["CPU"])
    start = time.perf_counter()
    analysis = tune.run(
        supernet_trainable,
        config=store.param_space(),
        metric="accuracy",
        mode="max",
        search_alg=ConcurrencyLimiter(Train(seed=0), cpus),
        num_samples=-1,
        reuse_actors=True,
        storage_path=storage,
        verbose=0,
    )
    wall = time.perf_counter() - start
    results = [t.last_result for t in analysis.trials]
    store.kill()
    return {
        "images_per_s": trials * steps * spec.batch_size / wall,
        "wall_s": wall,
        "trials": trials,
        "store_push_ms": float(np.mean([r["store_push_ms"] for r in results])),
        "store_pull_ms": float(np.mean([r["store_pull_ms"] for r in results])),
        "store_mb_per_sync": float(np.mean([r["store_mb_per_sync"] for r in results])),
        "per_trial_images_per_s": float(np.mean([r["images_per_s"] for r in results])),
    }


def memcpy_ms(spec: SupernetSpec) -> tuple[float, int]:
    """Mean time to copy one path's parameters (the bytes a pull or a push moves), and their count."""
    net = spec.build()
    params = dict(net.named_parameters())
    rng = np.random.default_rng(0)
    paths = [net.path_parameter_names(spec.space.sample(rng)) for _ in range(20)]
    count = int(np.mean([sum(params[n].numel() for n in p) for p in paths]))
    source = np.random.default_rng(0).random(count, dtype=np.float32)
    target = np.empty_like(source)
    times = []
    for _ in range(20):
        t = time.perf_counter()
        np.copyto(target, source)
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times)), count


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=90, help="plain loop's measuring time")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40, help="steps per Tune trial")
    parser.add_argument("--sync-every", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "supernet_throughput.json")
    args = parser.parse_args()

    import tempfile

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    spec = make_spec(args.resolution, args.batch_size)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    cpus = int(ray.cluster_resources()["CPU"])
    plain = plain_loop(spec, args.seconds, "cpu", threads=cpus)
    with tempfile.TemporaryDirectory() as storage:
        tuned = tune_side(spec, args.trials, args.steps, args.sync_every, storage)
    ray.shutdown()
    copy_ms, path_params = memcpy_ms(spec)
    sync_copy_ms = copy_ms * tuned["store_mb_per_sync"] * 2**20 / (4 * path_params)  # float32 bytes
    store_ms = tuned["store_pull_ms"] + tuned["store_push_ms"]
    payload = {
        "plain_images_per_s": plain["images_per_s"],
        "tune_images_per_s": tuned["images_per_s"],
        "ratio": tuned["images_per_s"] / plain["images_per_s"],
        "store_pull_ms": tuned["store_pull_ms"],
        "store_push_ms": tuned["store_push_ms"],
        "memcpy_ms": copy_ms,
        "path_params": path_params,
        "push_pull_over_memcpy": store_ms / copy_ms,
        "store_mb_per_sync": tuned["store_mb_per_sync"],
        "memcpy_sync_bytes_ms": sync_copy_ms,
        "push_pull_over_memcpy_same_bytes": store_ms / sync_copy_ms,
        "cpus": cpus,
        "tune": tuned,
        "setting": vars(args) | {"out": str(args.out)},
    }
    write_json(args.out, payload)
    write_markdown(
        args.out.with_suffix(".md"),
        "Supernet training throughput: Tune through the store vs a plain loop",
        [
            "plain img/s",
            "Tune img/s",
            "ratio",
            "pull ms",
            "push ms",
            "memcpy ms (one path)",
            "path params",
            "MB per sync",
            "memcpy ms (a sync's bytes)",
            "push+pull / memcpy (same bytes)",
        ],
        [
            [
                plain["images_per_s"],
                tuned["images_per_s"],
                payload["ratio"],
                tuned["store_pull_ms"],
                tuned["store_push_ms"],
                copy_ms,
                path_params,
                tuned["store_mb_per_sync"],
                sync_copy_ms,
                payload["push_pull_over_memcpy_same_bytes"],
            ]
        ],
        notes="Goals (issue 15): ratio >= 0.9; push + pull <= 5x a memcpy of the bytes one sync moves. Tune's side includes its per-trial "
        f"overhead ({args.trials} trials of {args.steps} steps, {cpus} at a time); pull and push "
        "are timed inside the trials, sharing the cores with the other trial and the store.",
    )
    print({k: v for k, v in payload.items() if k not in ("tune", "setting")})


if __name__ == "__main__":
    main()
