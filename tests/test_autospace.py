"""AutoSpace: the open cell space, Eq. (2)-(6), the searcher, and searching the space it generates."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_supernet_spec

from tune_spacenas.jobs import AutoSpaceGeneration, AutoSpaceJob, evaluate_batch_job
from tune_spacenas.runner import InProcessSupernet, run_in_process
from tune_spacenas.searchers import ASESearcher, AutoSpaceSearcher, RandomSearcher, RegularizedEvolutionSearcher
from tune_spacenas.spaces import CellSpace, GeneratedSpace, IRBSpace, OpenCellSpace, costs, space_from_spec
from tune_spacenas.spaces.cells import (
    REFERENCE_IRB,
    canonical_cell,
    cell_cost,
    cell_string,
    hamming_distance,
    live_edges,
    operation_matrix,
    parse_cell,
)
from tune_spacenas.supernet import build_supernet
from tune_spacenas.supernet.cells import CellLayer, FitnessWeightedLayer
from tune_spacenas.supernet.gates import fitness_gradient
from tune_spacenas.supernet.ops import MBConv
from tune_spacenas.supernet.spec import SupernetSpec

PLAN = dict(widths=(8, 16), strides=(1, 2), stem_channels=8, input_size=8)


def tiny_spec(space=None) -> SupernetSpec:
    return tiny_supernet_spec(space or OpenCellSpace(**PLAN))


def searcher(**kw) -> AutoSpaceSearcher:
    args = (
        dict(
            space=OpenCellSpace(**PLAN),
            metric="loss",
            mode="min",
            generations=4,
            iterations_per_generation=10,
            cells_per_layer=3,
            population_size=8,
            seed=0,
        )
        | kw
    )
    return AutoSpaceSearcher(**args)


def _generation(job: dict) -> AutoSpaceGeneration:
    return AutoSpaceJob.from_dict(job["autospace"]).generation


def synthetic_result(job: dict, shift: float = 0.1) -> dict:
    """What a generation's trial reports, with alpha* = alpha + shift * k (for pure bookkeeping tests)."""
    alpha = [[a + shift * k for k, a in enumerate(layer)] for layer in _generation(job).alpha]
    return {"loss": 1.0, "accuracy": 50.0, "alpha": alpha, "steps_done": job["steps"]}


# --------------------------------------------------------------------------------------------------
# The open cell space
# --------------------------------------------------------------------------------------------------
def test_cell_space_has_705894_cells_and_strings_round_trip():
    space = CellSpace()
    assert space.size == 7**6 * 3 * 2 == 705_894  # the paper's 5 operations, the depth-wise one with k in {3, 5, 7}
    rng = np.random.default_rng(0)
    for _ in range(200):
        cell = space.sample(rng)
        assert parse_cell(cell_string(cell)) == cell == space.from_string(space.to_string(cell))
    assert cell_string(parse_cell(REFERENCE_IRB)) == REFERENCE_IRB
    assert space_from_spec(space.to_spec()) == space


@pytest.mark.parametrize(
    "text, match",
    [
        ("r6|add|zero", "names 3 operations"),
        ("r4|add|zero|zero|zero|dwconv3x3|zero|zero", "ratio.*'r4'"),
        ("r6|max|zero|zero|zero|dwconv3x3|zero|zero", "aggregation.*'max'"),
        ("r6|add|zero|zero|zero|conv5x5|zero|zero", "e03.*'conv5x5'.*candidates"),
    ],
)
def test_invalid_cells_are_clear_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_cell(text)


