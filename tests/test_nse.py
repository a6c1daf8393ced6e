"""NSE: multi-branch spaces, Eq. (1), fitness indicators (Eqs. 3-8), simplification with L&R, Pareto
retrieval, aggregation, replenishment, and the whole loop in-process and under Tune."""

from __future__ import annotations

import copy
import itertools
import math
import uuid

import numpy as np
import pytest
import torch
from conftest import tiny_supernet_spec
from torch import nn

from tune_spacenas.jobs import NSEJob, NSEReset, train_job
from tune_spacenas.runner import InProcessSupernet, run_in_process
from tune_spacenas.searchers import NSESearcher
from tune_spacenas.searchers.nse import aggregate, replenish, resource_table, retrieve_front, simplify
from tune_spacenas.spaces import MultiBranchSpace, SearchSpace, Slot, space_from_spec
from tune_spacenas.spaces.multibranch import NSE27_POOL, SECOND_POOL, layer_probability, paper_space_size
from tune_spacenas.supernet import register_supernet
from tune_spacenas.supernet.base import Supernet
from tune_spacenas.supernet.multibranch import FITNESS_PARAM, FitnessIndicators, MultiBranchLayer
from tune_spacenas.supernet.spec import SupernetSpec

TINY_POOL = ["dw_k3_e1", "dw_k5_e1", "dw_k3_e1_d2", "conv1xk_k5_e1", "dw_k3_e3", "dw_k7_e1"]


def tiny_space(**kwargs) -> MultiBranchSpace:
    """Four layers (normal, normal, reduction, normal) of the six-operation pool at 8x8."""
    return MultiBranchSpace(
        pool=TINY_POOL, width_mult=0.25, input_size=8, num_classes=10, stages=((16, 2, 1), (24, 2, 2)), **kwargs
    )


def tiny_spec(space=None, **kwargs) -> SupernetSpec:
    return tiny_supernet_spec(space or tiny_space(), **kwargs)


def tiny_nse(**kwargs) -> NSESearcher:
    """Two rounds of 20 steps, 6 + 2 samples per round, on the tiny space (a wide constraint)."""
    args = dict(
        space=tiny_space(),
        ops_per_layer=3,
        steps_per_round=20,
        steps_per_trial=10,
        samples=6,
        edge_samples=2,
        tau=0.25,
        constraint=(0.2, 10.0),
        edge_band=0.2,
        eval_batch=4,
    )
    return NSESearcher(**{**args, **kwargs})


# --------------------------------------------------------------------------------------------------
# The space
# --------------------------------------------------------------------------------------------------
def test_table5_space_pools_and_a4_size():
    space = MultiBranchSpace()
    assert len(space.slots) == 22 and sum(space.reduction) == 6
    assert len(NSE27_POOL) == 27 == len(set(NSE27_POOL)) and len(SECOND_POOL) == 45
    assert all(sorted(s.ops) == sorted(NSE27_POOL) for s in space.slots)
    assert len({s.ops for s in space.slots}) > 1  # shuffled layer-wise ...
    assert MultiBranchSpace().slots[5].ops == space.slots[5].ops  # ... with a fixed seed
    assert f"{paper_space_size(27, 5):.2g}" == "1.4e+110"  # Table 7 / A.4
    continued = MultiBranchSpace(pool="nse27+second")
    assert all(sorted(s.ops[:27]) == sorted(NSE27_POOL) and len(s.ops) == 72 for s in continued.slots)


