"""``SupernetWorker``: does one job (train or evaluate) on the shared supernet, without knowing Tune or any method.

It pulls tensors from a store (the Ray actor's client, or a ``WeightTable`` in-process), trains or
evaluates on its device, and pushes weight deltas back. The Tune trainable (``trainables.supernet``)
and the in-process runner wrap the same worker, so a search gives the same answers with and without
Ray. One worker per process and store is cached, so ``reuse_actors=True`` pays the build once.

What a method adds to a job (SE-NAS's private weights and snapshots, NSE's fitness update, AutoSpace's
generations and MAdds penalty) comes in through the extensions registered for the job's namespaces
(``trainables.extensions``); the worker only calls their hooks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from tune_spacenas.data import DeviceData, load_data
from tune_spacenas.jobs import (
    ACCURACY,
    ARCH_KEY,
    ARCHS_KEY,
    DIVERGED_KEY,
    DIVERGED_LOSS,
    EVALUATE,
    EVALUATED,
    IMAGES_KEY,
    IMAGES_PER_S,
    LOSS,
    LR_KEY,
    PER_ARCH_KEY,
    REPLAYED_KEY,
    REPORT_EVERY_KEY,
    SECONDS_PER_ARCH,
    SEED_KEY,
    SPLIT_KEY,
    STEPS_DONE,
    STEPS_KEY,
    STORE_MB_PER_SYNC,
    STORE_PULL_MS,
    STORE_PUSH_MS,
    SUBSPACE_KEY,
    SYNC_EVERY_KEY,
    TRAIN,
    archs_of,
    task_of,
    writer_of,
)
from tune_spacenas.spaces.base import Architecture, SearchSpace
from tune_spacenas.store.table import PushReceipt
from tune_spacenas.supernet.bn import recalibrate_batchnorm
from tune_spacenas.supernet.spec import SupernetSpec
from tune_spacenas.trainables.extensions import JobContext, WorkerExtension, extensions_for
from tune_spacenas.trainables.extensions.base import ExtensionStore, as_tensor, keep_pushed

Reporter = Callable[[dict[str, Any], int | None], None]


class StoreLike(ExtensionStore, Protocol):
    def push(
        self,
        deltas: Mapping[str, np.ndarray],
        writer: str,
        step: int,
        known: Mapping[str, int] | None = None,
        incarnation: str | None = None,
    ) -> PushReceipt: ...
    def progress(self, writer: str) -> tuple[int, dict[str, Any] | None]: ...
    def record_result(self, writer: str, result: Mapping[str, Any]) -> None: ...


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class SupernetWorker:
    """Trains and evaluates paths of one supernet against one store.

    A job is a trial config of ``tune_spacenas.jobs``: ``train`` (``steps``, ``subspace`` or ``arch``,
    ``lr``, ``seed``, ``sync_every``, ``report_every``) or ``evaluate`` (``arch``/``archs``, ``split``,
    ``images``); a method's payload under its namespace runs that method's ``WorkerExtension``.
    """

    def __init__(self, spec: SupernetSpec, store: StoreLike, device: torch.device | str | None = None):
        self.spec, self.store = spec, store
        self.space = spec.space.full_space()
        self.device = torch.device(device) if device is not None else default_device()
        self.net = spec.build().to(self.device)
        self.params = dict(self.net.named_parameters())
        self.data = DeviceData(load_data(spec.data), self.device, augment=spec.data.augment)
        self.versions: dict[str, int] = {}
        self.incarnation: str | None = None
        self.pulled_bytes = 0  # bytes ``sync`` brought in so far (the throughput benchmark's accounting)
        self._delta_buffers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # (device, host) per tensor

    # ------------------------------------------------------------------------------------------
    # Weights in and out
    # ------------------------------------------------------------------------------------------
    def sync(self, keys: Iterable[str] | None = None) -> int:
        """Load every tensor whose version changed in the store; returns how many were copied."""
        return len(self.pull_changed(keys))

    @torch.no_grad()
    def pull_changed(self, keys: Iterable[str] | None = None) -> list[str]:
        """Load every tensor (of ``keys``, default all the network's) whose version moved; returns their names."""
        # Only the network's own tensors: the store also holds SE-NAS's private copies (``<param>#<tag>``).
        keys = list(self.params) if keys is None else keys
        self.incarnation, fresh = self.store.pull(self.versions, keys, self.incarnation)
        for key, (version, array) in fresh.items():
            self.params[key].copy_(as_tensor(array), non_blocking=True)
            self.versions[key] = version
            self.pulled_bytes += array.nbytes
        return list(fresh)

    def release(self, names: Iterable[str]) -> None:
        """These parameters hold tensors that are not the store's now: the next ``sync`` reloads them."""
        for name in names:
            self.versions.pop(name, None)

    @torch.no_grad()
    def deltas(
        self, base: Mapping[str, torch.Tensor], keys: Iterable[str]
    ) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
        """``params - base`` for ``keys``: on the device (what ``keep_pushed`` adds to the base) and as numpy
        (what a push carries; on the CPU the same memory). Both live in buffers reused from sync to sync, so a
        sync allocates nothing (fresh large buffers cost page faults); on a GPU the host side is pinned.
        The numpy arrays are valid until the next call: a push copies them (Ray's object store, or the
        in-process table's addition) before it returns."""
        on_device, on_host = {}, {}
        for key in keys:
            device_buffer, host_buffer = self._delta_buffer(key)
            torch.sub(self.params[key], base[key], out=device_buffer)
            if host_buffer is not device_buffer:
                host_buffer.copy_(device_buffer, non_blocking=True)
            on_device[key], on_host[key] = device_buffer, host_buffer.numpy()
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()  # the host copies are complete
        return on_device, on_host

    def _delta_buffer(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        if key not in self._delta_buffers:
            param = self.params[key]
            device_buffer = torch.empty_like(param, requires_grad=False)
            host_buffer = (
                device_buffer
                if param.device.type == "cpu"
                else torch.empty(param.shape, dtype=param.dtype, pin_memory=torch.cuda.is_available())
            )
            self._delta_buffers[key] = (device_buffer, host_buffer)
        return self._delta_buffers[key]

    def context(
        self, task: str, seed: int, steps: int, subspace: SearchSpace, optimizer: torch.optim.Optimizer | None = None
    ) -> JobContext:
        """What this job offers its extensions (never the worker itself)."""
        return JobContext(
            task=task,
            spec=self.spec,
            net=self.net,
            params=self.params,
            data=self.data,
            device=self.device,
            store=self.store,
            seed=seed,
            steps=steps,
            subspace=subspace,
            release=self.release,
            optimizer=optimizer,
        )

    # ------------------------------------------------------------------------------------------
    # Jobs
    # ------------------------------------------------------------------------------------------
    def run(
        self, job: Mapping[str, Any], trial_id: str = "local", report: Reporter | None = None, start_step: int = 0
    ) -> dict[str, Any]:
        """Do ``job``; ``report(metrics, synced_step)`` is called along the way, the final result returned."""
        report = report or (lambda metrics, step: None)
        if task_of(job) == TRAIN:
            return self.train(job, trial_id, report, start_step)
        return self.evaluate(job, report)

    def train(self, job: Mapping[str, Any], trial_id: str, report: Reporter, start_step: int = 0) -> dict[str, Any]:
        """Steps after ``start_step`` (a Tune checkpoint) and after the steps the store already applied for
        this job (a job issued again keeps its id: ``jobs.JOB_ID_KEY``) up to ``job["steps"]``: a push and
        pull every ``sync_every`` steps (and where an extension asks), a report every ``report_every`` steps,
        naming the last synced step. A job the store knows as finished is answered with its recorded
        result, without training.

        A step whose loss, or whose weights at a push, are not finite ends the job: nothing after its last
        push reaches the store, and the result reports ``loss``/``accuracy`` NaN with ``diverged_at_step``
        (searchers count the job failed).
        """
        steps, writer = int(job[STEPS_KEY]), writer_of(job, trial_id)
        applied, recorded = self.store.progress(writer)
        if recorded is not None or applied >= steps:
            return self._replay(recorded, applied, report)
        training = _TrainingJob(self, job, writer, max(start_step, applied))
        self.sync()
        training.rebase()
        self.net.train()
        try:
            with _extensions_running(training.extensions, training.ctx):
                extra_syncs = {s for e in training.extensions for s in e.sync_steps(training.ctx)}
                for step in range(training.start_step + 1, steps + 1):
                    training.step(step)
                    if step % training.sync_every == 0 or step == steps or step in extra_syncs:
                        training.sync(step)
                    if step % training.report_every == 0 or step == steps:
                        result = training.report(step)
                        if step == steps:
                            self.store.record_result(writer, result)
                        report(result, training.take_synced())
        except _Diverged as diverged:
            return self._diverged(writer, diverged, training.pushed, report)
        return training.result

    def _replay(self, recorded: Mapping[str, Any] | None, applied: int, report: Reporter) -> dict[str, Any]:
        """A job the store has done already: its recorded result, or, if the driver died between the job's
        last push and that record, NaN metrics (its steps count, what it learned is unknown)."""
        result = dict(recorded) if recorded is not None else {LOSS: math.nan, ACCURACY: math.nan, STEPS_DONE: applied}
        result[REPLAYED_KEY] = True
        report(result, None)
        return result

    def _diverged(self, writer: str, diverged: _Diverged, pushed: int, report: Reporter) -> dict[str, Any]:
        """Training went non-finite: push nothing more and forget the unpushed local weights."""
        self.versions.clear()  # the next job pulls every tensor again instead of training on these
        result = {
            LOSS: math.nan,
            ACCURACY: math.nan,
            DIVERGED_KEY: diverged.step,
            STEPS_DONE: pushed,
            DIVERGED_LOSS: diverged.loss,
        }
        self.store.record_result(writer, result)
        report(result, None)
        return result

    @torch.no_grad()
    def evaluate(self, job: Mapping[str, Any], report: Reporter) -> dict[str, Any]:
        """Score every architecture the job names (BatchNorm recalibrated on the same batches for each)."""
        archs = archs_of(self.space, job)
        self.sync()
        ctx = self.context(EVALUATE, int(job.get(SEED_KEY, 0)), 0, self.space)
        extensions = extensions_for(job)
        per_arch = []
        with _extensions_running(extensions, ctx):
            start = time.perf_counter()
            recal = self.recalibration_batches()
            for index, arch in enumerate(archs):
                for extension in extensions:
                    extension.before_step(ctx, index, arch)
                scores = self.score(arch, job.get(SPLIT_KEY, "val"), job.get(IMAGES_KEY), recal)
                for extension in extensions:
                    scores |= extension.arch_metrics(ctx, arch, scores)
                per_arch.append(scores)
        elapsed = time.perf_counter() - start
        result = {
            ACCURACY: float(np.mean([r[ACCURACY] for r in per_arch])),
            EVALUATED: len(archs),
            SECONDS_PER_ARCH: elapsed / len(archs),
        }
        if ARCHS_KEY in job:
            result[PER_ARCH_KEY] = {key: [r[key] for r in per_arch] for key in per_arch[0]}
        else:
            result.update(per_arch[0])
        report(result, None)
        return result

    def recalibration_batches(self) -> list[torch.Tensor]:
        """The same training batches for every architecture, so recalibration treats them alike."""
        batches = self.data.fixed_batches("train", self.spec.batch_size, self.spec.recalibration_batches, seed=0)
        return [x for x, _ in batches]

    @torch.no_grad()
    def score(
        self,
        arch: Architecture,
        split: str = "val",
        images: int | None = None,
        recal: Sequence[torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """Accuracy (percent) and loss of one path after BatchNorm recalibration on fixed train batches."""
        spec = self.spec
        recalibrate_batchnorm(self.net, lambda x: self.net(x, arch), recal or self.recalibration_batches())
        images = images if images is not None else spec.eval_images
        count = None if images is None else max(1, -(-images // spec.eval_batch_size))
        correct = total = loss = 0.0
        for x, y in self.data.fixed_batches(split, spec.eval_batch_size, count):
            if images is not None and total + len(y) > images:
                x, y = x[: images - int(total)], y[: images - int(total)]
            logits = self.net(x, arch)
            correct += (logits.argmax(1) == y).sum().item()
            loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            total += len(y)
        return {ACCURACY: 100.0 * correct / total, LOSS: loss / total}


class _TrainingJob:
    """One training job's state between its steps, syncs and reports."""

    def __init__(self, worker: SupernetWorker, job: Mapping[str, Any], writer: str, start_step: int):
        spec, net = worker.spec, worker.net
        self.worker, self.writer, self.start_step = worker, writer, start_step
        self.steps = int(job[STEPS_KEY])
        seed = int(job.get(SEED_KEY, 0))
        self.subspace = worker.space.restrict(job[SUBSPACE_KEY]) if SUBSPACE_KEY in job else worker.space
        self.fixed = worker.space.from_string(job[ARCH_KEY]) if ARCH_KEY in job else None
        self.sync_every = int(job.get(SYNC_EVERY_KEY) or self.steps)
        self.report_every = int(job.get(REPORT_EVERY_KEY) or self.sync_every)
        self.rng = np.random.default_rng([seed, start_step])
        self.stream = worker.data.train_stream(spec.batch_size, seed=seed * 100_003 + start_step)
        architecture = set(net.architecture_parameter_names())
        self.weights = [p for n, p in net.named_parameters() if n not in architecture]
        self.optimizer = torch.optim.SGD(
            self.weights,
            lr=float(job.get(LR_KEY, spec.lr)),
            momentum=spec.momentum,
            nesterov=spec.nesterov and spec.momentum > 0,
            weight_decay=spec.weight_decay,
        )
        self.ctx = worker.context(TRAIN, seed, self.steps, self.subspace, self.optimizer)
        self.extensions: list[WorkerExtension] = extensions_for(job)
        self.loss_fn = nn.CrossEntropyLoss()
        self.base: dict[str, torch.Tensor] = {}
        self.touched: set[str] = set()
        self.push_ms: list[float] = []
        self.pull_ms: list[float] = []
        self.moved_bytes = 0  # pushed and pulled in this job's syncs
        self.synced: int | None = None  # the last pushed step not yet reported: the next report checkpoints it
        self.pushed = start_step  # the last step in the store
        self.result: dict[str, Any] = {}
        self._open_window()

    def _open_window(self) -> None:
        self.window_loss = self.window_correct = self.window_images = 0.0
        self.window_start = time.perf_counter()

    def rebase(self, keys: Iterable[str] | None = None) -> None:
        """The weights now are what the next deltas are measured from (of ``keys``; default: all)."""
        params = self.worker.params
        for key in params if keys is None else keys:
            if key in self.base:
                self.base[key].copy_(params[key])
            else:
                self.base[key] = params[key].detach().clone()

    def step(self, step: int) -> None:
        """One SGD step on one path (sampled, or the job's fixed ``arch``)."""
        net, ctx = self.worker.net, self.ctx
        arch = self.fixed if self.fixed is not None else net.sample_path(self.subspace, self.rng)
        for extension in self.extensions:
            extension.before_step(ctx, step, arch)
        x, y = next(self.stream)
        logits = net(x, arch)
        loss = self.loss_fn(logits, y)
        value = loss.item()
        if not math.isfinite(value):
            raise _Diverged(step, value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.worker.spec.grad_clip:
            nn.utils.clip_grad_norm_([p for p in self.weights if p.grad is not None], self.worker.spec.grad_clip)
        self.optimizer.step()
        touched = set(net.path_parameter_names(arch))
        for extension in self.extensions:
            touched = extension.after_step(ctx, step, arch, touched)
        self.touched |= touched
        self.last_loss = value
        self.window_loss += value * len(y)
        self.window_correct += (logits.argmax(1) == y).sum().item()
        self.window_images += len(y)

    def sync(self, step: int) -> None:
        """Push the deltas since the last sync as (job, step); keep what the store kept (bitwise its tensors,
        no pull back), pull what others changed."""
        worker = self.worker
        clock, pulled = time.perf_counter(), worker.pulled_bytes
        shared, deltas = worker.deltas(self.base, self.touched)
        if not _all_finite(shared.values()):  # the step blew the weights up
            raise _Diverged(step, self.last_loss)
        for extension in self.extensions:
            deltas |= extension.at_sync(self.ctx)
        if not all(np.isfinite(d).all() for k, d in deltas.items() if k not in shared):
            raise _Diverged(step, self.last_loss)
        receipt = worker.store.push(deltas, self.writer, step, known=worker.versions, incarnation=worker.incarnation)
        keep_pushed(receipt.kept, shared, self.base, worker.params, worker.versions)
        self.pushed = step
        self.moved_bytes += sum(a.nbytes for a in deltas.values())
        self.push_ms.append(1e3 * (time.perf_counter() - clock))
        clock = time.perf_counter()
        fresh = worker.pull_changed()
        self.rebase(fresh)
        self.pull_ms.append(1e3 * (time.perf_counter() - clock))
        self.moved_bytes += worker.pulled_bytes - pulled
        self.ctx.last_push = receipt
        for extension in self.extensions:
            extension.synced(self.ctx, step)
        self.touched, self.synced = set(), step

    def report(self, step: int) -> dict[str, Any]:
        """The metrics of the steps since the last report."""
        elapsed = time.perf_counter() - self.window_start
        syncs = len(self.push_ms)
        self.result = {
            LOSS: self.window_loss / self.window_images,
            ACCURACY: 100.0 * self.window_correct / self.window_images,
            IMAGES_PER_S: self.window_images / elapsed,
            STEPS_DONE: step,
            STORE_PUSH_MS: float(np.mean(self.push_ms)) if syncs else 0.0,
            STORE_PULL_MS: float(np.mean(self.pull_ms)) if syncs else 0.0,
            STORE_MB_PER_SYNC: self.moved_bytes / 2**20 / syncs if syncs else 0.0,
        }
        for extension in self.extensions:
            self.result |= extension.metrics(self.ctx)
        self._open_window()
        return self.result

    def take_synced(self) -> int | None:
        """The step a report made now may checkpoint (the last sync since the previous report), once."""
        synced, self.synced = self.synced, None
        return synced


def _all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Every element finite (one device synchronisation for all tensors)."""
    flags = [torch.isfinite(t).all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True


class _Diverged(Exception):
    """A training step whose loss, or whose weights at a push, are not finite."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"training diverged at step {step} (loss {loss})")
        self.step, self.loss = step, loss


@contextmanager
def _extensions_running(extensions: Sequence[WorkerExtension], ctx: JobContext) -> Iterator[None]:
    """``begin`` every extension, and ``end`` every one however the job ends."""
    try:
        for extension in extensions:
            extension.begin(ctx)
        yield
    finally:
        for extension in extensions:
            extension.end(ctx)
