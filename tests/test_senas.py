"""SE-NAS: Eqs. (5)-(7) by hand, shrinking, merging (Fig. 3), expanded weights, the whole loop, resume, Tune."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tune_spacenas.jobs import SENASJob, evaluate_batch_job, train_job
from tune_spacenas.runner import InProcessSupernet, run_in_process
from tune_spacenas.searchers import SENASSearcher
from tune_spacenas.searchers.evolution import EvolutionSettings
from tune_spacenas.searchers.senas import (
    mean_normalize,
    merge_layer_spaces,
    min_max_normalize,
    operator_sample,
    operator_scores,
    selection_confidence,
    selection_importance,
    shrink_operators,
)
from tune_spacenas.spaces import NASBench201Space
from tune_spacenas.spaces.base import SearchSpace, Slot
from tune_spacenas.store.table import variant_key


def toy_space() -> SearchSpace:
    return SearchSpace([Slot("a", ("x", "y", "z")), Slot("b", ("p", "q"))])


# --- Eqs. (5)-(7) ------------------------------------------------------------------------------
def test_scores_equal_equations_5_to_7_by_hand():
    space = toy_space()
    samples = [
        ((0, 0), 60.0),
        ((0, 1), 70.0),
        ((1, 0), 40.0),
        ((1, 1), 50.0),
        ((2, 0), 80.0),
        ((2, 1), 90.0),
        ((0, 0), 62.0),
    ]
    si = selection_importance(samples, space)
    # Eq. (5): mean P(a) over the sampled models containing the operator.
    hand_si = {
        (0, 0): (60 + 70 + 62) / 3,
        (0, 1): 45.0,
        (0, 2): 85.0,
        (1, 0): (60 + 40 + 80 + 62) / 4,
        (1, 1): (70 + 50 + 90) / 3,
    }
    assert si == pytest.approx(hand_si)
    # Eq. (6): population variance of SI over the candidates of the operator's layer.
    var_a = np.var([64.0, 45.0, 85.0])
    var_b = np.var([hand_si[(1, 0)], hand_si[(1, 1)]])
    assert selection_confidence(si) == pytest.approx(
        {(0, 0): var_a, (0, 1): var_a, (0, 2): var_a, (1, 0): var_b, (1, 1): var_b}
    )
    # Eq. (7) with mean normalization (divide by the mean over operators).
    mean_si = np.mean(list(hand_si.values()))
    mean_sc = np.mean([var_a] * 3 + [var_b] * 2)
    hand_s = {o: (hand_si[o] / mean_si) / ((var_a if o[0] == 0 else var_b) / mean_sc) for o in hand_si}
    assert operator_scores(si) == pytest.approx(hand_s)
    # Table 6's SI-only ablation ranks by normalized importance alone.
    assert operator_scores(si, selection_confidence_term=False) == pytest.approx(
        {o: v / mean_si for o, v in hand_si.items()}
    )


def test_confident_layers_lose_their_weak_operators_first():
    # Layer a separates its candidates (large variance), layer b does not: b's weakest (59) outscores
    # a's middle one (60), so a's weak operators go first, as section 3.3 asks.
    si = {(0, 0): 90.0, (0, 1): 60.0, (0, 2): 30.0, (1, 0): 59.0, (1, 1): 61.0}
    scores = operator_scores(si)
    assert scores[(0, 1)] < scores[(1, 0)] and scores[(0, 2)] < scores[(0, 1)] < scores[(0, 0)]
    assert sorted(si, key=si.get)[:2] == [(0, 2), (1, 0)]  # importance alone would drop b's weakest second


def test_unsampled_operator_has_no_score_and_flat_layers_score_infinite():
    space = toy_space()
    si = selection_importance([((0, 0), 50.0), ((1, 0), 60.0)], space)
    assert math.isnan(si[(0, 2)]) and math.isnan(si[(1, 1)])
    scores = operator_scores(si)
    assert math.isnan(scores[(0, 2)]) and scores[(1, 0)] == math.inf  # b: one candidate with evidence, SC = 0
    assert mean_normalize({(0, 0): 2.0, (0, 1): 6.0}) == {(0, 0): 0.5, (0, 1): 1.5}


def test_min_max_normalization_weighs_importance_and_mean_normalization_ranks_as_si_over_sc():
    si = {(0, 0): 90.0, (0, 1): 60.0, (1, 0): 59.0, (1, 1): 61.0, (2, 0): 40.0, (2, 1): 50.0}
    sc = selection_confidence(si)  # slot 0: 225, slot 1: 1, slot 2: 25
    assert min_max_normalize({(0, 0): 2.0, (0, 1): 6.0, (1, 0): 4.0}) == {(0, 0): 0.0, (0, 1): 1.0, (1, 0): 0.5}
    lo, hi, sc_lo, sc_hi = 40.0, 90.0, 1.0, 225.0
    hand = {
        o: ((si[o] - lo) / (hi - lo)) / ((sc[o] - sc_lo) / (sc_hi - sc_lo)) if sc[o] > sc_lo else math.inf for o in si
    }
    assert operator_scores(si, normalization="min-max") == pytest.approx(hand)
    # x / mean rescales every score by one constant: the order is SI / SC's, and the variance decides: the
    # confident layer 0 loses its 60 first, though layer 2's 40 is the weakest operator. Min-max drops the 40.
    by_mean = operator_scores(si)
    assert sorted(si, key=by_mean.get) == sorted(si, key=lambda o: si[o] / sc[o])
    assert min(si, key=by_mean.get) == (0, 1)
    assert min(si, key=operator_scores(si, normalization="min-max").get) == (2, 0)
    with pytest.raises(ValueError, match="min-max"):
        operator_scores(si, normalization="z-score")


def test_operator_sample_covers_every_operator_and_enumerates_small_spaces():
    space = NASBench201Space().restrict([[0, 1, 2, 3, 4], [1, 3], [2, 3, 4], [0, 1, 2, 3, 4], [3], [1, 2, 3, 4]])
    archs = operator_sample(space, 7, np.random.default_rng(0))
    assert len(archs) == 35 and all(space.contains(a) for a in archs)
    for slot, s in enumerate(space.slots):
        counts = {o: sum(a[slot] == o for a in archs) for o in s.allowed}
        assert min(counts.values()) >= 7
    small = space.restrict([[0, 1], [1], [2], [0], [3], [4]])
    assert sorted(operator_sample(small, 5, np.random.default_rng(0))) == sorted(small.enumerate())
    cheap = lambda a: sum(op == 3 for op in a) <= 2  # noqa: E731
    assert all(cheap(a) for a in operator_sample(space, 7, np.random.default_rng(1), constraint=cheap))


# --- shrinking --------------------------------------------------------------------------------
def test_shrinking_drops_the_lowest_k_and_never_empties_a_slot():
    rng = np.random.default_rng(0)
    space = NASBench201Space()
    for k in (3, 10, 29, 40):
        scores = {(i, o): float(rng.normal()) for i in range(6) for o in range(5)}
        shrunk, dropped = shrink_operators(space, scores, k)
        assert all(len(s.allowed) >= 1 for s in shrunk.slots)
        assert len(dropped) == min(k, 24) and shrunk.slots[0].ops == space.slots[0].ops
        kept = [(i, o) for i, s in enumerate(shrunk.slots) for o in s.allowed]
        survivors_of_full_slots = [o for o in kept if len(shrunk.slots[o[0]].allowed) > 1]
        if survivors_of_full_slots:  # every dropped operator scored below every kept one it could have replaced
            assert max(scores[o] for o in dropped) <= min(scores[o] for o in survivors_of_full_slots)
        assert not any(
            shrunk.contains(a)
            for a in itertools.islice(space.enumerate(), 0, None, 97)
            if any((i, o) in set(dropped) for i, o in enumerate(a))
        )


def test_shrinking_per_slot_and_keeps_unscored_operators():
    space = toy_space()
    scores = {(0, 0): 3.0, (0, 1): 1.0, (0, 2): math.nan, (1, 0): 2.0, (1, 1): 5.0}
    shrunk, dropped = shrink_operators(space, scores, per_slot=True)
    assert dropped == [(0, 1), (1, 0)] and shrunk.choices == [(0, 2), (1,)]
    shrunk, dropped = shrink_operators(space, scores, k=10)
    assert (0, 2) not in dropped and all(len(s.allowed) == 1 for s in shrunk.slots)
    with pytest.raises(ValueError, match="does not allow"):
        shrink_operators(shrunk, scores, k=1)


# --- merging (Fig. 3) -------------------------------------------------------------------------
def test_fig3_toy_merges_layers_two_to_four_and_five_to_six():
    # Six layers of 5 candidates shrunk to these sizes; T = 6: the first layer (5) cannot join the
    # second (5 x 2 > 6), layers 2-4 give 2 x 3 x 1 = 6 <= 6, layers 5-6 give 2 x 3 = 6: two child spaces.
    assert merge_layer_spaces([5, 2, 3, 1, 2, 3], threshold=6) == [[1, 2, 3], [4, 5]]


def test_merging_groups_exactly_adjacent_slots_within_the_threshold():
    assert merge_layer_spaces([5, 2, 3, 1, 2, 3], threshold=5) == [[2, 3]]  # 2 x 3 > 5; 3 x 1 <= 5 < 3 x 1 x 2
    assert merge_layer_spaces([2, 3, 1], threshold=6) == [[0, 1, 2]]  # "no more than" T: 6 merges
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = list(rng.integers(1, 6, size=rng.integers(1, 9)))
        T = int(rng.integers(1, 60))
        groups = merge_layer_spaces(sizes, T)
        flat = [i for g in groups for i in g]
        assert flat == sorted(set(flat))  # disjoint, shallow to deep
        for g in groups:
            assert len(g) >= 2 and g == list(range(g[0], g[-1] + 1)) and math.prod(sizes[i] for i in g) <= T
        # greedy from the shallowest slot: a group cannot take the next slot, and a lone slot cannot
        # start a group with its successor
        start = 0
        while start < len(sizes):
            group = next((g for g in groups if g[0] == start), [start])
            end = group[-1] + 1
            assert end == len(sizes) or math.prod(sizes[start : end + 1]) > T
            start = end
    nb = NASBench201Space().restrict([[3, 4], [3], [2, 3], [1, 3], [3], [0, 3]])
    assert merge_layer_spaces(nb, threshold=50) == [[0, 1, 2, 3, 4, 5]]  # 16 <= 50: no sharing left in cells


def test_only_layers_that_shrank_merge_until_the_whole_space_fits_the_threshold():
    full = [5] * 6
    # After a first NAS-Bench-201 stage: slots 1 and 3 shrank but are not adjacent: nothing merges, while
    # T over every layer would merge unshrunk layers (5 x 1 x 5 x 2 = 50 <= 50).
    assert merge_layer_spaces([5, 1, 5, 2, 5, 5], 50, original=full) == []
    assert merge_layer_spaces([5, 1, 5, 2, 5, 5], 50) == [[0, 1, 2, 3], [4, 5]]
    # Runs of shrunk layers merge greedily; a group never spans an unshrunk layer (slot 3).
    assert merge_layer_spaces([5, 2, 3, 5, 4, 3], 50, original=full) == [[1, 2], [4, 5]]
    assert merge_layer_spaces([5, 2, 3, 1, 2, 3], threshold=6, original=full) == [[1, 2, 3], [4, 5]]  # Fig. 3
    # 3.4's end point: once the whole space holds <= T models, no layer shares weights.
    assert merge_layer_spaces([5, 1, 1, 1, 1, 5], 50, original=full) == [list(range(6))]
    with pytest.raises(ValueError, match="unshrunk"):
        merge_layer_spaces([5, 1], 50, original=[4, 5])


def test_shrinking_keeps_a_feasible_space():
    space = toy_space()
    scores = {(0, 0): 1.0, (0, 1): 2.0, (0, 2): 3.0, (1, 0): 4.0, (1, 1): 5.0}
    # "feasible" here: op 0 must stay available at slot 0; it scores lowest, so the next two go instead.
    shrunk, dropped = shrink_operators(space, scores, k=2, feasible=lambda s: 0 in s.slots[0].allowed)
    assert dropped == [(0, 1), (0, 2)] and shrunk.choices == [(0,), (0, 1)]


# --- expanded weights in the store and the worker ---------------------------------------------
@pytest.fixture
def runner(tiny_spec):
    return InProcessSupernet(tiny_spec, "cpu")


def _evaluate(runner, space, archs, **senas):
    return runner(evaluate_batch_job(space, archs, **_senas(**senas)))["per_arch"]["accuracy"]


def _train(runner, space, arch, steps, seed, lr, **senas):
    return runner(train_job(steps, arch=space.to_string(arch), seed=seed, lr=lr, **_senas(**senas)))


def _senas(**fields):
    return {"senas": SENASJob(**fields)} if fields else {}


def test_expanded_copies_train_independently_and_serve_their_paths(runner):
    space, store, net = runner.worker.space, runner.store, runner.worker.net
    a = space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    b = (a[0], 2, *a[2:])  # same op on slot 0, another partial model of the group {0, 1}
    group = {"expanded": [[0, 1]]}
    _train(runner, space, b, 5, seed=1, lr=0.1, **group)
    conv0 = net.choice_parameter_names(0, a[0])[0]
    key_a, key_b = variant_key(conv0, f"g0-1={a[0]}-{a[1]}"), variant_key(conv0, f"g0-1={b[0]}-{b[1]}")
    shared_before = store.arrays[conv0].copy()
    b_before = store.arrays[key_b].copy()
    stem = "stem.0.weight"
    stem_before = store.arrays[stem].copy()

    _train(runner, space, a, 5, seed=2, lr=0.1, **group)
    assert key_a in store.arrays
    assert not np.allclose(store.arrays[key_a], shared_before)  # a's private copy trained ...
    np.testing.assert_array_equal(store.arrays[key_b], b_before)  # ... b's stayed as it was
    np.testing.assert_array_equal(store.arrays[conv0], shared_before)  # the shared tensor is not a's
    assert not np.allclose(store.arrays[stem], stem_before)  # shared weights outside the group train

    # The path of a uses a's copy: spoiling it changes a's score with expansion, not b's, not the shared path.
    before = _evaluate(runner, space, [a, b], **group) + _evaluate(runner, space, [a])
    store.assign({key_a: np.zeros_like(store.arrays[key_a])})
    after = _evaluate(runner, space, [a, b], **group) + _evaluate(runner, space, [a])
    assert after[0] != before[0] and after[1:] == before[1:]


def test_evaluation_reads_copies_without_creating_them_and_regrouping_inherits(runner):
    space, store = runner.worker.space, runner.store
    a = space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|skip_connect~2|"
    )
    _train(runner, space, a, 6, seed=1, lr=0.1, expanded=[[0, 1]])
    keys = set(store.arrays)
    old = _evaluate(runner, space, [a], expanded=[[0, 1]])
    regrouped = {"expanded": [[0, 1, 2]], "expanded_from": [[[0, 1]]]}
    assert _evaluate(runner, space, [a], **regrouped) == old  # the new copies would start from a's old ones
    assert set(store.arrays) == keys  # an evaluation creates nothing
    _train(runner, space, a, 1, seed=3, lr=1e-9, **regrouped)
    conv0 = runner.worker.net.choice_parameter_names(0, a[0])[0]
    created = variant_key(conv0, f"g0-1-2={a[0]}-{a[1]}-{a[2]}")
    np.testing.assert_allclose(
        store.arrays[created], store.arrays[variant_key(conv0, f"g0-1={a[0]}-{a[1]}")], atol=1e-6
    )


def test_averaged_snapshots_average_the_private_copies_too(runner):
    space, store = runner.worker.space, runner.store
    a = space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    group = {"expanded": [[0, 1]]}
    _train(runner, space, a, 3, seed=1, lr=0.1, **group)
    key = variant_key(runner.worker.net.choice_parameter_names(0, a[0])[0], f"g0-1={a[0]}-{a[1]}")
    first = store.arrays[key].copy()
    store.snapshot("s/0")
    store.assign({key: 3.0 * first})
    store.snapshot("s/1")
    store.assign({key: -first})  # the live copy differs from both snapshots
    averaged = _evaluate(runner, space, [a], average=["s/0", "s/1"], **group)
    store.assign({key: 2.0 * first})  # the mean of the two snapshots
    assert averaged == _evaluate(runner, space, [a], **group)


def test_worker_after_an_expanded_job_serves_shared_weights_again(runner, tiny_spec):
    from tune_spacenas.trainables.worker import SupernetWorker

    space, store = runner.worker.space, runner.store
    a = space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    _train(runner, space, a, 4, seed=1, lr=0.2, expanded=[[0, 1, 2]])
    conv = runner.worker.net.choice_parameter_names(0, a[0])[0]
    assert not np.allclose(store.arrays[variant_key(conv, f"g0-1-2={a[0]}-{a[1]}-{a[2]}")], store.arrays[conv])
    plain = _evaluate(runner, space, [a])  # a plain SPOS evaluation on the worker that just trained privately
    np.testing.assert_array_equal(runner.worker.params[conv].detach().numpy(), store.arrays[conv])
    fresh = InProcessSupernet.__new__(InProcessSupernet)
    fresh.store, fresh.worker, fresh.trials = store, SupernetWorker(tiny_spec, store, "cpu"), 0
    assert _evaluate(fresh, space, [a]) == plain


# --- the searcher -----------------------------------------------------------------------------
def make_searcher(spec, **kwargs):
    args = dict(
        space=spec.space,
        stage_steps=30,
        steps_per_trial=10,
        samples_per_op=3,
        snapshots=3,
        eval_batch=40,
        evolution=EvolutionSettings(population=6, generations=2, parents=3, mutations=3, crossovers=3),
        metric="accuracy",
        mode="max",
        seed=0,
    )
    return SENASSearcher(**(args | kwargs))


def _payload(job):
    return SENASJob.from_dict(job.get("senas", {}))


def record_jobs(searcher, runner, max_trials=1000):
    jobs = []
    run_in_process(searcher, lambda c: jobs.append(c) or runner(c), max_trials=max_trials)
    return jobs


def test_the_whole_loop_two_stages_of_ten_drops_then_the_final_space_trains(tiny_spec, runner):
    searcher = make_searcher(tiny_spec)
    jobs = record_jobs(searcher, runner)
    assert searcher.suggest("end") == "FINISHED"
    assert [len(r["dropped"]) for r in searcher.stage_log] == [10, 10]
    assert sum(len(s.allowed) for s in searcher.shrunk_space.slots) == 10
    assert searcher.shrunk_space.contains(searcher.best_architecture())
    train = [j for j in jobs if j["task"] == "train"]
    assert sum(j["steps"] for j in train) == 90  # two stages and the final space, 30 steps each
    # Eq. (4): only each training phase's last trial takes snapshots; all later scoring averages the last ones.
    assert [i for i, j in enumerate(train) if _payload(j).snapshots] == [2, 5, 8]
    after_training = jobs[jobs.index(train[-1]) + 1 :]
    assert after_training and all(j["task"] == "evaluate" for j in after_training)
    last = _payload(train[-1]).snapshots
    assert all(list(_payload(j).average) == [f"{last.name}/{k}" for k in range(3)] for j in after_training)
    # Expanding: each phase trains the groups merged after the stage before it; stage 1 trains shared weights
    # only. The final space (10 operators, <= 16 models <= T) is one merged group: no weight sharing left.
    assert not _payload(train[0]).expanded and _payload(train[3]).expanded == searcher.stage_log[0]["merged_spaces"]
    assert _payload(train[6]).expanded == searcher.stage_log[1]["merged_spaces"] == [list(range(6))]
    assert any("#" in k for k in runner.store.arrays)
    # A phase's snapshots are dropped once the next has its own: the job taking them frees the previous ones.
    assert list(_payload(train[5]).drop_snapshots) == [f"{_payload(train[2]).snapshots.name}/{k}" for k in range(3)]
    assert all("stage2" in name for name in runner.store.info()["snapshots"])
    # Shrinking keeps training inside the shrunk space; the final phase trains the final space.
    shrunk_once = NASBench201Space(**tiny_spec.space.spec_kwargs()).restrict(searcher.stage_log[0]["allowed"])
    assert train[3]["subspace"] == [list(c) for c in shrunk_once.choices]
    assert train[6]["subspace"] == [list(c) for c in searcher.shrunk_space.choices]
    # One cosine over all 90 steps, the schedule SPOS of the same length follows.
    assert [j["lr"] for j in train] == pytest.approx(
        [0.025 * (1 + math.cos(math.pi * t / 90)) for t in range(0, 90, 10)]
    )


def test_without_final_training_the_search_follows_the_last_shrink(tiny_spec, runner):
    searcher = make_searcher(tiny_spec, final_steps=0)
    jobs = record_jobs(searcher, runner)
    train = [j for j in jobs if j["task"] == "train"]
    assert sum(j["steps"] for j in train) == 60 and searcher.stage_log[-1]["stage"] == 1
    assert searcher.shrunk_space.contains(searcher.best_architecture())


def test_ablation_switches(tiny_spec, runner):
    searcher = make_searcher(
        tiny_spec, evaluation_stability=False, expanding=False, selection_confidence=False, stages=1, drop_per_slot=True
    )
    jobs = record_jobs(searcher, runner)
    assert not any("senas" in j for j in jobs)
    assert [len(s.allowed) for s in searcher.shrunk_space.slots] == [4] * 6
    log = searcher.stage_log[0]
    si = log["selection_importance"]
    mean = np.mean(list(si.values()))
    assert log["scores"] == pytest.approx({o: v / mean for o, v in si.items()})

    searcher = make_searcher(tiny_spec, normalization="min-max", merge_only_shrunk=False, stages=1, final_steps=0)
    record_jobs(searcher, runner)
    log = searcher.stage_log[0]
    si = {_op(searcher.space, label): v for label, v in log["selection_importance"].items()}
    scores = operator_scores(si, normalization="min-max")
    assert log["scores"] == pytest.approx({label: scores[_op(searcher.space, label)] for label in log["scores"]})
    assert log["merged_spaces"] == merge_layer_spaces([len(a) for a in log["allowed"]], 50)  # T over every layer


def _op(space, label):
    slot, op = label.split(":")
    index = next(i for i, s in enumerate(space.slots) if s.name == slot)
    return index, space.slots[index].ops.index(op)


def test_madds_constraint_discards_children_from_scoring_and_search(tiny_spec, runner):
    space = tiny_spec.space
    costs = sorted(space.cost(a).madds for a in space.sample_many(np.random.default_rng(0), 200))
    cap = costs[len(costs) // 2]
    searcher = make_searcher(tiny_spec, max_madds=cap)
    jobs = record_jobs(searcher, runner)
    evaluated = [space.from_string(a) for j in jobs if j["task"] == "evaluate" for a in j["archs"]]
    assert evaluated and all(space.cost(a).madds <= cap for a in evaluated)
    assert space.cost(space.from_string(searcher.best_architecture())).madds <= cap


def test_rank_correlation_over_the_shrunk_space(tiny_spec, runner):
    searcher = make_searcher(tiny_spec, stages=1)
    record_jobs(searcher, runner)
    truth = lambda a: float(sum(a))  # noqa: E731  any ground truth
    report = searcher.rank_correlation(runner, truth, max_archs=25)
    assert report["architectures"] == min(25, searcher.shrunk_space.size)
    assert all(searcher.shrunk_space.contains(a) for a in report["sample"]) and -1 <= report["kendall_tau"] <= 1


def test_save_and_restore_mid_loop_resumes_identically(tiny_spec, tmp_path):
    first = InProcessSupernet(tiny_spec, "cpu")
    searcher = make_searcher(tiny_spec)
    run_in_process(searcher, first, max_trials=5)  # inside stage 2's training, after stage 1's shrink
    assert searcher.stage == 1 and searcher.phase == "training"
    searcher.save(str(tmp_path / "senas.pkl"))
    first.store.checkpoint(str(tmp_path / "store.npz"))
    trials_at_save = first.trials
    rest = record_jobs(searcher, first)

    second = InProcessSupernet(tiny_spec, "cpu")
    second.store.load(str(tmp_path / "store.npz"))
    second.trials = trials_at_save  # the store de-duplicates pushes by trial id: go on with fresh ones
    resumed = make_searcher(tiny_spec, seed=123)
    resumed.restore(str(tmp_path / "senas.pkl"))
    assert record_jobs(resumed, second) == rest
    assert resumed.stage_log == searcher.stage_log and resumed.best_architecture() == searcher.best_architecture()


def test_bad_arguments_are_clear_errors(tiny_spec):
    with pytest.raises(ValueError, match="one positive step count per stage"):
        SENASSearcher(stages=2, stage_steps=[10])
    with pytest.raises(ValueError, match="normalization must be one of"):
        SENASSearcher(normalization="z")
    with pytest.raises(ValueError, match="final_steps"):
        SENASSearcher(final_steps=-1)
    searcher = make_searcher(tiny_spec, mode="min", metric="loss")
    with pytest.raises(ValueError, match="mode='max'"):
        searcher.suggest("t0")


@pytest.mark.slow
def test_under_tune_with_concurrency_limiter(tiny_spec, ray_session, tune_run_kwargs):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from tune_spacenas.store import SupernetStore
    from tune_spacenas.trainables import supernet_trainable

    store = SupernetStore.create("senas-tune-test", tiny_spec)
    try:
        searcher = make_searcher(tiny_spec, metric=None, mode=None)
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
        assert [len(r["dropped"]) for r in searcher.stage_log] == [10, 10]
        assert searcher.shrunk_space.contains(searcher.best_architecture())
        info = store.info()
        # only the final space's training (phase index == stages) keeps snapshots: the stages' were dropped
        assert info["snapshots"] and all(f"stage{searcher.stages}/" in n for n in info["snapshots"])
        assert info["keys"] > len(tiny_spec.initial_weights())  # private copies live in the store
    finally:
        store.kill()