def test_configuration_index_strings_and_validation():
    space = tiny_space()
    reduction = space.reduction.index(True)
    assert space.configuration([0, 2]) == 0b101 and space.branches(0, 0b101) == (0, 2)
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = space.sample(rng)
        assert space.from_string(space.to_string(arch)) == arch and space.validate(list(arch)) == arch
    assert space_from_spec(space.to_spec()) == space
    empty = [0] * 4
    with pytest.raises(ValueError, match="reduction layer 'l03r' needs at least one"):
        space.validate(empty)
    empty[reduction] = 1
    assert space.to_string(empty).split(",")[0] == "identity"
    with pytest.raises(ValueError, match="not a subset of its 6 operations"):
        space.validate([1 << 6, 1, 1, 1])
    with pytest.raises(ValueError, match="unknown operation 'dw_k9_e9'"):
        space.validate(["dw_k9_e9", "identity", space.slots[2].ops[0], "identity"])
    with pytest.raises(ValueError, match="at most 1 per layer"):
        tiny_space(max_branches=1).validate([0b11, 0, 1, 0])


def test_subspaces_allow_empty_normal_layers_only():
    space = tiny_space()
    sub = space.restrict([[], [0, 1], [2], [3, 4, 5]])
    assert sub.size == 1 * 4 * 1 * 8 and sub.is_restricted
    assert space_from_spec(sub.to_spec()) == sub and sub.full_space() == space
    assert all(sub.contains(a) for a in sub.sample_many(np.random.default_rng(0), 30))
    with pytest.raises(ValueError, match="outside this subspace"):
        sub.validate([1, 0, 4, 0])
    with pytest.raises(ValueError, match="reduction layer 'l03r' restricted to no operation"):
        space.restrict([[0], [0], [], [0]])
    assert len(list(sub.enumerate())) == sub.size


def test_uniform_sampling_is_bernoulli_half_per_branch():
    """Eq. (2): U_a draws every configuration of a layer equally often (reduction layers: not the empty one)."""
    sub = tiny_space().restrict([[0, 1], [0], [0, 1], [0]])
    rng = np.random.default_rng(0)
    normal = [sub.sample_slot(0, rng) for _ in range(4000)]
    reduction = [sub.sample_slot(2, rng) for _ in range(3000)]
    assert sorted(set(normal)) == [0, 1, 2, 3] and sorted(set(reduction)) == [1, 2, 3]
    assert min(normal.count(c) for c in range(4)) > 850 and min(reduction.count(c) for c in (1, 2, 3)) > 850


def test_costs_add_up_per_branch():
    space = MultiBranchSpace(width_mult=0.25, input_size=16)
    fixed, table = space.cost_table()
    arch = space.sample(np.random.default_rng(1))
    total = fixed.madds + sum(table[l][n].madds for l, c in enumerate(arch) for n in space.branches(l, c))
    assert space.cost(arch).madds == pytest.approx(total)
    # dw k3 e6 at layer 1 (8 -> 8 channels, 16x16, stride 1) by hand: 1x1 expand, depthwise, 1x1 project.
    n = space.slots[0].index("dw_k3_e6")
    assert table[0][n].madds == 8 * 48 * 256 + 9 * 48 * 256 + 48 * 8 * 256
    base, per_op = resource_table(space)
    assert base == pytest.approx(fixed.madds / 1e6) and per_op[0, n] == pytest.approx(table[0][n].madds / 1e6)


def test_costs_count_the_kernel_applied_at_each_layers_resolution():
    """Eq. (8)'s C(e) is what the supernet computes: torch's FLOP counter on real forwards agrees exactly,
    and by hand a 7x7 depthwise kernel on a 2x2 input costs a 3x3 one, a dilated 3x3 one a 1x1 one."""
    from torch.utils.flop_counter import FlopCounterMode

    from tune_spacenas.supernet.multibranch import MultiBranchSupernet

    space = MultiBranchSpace(
        pool=TINY_POOL, width_mult=0.25, input_size=4, num_classes=10, stages=((16, 2, 1), (24, 2, 2))
    )
    assert [size for *_, size in space.layer_plan()] == [4, 4, 4, 2]
    net = MultiBranchSupernet(space).eval()
    for arch in space.sample_many(np.random.default_rng(0), 6):
        with FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, 3, 4, 4), arch)
        assert counter.get_total_flops() == 2 * space.cost(arch).madds  # the counter counts a MAdd as 2 FLOPs
    (cin, cout, _, size), table = space.layer_plan()[3], space.cost_table()[1][3]
    assert (cin, cout, size) == (8, 8, 2)
    per_1x1 = 8 * 8 * 4  # 1x1 expansion or projection at ratio 1
    assert table[space.slots[3].index("dw_k7_e1")].madds == 2 * per_1x1 + 9 * 8 * 4
    assert table[space.slots[3].index("dw_k3_e1_d2")].madds == 2 * per_1x1 + 1 * 8 * 4
    assert table[space.slots[3].index("conv1xk_k5_e1")].madds == 2 * per_1x1 + 2 * 3 * 8 * 8 * 4
    assert table[space.slots[3].index("dw_k7_e1")].params == 2 * 8 * 8 + 49 * 8  # the weights exist in full