def test_network_spaces_round_trip_and_cost():
    rng = np.random.default_rng(1)
    open_space, irb = OpenCellSpace(**PLAN), IRBSpace(**PLAN)
    generated = open_space.generated_space(
        [[REFERENCE_IRB, "r3|dot|conv1x1|zero|conv3x3|dwconv3x3|identity|zero"], [REFERENCE_IRB]]
    )
    for space in (open_space, irb, generated):
        arch = space.sample(rng)
        assert space.from_string(space.to_string(arch)) == arch
        assert space_from_spec(space.to_spec()) == space
        assert space.cost(arch).madds > 0
    assert generated.slots[0].ops[0] == REFERENCE_IRB
    # Both the manual and the generated space offer "zero" (skip) only where the layer's residual keeps its input.
    assert "zero" in irb.slots[0].ops and "zero" not in irb.slots[1].ops
    assert generated.slots[0].ops[-1] == "zero" and "zero" not in generated.slots[1].ops and generated.size == 3
    assert generated.layer_cost(0, "zero").madds == 0 and generated.layer_cells == [
        list(generated.slots[0].ops[:2]),
        [REFERENCE_IRB],
    ]
    with pytest.raises(ValueError, match="one list of cells per layer"):
        GeneratedSpace([[REFERENCE_IRB]], **PLAN)
    with pytest.raises(ValueError, match="cells"):
        open_space.from_string(REFERENCE_IRB)


def test_generated_space_saves_and_loads(tmp_path):
    space = OpenCellSpace(**PLAN).generated_space([[REFERENCE_IRB], ["r1|dot|identity|zero|zero|conv3x3|zero|zero"]])
    path = space.save(tmp_path / "space.json")
    assert GeneratedSpace.load(path) == space
    with pytest.raises(FileNotFoundError, match="GeneratedSpace.save"):
        GeneratedSpace.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        GeneratedSpace.load(tmp_path / "bad.json")
    (tmp_path / "irb.json").write_text(json.dumps(IRBSpace(**PLAN).to_spec()))
    with pytest.raises(ValueError, match="not a generated AutoSpace space"):
        GeneratedSpace.load(tmp_path / "irb.json")


def test_eq2_on_hand_made_dags():
    g = operation_matrix(REFERENCE_IRB)
    assert g.shape == (6, 6)
    assert g[0, 1] == 3  # input -> node 0: ratio r6 (index 2)
    assert g[1, 4] == 3  # node 0 -> node 3: dwconv3x3 (index 2)
    assert g[4, 5] == 1  # node 3 -> output: addition
    assert np.count_nonzero(g) == 3
    assert hamming_distance(REFERENCE_IRB, REFERENCE_IRB) == 0.0
    one_edge = "r6|add|conv1x1|zero|zero|dwconv3x3|zero|zero"
    assert hamming_distance(one_edge, REFERENCE_IRB) == pytest.approx(1 / 30)
    four = "r3|dot|identity|zero|zero|conv3x3|zero|zero"  # ratio, aggregation, two edges
    assert hamming_distance(four, REFERENCE_IRB) == pytest.approx(4 / 30) == hamming_distance(REFERENCE_IRB, four)
    # conv3x3 vs conv1x1 counts like conv3x3 vs no edge: one differing entry.
    assert hamming_distance(
        "r6|add|zero|zero|zero|conv3x3|zero|zero", "r6|add|zero|zero|zero|conv1x1|zero|zero"
    ) == hamming_distance("r6|add|zero|zero|zero|conv3x3|zero|zero", "r6|add|zero|zero|zero|zero|zero|zero")


def test_dead_edges_cost_nothing_and_the_reference_is_the_inverted_residual_block():
    dead = parse_cell("r6|add|conv3x3|zero|zero|dwconv3x3|zero|zero")  # node 1 feeds nothing
    assert live_edges(dead) == [3]
    assert (
        cell_cost(dead, 16, 16, 1, 8)
        == cell_cost(parse_cell(REFERENCE_IRB), 16, 16, 1, 8)
        == costs.mbconv(16, 16, 3, 6, 8)
    )
    assert live_edges(parse_cell("r6|add|zero|zero|zero|zero|zero|zero")) == []
    # Canonical forms: one encoding per function.
    assert cell_string(canonical_cell(dead)) == REFERENCE_IRB
    assert (
        cell_string(canonical_cell("r3|dot|zero|zero|zero|dwconv3x3|zero|zero"))
        == "r3|add|zero|zero|zero|dwconv3x3|zero|zero"
    )
    assert cell_string(canonical_cell("r3|dot|identity|zero|zero|dwconv3x3|conv1x1|zero")).startswith("r3|dot|")
    assert cell_string(canonical_cell("r6|dot|conv3x3|zero|zero|zero|zero|zero")) == "r1|add|" + "|".join(["zero"] * 6)

    torch.manual_seed(0)
    layer, block = CellLayer(8, 8, 1), MBConv(8, 8, 1, 3, 6)
    with torch.no_grad():
        block.body[0].weight.copy_(layer.expand.weight)
        block.body[3].weight.copy_(layer.edges[3]["dwconv3x3"].weight)
        block.body[6].weight.copy_(layer.project.weight)
    x = torch.randn(4, 8, 6, 6)
    assert torch.allclose(layer(x, parse_cell(REFERENCE_IRB)), block(x), atol=1e-5)


