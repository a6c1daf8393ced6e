"""Supernet training throughput on the GPU: the trainable's worker (pulling from and pushing deltas to an
in-process weight table every 20 steps) vs a plain torch loop on the same MobileNet-like supernet
(width 1.0, paths of ~4-5M parameters, 32x32 CIFAR-10, batch 256), and the sync's share of the
worker's step time (push + pull per sync over ``SYNC_EVERY`` steps' wall time). The Tune-driven CPU comparison, with
Ray's object store in between, is ``benchmarks.supernet_throughput``."""

from __future__ import annotations

from benchmarks.gpu.data import cifar10, device
from benchmarks.supernet_throughput import plain_loop

SYNC_EVERY = 20


def run(budget_s: float, smoke: bool) -> dict:
    from tune_spacenas.jobs import train_job
    from tune_spacenas.runner import InProcessSupernet
    from tune_spacenas.spaces import MobileNetSpace
    from tune_spacenas.supernet.spec import SupernetSpec

    where = device()
    space = MobileNetSpace(width_mult=0.25 if smoke else 1.0, input_size=16 if smoke else 32, num_classes=10)
    spec = SupernetSpec(space, cifar10(smoke), batch_size=32 if smoke else 256, lr=0.05)
    plain = plain_loop(spec, 0.35 * budget_s, where, threads=4)
    runner = InProcessSupernet(spec, where)
    probe = runner(train_job(SYNC_EVERY, seed=1, sync_every=SYNC_EVERY))
    steps = max(SYNC_EVERY, int(0.35 * budget_s * probe["images_per_s"] / spec.batch_size) // SYNC_EVERY * SYNC_EVERY)
    result = runner(train_job(steps, seed=2, sync_every=SYNC_EVERY, report_every=steps))
    step_ms = 1e3 * spec.batch_size / result["images_per_s"]  # one step, its share of syncs included
    sync_ms = result["store_push_ms"] + result["store_pull_ms"]
    return {
        "device": where,
        "supernet": f"MobileNet-like width {space.width_mult}, {space.input_size}x{space.input_size}",
        "batch_size": spec.batch_size,
        "plain_images_per_s": plain["images_per_s"],
        "worker_images_per_s": result["images_per_s"],
        "ratio": result["images_per_s"] / plain["images_per_s"],
        "sync_every": SYNC_EVERY,
        "store_push_ms": result["store_push_ms"],
        "store_pull_ms": result["store_pull_ms"],
        "steps": steps,
        "step_ms": step_ms,
        "sync_ms": sync_ms,
        "sync_share_of_step_time": sync_ms / (SYNC_EVERY * step_ms),
    }