def test_param_space_reads_tunes_per_branch_selectors():
    from ray.tune.search.sample import Categorical

    space = tiny_space().restrict([[0, 1], [], [2], [3]])
    config = space.param_space()
    assert isinstance(config["ops"]["l01n"][space.slots[0].ops[0]], Categorical) and config["ops"]["l02n"] == {}
    chosen = {
        "ops": {
            "l01n": {space.slots[0].ops[0]: 1, space.slots[0].ops[1]: 0},
            "l02n": {},
            "l03r": {space.slots[2].ops[2]: 1},
            "l04n": {space.slots[3].ops[3]: 0},
        }
    }
    assert space.arch_from_config(chosen) == (0b1, 0, 0b100, 0)
    assert space.arch_from_config(space.to_config((0b1, 0, 0b100, 0))) == (0b1, 0, 0b100, 0)


# --------------------------------------------------------------------------------------------------
# Eq. (1), Eq. (4), the simulated gradient (Eq. 7)
# --------------------------------------------------------------------------------------------------
def test_eq1_mean_of_selected_branches_plus_identity_by_hand():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4, 4)
    normal = MultiBranchLayer(["dw_k3_e1", "dw_k5_e1"], 8, 8, 1, reduction=False).eval()
    a, b = normal.branches["dw_k3_e1"](x), normal.branches["dw_k5_e1"](x)
    assert torch.allclose(normal(x, ["dw_k3_e1", "dw_k5_e1"]), (a + b + x) / 3, atol=1e-6)
    assert torch.allclose(normal(x, ["dw_k5_e1"]), (b + x) / 2, atol=1e-6)
    assert torch.equal(normal(x, []), x)
    reduction = MultiBranchLayer(["dw_k3_e1", "dw_k5_e1"], 8, 16, 2, reduction=True).eval()
    ra, rb = reduction.branches["dw_k3_e1"](x), reduction.branches["dw_k5_e1"](x)
    assert torch.allclose(reduction(x, ["dw_k3_e1", "dw_k5_e1"]), (ra + rb) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="at least one branch"):
        reduction(x, [])


@pytest.mark.parametrize("n", [1, 3, 5])
def test_eq4_layer_probabilities_sum_to_one(n):
    p = np.random.default_rng(n).random(n)
    selectors = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
    assert layer_probability(p, selectors).sum() == pytest.approx(1.0)
    torch_p = torch.tensor(p, requires_grad=True)
    total = layer_probability(torch_p, torch.tensor(selectors)).sum()
    assert total.item() == pytest.approx(1.0)
    total.backward()
    assert torch.allclose(torch_p.grad, torch.zeros(n, dtype=torch.float64), atol=1e-12)


class GoodOrNegated(FitnessIndicators, Supernet):
    """A hand-made problem: one slot whose branch ``good`` passes the features to the classifier and
    whose branch ``neg`` negates them, so using ``good`` lowers the validation loss of a trained head."""

    def __init__(self, space: SearchSpace, num_classes: int | None = None):
        super().__init__(space)
        self.head = nn.Linear(8 * 8 * 3, num_classes or 10)
        self.init_fitness((1, 2))

    @staticmethod
    def branch(name: str, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) if name == "good" else -x.flatten(1)

    def forward(self, x, arch):
        return self.head(self.branch(self.space.slots[0].ops[arch[0]], x))

    def simulated_forward(self, x, pairs):
        pair = pairs[0]
        return self.head(pair.mix(self.branch(pair.a[0], x), self.branch(pair.b[0], x)))


