"""The shape the README promises, checked from the code: no import cycle, methods out of the shared parts, and
every job or result key spelled once, in the contract (tune_spacenas/jobs.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tune_spacenas import jobs

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tune_spacenas"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """The package's modules ``path`` imports: at module level, inside functions or for type checking (a
    cycle through annotations is still two modules that need each other)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names
            }
    return {name for name in found if name in MODULES}


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def test_no_import_cycle_in_the_package():
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in GRAPH[node]:
                cycles.append(sorted(component))

    for name in GRAPH:
        if name not in index:
            visit(name)
    assert not cycles, f"modules that import each other in a loop: {cycles}"


FORBIDDEN_IN_METHODS = (
    "tune_spacenas.supernet",
    "tune_spacenas.store",
    "tune_spacenas.trainables",
    "tune_spacenas.runner",
    "tune_spacenas.cluster",
    "tune_spacenas.data",
    "tune_spacenas.tables",
)


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("tune_spacenas.searchers")])
def test_a_method_imports_only_the_contract_the_spaces_and_shared_parts(module):
    """Searchers decide what to train or evaluate; everything that does the work reaches them through jobs."""
    bad = sorted(m for m in GRAPH[module] if m.startswith(FORBIDDEN_IN_METHODS))
    assert not bad, f"{module} imports {bad}: a method speaks to the worker through tune_spacenas.jobs only"


METHOD_SIDE = (
    "tune_spacenas.searchers",
    "tune_spacenas.trainables.extensions.senas",
    "tune_spacenas.trainables.extensions.nse",
    "tune_spacenas.trainables.extensions.autospace",
    "tune_spacenas.trainables.extensions.proxyless",
)
SHARED = (
    "tune_spacenas.spaces",
    "tune_spacenas.supernet",
    "tune_spacenas.store",
    "tune_spacenas.data",
    "tune_spacenas.tables",
    "tune_spacenas.jobs",
    "tune_spacenas.storage",
    "tune_spacenas.trainables.worker",
    "tune_spacenas.trainables.extensions.base",
)


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith(SHARED)])
def test_the_shared_parts_know_no_method(module):
    """The worker, supernets, store, spaces and data import no searcher and no method's extension."""
    bad = sorted(m for m in GRAPH[module] if m.startswith(METHOD_SIDE))
    assert not bad, f"{module} imports method code {bad}; plug it in as a WorkerExtension for its job namespace"


# A literal equal to a contract key but naming something else: a Python attribute, dataclass field or argument
# called ``space`` (state dicts mirror attributes, SupernetSpec.to_dict its fields, NSE.continue_on its arguments).
NOT_A_JOB_KEY = {
    ("tune_spacenas/searchers/base.py", "space"),
    ("tune_spacenas/supernet/spec.py", "space"),
    ("tune_spacenas/searchers/nse.py", "space"),
}


def _key_literals(path: Path) -> list[tuple[int, str]]:
    """String constants used as a mapping key: ``x["k"]``, ``x.get("k")``/``pop``/``setdefault``,
    ``{"k": ...}``, ``"k" in x``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript):
            candidates = [node.slice]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.args
            and node.func.attr in ("get", "pop", "setdefault")
        ):
            candidates = [node.args[0]]
        elif isinstance(node, ast.Dict):
            candidates = [k for k in node.keys if k is not None]
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            candidates = [node.left]
        else:
            continue
        out += [(c.lineno, c.value) for c in candidates if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    return out


def test_no_job_or_result_key_is_spelled_outside_the_contract():
    keys = set(jobs.JOB_FIELDS) | set(jobs.RESULT_FIELDS)
    files = [p for p in sorted(PACKAGE.rglob("*.py")) if p != PACKAGE / "jobs.py"]
    files += sorted((ROOT / "examples").glob("*.py"))
    found = [
        f"{path.relative_to(ROOT)}:{line}: {value!r}"
        for path in files
        for line, value in _key_literals(path)
        if value in keys and (str(path.relative_to(ROOT)), value) not in NOT_A_JOB_KEY
    ]
    assert not found, "job/result keys spelled as literals; use the constants of tune_spacenas.jobs:\n" + "\n".join(
        found
    )


def test_every_payload_round_trips_through_plain_data():
    payloads = [
        jobs.SENASJob(
            expanded=[[0, 1]],
            expanded_from=[[[0, 1]]],
            average=["a/0"],
            drop_snapshots=["b/0"],
            snapshots=jobs.SnapshotRequest(name="s", count=3, fraction=0.5),
        ),
        jobs.NSEJob(every=1, costs=[[1.0, 2.0]], reset=jobs.NSEReset(seed=3, ops=[[0, 1]], all=True)),
        jobs.AutoSpaceJob(madds_penalty=1e-7, generation=jobs.AutoSpaceGeneration(cells=[["x"]], alpha=[[0.0]])),
        jobs.ASEJob(center=2),
    ]
    for payload in payloads:
        plain = payload.to_dict()
        assert type(payload).from_dict(plain).to_dict() == plain
        assert payload.namespace in jobs.JOB_FIELDS
    with pytest.raises(ValueError, match="no entries.*'weights'"):
        jobs.SENASJob.from_dict({"weights": {"average": []}})
    with pytest.raises(ValueError, match="'madds_penalty' is not a key of a train job"):
        jobs.train_job(5, madds_penalty=1e-7)


def test_a_new_method_plugs_into_the_worker_through_its_namespace(tiny_spec):
    """A fifth method's extension: registered for its namespace, its hooks run at the documented points with
    a JobContext (never the worker), what it changes is pushed, and its metrics are reported."""
    from tune_spacenas.runner import InProcessSupernet
    from tune_spacenas.trainables.extensions import WorkerExtension, register_extension
    from tune_spacenas.trainables.extensions.base import _EXTENSIONS, JobContext

    calls = []

    class Recording(WorkerExtension):
        def __init__(self, payload):
            self.payload = payload

        def begin(self, ctx):
            assert isinstance(ctx, JobContext) and ctx.steps == 4 and not hasattr(ctx, "run")
            calls.append("begin")

        def sync_steps(self, ctx):
            return [1]

        def before_step(self, ctx, step, arch):
            calls.append(f"before {step}")

        def after_step(self, ctx, step, arch, touched):
            calls.append(f"after {step}")
            return touched

        def synced(self, ctx, step):
            calls.append(f"synced {step}")

        def metrics(self, ctx):
            return {"seen": self.payload["tag"]}

        def end(self, ctx):
            calls.append("end")

    register_extension("recording", Recording)
    try:
        runner = InProcessSupernet(tiny_spec, "cpu")
        result = runner({**jobs.train_job(4, seed=0, sync_every=2), "recording": {"tag": "x"}})
    finally:
        del _EXTENSIONS["recording"]
    assert calls == [
        "begin",
        "before 1",
        "after 1",
        "synced 1",
        "before 2",
        "after 2",
        "synced 2",
        "before 3",
        "after 3",
        "before 4",
        "after 4",
        "synced 4",
        "end",
    ]
    assert result["seen"] == "x" and runner.store.stats["applied"] == 3