def test_cells_share_weights_by_layer_edge_and_operation_and_paths_name_exactly_their_tensors():
    space = OpenCellSpace(**PLAN)
    net = build_supernet(space)
    a = space.from_cells(["r6|add|zero|conv3x3|zero|dwconv3x3|zero|identity", REFERENCE_IRB])
    b = space.from_cells(["r3|dot|identity|conv3x3|zero|conv1x1|zero|conv3x3", REFERENCE_IRB])
    shared = set(net.path_parameter_names(a)) & set(net.path_parameter_names(b))
    assert "layers.0.edges.1.conv3x3.weight" in shared  # same layer, edge 0->2, conv3x3: one tensor
    net(torch.randn(8, 3, 8, 8), b).sum().backward()
    touched = {n for n, p in net.named_parameters() if p.grad is not None}
    assert touched == set(net.path_parameter_names(b))
    # A generated space's supernet names its tensors as the open space's does (weights can be inherited).
    generated = build_supernet(
        space.generated_space([["r6|add|zero|conv3x3|zero|dwconv3x3|zero|identity"], [REFERENCE_IRB]])
    )
    assert dict(generated.named_parameters()).keys() == dict(net.named_parameters()).keys()
    assert generated.path_parameter_names((0, 0)) == net.path_parameter_names(a)


# --------------------------------------------------------------------------------------------------
# Eqs. (3), (4), (6): the fitness-weighted layer
# --------------------------------------------------------------------------------------------------
def _tiny_layer(k=3, alpha=(0.3, -0.2, 0.5)):
    torch.manual_seed(0)
    convs = [torch.nn.Conv2d(2, 2, 3, padding=1) for _ in range(k)]
    return convs, FitnessWeightedLayer(convs, alpha, gate_paths=k)


def test_fitness_gradient_of_the_dense_layer_equals_eq4():
    convs, layer = _tiny_layer()
    x, target = torch.randn(5, 2, 4, 4), torch.randn(5, 2, 4, 4)
    layer.alpha.requires_grad_(True)
    loss = ((layer.forward_dense(x) - target) ** 2).mean()
    loss.backward()
    autograd = layer.alpha.grad.clone()
    # dL/dg_k at g = p: the loss of sum_k g_k d_k(x), differentiated in the gates.
    outputs = [c(x).detach() for c in convs]
    gates = torch.softmax(layer.alpha.detach(), 0).float().requires_grad_(True)
    ((sum(g * o for g, o in zip(gates, outputs)) - target) ** 2).mean().backward()
    formula = fitness_gradient(gates.grad.double(), layer.alpha.detach())
    assert torch.allclose(autograd, formula, atol=1e-6)
    assert abs(float(formula.sum())) < 1e-9  # softmax: the scores' gradient sums to zero
    compensation = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)
    assert torch.allclose(
        fitness_gradient(gates.grad.double(), layer.alpha.detach(), compensation), formula * compensation
    )