register_supernet("test-good-or-negated", GoodOrNegated)


def test_simulated_gradient_raises_the_theta_of_the_helpful_branch():
    space = SearchSpace([Slot("layer", ("good", "neg"))], name="toy")
    spec = tiny_supernet_spec(space, skeleton="test-good-or-negated")
    runner = InProcessSupernet(spec, "cpu")
    # The head trains on the good path; thetas update every 2 steps on validation batches (Eqs. 3-7).
    runner(train_job(80, arch="good", lr=0.05, seed=0, nse={"every": 2, "lr": 0.05, "betas": [0.0, 0.999]}))
    theta = runner.store.arrays[FITNESS_PARAM][0]
    assert theta[0] > 0.5 and theta[1] < -0.5


def test_resource_term_pulls_thetas_toward_the_target():
    """Eq. (8): with the cross-entropy term negligible, an expensive branch loses theta when the target is low."""
    space = tiny_space()
    spec = tiny_spec(space)
    runner = InProcessSupernet(spec, "cpu")
    base, costs = resource_table(space)
    expensive = int(np.argmax(costs[0]))
    sub = space.restrict([[expensive, int(np.argmin(costs[0]))], [0], [0], [0]])
    settings = {"every": 1, "lr": 0.1, "alpha": 1e3, "beta": 2, "tau": 0.0, "costs": costs.tolist(), "fixed_cost": base}
    runner(train_job(10, sub, lr=0.0, seed=0, nse=settings))
    assert runner.store.arrays[FITNESS_PARAM][0, expensive] < -0.5


def test_a_round_reset_reinitialises_replenished_ops_and_zeroes_thetas():
    space = tiny_space()
    runner = InProcessSupernet(tiny_spec(space), "cpu")
    names = {n: runner.worker.net.choice_parameter_names(0, n) for n in (0, 1)}
    before = {k: v.copy() for k, v in runner.store.arrays.items()}
    runner.store.assign({FITNESS_PARAM: np.ones_like(before[FITNESS_PARAM])})
    sub = space.restrict([[0, 1], [0], [0], [0]])
    runner(train_job(1, sub, lr=0.0, seed=0, nse={"every": 2, "reset": {"seed": 3, "ops": [[0, 1]]}}))
    after = runner.store.arrays
    assert np.all(after[FITNESS_PARAM] == 0)
    assert all(np.array_equal(after[k], before[k]) for k in names[0])  # inherited: untouched
    changed = [k for k in names[1] if after[k].ndim > 1]
    assert changed and all(not np.allclose(after[k], before[k]) for k in changed)  # replenished: fresh


def test_a_full_reset_reinitialises_every_weight_from_its_seed_alone():
    """The official re_init(): the same reset seed gives the same weights whatever the supernet held before."""
    space = tiny_space()
    sub = space.restrict([[0, 1], [0], [0], [0]])
    trained, fresh = InProcessSupernet(tiny_spec(space), "cpu"), InProcessSupernet(tiny_spec(space, init_seed=5), "cpu")
    trained(train_job(10, sub, lr=0.1, seed=0, nse={"lr": 0.1}))
    before = {k: v.copy() for k, v in trained.store.arrays.items()}
    reset = {"every": 2, "lr": 0.0, "reset": {"seed": 3, "all": True}}
    for runner in (trained, fresh):
        runner(train_job(1, sub, lr=0.0, seed=0, nse=reset))
    after = trained.store.arrays
    assert np.all(after[FITNESS_PARAM] == 0)
    assert all(np.allclose(after[k], fresh.store.arrays[k], atol=1e-6) for k in after)  # deltas add up in float32
    assert all(not np.allclose(after[k], before[k]) for k in after if after[k].ndim > 1)


