"""``SupernetWorker``: does one job (train or evaluate) on the shared supernet, without knowing Tune.

It pulls tensors from a store (the Ray actor's client, or a ``WeightTable`` in-process), trains or
evaluates on its device, and pushes weight deltas back. The Tune trainable (``trainables.supernet``)
and the in-process runner wrap the same worker, so a search gives the same answers with and without
Ray. One worker per process and store is cached, so ``reuse_actors=True`` pays the build once.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from tune_spacenas.data import DeviceData, load_data
from tune_spacenas.jobs import (ARCHS_KEY, DIVERGED_KEY, PER_ARCH_KEY, REPLAYED_KEY, STEPS_KEY, SUBSPACE_KEY, TRAIN,
                                archs_of, task_of, writer_of)
from tune_spacenas.spaces.base import ARCH_KEY, Architecture
from tune_spacenas.store.table import variant_key
from tune_spacenas.supernet.bn import recalibrate_batchnorm
from tune_spacenas.supernet.spec import SupernetSpec

Reporter = Callable[[dict[str, Any], int | None], None]


class StoreLike(Protocol):
    def pull(self, known: Mapping[str, int] | None = None, keys: Iterable[str] | None = None,
             incarnation: str | None = None) -> tuple[str, dict[str, tuple[int, np.ndarray]]]: ...
    def push(self, deltas: Mapping[str, np.ndarray], writer: str, step: int) -> bool: ...
    def progress(self, writer: str) -> tuple[int, dict[str, Any] | None]: ...
    def record_result(self, writer: str, result: Mapping[str, Any]) -> None: ...
    def ensure_variants(self, mapping: Mapping[str, Any]) -> list[str]: ...
    def resolve(self, mapping: Mapping[str, Any]) -> dict[str, str]: ...
    def snapshot(self, name: str) -> None: ...
    def average(self, names: Iterable[str]) -> dict[str, np.ndarray]: ...


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class SupernetWorker:
    """Trains and evaluates paths of one supernet against one store.

    Job keys it understands (besides those of ``tune_spacenas.jobs``):
      train:    ``steps``, ``subspace`` or ``arch``, ``lr``, ``seed``, ``sync_every`` (push/pull period
                in steps), ``snapshots`` (``{"name": prefix, "count": K, "fraction": f}``: K evenly
                spaced snapshots over the trial's last fraction f of steps, SE-NAS Eq. 4), ``expanded``
                (SE-NAS merged slot groups with private weights), ``expanded_from`` (earlier groupings,
                newest first: where new private copies start from), ``report_every``.
      evaluate: ``arch``/``archs``, ``weights`` (``{"average": [snapshot names]}``: private copies are
                averaged too), ``expanded``, ``expanded_from``,
                ``split`` ("val" or "test"), ``images`` (how many images score an architecture),
                ``madds_penalty`` (lambda: also report ``madds`` and AutoSpace Eq. 6's ``regularized_loss``).
      Supernets may read their own keys (``Supernet.begin_training``) and add to training reports
      (``Supernet.training_metrics``).
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

    # ------------------------------------------------------------------------------------------
    # Weights in and out
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sync(self, keys: Iterable[str] | None = None) -> int:
        """Load every tensor whose version changed in the store; returns how many were copied."""
        # Only the network's own tensors: the store also holds SE-NAS's private copies (``<param>#<tag>``).
        keys = list(self.params) if keys is None else keys
        self.incarnation, fresh = self.store.pull(self.versions, keys, self.incarnation)
        for key, (version, array) in fresh.items():
            self.params[key].copy_(_as_tensor(array), non_blocking=True)
            self.versions[key] = version
            self.pulled_bytes += array.nbytes
        return len(fresh)

    @torch.no_grad()
    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Overwrite parameters with given arrays (averaged snapshots); the next ``sync`` restores them."""
        for key, array in arrays.items():
            if key in self.params:
                self.params[key].copy_(_as_tensor(array))
                self.versions.pop(key, None)

    @torch.no_grad()
    def _deltas(self, base: Mapping[str, torch.Tensor], keys: Iterable[str]) -> dict[str, np.ndarray]:
        return {k: (self.params[k] - base[k]).cpu().numpy() for k in keys}

    # ------------------------------------------------------------------------------------------
    # Jobs
    # ------------------------------------------------------------------------------------------
    def run(self, job: Mapping[str, Any], trial_id: str = "local", report: Reporter | None = None,
            start_step: int = 0) -> dict[str, Any]:
        """Do ``job``; ``report(metrics, synced_step)`` is called along the way, the final result returned."""
        report = report or (lambda metrics, step: None)
        if task_of(job) == TRAIN:
            return self.train(job, trial_id, report, start_step)
        return self.evaluate(job, report)

    def train(self, job: Mapping[str, Any], trial_id: str, report: Reporter, start_step: int = 0) -> dict[str, Any]:
        """Train ``job``'s steps after ``start_step`` (a Tune checkpoint) and after the steps the store already
        applied for this job (a job issued again keeps its id: ``jobs.JOB_ID_KEY``); a job the store knows
        as finished is answered with its recorded result, without training.

        A step whose loss, or whose weights at a push, are not finite ends the job: nothing after its last
        push reaches the store, and the result reports ``loss``/``accuracy`` NaN with ``diverged_at_step``
        (searchers count the job failed).
        """
        spec, net = self.spec, self.net
        steps = int(job[STEPS_KEY])
        writer = writer_of(job, trial_id)
        applied, recorded = self.store.progress(writer)
        if recorded is not None or applied >= steps:
            return self._replay(recorded, applied, report)
        start_step = max(start_step, applied)
        subspace = self.space.restrict(job[SUBSPACE_KEY]) if SUBSPACE_KEY in job else self.space
        fixed = self.space.from_string(job[ARCH_KEY]) if ARCH_KEY in job else None
        sync_every = int(job.get("sync_every") or steps)
        report_every = int(job.get("report_every") or sync_every)
        snapshot_at = _snapshot_steps(job.get("snapshots"), steps)
        rng = np.random.default_rng([int(job.get("seed", 0)), start_step])
        stream = self.data.train_stream(spec.batch_size, seed=int(job.get("seed", 0)) * 100_003 + start_step)
        architecture = set(net.architecture_parameter_names())
        weights = [p for n, p in net.named_parameters() if n not in architecture]
        optimizer = torch.optim.SGD(weights, lr=float(job.get("lr", spec.lr)), momentum=spec.momentum,
                                    nesterov=spec.nesterov and spec.momentum > 0, weight_decay=spec.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        self.sync()
        base = {k: p.detach().clone() for k, p in self.params.items()}
        private = _PrivateWeights(self, job, optimizer)
        touched: set[str] = set()
        push_ms: list[float] = []
        pull_ms: list[float] = []
        moved_bytes = 0  # pushed and pulled in this job's syncs
        window_loss = window_correct = window_images = 0.0
        window_start = time.perf_counter()
        result: dict[str, Any] = {}
        net.train()
        net.begin_training(job)
        synced = None  # the last pushed step not yet reported: the next report checkpoints it
        pushed = start_step  # the last step in the store
        for step in range(start_step + 1, steps + 1):
            arch = fixed if fixed is not None else net.sample_path(subspace, rng)
            private.load(arch)
            x, y = next(stream)
            logits = net(x, arch)
            loss = loss_fn(logits, y)
            value = loss.item()
            if not math.isfinite(value):
                return self._diverged(writer, step, pushed, value, report, private)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if spec.grad_clip:
                nn.utils.clip_grad_norm_([p for p in weights if p.grad is not None], spec.grad_clip)
            optimizer.step()
            private.store_back(arch)
            touched.update(private.shared_names(arch))
            touched.update(net.after_step(self, step, arch, job))
            window_loss += value * len(y)
            window_correct += (logits.argmax(1) == y).sum().item()
            window_images += len(y)
            if step % sync_every == 0 or step == steps or step in snapshot_at:
                clock, pulled = time.perf_counter(), self.pulled_bytes
                deltas = self._deltas(base, touched - private.keys) | private.deltas()
                if not all(np.isfinite(d).all() for d in deltas.values()):  # the step blew the weights up
                    return self._diverged(writer, step, pushed, value, report, private)
                self.store.push(deltas, writer, step)
                pushed = step
                push_ms.append(1e3 * (time.perf_counter() - clock))
                clock = time.perf_counter()
                self.sync()
                pull_ms.append(1e3 * (time.perf_counter() - clock))
                moved_bytes += sum(a.nbytes for a in deltas.values()) + self.pulled_bytes - pulled
                base = {k: p.detach().clone() for k, p in self.params.items()}
                private.rebase()
                touched, synced = set(), step
                if step in snapshot_at:
                    self.store.snapshot(f"{job['snapshots']['name']}/{snapshot_at.index(step)}")
            if step % report_every == 0 or step == steps:
                elapsed = time.perf_counter() - window_start
                result = {"loss": window_loss / window_images, "accuracy": 100.0 * window_correct / window_images,
                          "images_per_s": window_images / elapsed, "steps_done": step,
                          "store_push_ms": float(np.mean(push_ms)) if push_ms else 0.0,
                          "store_pull_ms": float(np.mean(pull_ms)) if pull_ms else 0.0,
                          "store_mb_per_sync": moved_bytes / 2**20 / len(push_ms) if push_ms else 0.0,
                          **net.training_metrics()}
                if step == steps:
                    self.store.record_result(writer, result)
                report(result, synced)
                synced = None
                window_loss = window_correct = window_images = 0.0
                window_start = time.perf_counter()
        private.release()
        return result

    def _replay(self, recorded: Mapping[str, Any] | None, applied: int, report: Reporter) -> dict[str, Any]:
        """A job the store has done already: its recorded result, or, if the driver died between the job's
        last push and that record, NaN metrics (its steps count, what it learned is unknown)."""
        result = dict(recorded) if recorded is not None else {"loss": math.nan, "accuracy": math.nan,
                                                               "steps_done": applied}
        result[REPLAYED_KEY] = True
        report(result, None)
        return result

    def _diverged(self, writer: str, step: int, pushed: int, loss: float, report: Reporter,
                  private: "_PrivateWeights") -> dict[str, Any]:
        """Training went non-finite at ``step``: stop, push nothing more, forget the unpushed local weights."""
        private.release()
        self.versions.clear()  # the next job pulls every tensor again instead of training on these
        result = {"loss": math.nan, "accuracy": math.nan, DIVERGED_KEY: step, "steps_done": pushed,
                  "diverged_loss": loss}
        self.store.record_result(writer, result)
        report(result, None)
        return result

    @torch.no_grad()
    def evaluate(self, job: Mapping[str, Any], report: Reporter) -> dict[str, Any]:
        archs = archs_of(self.space, job)
        self.sync()
        averaged = self.store.average(job["weights"]["average"]) if "weights" in job else None
        if averaged is not None:
            self.load_arrays(averaged)
        private = _PrivateWeights(self, job, source=averaged)
        start = time.perf_counter()
        recal = self.recalibration_batches()
        per_arch = []
        for arch in archs:
            private.load(arch)
            scores = self.score(arch, job.get("split", "val"), job.get("images"), recal)
            if "madds_penalty" in job:  # AutoSpace Eq. (6): Loss = Loss_CE + lambda * MAdds(N)
                madds = self.space.cost(arch).madds
                scores |= {"madds": madds, "regularized_loss": scores["loss"] + float(job["madds_penalty"]) * madds}
            per_arch.append(scores)
        private.release()
        if "weights" in job:
            self.sync()  # put the live weights back for the next job on this worker
        elapsed = time.perf_counter() - start
        result = {"accuracy": float(np.mean([r["accuracy"] for r in per_arch])), "evaluated": len(archs),
                  "seconds_per_arch": elapsed / len(archs)}
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
    def score(self, arch: Architecture, split: str = "val", images: int | None = None,
              recal: Sequence[torch.Tensor] | None = None) -> dict[str, float]:
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
        return {"accuracy": 100.0 * correct / total, "loss": loss / total}


class _PrivateWeights:
    """SE-NAS expanded parameters (3.4): inside each merged slot group (job key ``expanded``), every
    partial model (its ops at those slots) owns a private copy of that group's weights, kept under
    ``<param>#g<slots>=<ops>`` in the store and swapped into the network's modules for the steps that
    use it; shared weights serve the rest.

    A copy a training job meets first is created in the store from the copy the same path trained under
    an earlier grouping (job key ``expanded_from``, newest first), else from the shared tensor.
    Evaluations only read: a copy not created yet is read from that same source. With ``source``
    (Eq. 4's snapshot-averaged arrays) copies come from it, not from the live store. In training each
    copy also keeps its own SGD momentum, so partial models stay independent within a trial too.
    """

    def __init__(self, worker: SupernetWorker, job: Mapping[str, Any], optimizer: torch.optim.Optimizer | None = None,
                 source: Mapping[str, np.ndarray] | None = None):
        self.worker, self.optimizer, self.source = worker, optimizer, source
        self.groups = [list(g) for g in job.get("expanded", [])]
        self.history = [[list(g) for g in grouping] for grouping in job.get("expanded_from", [])]
        self.local: dict[str, torch.Tensor] = {}
        self.base: dict[str, torch.Tensor] = {}
        self.momentum: dict[str, torch.Tensor | None] = {}
        self.occupant: dict[str, str] = {}  # module parameter -> the private copy it holds now

    @property
    def keys(self) -> set[str]:
        """Module parameters that are private (never pushed as shared deltas)."""
        return set(self.occupant)

    def _variants(self, arch: Architecture) -> dict[str, tuple[str, list[str]]]:
        """Private key -> (module parameter, where a new copy starts from) for the path ``arch``."""
        net, out = self.worker.net, {}
        for group in self.groups:
            for slot in group:
                for param in net.choice_parameter_names(slot, arch[slot]):
                    earlier = [variant_key(param, _tag(g, arch)) for grouping in self.history for g in grouping
                               if slot in g and g != group]
                    out[variant_key(param, _tag(group, arch))] = (param, [*earlier, param])
        return out

    @torch.no_grad()
    def load(self, arch: Architecture) -> None:
        if not self.groups:
            return
        variants = self._variants(arch)
        missing = {v: sources for v, (_, sources) in variants.items() if v not in self.local}
        if missing:
            self._fetch(missing)
        for variant, (param, _) in variants.items():
            self._swap_in(variant, param)

    def _fetch(self, sources: Mapping[str, list[str]]) -> None:
        store = self.worker.store
        if self.source is not None:
            arrays = {v: self.source[next(c for c in (v, *cands) if c in self.source)] for v, cands in sources.items()}
        else:
            if self.optimizer is not None:  # training: the copy becomes real in the store
                store.ensure_variants(sources)
                keys = {v: v for v in sources}
            else:
                keys = store.resolve(sources)
            _, fresh = store.pull(None, sorted(set(keys.values())), None)
            arrays = {v: fresh[k][1] for v, k in keys.items()}
        for key, array in arrays.items():
            self.local[key] = torch.as_tensor(np.array(array), device=self.worker.device)
            self.base[key] = self.local[key].clone()

    def _swap_in(self, variant: str, param: str) -> None:
        tensor = self.worker.params[param]
        if self.optimizer is not None and self.occupant.get(param) != variant:
            state = self.optimizer.state[tensor]
            if param in self.occupant:
                self.momentum[self.occupant[param]] = state.pop("momentum_buffer", None)
            buffer = self.momentum.pop(variant, None)
            if buffer is None:
                state.pop("momentum_buffer", None)
            else:
                state["momentum_buffer"] = buffer
        self.occupant[param] = variant
        tensor.copy_(self.local[variant])

    @torch.no_grad()
    def store_back(self, arch: Architecture) -> None:
        """Copy the trained private weights out of the modules after a step."""
        for key, (param, _) in self._variants(arch).items():
            self.local[key].copy_(self.worker.params[param])

    def shared_names(self, arch: Architecture) -> list[str]:
        """The path's parameters that are shared (not private to a partial model)."""
        private = {param for param, _ in self._variants(arch).values()} if self.groups else set()
        return [n for n in self.worker.net.path_parameter_names(arch) if n not in private]

    def deltas(self) -> dict[str, np.ndarray]:
        return {k: (v - self.base[k]).cpu().numpy() for k, v in self.local.items() if not torch.equal(v, self.base[k])}

    def rebase(self) -> None:
        # Private copies are trained by this trial only between syncs; refetch so concurrent trials' pushes count.
        if self.local:
            _, fresh = self.worker.store.pull(None, list(self.local), None)
            for key, (_, array) in fresh.items():
                self.local[key].copy_(_as_tensor(array))
                self.base[key] = self.local[key].clone()

    def release(self) -> None:
        """The modules hold private copies now: make the worker's next ``sync`` put the shared tensors back."""
        for param in self.occupant:
            self.worker.versions.pop(param, None)


def _tag(group: Sequence[int], arch: Architecture) -> str:
    """``g<slots>=<ops>``: which merged group, and which partial model of it."""
    return "g" + "-".join(map(str, group)) + "=" + "-".join(str(arch[s]) for s in group)


def _snapshot_steps(snapshots: Mapping[str, Any] | None, steps: int) -> list[int]:
    """K steps spread evenly over the trial's last ``fraction`` (default: all of it), ending at the last step."""
    if not snapshots:
        return []
    count = int(snapshots["count"])
    first = steps - int(steps * float(snapshots.get("fraction", 1.0))) + 1
    return sorted({int(round(s)) for s in np.linspace(first, steps, count + 1)[1:]})


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor viewing ``array`` without a copy. Object-store arrays are read-only, which torch
    warns about; the tensor is only ever the source of a ``copy_``, so the warning is silenced here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.asarray(array))