def test_binary_gates_train_one_path_and_update_the_sampled_scores_by_eq4():
    convs = [torch.nn.Conv2d(2, 2, 3, padding=1) for _ in range(4)]
    alpha = [0.1, 0.4, -0.3, 0.0]
    layer = FitnessWeightedLayer(convs, alpha, compensation=[1.0, 2.0, 1.0, 4.0], gate_paths=2, alpha_lr=0.5)
    active = layer.sample(np.random.default_rng(3))
    paths = list(layer.paths)
    assert paths[0] == active and len(set(paths)) == 2
    x = torch.randn(3, 2, 4, 4)
    (layer.forward(x) ** 2).mean().backward()
    with_grad = [k for k, c in enumerate(convs) if c.weight.grad is not None]
    assert with_grad == [active]  # one path trains; the other only feeds its gate's gradient
    with torch.no_grad():
        expected_gate_grads = [float((2 * convs[active](x) * convs[k](x)).mean()) for k in paths]
    assert np.allclose(layer.gates.grad.numpy(), expected_gate_grads, atol=1e-6)
    idx = torch.tensor(paths)
    step = 0.5 * fitness_gradient(
        layer.gates.grad.double(), torch.tensor(alpha, dtype=torch.float64)[idx], layer.compensation[idx]
    )
    layer.update()
    expected = torch.tensor(alpha, dtype=torch.float64)
    expected[idx] -= step
    assert torch.allclose(layer.alpha, expected)
    assert layer.paths is None


def test_eq6_madds_term_moves_fitness_towards_cheaper_cells():
    convs = [torch.nn.Identity(), torch.nn.Identity()]
    layer = FitnessWeightedLayer(convs, [0.0, 0.0], madds=[1e6, 4e6], gate_paths=2, alpha_lr=1.0, madds_penalty=1e-6)
    layer.sample(np.random.default_rng(0))
    layer.forward(torch.ones(1, 1, 1, 1)).detach()  # gates without a loss: only Eq. (6)'s term acts
    layer.gates.grad = torch.zeros(2)
    layer.update()
    assert layer.alpha[0] > 0 > layer.alpha[1]


def test_worker_reports_the_eq6_regularised_loss():
    space = IRBSpace(**PLAN)
    runner = InProcessSupernet(tiny_spec(space), "cpu")
    archs = space.sample_many(np.random.default_rng(0), 3)
    result = runner(evaluate_batch_job(space, archs, autospace=AutoSpaceJob(madds_penalty=1e-7), images=64))
    per = result["per_arch"]
    assert per["madds"] == [space.cost(a).madds for a in archs]
    assert np.allclose(per["regularized_loss"], np.array(per["loss"]) + 1e-7 * np.array(per["madds"]))


# --------------------------------------------------------------------------------------------------
# The searcher: Eq. (4)'s compensation, Eq. (5), the reference DAG
# --------------------------------------------------------------------------------------------------
def test_eq5_momentum_update_and_compensation_factor():
    s = searcher(epsilon=0.3, offspring=0)
    job = s.suggest("g0")
    cells, alpha = _generation(job).cells, _generation(job).alpha
    assert _generation(job).compensation == [[1.0] * 3] * 2  # nothing trained yet: n = n'
    result = synthetic_result(job, shift=0.5)
    s.on_trial_complete("g0", result=result)
    for layer in range(2):
        fitness = {m.cell: m.fitness for m in s.populations[layer]}
        for k, cell in enumerate(cells[layer]):
            assert fitness[cell] == pytest.approx(0.3 * result["alpha"][layer][k] + 0.7 * alpha[layer][k])
    # After one generation of f = 10 iterations: cells trained once get 10 / (10 + 10), untrained ones 10 / 10.
    for layer, pop in enumerate(s.populations):
        for m in pop:
            assert s.compensation_factor(m) == pytest.approx(0.5 if m.cell in cells[layer] else 1.0)
    assert searcher(compensation=False).compensation_factor(s.populations[0][0]) == 1.0