def test_theta_lr_zero_learns_no_fitness():
    space = tiny_space()
    runner = InProcessSupernet(tiny_spec(space), "cpu")
    runner(train_job(6, space.restrict([[0, 1], [0], [0], [0]]), lr=0.05, seed=0, nse={"every": 1, "lr": 0.0}))
    assert not runner.store.arrays[FITNESS_PARAM].any()
    with pytest.raises(ValueError, match="theta_lr must be >= 0"):
        tiny_nse(theta_lr=-1.0)


# --------------------------------------------------------------------------------------------------
# Simplification, Pareto front, aggregation, replenishment
# --------------------------------------------------------------------------------------------------
def test_simplification_keeps_the_last_reduction_path_and_locked_ops():
    theta = np.full((3, 4), -5.0)
    theta[0, 1], theta[1, 2], theta[2, 0] = 1.0, -3.0, -2.5
    subsets = [[0, 1, 2], [1, 2], [0, 3]]
    reduction = [False, True, False]
    assert simplify(subsets, theta, -2.0, reduction) == [[1], [2], []]  # the normal layer may empty out
    assert simplify(subsets, theta, -2.0, reduction, locked=[[2], [], [3]]) == [[1, 2], [2], [3]]
    assert simplify([[0, 1]], np.array([[-2.0, -2.1]]), -2.0, [True]) == [[0]]  # below, not at, the threshold


def test_pareto_front_excludes_edge_samples_and_aggregates_its_operations():
    accuracy = [50, 60, 55, 70, 65, 58]
    cost = [10, 20, 30, 40, 40, 5]
    edge = [False, False, False, False, False, True]
    # Without the edge sample (cost 5, 58%), the cheapest in-constraint point (cost 10, 50%) looks optimal (Fig. 10).
    assert retrieve_front(accuracy[:5], cost[:5], edge[:5]) == [0, 1, 3]
    assert retrieve_front(accuracy, cost, edge) == [1, 3]
    # An edge sample better than everything inside the constraint leaves the inside front.
    assert retrieve_front(accuracy + [99], cost + [4], edge + [True]) == [0, 1, 3]
    front = [[(0,), (1, 2), ()], [(0, 3), (2,), (4,)]]
    assert aggregate(front, 3) == [[0, 3], [1, 2], [4]]


def test_replenishment_keeps_k_and_ends_when_the_pool_runs_out():
    subsets, pending = replenish([[0], [1, 2], []], [[3, 4, 5], [6, 7], [8, 9, 10]], 3)
    assert subsets == [[0, 3, 4], [1, 2, 6], [8, 9, 10]] and pending == [[5], [7], []]
    assert all(len(s) == 3 for s in subsets)
    assert replenish([[0], [1, 2], []], [[5], [7], []], 3) is None  # layer 0 needs two, has one
    assert replenish([[0, 1, 2], [1, 2, 3], [4, 5, 6]], [[], [], []], 3) is not None


# --------------------------------------------------------------------------------------------------
# The whole loop
# --------------------------------------------------------------------------------------------------
def _drive(searcher, runner, trials):
    out = []
    run_in_process(searcher, runner, max_trials=trials, on_result=lambda c, r: out.append((copy.deepcopy(c), r)))
    return out


def _resets(trials) -> list[NSEReset]:
    """The round resets the training trials carried, in order."""
    jobs = [NSEJob.from_dict(config["nse"]) for config, _ in trials if "nse" in config]
    return [job.reset for job in jobs if job.reset is not None]


