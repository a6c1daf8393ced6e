"""SE-NAS on the shared worker (``job["senas"]``, ``jobs.SENASJob``): expanded weights and Eq. (4)'s snapshots.

* Expanding (section 3.4): inside each merged slot group (``expanded``) every partial model (its ops at
  those slots) owns a private copy of that group's weights, kept in the store under
  ``<param>#g<slots>=<ops>`` and swapped into the network's modules for the steps that use it; shared
  weights serve the rest.
* Evaluation stability (Eq. 4): a training job takes ``snapshots`` spread over its last steps; an
  evaluation scores with the ``average`` of named snapshots (private copies averaged too); a job's
  ``drop_snapshots`` frees the ones no evaluation reads any more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from tune_spacenas.jobs import EVALUATE, TRAIN, SENASJob, SnapshotRequest
from tune_spacenas.spaces.base import Architecture
from tune_spacenas.store.table import variant_key
from tune_spacenas.trainables.extensions.base import JobContext, WorkerExtension, as_numpy, as_tensor, keep_pushed


class SENASExtension(WorkerExtension):
    def __init__(self, payload: Any):
        self.job: SENASJob = SENASJob.from_dict(payload)
        self.private: PrivateWeights | None = None
        self.snapshot_at: list[int] = []

    def begin(self, ctx: JobContext) -> None:
        if self.job.drop_snapshots:
            ctx.store.drop_snapshots(self.job.drop_snapshots)
        source = None
        if ctx.task == EVALUATE and self.job.average:
            source = ctx.store.average(self.job.average)
            _load_arrays(ctx, source)
        if ctx.task == TRAIN and self.job.snapshots is not None:
            self.snapshot_at = snapshot_steps(self.job.snapshots, ctx.steps)
        self.private = PrivateWeights(ctx, self.job, source)

    def sync_steps(self, ctx: JobContext) -> list[int]:
        return self.snapshot_at

    def before_step(self, ctx: JobContext, step: int, arch: Architecture) -> None:
        self.private.load(arch)

    def after_step(self, ctx: JobContext, step: int, arch: Architecture, touched: set[str]) -> set[str]:
        self.private.store_back(arch)
        return touched - self.private.keys

    def at_sync(self, ctx: JobContext) -> dict[str, np.ndarray]:
        return self.private.deltas()

    def synced(self, ctx: JobContext, step: int) -> None:
        self.private.rebase(ctx.last_push.kept if ctx.last_push is not None else {})
        if step in self.snapshot_at:
            ctx.store.snapshot(f"{self.job.snapshots.name}/{self.snapshot_at.index(step)}")

    def end(self, ctx: JobContext) -> None:
        if self.private is not None:
            self.private.release()


def snapshot_steps(request: SnapshotRequest, steps: int) -> list[int]:
    """K steps spread evenly over the job's last ``fraction`` (default: all of it), ending at the last step."""
    first = steps - int(steps * float(request.fraction)) + 1
    return sorted({int(round(s)) for s in np.linspace(first, steps, int(request.count) + 1)[1:]})


@torch.no_grad()
def _load_arrays(ctx: JobContext, arrays: Mapping[str, np.ndarray]) -> None:
    """Overwrite the network's parameters with ``arrays`` (averaged snapshots) until the next sync."""
    loaded = [key for key in arrays if key in ctx.params]
    for key in loaded:
        ctx.params[key].copy_(as_tensor(arrays[key]))
    ctx.release(loaded)


class PrivateWeights:
    """Section 3.4's private copies of one job.

    A copy a training job meets first is created in the store from the copy the same path trained under
    an earlier grouping (``expanded_from``, newest first), else from the shared tensor. Evaluations only
    read: a copy not created yet is read from that same source. With ``source`` (Eq. 4's
    snapshot-averaged arrays) copies come from it, not from the live store. In training each copy also
    keeps its own SGD momentum, so partial models stay independent within a trial too.
    """

    def __init__(self, ctx: JobContext, job: SENASJob, source: Mapping[str, np.ndarray] | None = None):
        self.ctx, self.optimizer, self.source = ctx, ctx.optimizer, source
        self.groups = [list(g) for g in job.expanded]
        self.history = [[list(g) for g in grouping] for grouping in job.expanded_from]
        self.local: dict[str, torch.Tensor] = {}
        self.base: dict[str, torch.Tensor] = {}
        self.momentum: dict[str, torch.Tensor | None] = {}
        self.occupant: dict[str, str] = {}  # module parameter -> the private copy it holds now
        self.versions: dict[str, int] = {}  # the store's version of each copy ``local`` holds (training)
        self.incarnation: str | None = None
        self.pushed: dict[str, torch.Tensor] = {}  # the deltas of the latest push, on the device

    @property
    def keys(self) -> set[str]:
        """Module parameters that are private (never pushed as shared deltas)."""
        return set(self.occupant)

    def _variants(self, arch: Architecture) -> dict[str, tuple[str, list[str]]]:
        """Private key -> (module parameter, where a new copy starts from) for the path ``arch``."""
        net, out = self.ctx.net, {}
        for group in self.groups:
            for slot in group:
                for param in net.choice_parameter_names(slot, arch[slot]):
                    earlier = [
                        variant_key(param, _tag(g, arch))
                        for grouping in self.history
                        for g in grouping
                        if slot in g and g != group
                    ]
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
        store = self.ctx.store
        if self.source is not None:
            arrays = {v: self.source[next(c for c in (v, *cands) if c in self.source)] for v, cands in sources.items()}
        else:
            if self.optimizer is not None:  # training: the copy becomes real in the store
                store.ensure_variants(sources)
                keys = {v: v for v in sources}
            else:
                keys = store.resolve(sources)
            incarnation, fresh = store.pull(None, sorted(set(keys.values())), None)
            if incarnation != self.incarnation:  # versions of another incarnation say nothing: fetch them anew
                self.incarnation, self.versions = incarnation, {}
            self.versions |= {v: fresh[v][0] for v, k in keys.items() if v == k}
            arrays = {v: fresh[k][1] for v, k in keys.items()}
        for key, array in arrays.items():
            self.local[key] = torch.as_tensor(np.array(array), device=self.ctx.device)
            self.base[key] = self.local[key].clone()

    def _swap_in(self, variant: str, param: str) -> None:
        tensor = self.ctx.params[param]
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
            self.local[key].copy_(self.ctx.params[param])

    def deltas(self) -> dict[str, np.ndarray]:
        self.pushed = {k: v - self.base[k] for k, v in self.local.items() if not torch.equal(v, self.base[k])}
        return {k: as_numpy(d) for k, d in self.pushed.items()}

    @torch.no_grad()
    def rebase(self, kept: Mapping[str, int]) -> None:
        """After the job's push: keep the copies the store kept (``keep_pushed``: bitwise the store's), fetch
        those another trial changed since, so concurrent trials' pushes count."""
        keep_pushed(kept, self.pushed, self.base, self.local, self.versions)
        self.pushed = {}
        if self.local:
            self.incarnation, fresh = self.ctx.store.pull(self.versions, list(self.local), self.incarnation)
            for key, (version, array) in fresh.items():
                self.local[key].copy_(as_tensor(array))
                self.base[key].copy_(self.local[key])
                self.versions[key] = version

    def release(self) -> None:
        """The modules hold private copies now: make the worker's next sync put the shared tensors back."""
        self.ctx.release(self.occupant)


def _tag(group: Sequence[int], arch: Architecture) -> str:
    """``g<slots>=<ops>``: which merged group, and which partial model of it."""
    return "g" + "-".join(map(str, group)) + "=" + "-".join(str(arch[s]) for s in group)