def test_reference_constraint_binds_in_the_first_half_only():
    s = searcher(generations=12, population_size=8, cells_per_layer=2, offspring=2, tau=0.12)
    s.suggest("init")  # populations exist from the first suggestion
    s.on_trial_complete("init", error=True)
    assert all(hamming_distance(m.cell, REFERENCE_IRB) < 0.12 for pop in s.populations for m in pop)
    assert any(m.cell == REFERENCE_IRB for m in s.populations[0])
    edge = "r3|dot|identity|zero|zero|dwconv3x3|conv1x1|zero"  # 3 entries from the reference: at the border
    for g in range(11):
        job = s.suggest(f"g{g}")
        s.on_trial_complete(f"g{g}", result=synthetic_result(job, shift=0.2))
        born_now = [m for pop in s.populations for m in pop if m.born == s.completed_generations]
        children = [s.mutate(0, edge, set()) for _ in range(40)]
        if s.completed_generations <= 6:
            assert s.reference_active()
            assert all(hamming_distance(c, REFERENCE_IRB) < 0.12 for c in children + [m.cell for m in born_now])
        else:
            assert not s.reference_active()
            assert any(hamming_distance(c, REFERENCE_IRB) >= 0.12 for c in children)
    cells = [m.cell for pop in s.populations for m in pop]
    assert all(cell_string(canonical_cell(c)) == c for c in cells)  # no two encodings of one function
    assert all(len({m.cell for m in pop}) == len(pop) for pop in s.populations)
    free = searcher(use_reference=False, population_size=16)
    free.suggest("x")
    assert any(hamming_distance(m.cell, REFERENCE_IRB) >= 0.12 for pop in free.populations for m in pop)
    other = "r1|dot|conv1x1|conv1x1|zero|zero|conv1x1|conv3x3"
    custom = searcher(reference=other)
    custom.suggest("y")
    assert all(hamming_distance(m.cell, other) < 0.12 for pop in custom.populations for m in pop)


def test_the_generated_space_holds_only_evaluated_cells_and_records_how_often_each_was(tmp_path):
    s = searcher(generations=3, offspring=2, population_size=8, cells_per_layer=3)
    for g in range(3):
        job = s.suggest(f"g{g}")
        s.on_trial_complete(f"g{g}", result=synthetic_result(job, shift=1.0))
    # The last generation's offspring carry their parents' fitness, the best there is, yet were never trained.
    for pop in s.populations:
        best = max(m.fitness for m in pop if m.evaluations)
        assert any(m.evaluations == 0 and m.fitness == best for m in pop)
    space = s.generated_space()
    counts = [{m.cell: m.evaluations for m in pop} for pop in s.populations]
    assert all(counts[layer][cell] > 0 for layer, cells in enumerate(space.layer_cells) for cell in cells)
    assert space.evaluations == [
        [counts[layer][cell] for cell in cells] for layer, cells in enumerate(space.layer_cells)
    ]
    assert s.best_architecture() == ",".join(cells[0] for cells in space.layer_cells)
    saved = json.loads(Path(space.save(tmp_path / "space.json")).read_text())
    assert saved["kwargs"]["evaluations"] == space.evaluations
    assert GeneratedSpace.load(tmp_path / "space.json") == space


def test_eq1_madds_limit_keeps_expensive_cells_out():
    space = OpenCellSpace(**PLAN)
    limits = [1.5 * space.layer_cost(layer, REFERENCE_IRB).madds for layer in range(space.num_layers)]
    s = searcher(max_cell_madds=limits, population_size=12, use_reference=False)
    for g in range(3):
        job = s.suggest(f"g{g}")
        s.on_trial_complete(f"g{g}", result=synthetic_result(job))
    for layer, pop in enumerate(s.populations):
        assert all(space.layer_cost(layer, m.cell).madds < limits[layer] for m in pop)
    with pytest.raises(ValueError, match="2 layers"):
        searcher(max_cell_madds=[1e6]).suggest("t")


def test_bad_configurations_are_clear_errors():
    with pytest.raises(ValueError, match="cells_per_layer"):
        AutoSpaceSearcher(cells_per_layer=9, population_size=4)
    with pytest.raises(ValueError, match="epsilon"):
        AutoSpaceSearcher(epsilon=1.5)
    with pytest.raises(ValueError, match="OpenCellSpace"):
        AutoSpaceSearcher(space=IRBSpace(**PLAN), metric="loss", mode="min").suggest("t")
    with pytest.raises(ValueError, match="num_layers=3"):
        searcher(num_layers=3).suggest("t")


