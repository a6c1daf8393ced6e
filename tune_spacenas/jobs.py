"""The one loop's contract: what a searcher asks a trainable to do, and what comes back, as plain data.

A searcher's suggestion is a *job*; Tune merges it into the trial config (beside the ``space`` and
``store`` constants of the ``param_space``) and the trainable does it:

* ``evaluate`` one architecture (``arch``, or Tune's per-slot ``ops``) or a batch (``archs``), reporting
  the metric per architecture (``per_arch``);
* ``train`` the shared supernet for ``steps`` steps on paths sampled from ``subspace`` (or one fixed
  ``arch``), pushing weight deltas to the store.

Every key a job or a result carries is defined here, once: the shared keys as constants with a row in
``JOB_FIELDS`` / ``RESULT_FIELDS`` (what it means, which task carries it, how it is checked), and a
method's own payload under its namespace key (``senas``, ``autospace``, ``nse``, ``ase``, ``proxyless``) as a small
frozen dataclass that is a plain dict in the config. The trainable's config check (``check_job``) and the
builders read the same table, so a key cannot be added in one place and forgotten in another.

A searcher gives every training job an id (``JOB_ID_KEY``) from its own job counter, kept in its saved
state, so a job Tune issues again (a retried trial, or a resumed searcher re-issuing what it issued
after its last save) keeps its id: the store applies each (job, step) once, and a job whose steps are
all applied is answered with its recorded result instead of training again.

Everything in a config is strings, numbers and lists or dicts of them: no handles, refs or tensors, so
trial configs pickle, restore and name trials.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol

Architecture = tuple[int, ...]


class SearchSpace(Protocol):
    """What the contract asks of a search space (``tune_spacenas.spaces.SearchSpace``): the contract sits
    below the spaces, which name their Tune entries with its keys."""

    @property
    def choices(self) -> list[tuple[int, ...]]: ...
    def to_config(self, arch: Sequence[int]) -> dict[str, Any]: ...
    def to_string(self, arch: Sequence[int | str]) -> str: ...
    def from_string(self, text: str) -> Architecture: ...
    def arch_from_config(self, config: Mapping[str, Any]) -> Architecture: ...
    def restrict(self, allowed: Sequence[Sequence[int | str]]) -> Any: ...


# ----------------------------------------------------------------------------------------------
# Keys of a trial config
# ----------------------------------------------------------------------------------------------
TASK_KEY = "task"
TRAIN = "train"
EVALUATE = "evaluate"
SPACE_KEY = "space"  # the param_space's constant: the space's spec (``SearchSpace.to_spec()``)
OPS_KEY = "ops"  # Tune's per-slot choices (``SearchSpace.param_space()``)
ARCH_KEY = "arch"  # one architecture's canonical string
ARCHS_KEY = "archs"
STORE_KEY = "store"
SUBSPACE_KEY = "subspace"
STEPS_KEY = "steps"
SEED_KEY = "seed"
LR_KEY = "lr"
SYNC_EVERY_KEY = "sync_every"
REPORT_EVERY_KEY = "report_every"
SPLIT_KEY = "split"
IMAGES_KEY = "images"
DATASET_KEY = "dataset"  # the NAS-Bench-201 table trainable: which dataset's accuracy is the reward
TABLE_PATH_KEY = "table_path"
JOB_ID_KEY = "job_id"  # a training job's id: the store de-duplicates its pushes by (job id, step), records its result
# Method namespaces: each holds that method's payload (the dataclasses below).
SENAS_KEY = "senas"
AUTOSPACE_KEY = "autospace"
NSE_KEY = "nse"
ASE_KEY = "ase"
PROXYLESS_KEY = "proxyless"

# ----------------------------------------------------------------------------------------------
# Keys of a result
# ----------------------------------------------------------------------------------------------
ACCURACY = "accuracy"
LOSS = "loss"
PER_ARCH_KEY = "per_arch"
EVALUATED = "evaluated"
SECONDS_PER_ARCH = "seconds_per_arch"
STEPS_DONE = "steps_done"
IMAGES_PER_S = "images_per_s"
STORE_PUSH_MS = "store_push_ms"
STORE_PULL_MS = "store_pull_ms"
STORE_MB_PER_SYNC = "store_mb_per_sync"
NODE_ID = "node_id"
WORKER_PID = "worker_pid"
DEVICE = "device"
REWARD = "reward"
FITNESS_INDICATORS = "fitness_indicators"  # NSE: the thetas after a training trial
ALPHA = "alpha"  # AutoSpace: a generation's learned fitness scores alpha*
GATE_COUNTS = "gate_counts"  # AutoSpace: steps each candidate was the active gate
MADDS = "madds"  # AutoSpace Eq. (6) evaluations
REGULARIZED_LOSS = "regularized_loss"
ARCH_PARAMETERS = "arch_parameters"  # ProxylessNAS: the architecture parameters alpha after a training trial
DIVERGED_KEY = "diverged_at_step"  # a training job whose loss or weights stopped being finite: at which step
DIVERGED_LOSS = "diverged_loss"
REPLAYED_KEY = "replayed"  # a training job answered from the store's record without training again


def test_accuracy_key(dataset: str) -> str:
    """The table trainable's result key for one dataset's 200-epoch test accuracy."""
    return f"{dataset}_test_accuracy"


# ----------------------------------------------------------------------------------------------
# Method payloads
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Payload:
    """A method's part of a job: a frozen dataclass here, a plain dict (only the fields that differ from
    their defaults, sequences as lists) in the trial config."""

    namespace: ClassVar[str] = ""
    nested: ClassVar[Mapping[str, type[Payload]]] = {}

    @classmethod
    def from_dict(cls, data: Any) -> Any:
        """The payload a config holds; ValueError naming the unknown or malformed entry."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__} must be a mapping, got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{cls.__name__} has no entries {unknown}; known: {sorted(known)}")
        values = {k: cls.nested[k].from_dict(v) if k in cls.nested and v is not None else v for k, v in data.items()}
        try:
            return cls(**values)
        except TypeError as err:
            raise ValueError(f"{cls.__name__}: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if _plain(value) != _plain(f.default):
                out[f.name] = value.to_dict() if isinstance(value, Payload) else _plain(value)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class SnapshotRequest(Payload):
    """SE-NAS Eq. (4): ``count`` snapshots named ``<name>/<k>``, spread evenly over the training job's last
    ``fraction`` of steps and ending at its last step."""

    name: str = ""
    count: int = 1
    fraction: float = 1.0


@dataclass(frozen=True)
class SENASJob(Payload):
    """SE-NAS (``job["senas"]``).

    Args:
        expanded: merged slot groups (3.4): inside each, every partial model owns private weights.
        expanded_from: earlier groupings, newest first: where a partial model's new copy starts from.
        snapshots: training: take Eq. (4)'s snapshots.
        average: evaluation: score with these snapshots averaged (Eq. 4), private copies included.
        drop_snapshots: snapshots no evaluation reads any more; the job frees them in the store.
    """

    namespace: ClassVar[str] = SENAS_KEY
    nested: ClassVar[Mapping[str, type[Payload]]] = {"snapshots": SnapshotRequest}
    expanded: Sequence[Sequence[int]] = ()
    expanded_from: Sequence[Sequence[Sequence[int]]] = ()
    snapshots: SnapshotRequest | None = None
    average: Sequence[str] = ()
    drop_snapshots: Sequence[str] = ()


@dataclass(frozen=True)
class NSEReset(Payload):
    """NSE: a round starts: thetas to 0 and fresh weights for the replenished ``ops`` ((slot, op) pairs;
    every weight with ``all``), seeded."""

    seed: int = 0
    ops: Sequence[Sequence[int]] = ()
    all: bool = False


@dataclass(frozen=True)
class NSEJob(Payload):
    """NSE's fitness-indicator update during a training job (``job["nse"]``, Eqs. 5-8): every ``every``
    steps one Adam step (``lr``, ``betas``) on a validation batch, with Eq. (5)'s resource term ``alpha *
    |R(a, tau)|^beta`` over the per-(slot, op) ``costs`` plus ``fixed_cost`` (one unit with ``tau``)."""

    namespace: ClassVar[str] = NSE_KEY
    nested: ClassVar[Mapping[str, type[Payload]]] = {"reset": NSEReset}
    every: int = 2
    lr: float = 0.1
    betas: Sequence[float] = (0.0, 0.999)
    alpha: float = 0.0
    beta: float = 2.0
    tau: float = 0.0
    costs: Sequence[Sequence[float]] | None = None
    fixed_cost: float = 0.0
    reset: NSEReset | None = None


@dataclass(frozen=True)
class AutoSpaceGeneration(Payload):
    """One AutoSpace generation (Fig. 2): per layer K cells (strings), their fitness scores alpha and
    Eq. (4)'s compensation factors; trained through ``gate_paths`` binary gates, alpha by ``alpha_lr``."""

    generation: int = 0
    cells: Sequence[Sequence[str]] = ()
    alpha: Sequence[Sequence[float]] = ()
    compensation: Sequence[Sequence[float]] | None = None
    alpha_lr: float = 0.05
    gate_paths: int = 2


@dataclass(frozen=True)
class AutoSpaceJob(Payload):
    """AutoSpace (``job["autospace"]``): a training job carries a ``generation``; ``madds_penalty`` is
    Eq. (6)'s lambda, on the generation's fitness-weighted layers in training, and in an evaluation the
    reason to report ``madds`` and ``regularized_loss = loss + lambda * MAdds``."""

    namespace: ClassVar[str] = AUTOSPACE_KEY
    nested: ClassVar[Mapping[str, type[Payload]]] = {"generation": AutoSpaceGeneration}
    madds_penalty: float = 0.0
    generation: AutoSpaceGeneration | None = None


@dataclass(frozen=True)
class ASEJob(Payload):
    """ASE-NAS bookkeeping (``job["ase"]``), read back by the searcher only: which centre an evaluation
    scores, or which policy decision produced it."""

    namespace: ClassVar[str] = ASE_KEY
    center: int | None = None
    decision: int | None = None


@dataclass(frozen=True)
class ProxylessJob(Payload):
    """ProxylessNAS's architecture update during a training job (``job["proxyless"]``): weight steps on paths
    drawn from ``p = softmax(alpha)`` and, every ``update_every`` steps, one architecture step on a validation
    batch through ``gate_paths`` binary gates per slot (Adam with ``arch_lr`` and ``betas``), with Eq. (6)'s
    ``madds_penalty`` on the expected MAdds; ``alpha`` per slot over the job's subspace's allowed operations."""

    namespace: ClassVar[str] = PROXYLESS_KEY
    alpha: Sequence[Sequence[float]] = ()
    arch_lr: float = 1e-3
    betas: Sequence[float] = (0.0, 0.999)
    update_every: int = 5
    gate_paths: int = 2
    madds_penalty: float = 0.0


PAYLOADS: dict[str, type[Payload]] = {p.namespace: p for p in (SENASJob, NSEJob, AutoSpaceJob, ASEJob, ProxylessJob)}


# ----------------------------------------------------------------------------------------------
# The field table: what each config key means, which task carries it, how it is checked
# ----------------------------------------------------------------------------------------------
Check = Callable[[Any, SearchSpace], None]


def _positive_int(key: str) -> Check:
    def check(value: Any, space: SearchSpace) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"trial config {key!r} must be a positive integer, got {value!r}")

    return check


