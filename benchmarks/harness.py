"""What every benchmark shares, so each script keeps only its experiment.

* specs: ``cifar10_spec`` (a supernet on the fixed CIFAR-10 split at a resolution);
* training: ``train`` (SPOS training jobs in-process), ``standalone`` (one architecture trained alone from
  scratch and scored on the test split);
* processes: ``process_pool`` (spawned single-threaded workers) and ``Scheduler`` (named tasks on it,
  started as their inputs arrive);
* baselines: ``tcp_sink`` / ``tcp_round_trips`` (raw loopback TCP, what a store transfer is compared with);
* output: ``write_json`` / ``write_markdown`` (with the command line and environment), ``new_figure`` /
  ``save_figure`` (PNG beside the numbers), ``mean_std``, ``welch_p``, ``paired_p``, ``ci95``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import platform
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tune_spacenas import storage

RESULTS = Path(__file__).resolve().parent / "results"


def tcp_sink(nbytes: int, timeout_s: float = 30.0) -> int:
    """Listen on loopback (port returned); each message of ``nbytes`` is read whole and answered with one
    byte, so a round trip is the raw TCP cost of moving those bytes between two processes."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(timeout_s)

    def serve() -> None:
        conn, _ = server.accept()
        view = memoryview(bytearray(nbytes))
        with conn:
            while True:
                got = 0
                while got < nbytes:
                    n = conn.recv_into(view[got:])
                    if n == 0:
                        return
                    got += n
                conn.sendall(b"k")

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def tcp_round_trips(port: int, payload: bytes, repeats: int) -> list[float]:
    """Milliseconds of each of ``repeats`` sends of ``payload`` to a ``tcp_sink`` and its one-byte answer."""
    times = []
    with socket.create_connection(("127.0.0.1", port)) as conn:
        for _ in range(repeats):
            start = time.perf_counter()
            conn.sendall(payload)
            conn.recv(1)
            times.append(1000 * (time.perf_counter() - start))
    return times


def command_line() -> str:
    """The ``python -m benchmarks.X ...`` invocation that is running now."""
    script = Path(sys.argv[0]).resolve()
    try:
        module = ".".join(script.relative_to(RESULTS.parents[1]).with_suffix("").parts)
    except ValueError:
        module = script.stem
    return shlex.join(["python", "-m", module, *sys.argv[1:]])


def environment() -> dict[str, Any]:
    import torch

    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"CPU ({platform.processor() or platform.machine()})"
    )
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def write_json(path: str | Path, payload: dict[str, Any], command: str | None = None) -> Path:
    path = Path(path)
    payload = {**payload, "command": command or command_line(), "environment": environment()}
    text = json.dumps(payload, indent=2, default=_plain).encode()
    storage.write_atomic(path, lambda f: f.write(text))
    return path


