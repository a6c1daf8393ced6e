"""How a method plugs into the shared worker: a ``WorkerExtension`` registered for its job namespace.

The worker knows no method. When a job carries a payload under a registered namespace (``job["senas"]``,
``job["nse"]``, ``job["autospace"]``; see ``tune_spacenas.jobs``), the worker builds that namespace's
extension for the job and calls its hooks at fixed points of the job, handing it a ``JobContext``: the
job's data, spec, network, parameters, optimizer and a narrow store handle, never the worker itself.

One training job, with the hooks in order::

    begin(ctx)                                       the job starts (weights synced)
    for step in 1..steps:
        arch = fixed or net.sample_path(subspace, rng)
        before_step(ctx, step, arch)                 e.g. swap private weight copies in
        forward, backward, SGD step
        touched = after_step(ctx, step, arch, touched)   parameters to push as shared deltas
        at a sync step (sync_every, the last, or one of sync_steps(ctx)):
            push(shared deltas | at_sync(ctx)); pull; synced(ctx, step)
        at a report step: report(metrics | metrics(ctx))
    end(ctx)                                         always, also when the job fails

An evaluation job calls ``begin``, then per architecture ``before_step(ctx, index, arch)`` and
``arch_metrics(ctx, arch, scores)``, then ``end``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

if TYPE_CHECKING:
    from tune_spacenas.data import DeviceData
    from tune_spacenas.spaces.base import Architecture, SearchSpace
    from tune_spacenas.store.table import PushReceipt
    from tune_spacenas.supernet.base import Supernet
    from tune_spacenas.supernet.spec import SupernetSpec


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor viewing ``array`` without a copy. Object-store arrays are read-only, which torch
    warns about; the tensor is only ever the source of a ``copy_``, so the warning is silenced here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.asarray(array))


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as numpy: a view on the CPU, a copy to the host from a GPU."""
    return tensor.detach().cpu().numpy()


@torch.no_grad()
def keep_pushed(
    kept: Mapping[str, int],
    deltas: Mapping[str, torch.Tensor],
    base: Mapping[str, torch.Tensor],
    current: Mapping[str, torch.Tensor],
    versions: dict[str, int],
) -> list[str]:
    """After a push of ``deltas`` (``current - base``): each tensor the store kept (``PushReceipt.kept``)
    becomes ``base + delta``, by the store's own float32 addition, so bitwise the store's tensor, at the
    store's version (``current`` moves by at most a rounding step, as if it had been pulled back); every
    other pushed tensor forgets its version, so the next pull fetches the store's. Returns the kept names."""
    for key, delta in deltas.items():
        if key in kept:
            base[key].add_(delta)
            current[key].copy_(base[key])
            versions[key] = kept[key]
        else:
            versions.pop(key, None)
    return [key for key in deltas if key in kept]


class ExtensionStore(Protocol):
    """What an extension may ask of the weight store (the Ray client or an in-process ``WeightTable``)."""

    def pull(
        self, known: Mapping[str, int] | None = None, keys: Iterable[str] | None = None, incarnation: str | None = None
    ) -> tuple[str, dict[str, tuple[int, np.ndarray]]]: ...
    def ensure_variants(self, mapping: Mapping[str, Any]) -> list[str]: ...
    def resolve(self, mapping: Mapping[str, Any]) -> dict[str, str]: ...
    def snapshot(self, name: str) -> None: ...
    def average(self, names: Iterable[str]) -> dict[str, np.ndarray]: ...
    def drop_snapshots(self, names: Iterable[str]) -> None: ...


@dataclass
class JobContext:
    """What a job offers its extensions.

    Attributes:
        task: ``"train"`` or ``"evaluate"``.
        spec, net, params, data, device: the supernet's recipe, the network on its device, its parameters
            by name, the data splits on the device.
        store: the weight store (narrow: ``ExtensionStore``).
        seed: the job's seed; steps: its steps (0 for an evaluation); subspace: where it samples paths.
        optimizer: the job's SGD (training only).
        release: ``release(names)``: these parameters hold tensors that are not the store's now (private
            copies, averaged snapshots); the worker's next sync puts the shared ones back.
        last_push: the receipt of the job's latest push (set before ``synced``): which pushed tensors the
            store kept as ``base + delta`` (``keep_pushed``).
    """

    task: str
    spec: SupernetSpec
    net: Supernet
    params: Mapping[str, torch.Tensor]
    data: DeviceData
    device: torch.device
    store: ExtensionStore
    seed: int
    steps: int
    subspace: SearchSpace
    release: Callable[[Iterable[str]], None]
    optimizer: torch.optim.Optimizer | None = None
    last_push: PushReceipt | None = None


class WorkerExtension:
    """A method's part of a job on the shared worker; every hook does nothing unless overridden. One
    instance serves one job, built from the job's payload by the factory registered for its namespace."""

    def begin(self, ctx: JobContext) -> None:
        """The job starts: the network holds the store's current weights."""

    def sync_steps(self, ctx: JobContext) -> Iterable[int]:
        """Training steps at which the job must sync besides its ``sync_every`` (e.g. before a snapshot)."""
        return ()

    def before_step(self, ctx: JobContext, step: int, arch: Architecture) -> None:
        """Before the training step ``step`` on ``arch`` (evaluation: before scoring the ``step``-th arch)."""

    def after_step(self, ctx: JobContext, step: int, arch: Architecture, touched: set[str]) -> set[str]:
        """After the SGD step: ``touched`` (the path's parameters) plus what this extension changed, minus
        what it keeps out of the shared weights; these are pushed as shared deltas at the next sync."""
        return touched

    def at_sync(self, ctx: JobContext) -> dict[str, np.ndarray]:
        """This extension's own deltas (store keys it owns), pushed with the job's shared deltas."""
        return {}

    def synced(self, ctx: JobContext, step: int) -> None:
        """After the push and pull of ``step``: the store holds this job's changes up to ``step``."""

    def metrics(self, ctx: JobContext) -> dict[str, Any]:
        """Plain-data entries for the training job's reports."""
        return {}

    def arch_metrics(self, ctx: JobContext, arch: Architecture, scores: Mapping[str, float]) -> dict[str, float]:
        """Entries added to one architecture's evaluation scores."""
        return {}

    def end(self, ctx: JobContext) -> None:
        """The job is over (finished or failed): leave the network as a plain supernet again."""


ExtensionFactory = Callable[[Any], WorkerExtension]
_EXTENSIONS: dict[str, ExtensionFactory] = {}


def register_extension(namespace: str, factory: ExtensionFactory) -> None:
    """Make every job carrying ``job[namespace]`` run ``factory(job[namespace])``'s hooks."""
    _EXTENSIONS[namespace] = factory


def extensions_for(job: Mapping[str, Any]) -> list[WorkerExtension]:
    """The extensions of the namespaces ``job`` carries, in registration order."""
    return [factory(job[ns]) for ns, factory in _EXTENSIONS.items() if job.get(ns) is not None]