def test_the_loop_evolves_the_subset_round_after_round(tmp_path):
    runner = InProcessSupernet(tiny_spec(), "cpu")
    searcher = tiny_nse(metric="accuracy", mode="max")
    trials = _drive(searcher, runner, 60)
    # Round 2 starts from re-initialised weights (the official code's default): one reset of everything.
    assert [r.all for r in _resets(trials)] == [False, True]
    assert searcher.suggest("after") == "FINISHED"
    assert len(searcher.rounds) == 2 == searcher.max_rounds  # (6 - 1) // (3 - 1)
    first, second = searcher.rounds
    assert all(len(s) == 3 for s in first["subsets"]) and all(len(s) == 3 for s in second["subsets"])
    for aggregated, subset, previous in zip(first["aggregated"], second["subsets"], first["subsets"]):
        assert subset[: len(aggregated)] == aggregated  # inherited, then refilled from unused pool operations
        assert set(subset[len(aggregated) :]).isdisjoint(previous)
    assert second["locked"] == first["aggregated"] and second["rehearsed"] == len(first["front"])
    assert all(set(a) <= set(s) for a, s in zip(first["aggregated"], first["subsets"]))
    best = searcher.best_architecture()
    assert best in second["front"] and searcher.space.contains(best)
    assert np.abs(np.array(second["thetas"])).max() > 0
    # Every scored candidate is kept with its supernet accuracy, cost and role (the benchmark's ranking check).
    assert len(first["evaluated_archs"]) == first["evaluated"] == len(first["evaluated_accuracy"])
    assert set(first["front"]) <= set(first["evaluated_archs"]) and set(first["evaluated_role"]) <= {"sample", "edge"}
    searcher.export_rounds(tmp_path / "rounds.parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "rounds.parquet")
    assert table.num_rows == 2 and {"subsets", "thetas", "front", "aggregated"} <= set(table.column_names)


def test_save_restore_mid_round_resumes_identically(tmp_path):
    runner = InProcessSupernet(tiny_spec(), "cpu")
    searcher = tiny_nse(metric="accuracy", mode="max", seed=4)
    _drive(searcher, runner, 3)  # round 1: both training trials and an evaluation batch
    assert searcher.round == 0 and searcher.phase == "evaluation"
    searcher.save(str(tmp_path / "nse.pkl"))
    runner.store.checkpoint(str(tmp_path / "store.npz"))
    trials_at_save = runner.trials
    rest = _drive(searcher, runner, 60)

    resumed_runner = InProcessSupernet(tiny_spec(), "cpu")
    resumed_runner.store.load(str(tmp_path / "store.npz"))
    resumed_runner.trials = trials_at_save  # trial ids continue, so the store's replay guard lets pushes in
    resumed = tiny_nse(metric="accuracy", mode="max", seed=99)
    resumed.restore(str(tmp_path / "nse.pkl"))
    again = _drive(resumed, resumed_runner, 60)
    assert [c for c, _ in again] == [c for c, _ in rest]
    assert [r["accuracy"] for _, r in again] == pytest.approx([r["accuracy"] for _, r in rest])
    assert resumed.rounds == searcher.rounds and resumed.best_architecture() == searcher.best_architecture()


def test_without_lock_and_rehearse_nothing_is_locked_or_rehearsed_and_weights_may_be_inherited():
    runner = InProcessSupernet(tiny_spec(), "cpu")
    searcher = tiny_nse(metric="accuracy", mode="max", lock_and_rehearse=False, reinit_weights=False)
    trials = _drive(searcher, runner, 60)
    assert searcher.rounds[1]["locked"] == [[]] * 4 and searcher.rounds[1]["rehearsed"] == 0
    # Inheriting weights: round 2 re-initialises only the operations replenishment added.
    (first, second) = _resets(trials)
    assert not first.all and not second.all and second.ops
    added = {
        (l, searcher.space.slots[l].index(op))
        for l, (old, new) in enumerate(zip(searcher.rounds[0]["aggregated"], searcher.rounds[1]["subsets"]))
        for op in new
        if op not in old
    }
    assert {tuple(op) for op in second.ops} == added


@pytest.mark.parametrize("reinit_weights", [True, False])
def test_round_two_starts_from_fresh_weights_by_default_and_inherits_with_the_switch(reinit_weights):
    """Issue 14 item 5, on the weights themselves: by default (the official re_init) round 2 starts from
    weights that round 1's training has no say in; with ``reinit_weights=False`` the aggregated operations
    and the shared trunk keep round 1's trained weights and only replenished operations start fresh."""
    space = tiny_space()
    runner = InProcessSupernet(tiny_spec(space), "cpu")
    searcher = tiny_nse(metric="accuracy", mode="max", reinit_weights=reinit_weights)
    seen: dict = {}

    def evaluate(config):
        payload = config.get("nse")
        reset = NSEJob.from_dict(payload).reset if payload else None
        if reset is not None and searcher.round == 1 and not seen:
            # The round's reset applied on its own (no SGD, no fitness step): the weights round 2 starts from.
            seen["end"] = {k: v.copy() for k, v in runner.store.arrays.items()}
            probe = train_job(1, space, lr=0.0, seed=0, nse={"every": 2, "lr": 0.0, "reset": reset.to_dict()})
            runner(probe)
            seen["start"] = {k: v.copy() for k, v in runner.store.arrays.items()}
            fresh = InProcessSupernet(tiny_spec(space, init_seed=7), "cpu")  # never trained, other init
            fresh(probe)
            seen["fresh"] = fresh.store.arrays
        return runner(config)

    run_in_process(searcher, evaluate, max_trials=60)
    assert len(searcher.rounds) == 2 and seen
    net = runner.worker.net
    end, start, fresh = seen["end"], seen["start"], seen["fresh"]
    weights = [k for k in start if start[k].ndim > 1 and k != FITNESS_PARAM]  # conv and linear weights
    by_op = {
        (slot, space.slots[slot].index(op)): net.choice_parameter_names(slot, space.slots[slot].index(op))
        for slot, ops in enumerate(searcher.rounds[1]["subsets"])
        for op in ops
    }
    inherited = {
        pair for pair in by_op if space.slots[pair[0]].ops[pair[1]] in searcher.rounds[0]["aggregated"][pair[0]]
    }
    added = set(by_op) - inherited
    assert inherited and added
    assert not np.allclose(end[weights[0]], fresh[weights[0]])  # round 1 did train the trunk
    if reinit_weights:
        assert all(np.allclose(start[k], fresh[k], atol=1e-6) for k in weights)  # round 1 left no trace
    else:
        renewed = [n for pair in added for n in by_op[pair] if n in weights]
        kept = set(weights) - set(renewed)  # the trunk and every operation replenishment did not add
        assert {n for pair in inherited for n in by_op[pair]} & kept
        assert all(np.array_equal(start[k], end[k]) for k in kept)
        assert renewed and all(not np.allclose(start[k], end[k]) for k in renewed)
        assert all(np.allclose(start[k], fresh[k], atol=1e-6) for k in renewed)  # seeded: as a fresh net's


def test_a_finished_search_continues_on_a_second_pool():
    runner = InProcessSupernet(tiny_spec(), "cpu")
    first = tiny_nse(metric="accuracy", mode="max")
    with pytest.raises(ValueError, match="not finished"):
        first.continue_on(tiny_space(), ["dw_k9_e1"])
    _drive(first, runner, 60)
    extra = ["dw_k9_e1", "dw_k11_e1", "dw_k5_e3"]
    space = MultiBranchSpace(
        pool=TINY_POOL + extra, width_mult=0.25, input_size=8, num_classes=10, stages=((16, 2, 1), (24, 2, 2))
    )
    second = first.continue_on(space, extra, max_rounds=1)
    second_runner = InProcessSupernet(tiny_spec(space), "cpu")
    _drive(second, second_runner, 60)
    start = second.rounds[0]
    assert start["locked"] == first.final_subsets and start["rehearsed"] == len(first.front)
    for inherited, subset in zip(first.final_subsets, start["subsets"]):
        assert subset[: len(inherited)] == inherited and set(subset[len(inherited) :]) <= set(extra)
    assert second.k == first.k and second.steps_per_round == first.steps_per_round


def test_continuing_on_a_second_pool_inherits_and_locks():
    space = MultiBranchSpace(
        pool="nse27+second", width_mult=0.25, input_size=8, num_classes=10, stages=((16, 2, 1), (24, 2, 2))
    )
    inherit = [[s.ops[0]] for s in space.slots]
    searcher = NSESearcher(
        space=space, metric="accuracy", mode="max", ops_per_layer=3, pool=SECOND_POOL, inherit=inherit
    )
    searcher.suggest("t0")
    for names, slot, locked in zip(searcher.record["subsets"], space.slots, searcher.record["locked"]):
        assert names[0] == slot.ops[0] and all(op in SECOND_POOL for op in names[1:]) and len(names) == 3
        assert locked == [slot.ops[0]]
    assert searcher.max_rounds == (45 + 1 - 1) // 2


def test_single_branch_special_case_on_nasbench201():
    spec = tiny_supernet_spec(skeleton="nasbench201+fitness")
    space = spec.space
    runner = InProcessSupernet(spec, "cpu")
    base, costs = resource_table(space)
    assert base > 0 and costs[0, 3] > costs[0, 2] > 0 == costs[0, 1]  # 3x3 > 1x1 conv > skip
    searcher = NSESearcher(
        space=space,
        metric="accuracy",
        mode="max",
        ops_per_layer=3,
        steps_per_round=20,
        steps_per_trial=20,
        samples=8,
        edge_samples=0,
        tau=1.0,
        constraint=(0.0, 100.0),
        eval_batch=8,
    )
    _drive(searcher, runner, 40)
    assert searcher.phase == "finished" and len(searcher.rounds) == 2
    assert space.contains(searcher.best_architecture())
    plain = InProcessSupernet(tiny_supernet_spec(space), "cpu")
    with pytest.raises(ValueError, match=r"carry no 'fitness_indicators'.*nasbench201\+fitness"):
        _drive(NSESearcher(space=space, metric="accuracy", mode="max", steps_per_trial=5, steps_per_round=5), plain, 2)


def test_nse_under_tune_with_concurrency_limiter(ray_session, tune_run_kwargs):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from tune_spacenas.store import SupernetStore
    from tune_spacenas.trainables import supernet_trainable

    store = SupernetStore.create(f"nse-{uuid.uuid4().hex[:8]}", tiny_spec())
    try:
        searcher = tiny_nse(space=None)
        analysis = tune.run(
            supernet_trainable,
            config=store.param_space(),
            metric="accuracy",
            mode="max",
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=2),
            num_samples=-1,
            **tune_run_kwargs,
        )
        assert all(t.status == "TERMINATED" for t in analysis.trials)
        assert searcher.suggest("after") == "FINISHED" and len(searcher.rounds) == 2
        assert searcher.space.contains(searcher.best_architecture())
        assert np.abs(store.pull(None, [FITNESS_PARAM])[1][FITNESS_PARAM][1]).max() > 0
        assert math.isfinite(searcher.rounds[0]["front_accuracy"][0])
    finally:
        store.kill()


def test_bad_settings_name_the_fix():
    from tune_spacenas.searchers import ASESearcher, RegularizedEvolutionSearcher, REINFORCESearcher
    from tune_spacenas.spaces import DARTSSpace

    with pytest.raises(ValueError, match="no cost model.*cost_table"):
        resource_table(DARTSSpace())
    with pytest.raises(ValueError, match="inherit= has 2 layers"):
        tiny_nse(inherit=[["dw_k3_e1"], ["dw_k5_e1"]], metric="accuracy", mode="max").suggest("t0")
    with pytest.raises(ValueError, match="num_edits"):
        RegularizedEvolutionSearcher(num_edits=0)
    # A slot of a multi-branch space holds a set of operations: methods with a softmax over one op refuse it.
    for searcher in (ASESearcher, REINFORCESearcher):
        with pytest.raises(ValueError, match="set of operations per layer.*NSESearcher"):
            searcher(space=tiny_space(), metric="accuracy", mode="max").suggest("t0")