def write_markdown(
    path: str | Path,
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    notes: str = "",
    command: str | None = None,
) -> Path:
    path = Path(path)
    lines = [f"# {title}", "", f"Command: `{command or command_line()}`", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    if notes:
        lines += ["", notes]
    text = ("\n".join(lines) + "\n").encode()
    storage.write_atomic(path, lambda f: f.write(text))
    return path


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = np.asarray(values, float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch's t-test p-value for a difference in means."""
    from scipy.stats import ttest_ind

    return float(ttest_ind(a, b, equal_var=False).pvalue)


def paired_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided paired t-test p-value (a[i] and b[i] share a seed, an initialisation, ...)."""
    from scipy.stats import ttest_rel

    return float(ttest_rel(a, b).pvalue)


def ci95(values: Sequence[float]) -> list[float]:
    """95% t-interval of the mean of ``values`` (at least two)."""
    from scipy.stats import t

    mean, std = mean_std(values)
    half = float(t.ppf(0.975, len(values) - 1)) * std / np.sqrt(len(values))
    return [mean - half, mean + half]


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
def new_figure(
    columns: int = 1, rows: int = 1, size: tuple[float, float] = (6.4, 4.2), **kwargs: Any
) -> tuple[Any, Any]:
    """A matplotlib figure (headless) of ``rows`` x ``columns`` axes, each ``size`` inches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows), **kwargs)


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Lay out and write ``fig`` as PNG (atomically, like every other result file), then close it."""
    from tune_spacenas.analysis import save_figure as save

    fig.tight_layout()
    save(fig, path, dpi=dpi)
    return Path(path)


# ----------------------------------------------------------------------------------------------
# Supernets, training and standalone scores
# ----------------------------------------------------------------------------------------------
def cifar10_spec(
    space: Any, resolution: int, *, init_seed: int = 0, train_size: int | None = None, **recipe: Any
) -> Any:
    """A supernet of ``space`` on CIFAR-10 average-pooled to ``resolution`` (the fixed split: 45,000 train /
    5,000 validation, or the first ``train_size`` training images), initialised by ``init_seed``;
    ``recipe``: more ``SupernetSpec`` settings (batch_size, lr, eval_images, skeleton, ...)."""
    from tune_spacenas.data import DataSpec
    from tune_spacenas.supernet.spec import SupernetSpec

    data = DataSpec("cifar10", resolution=resolution, train_size=train_size, seed=0)
    return SupernetSpec(space, data, init_seed=init_seed, **recipe)


def train(
    runner: Any,
    steps: int,
    steps_per_job: int,
    lr: float,
    seed: int,
    subspace: Any = None,
    schedule_offset: int = 0,
    schedule_steps: int | None = None,
    extra: dict | None = None,
    progress: Callable[[int, dict], None] | None = None,
) -> float:
    """Train ``steps`` SPOS steps on an ``InProcessSupernet`` in jobs of ``steps_per_job`` (cosine learning
    rate from ``lr``; ``extra``: more job entries, e.g. a fixed ``arch``); returns the seconds spent."""
    from tune_spacenas.searchers.training import TrainingPhase

    phase = TrainingPhase(
        steps, steps_per_job, lr, schedule_offset=schedule_offset, schedule_steps=schedule_steps, extra=extra or {}
    )
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    while not phase.all_issued:
        job = phase.next_job(int(rng.integers(2**31)), subspace)
        result = runner(job)
        phase.complete(job)
        if progress:
            progress(phase.completed, result)
    return time.perf_counter() - start


def standalone(
    spec: Any, arch: str, steps: int, seed: int, jobs: int = 5, images: int | None = None, device: str | None = "cpu"
) -> dict[str, Any]:
    """``arch`` trained alone from scratch on ``spec``'s data (its own weights only, cosine learning rate from
    ``spec.lr``, in ``jobs`` training jobs) and scored on the test split (``images`` of it; all by default)."""
    from tune_spacenas.jobs import ACCURACY, ARCH_KEY, evaluate_job
    from tune_spacenas.runner import InProcessSupernet

    space = spec.space
    runner = InProcessSupernet(spec, device)
    start = time.perf_counter()
    train(runner, steps, max(1, steps // jobs), spec.lr, seed, extra={ARCH_KEY: arch})
    result = runner(evaluate_job(space, space.from_string(arch), split="test", images=images))
    cost = space.cost(space.from_string(arch))
    return {
        "arch": arch,
        "seed": seed,
        "accuracy": result[ACCURACY],
        "madds": cost.madds,
        "params": cost.params,
        "steps": steps,
        "seconds": time.perf_counter() - start,
    }


# ----------------------------------------------------------------------------------------------
# Processes
# ----------------------------------------------------------------------------------------------
def _threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)


def _spawn(processes: int, threads: int) -> Any:
    return mp.get_context("spawn").Pool(processes, initializer=_threads, initargs=(threads,))


@contextmanager
def process_pool(processes: int, threads: int = 1) -> Iterator[Any]:
    """``processes`` spawned workers of ``threads`` torch threads each (two single-thread processes use two
    cores better than one process with two threads at these sizes)."""
    with _spawn(processes, threads) as pool:
        yield pool


class Scheduler:
    """Named tasks on a pool like ``process_pool``'s; a ``then`` callback may submit more tasks once a result
    arrives, so each task starts as soon as its inputs exist (the longest chain should be submitted first)."""

    def __init__(self, processes: int, threads: int = 1):
        self.pool = _spawn(processes, threads)
        self.running: dict[str, Any] = {}
        self.results: dict[str, Any] = {}
        self.followups: dict[str, Callable[[Any], None]] = {}

    def submit(self, name: str, fn: Callable, *args: Any, then: Callable[[Any], None] | None = None) -> None:
        self.running[name] = self.pool.apply_async(fn, args)
        if then is not None:
            self.followups[name] = then

    def run(self) -> dict[str, Any]:
        """Every task's result by name, once all (and all they submitted) are done; a task's error is raised."""
        try:
            while self.running:
                done = [n for n, r in self.running.items() if r.ready()]
                for name in done:
                    self.results[name] = self.running.pop(name).get()
                    print(f"[done] {name}", flush=True)
                    if name in self.followups:
                        self.followups.pop(name)(self.results[name])
                time.sleep(0.5)
        finally:
            self.pool.terminate()
        return self.results


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