def _non_negative_number(key: str) -> Check:
    def check(value: Any, space: SearchSpace) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
            raise ValueError(f"{key!r} must be a non-negative number, got {value!r}")

    return check


def _one_of(key: str, *allowed: str) -> Check:
    def check(value: Any, space: SearchSpace) -> None:
        if value not in allowed:
            raise ValueError(f"{key!r} must be {' or '.join(map(repr, allowed))}, got {value!r}")

    return check


def _architecture_list(value: Any, space: SearchSpace) -> None:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"{ARCHS_KEY!r} must be a non-empty list of architecture strings")
    for text in value:
        space.from_string(text)


def _payload(cls: type[Payload]) -> Check:
    return lambda value, space: cls.from_dict(value)


@dataclass(frozen=True)
class Field:
    """One config key of the contract: its meaning, the tasks whose jobs carry it, its check."""

    description: str
    tasks: tuple[str, ...] = (TRAIN, EVALUATE)
    check: Check | None = None


JOB_FIELDS: dict[str, Field] = {
    TASK_KEY: Field(f"{TRAIN!r} or {EVALUATE!r} (default {EVALUATE!r})"),
    SPACE_KEY: Field("the space's spec, the param_space's constant (checked against the store's)"),
    OPS_KEY: Field("Tune's operation per slot (space.param_space()); our jobs blank it (None) or name the arch's"),
    STORE_KEY: Field("the weight store's name (store.param_space())"),
    ARCH_KEY: Field(
        "one architecture's canonical string: the one evaluated, or the fixed path trained",
        check=lambda value, space: space.from_string(value),
    ),
    ARCHS_KEY: Field("a batch of architecture strings to evaluate in one trial", (EVALUATE,), _architecture_list),
    SUBSPACE_KEY: Field(
        "the allowed operation indices per slot to sample training paths from",
        (TRAIN,),
        lambda value, space: space.restrict(value),
    ),
    STEPS_KEY: Field("training steps of the job", (TRAIN,), _positive_int(STEPS_KEY)),
    JOB_ID_KEY: Field("the training job's id (job_id(search, n)): its pushes and result in the store", (TRAIN,)),
    SEED_KEY: Field("seeds the job's path sampling and data order", (TRAIN,)),
    LR_KEY: Field("the job's SGD learning rate (default: the spec's)", (TRAIN,), _non_negative_number(LR_KEY)),
    SYNC_EVERY_KEY: Field(
        "steps between pushes of weight deltas (default: once, at the end)", (TRAIN,), _positive_int(SYNC_EVERY_KEY)
    ),
    REPORT_EVERY_KEY: Field("steps between reports (default: every sync)", (TRAIN,), _positive_int(REPORT_EVERY_KEY)),
    SPLIT_KEY: Field(
        "the data split scored: 'val' (default) or 'test'", (EVALUATE,), _one_of(SPLIT_KEY, "val", "test")
    ),
    IMAGES_KEY: Field(
        "images scoring one architecture (default: the spec's eval_images)", (EVALUATE,), _positive_int(IMAGES_KEY)
    ),
    DATASET_KEY: Field("the table trainable's dataset (cifar10, cifar100, ImageNet16-120)", (EVALUATE,)),
    TABLE_PATH_KEY: Field("the table trainable's table file (default: the packaged one)", (EVALUATE,)),
    **{ns: Field(cls.__doc__.split("\n")[0], check=_payload(cls)) for ns, cls in PAYLOADS.items()},
}