# --------------------------------------------------------------------------------------------------
# The loop on a real (tiny) supernet
# --------------------------------------------------------------------------------------------------
def test_evolution_trains_the_supernet_and_generates_a_space_any_searcher_searches(tmp_path):
    pytest.importorskip("optuna", reason="Tune's OptunaSearch needs optuna (in the test extra)")
    from ray.tune.search.optuna import OptunaSearch

    s = searcher(generations=3)
    run_in_process(s, InProcessSupernet(tiny_spec(), "cpu"))
    assert s.completed_generations == 3 and len(s.population_history) == 3 * 2 * 3
    assert any(r["alpha_star"] != r["alpha_start"] for r in s.population_history)
    s.export_history(tmp_path / "history.parquet")
    space = GeneratedSpace.load(s.generated_space().save(tmp_path / "space.json"))
    assert [len(slot.ops) for slot in space.slots] == [4, 3]  # K = 3 cells, and "zero" where the residual allows
    assert space.contains(space.from_string(",".join(c[0] for c in s.top_cells(1))))

    runner = InProcessSupernet(tiny_spec(space), "cpu")
    runner({"task": "train", "steps": 10, "seed": 0})
    for other in (
        RandomSearcher(space=space, metric="accuracy", mode="max", max_queries=4, seed=0),
        RegularizedEvolutionSearcher(
            space=space, metric="accuracy", mode="max", max_queries=5, population_size=3, seed=0
        ),
        ASESearcher(
            space=space,
            metric="accuracy",
            mode="max",
            max_queries=4,
            num_subspaces=2,
            train_steps=10,
            steps_per_trial=10,
            seed=0,
        ),
    ):
        run_in_process(other, runner)
        assert space.contains(other.best_architecture())
    # Tune's own searcher, through the generated space's param_space (Eq. 6's loss as the metric).
    param_space = {**space.param_space(), "autospace": {"madds_penalty": 1e-7}, "images": 64}
    optuna = OptunaSearch(metric="regularized_loss", mode="min", seed=0)
    optuna.set_search_properties("regularized_loss", "min", param_space)
    assert run_in_process(optuna, runner, max_queries=4, param_space=param_space, space=space) >= 4
    best = optuna._ot_study.best_trial.params
    assert space.contains([best[f"ops/{slot.name}"] for slot in space.slots])


def test_save_restore_mid_evolution_resumes_identically(tmp_path):
    runner = InProcessSupernet(tiny_spec(), "cpu")
    first = searcher(generations=6)
    run_in_process(first, runner, max_trials=3)
    first.save(str(tmp_path / "autospace.pkl"))
    recorded = []
    for i in range(3):
        job = first.suggest(f"r{i}")
        result = runner(job)
        recorded.append((copy.deepcopy(job), result))
        first.on_trial_complete(f"r{i}", result=result)

    resumed = searcher(generations=6, seed=123)
    resumed.restore(str(tmp_path / "autospace.pkl"))
    for i, (job, result) in enumerate(recorded):
        assert resumed.suggest(f"s{i}") == job
        resumed.on_trial_complete(f"s{i}", result=result)
    assert resumed.population_table() == first.population_table()
    assert resumed.suggest("end") == first.suggest("end") == "FINISHED"


@pytest.mark.slow
def test_under_tune_generations_train_in_parallel(ray_session, tune_run_kwargs):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from tune_spacenas.store import SupernetStore
    from tune_spacenas.trainables import supernet_trainable

    class Watched(AutoSpaceSearcher):
        most_in_flight = 0

        def propose(self):
            job = super().propose()
            if isinstance(job, dict):
                self.most_in_flight = max(self.most_in_flight, len(self._live) + 1)
            return job

    store = SupernetStore.create("autospace-tune-test", tiny_spec())
    try:
        s = Watched(
            metric="loss",
            mode="min",
            generations=4,
            iterations_per_generation=10,
            cells_per_layer=2,
            population_size=6,
            seed=0,
        )
        analysis = tune.run(
            supernet_trainable,
            config=store.param_space(),
            search_alg=ConcurrencyLimiter(s, 2),
            num_samples=-1,
            **tune_run_kwargs,
        )
        assert all(t.status == "TERMINATED" for t in analysis.trials) and len(analysis.trials) == 4
        assert s.completed_generations == 4 and s.most_in_flight == 2
        assert all(len(t.last_result["alpha"]) == 2 for t in analysis.trials)
        assert store.info()["stats"]["applied"] >= 4  # every generation pushed its weight deltas
        assert s.space.contains(s.best_architecture())
    finally:
        store.kill()