RESULT_FIELDS: dict[str, str] = {
    ACCURACY: "top-1 accuracy in percent (training: over the report window; evaluation: mean over the batch)",
    LOSS: "cross-entropy (training: over the report window; evaluation: per architecture)",
    PER_ARCH_KEY: "a batch evaluation's entries as lists in the batch's order ({metric: [one value per arch]})",
    EVALUATED: "architectures the evaluation scored",
    SECONDS_PER_ARCH: "evaluation wall time per architecture",
    STEPS_DONE: "training steps done so far",
    IMAGES_PER_S: "training throughput over the report window",
    STORE_PUSH_MS: "mean milliseconds of a push (deltas, the store's call, keeping what it kept)",
    STORE_PULL_MS: "mean milliseconds of a pull (the store's call, the copy in, the new base)",
    STORE_MB_PER_SYNC: "megabytes pushed and pulled per sync",
    NODE_ID: "the Ray node the trial ran on",
    WORKER_PID: "its process",
    DEVICE: "its torch device",
    REWARD: "the table trainable: which table column is the reward",
    ARCH_KEY: "the table trainable: the architecture looked up",
    FITNESS_INDICATORS: "NSE: the fitness indicators (thetas) after the training trial, per slot and op",
    ALPHA: "AutoSpace: the generation's learned fitness scores alpha* per layer",
    GATE_COUNTS: "AutoSpace: per layer, steps each candidate was the active gate",
    MADDS: "AutoSpace Eq. (6): the architecture's multiply-adds",
    REGULARIZED_LOSS: "AutoSpace Eq. (6): loss + lambda * MAdds",
    ARCH_PARAMETERS: "ProxylessNAS: the architecture parameters alpha per slot (over its allowed operations) after "
    "the training trial",
    DIVERGED_KEY: "a training job whose loss or pushed weights went non-finite: the step (nothing after its last "
    "push reached the store; loss and accuracy are NaN)",
    DIVERGED_LOSS: "the non-finite loss of that step",
    REPLAYED_KEY: "the training job was answered with the store's record of it, without training again",
}


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------
def evaluate_job(space: SearchSpace, arch: Architecture, **extra: Any) -> dict[str, Any]:
    """Evaluate one architecture; the config also names its operation per slot (Tune's ``ops``)."""
    return {TASK_KEY: EVALUATE, **space.to_config(arch), **_entries(EVALUATE, extra)}


def evaluate_batch_job(space: SearchSpace, archs: Sequence[Architecture], **extra: Any) -> dict[str, Any]:
    """Evaluate many architectures in one trial (Tune costs ~1 s a trial; a batch amortises it)."""
    if not archs:
        raise ValueError("an evaluation batch needs at least one architecture")
    return {TASK_KEY: EVALUATE, ARCHS_KEY: [space.to_string(a) for a in archs], **_entries(EVALUATE, extra)}


def train_job(steps: int, subspace: SearchSpace | None = None, arch: str | None = None, **extra: Any) -> dict[str, Any]:
    """Train the shared supernet for ``steps`` steps on paths from ``subspace`` (default: the store's space)."""
    if steps < 1:
        raise ValueError(f"a training job needs at least one step, got {steps}")
    job: dict[str, Any] = {TASK_KEY: TRAIN, STEPS_KEY: int(steps), **_entries(TRAIN, extra)}
    if subspace is not None:
        job[SUBSPACE_KEY] = [list(map(int, allowed)) for allowed in subspace.choices]
    if arch is not None:
        job[ARCH_KEY] = arch
    return job


def _entries(task: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` checked against the field table; payload dataclasses as plain dicts."""
    out = {}
    for key, value in extra.items():
        spec = JOB_FIELDS.get(key)
        if spec is None or task not in spec.tasks:
            known = sorted(k for k, f in JOB_FIELDS.items() if task in f.tasks)
            raise ValueError(f"{key!r} is not a key of a {task} job; the contract (tune_spacenas.jobs) knows {known}")
        out[key] = value.to_dict() if isinstance(value, Payload) else value
    return out


# ----------------------------------------------------------------------------------------------
# Reading a config
# ----------------------------------------------------------------------------------------------
def job_id(search_id: str, number: int) -> str:
    """The id of a search's ``number``-th training job: the same whenever that job is issued again."""
    return f"{search_id}/{number}"


def writer_of(config: Mapping[str, Any], trial_id: str) -> str:
    """Who a training job's pushes count for in the store: its job id, else (a hand-made job) its trial."""
    return str(config.get(JOB_ID_KEY) or trial_id)


def task_of(config: Mapping[str, Any]) -> str:
    task = config.get(TASK_KEY, EVALUATE)
    if task not in (TRAIN, EVALUATE):
        raise ValueError(f"unknown task {task!r} in trial config; use {TRAIN!r} or {EVALUATE!r}")
    return task


def archs_of(space: SearchSpace, config: Mapping[str, Any]) -> list[Architecture]:
    """The architectures an evaluation job names (a batch, or the single ``arch`` / Tune ``ops``)."""
    if ARCHS_KEY in config:
        return [space.from_string(s) for s in config[ARCHS_KEY]]
    return [space.arch_from_config(config)]


HAND_EDITED = (
    "trial configs are written by the searcher (tune_spacenas.jobs); if it was edited by hand, "
    "rebuild it with jobs.train_job / jobs.evaluate_job"
)


def check_job(config: Mapping[str, Any], space: SearchSpace) -> None:
    """ValueError naming the key and the fix for a trial config a trainable cannot run as given: every
    contract key the config's task carries is checked by its row of ``JOB_FIELDS``."""
    try:
        task = task_of(config)
        if task == TRAIN and STEPS_KEY not in config:
            raise ValueError(f"a train job needs {STEPS_KEY!r}")
        for key, value in config.items():
            spec = JOB_FIELDS.get(key)
            if spec is not None and spec.check is not None and task in spec.tasks and value is not None:
                spec.check(value, space)
        if task == EVALUATE:
            archs_of(space, config)
    except (ValueError, TypeError, KeyError) as err:
        message = str(err)
        raise ValueError(message if HAND_EDITED in message else f"bad trial config: {message}; {HAND_EDITED}") from err
