"""ASE-NAS: the subspace graph, the GNN of Eqs. (5)-(7), the joint policy, Algorithm 1 as a searcher."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter

from tune_spacenas.jobs import TRAIN, ASEJob
from tune_spacenas.runner import InProcessSupernet, run_in_process
from tune_spacenas.searchers.ase import ASEController, ASESearcher, Decision, EdgeSAGEConv, SubspaceGraph
from tune_spacenas.searchers.ase.controller import GraphTensors, edge_features, ordered_pairs
from tune_spacenas.spaces import NASBench201Space
from tune_spacenas.spaces.neighbourhood import distance
from tune_spacenas.trainables import nasbench201_trainable
from tune_spacenas.trainables.table import evaluate_on_table

SPACE = NASBench201Space()


def graph_of(centers, scores):
    return SubspaceGraph([SPACE.validate(c) for c in centers], scores)


@pytest.fixture
def graph():
    rng = np.random.default_rng(0)
    centers = [SPACE.sample(rng) for _ in range(3)]
    centers.append(tuple(centers[0][:3]) + tuple((o + 1) % 5 for o in centers[0][3:]))  # agrees with 0 on 3 slots
    return SubspaceGraph(centers, [91.0, 93.5, 88.0, 92.0])


def searcher(**kwargs):
    """The paper's NAS-Bench-201 setting (K=4, M=4) unless a test says otherwise."""
    return ASESearcher.paper_preset(**{"space": SPACE, "metric": "accuracy", "mode": "max", "seed": 0, **kwargs})


# ----------------------------------------------------------------------------------------------
# The subspace graph
# ----------------------------------------------------------------------------------------------
def test_edges_run_from_weaker_to_better_centres_one_per_pair(graph):
    edges = graph.edges()
    assert sorted(edges) == sorted([(0, 1), (2, 0), (0, 3), (2, 1), (3, 1), (2, 3)])
    graph.replace(2, SPACE.sample(np.random.default_rng(5)), 95.0)  # the weakest becomes the best
    assert all((2, j) not in graph.edges() for j in (0, 1, 3)) and {(0, 2), (1, 2), (3, 2)} <= set(graph.edges())
    ties = SubspaceGraph(graph.centers[:2], [90.0, 90.0])
    assert ties.edges() == [(0, 1)]


def test_saved_graph_round_trips_and_bad_sources_are_clear_errors(graph, tmp_path):
    from tune_spacenas.searchers.ase.graph import load_centers

    graph.save(tmp_path / "g.json", SPACE)
    assert load_centers(tmp_path / "g.json", SPACE) == graph.centers
    with pytest.raises(FileNotFoundError, match="save_graph"):
        load_centers(tmp_path / "missing.json", SPACE)
    with pytest.raises(ValueError, match="repeats"):
        load_centers([graph.centers[0], graph.centers[0]], SPACE)


# ----------------------------------------------------------------------------------------------
# The GNN (Eqs. 5-7) and the controller
# ----------------------------------------------------------------------------------------------
def test_input_edge_features_are_zero_exactly_where_centres_agree(graph):
    controller = ASEController(SPACE, local_distance=2, embedding_size=4)
    tensors = GraphTensors.build(graph, controller.offsets)
    h = controller.node_embeddings(tensors)
    e = edge_features(h, tensors)
    pairs = ordered_pairs(len(graph))
    for p, (i, j) in enumerate(zip(pairs.src_np, pairs.dst_np)):
        blocks = e[p].reshape(len(SPACE), 4)
        if (i, j) not in graph.edges():
            assert torch.all(e[p] == 0)
            continue
        for slot in range(len(SPACE)):
            agree = graph.centers[i][slot] == graph.centers[j][slot]
            assert bool(torch.all(blocks[slot] == 0)) == agree


def test_edge_sage_layer_computes_eqs_5_to_7(graph):
    """The MessagePassing layer against a direct, loop-by-loop reading of the Appendix's equations."""
    torch.manual_seed(0)
    K, D, H = len(graph), 5, 7
    layer = EdgeSAGEConv(D, D, H)
    tensors = GraphTensors.build(graph, np.zeros(len(SPACE), np.int64))
    h = torch.randn(K, D)
    E = torch.zeros(K, K, D)  # E[a, a'] = e_aa' when a -> a' is an edge
    for i, j in graph.edges():
        E[i, j] = torch.randn(D)
    pairs = ordered_pairs(K)
    h_out, e_out = layer(h, E[pairs.src, pairs.dst], tensors.mask, pairs)
    relu = torch.relu
    for a in range(K):
        n = torch.stack([relu(layer.P(torch.cat([h[a], E[a, b], E[b, a]]))) for b in range(K) if b != a]).mean(0)
        assert torch.allclose(h_out[a], relu(layer.Q(torch.cat([h[a], n]))), atol=1e-6)  # Eqs. (5)-(6)
    for p, (i, j) in enumerate(zip(pairs.src_np, pairs.dst_np)):
        expected = relu(layer.W(torch.cat([E[i, j], h_out[i], h_out[j]]))) if (i, j) in graph.edges() else 0 * e_out[p]
        assert torch.allclose(e_out[p], expected, atol=1e-6)  # Eq. (7)


@pytest.mark.parametrize("use_graph", [True, False])
def test_controller_shapes_and_gradients_reach_every_parameter(graph, use_graph):
    controller = ASEController(SPACE, local_distance=3, hidden_size=16, use_graph=use_graph)
    tensors = GraphTensors.build(graph, controller.offsets)
    assert controller.encode(tensors).shape == (len(graph), 16)
    decision = controller.sample(tensors, np.random.default_rng(0))
    assert 0 <= decision.node < len(graph) and len(decision.edits) == 3
    log_prob, entropy = controller.log_prob(tensors, decision)
    assert log_prob.shape == () and log_prob < 0 and entropy > 0
    (log_prob + entropy).backward()
    for name, p in controller.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_log_prob_is_the_distribution_sample_draws_from(graph):
    """Enumerated, the joint policy sums to one; 2,000 samples follow its marginal over subspaces."""
    controller = ASEController(SPACE, local_distance=1, hidden_size=16, center_tanh_constant=5.0)
    tensors = GraphTensors.build(graph, controller.offsets)
    with torch.no_grad():
        for p in controller.parameters():  # a policy far from uniform
            torch.nn.init.normal_(p, std=0.5, generator=torch.Generator().manual_seed(p.numel()))
        probs = {
            (k, l, o): controller.log_prob(tensors, Decision(k, ((l, o),)))[0].exp().item()
            for k, l, o in itertools.product(range(len(graph)), range(len(SPACE)), range(5))
        }
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
    marginal = np.array([sum(v for (k, _, _), v in probs.items() if k == node) for node in range(len(graph))])
    assert marginal.max() > 0.4
    rng = np.random.default_rng(1)
    counts = np.bincount([controller.sample(tensors, rng).node for _ in range(2000)], minlength=len(graph))
    assert np.abs(counts / 2000 - marginal).max() < 0.04


def test_an_edit_to_the_current_operation_is_a_no_op():
    center = (0, 1, 2, 3, 4, 0)
    assert Decision(0, ((1, 1), (5, 0))).apply(center) == center
    assert Decision(0, ((1, 3), (1, 2), (4, 4))).apply(center) == (0, 2, 2, 3, 4, 0)


# ----------------------------------------------------------------------------------------------
# The searcher: Algorithm 1
# ----------------------------------------------------------------------------------------------
def drive_recording(s, trials, dataset="cifar10"):
    """Sequential suggest/complete; per decision: (centre, node, b, reward R(b|a), graph before, graph after)."""
    log = []
    for i in range(trials):
        config = s.suggest(f"t{i}")
        if config in (None, "FINISHED"):
            break
        record = s.pending.get(ASEJob.from_dict(config["ase"]).decision)
        before = None if s.graph is None else (list(s.graph.centers), list(s.graph.scores))
        result = evaluate_on_table({**config, "dataset": dataset})
        s.on_trial_complete(f"t{i}", result=result)
        if record is not None:
            node = record["node"]
            beta = SPACE.from_string(config["arch"])
            log.append(
                (
                    before[0][node],
                    node,
                    beta,
                    result["accuracy"] - record["center_score"],
                    before,
                    (list(s.graph.centers), list(s.graph.scores)),
                )
            )
    return log


@pytest.mark.parametrize("m", [1, 2, 4])
def test_every_suggestion_lies_within_distance_m_of_its_centre(m):
    s = searcher(local_distance=m, num_subspaces=3, seed=7)
    log = drive_recording(s, 60)
    assert len(log) > 40
    assert all(distance(center, beta) <= m for center, _, beta, *_ in log)
    assert max(distance(center, beta) for center, _, beta, *_ in log) == m


def test_the_centres_are_evaluated_first_then_the_graph_is_built():
    s = searcher(num_subspaces=3)
    first = [s.suggest(f"c{i}") for i in range(3)]
    assert s.suggest("waiting") is None and s.graph is None  # a reward needs R(a): wait for the centres
    for i, config in enumerate(first):
        s.on_trial_complete(f"c{i}", result=evaluate_on_table(config))
    assert s.graph.centers == [SPACE.from_string(c["arch"]) for c in first]
    assert s.graph.scores == [evaluate_on_table(c)["accuracy"] for c in first]


def test_a_centre_is_replaced_exactly_when_the_reward_is_positive():
    log = drive_recording(searcher(seed=4), 80, dataset="cifar100")
    replaced = 0
    for _, node, beta, reward, before, after in log:
        if reward > 0 and beta not in before[0]:
            replaced += 1
            assert (
                after[0][node] == beta
                and after[0][:node] + after[0][node + 1 :] == before[0][:node] + before[0][node + 1 :]
            )
        else:
            assert after == before
    assert replaced >= 3 and any(reward <= 0 for *_, reward, _, _ in log)


def test_without_subspace_update_the_graph_never_changes():
    s = searcher(subspace_update=False)
    log = drive_recording(s, 50)
    assert any(reward > 0 for *_, reward, _, _ in log)
    assert all(before == after for *_, before, after in log) and s.replacements == 0


class RecordingASE(ASESearcher):
    """Keeps the (graph, decision, reward) of every policy step to check what the controller learned from."""

    def policy_step(self, graph, decision, reward):
        self.steps = getattr(self, "steps", []) + [(graph.centers, decision, reward)]
        super().policy_step(graph, decision, reward)


@pytest.mark.parametrize("absolute", [False, True])
def test_rewards_meet_the_decisions_that_produced_them_with_trials_in_flight(absolute):
    s = RecordingASE(
        space=SPACE, metric="accuracy", mode="max", seed=2, num_subspaces=3, local_distance=4, absolute_reward=absolute
    )
    for i in range(3):
        s.on_trial_complete(f"c{i}", result=evaluate_on_table(s.suggest(f"c{i}")))
    expected = {}
    for round_ in range(5):  # four trials in flight, completed in reverse order
        configs = {f"r{round_}-{i}": s.suggest(f"r{round_}-{i}") for i in range(4)}
        for config in configs.values():
            record = s.pending[_decision(config)]
            value = evaluate_on_table(config)["accuracy"]
            expected[_decision(config)] = (
                record["graph"][0],
                Decision.from_plain(record["decision"]),
                value if absolute else value - record["center_score"],
            )
        for trial_id in reversed(list(configs)):
            s.on_trial_complete(trial_id, result=evaluate_on_table(configs[trial_id]))
    assert not s.pending
    learned = {(tuple(map(tuple, g)), d, r) for g, d, r in s.steps}
    assert {(tuple(map(tuple, g)), d, r) for g, d, r in expected.values()} <= learned


def test_a_failed_trial_teaches_nothing_and_a_failed_centre_is_redrawn():
    s = searcher(num_subspaces=2)
    s.suggest("c0")
    s.on_trial_complete("c0", error=True)
    configs = [s.suggest(f"c{i}") for i in (1, 2)]
    for i, config in zip((1, 2), configs):
        s.on_trial_complete(f"c{i}", result=evaluate_on_table(config))
    assert s.graph is not None and len(s.graph) == 2
    s.suggest("x")  # (a repeated architecture is answered from the cache inside suggest: learn from it first)
    before, baseline = {k: v.clone() for k, v in s.controller.state_dict().items()}, s.baseline
    s.on_trial_complete("x", error=True)
    assert not s.pending and s.baseline == baseline
    assert all(torch.equal(before[k], v) for k, v in s.controller.state_dict().items())


def test_ase_plus_starts_from_the_given_centres_and_a_saved_graph(tmp_path):
    source = searcher(seed=7, max_queries=30)
    run_in_process(source, evaluate_on_table, max_queries=30, space=SPACE)
    source.save_graph(tmp_path / "graph.json")
    for given in (tmp_path / "graph.json", [SPACE.to_string(c) for c in source.graph.centers]):
        plus = searcher(seed=1, initial_centers=given)
        assert [SPACE.from_string(plus.suggest(f"c{i}")["arch"]) for i in range(4)] == source.graph.centers
    topped_up = searcher(initial_centers=source.graph.centers[:2])
    centres = [SPACE.from_string(topped_up.suggest(f"c{i}")["arch"]) for i in range(4)]
    assert centres[:2] == source.graph.centers[:2] and len(set(centres)) == 4
    with pytest.raises(ValueError, match="at most K"):
        searcher(num_subspaces=1, initial_centers=source.graph.centers).suggest("x")


def test_with_max_madds_only_architectures_inside_it_become_centres():
    limit = float(np.median([SPACE.cost(SPACE.sample(np.random.default_rng(i))).madds for i in range(50)]))
    s = searcher(max_madds=limit, max_queries=80, seed=3)
    seen = []
    run_in_process(s, evaluate_on_table, max_queries=80, space=SPACE, on_result=lambda c, r: seen.append(c["arch"]))
    assert any(SPACE.cost(SPACE.from_string(a)).madds > limit for a in seen)
    assert s.replacements > 0 and all(SPACE.cost(c).madds <= limit for c in s.graph.centers)


def test_the_answer_is_the_best_centre():
    s = searcher(max_queries=40, seed=5)
    run_in_process(s, evaluate_on_table, max_queries=40, space=SPACE)
    best = s.best_architecture()
    assert SPACE.from_string(best) == s.graph.centers[int(np.argmax(s.graph.scores))]
    assert max(s.graph.scores) == max(r["accuracy"] for r in s.history)


def test_save_restore_with_trials_in_flight_resumes_identically(tmp_path):
    def finish(s, configs):
        for trial_id, config in configs.items():
            s.on_trial_complete(trial_id, result=evaluate_on_table(config))

    first = searcher(seed=11, max_queries=60)
    run_in_process(first, evaluate_on_table, max_trials=12, space=SPACE)
    in_flight = {f"f{i}": first.suggest(f"f{i}") for i in range(3)}
    first.save(str(tmp_path / "ase.pkl"))
    resumed = searcher(seed=0, max_queries=60)
    resumed.restore(str(tmp_path / "ase.pkl"))
    assert isinstance(resumed.get_state()["controller"]["lstm.weight_ih_l0"], np.ndarray)
    finish(first, in_flight)
    finish(resumed, in_flight)
    rest = [first.suggest(f"n{i}") for i in range(5)]
    assert [resumed.suggest(f"n{i}") for i in range(5)] == rest
    for name, value in first.controller.state_dict().items():
        assert torch.equal(value, resumed.controller.state_dict()[name])


def test_on_the_supernet_the_training_phase_comes_first(tiny_spec):
    s = ASESearcher(
        space=tiny_spec.space,
        metric="accuracy",
        mode="max",
        seed=0,
        train_steps=20,
        steps_per_trial=10,
        num_subspaces=2,
        local_distance=2,
        max_queries=5,
    )
    tasks = []
    run_in_process(s, InProcessSupernet(tiny_spec, "cpu"), on_result=lambda c, r: tasks.append(c["task"]))
    assert tasks[:2] == [TRAIN, TRAIN] and set(tasks[2:]) == {"evaluate"} and len(tasks) == 7
    assert s.decisions >= 3 and s.best_architecture() is not None


def test_under_tune_with_concurrency_limiter_and_asha(ray_session, tune_run_kwargs):
    s = searcher(num_subspaces=2, local_distance=3, max_queries=14)
    analysis = tune.run(
        nasbench201_trainable,
        config={**SPACE.param_space(), "dataset": "cifar100"},
        metric="accuracy",
        mode="max",
        search_alg=ConcurrencyLimiter(s, max_concurrent=2),
        scheduler=ASHAScheduler(max_t=100, grace_period=1),
        num_samples=-1,
        **tune_run_kwargs,
    )
    assert len(analysis.trials) == 14 and all(t.status == "TERMINATED" for t in analysis.trials)
    assert not s.pending and s.baseline is not None and s.suggest("after") == "FINISHED"
    best = max(t.last_result["accuracy"] for t in analysis.trials)
    assert max(s.graph.scores) == best


def test_slots_with_fewer_operations_are_never_edited_to_a_missing_one():
    """MobileNet's first layer of a stage has no identity: the edit head masks it, and learning stays finite."""
    from tune_spacenas.spaces import MobileNetSpace

    space = MobileNetSpace()
    s = ASESearcher(space=space, metric="accuracy", mode="max", seed=0, num_subspaces=3, local_distance=3)

    def reward(config):
        return {"accuracy": float(len(config["arch"]) % 17)}

    seen = []
    run_in_process(s, reward, max_trials=60, on_result=lambda c, r: seen.append(c["arch"]))
    assert len(seen) == 60 and all(space.contains(a) for a in seen)
    assert all(torch.isfinite(p).all() for p in s.controller.parameters())


def _decision(config: dict) -> int | None:
    return ASEJob.from_dict(config["ase"]).decision


def _center(config: dict) -> int | None:
    return ASEJob.from_dict(config["ase"]).center


# ----------------------------------------------------------------------------------------------
# Every suggestion new: no stall, no repeat learned from, no rewarded no-op
# ----------------------------------------------------------------------------------------------
def test_k1_m1_spends_its_whole_budget_on_new_architectures_and_learns_each_once():
    """K = 1, M = 1: a ball of 25 cells, used up long before 150 queries (the search used to stall)."""
    s = RecordingASE(
        space=SPACE, metric="accuracy", mode="max", seed=0, num_subspaces=1, local_distance=1, max_queries=150
    )
    seen = []
    trials = run_in_process(
        s,
        lambda c: evaluate_on_table({**c, "dataset": "cifar100"}),
        max_queries=150,
        space=SPACE,
        on_result=lambda c, r: seen.append(c["arch"]),
    )
    assert trials == 150 and s.queries == 150 and len(set(seen)) == 150
    assert s.reseeds >= 1 and s.suggest("after") == "FINISHED"
    learned = [Decision.apply(d, centers[d.node]) for centers, d, _ in s.steps]
    assert len(learned) == len(set(learned)) and len(learned) >= 100  # each architecture learned from once
    assert all(beta != centers[d.node] for beta, (centers, d, _) in zip(learned, s.steps))  # never a no-op
    assert set(map(SPACE.to_string, learned)) <= set(seen)


def test_a_space_used_up_finishes_and_suggest_waits_only_while_trials_run():
    from tune_spacenas.spaces import SearchSpace, Slot

    tiny = SearchSpace([Slot(f"s{i}", ("a", "b")) for i in range(3)])  # 8 architectures
    s = ASESearcher(space=tiny, metric="accuracy", mode="max", seed=0, num_subspaces=2, local_distance=1)

    def reward(config):
        return {"accuracy": float(config["arch"].count("b"))}

    configs = {}
    while (config := s.suggest(f"t{len(configs)}")) is not None:
        configs[f"t{len(configs)}"] = config
        if len(configs) == 2:  # the centres: their results build the graph
            for trial_id, c in configs.items():
                s.on_trial_complete(trial_id, result=reward(c))
    assert config is None and len(configs) == 8 and s.pending  # all 8 suggested, 6 in flight: wait
    for trial_id, c in list(configs.items())[2:]:
        s.on_trial_complete(trial_id, result=reward(c))
    assert s.suggest("last") == "FINISHED" and s.best_architecture() == "b,b,b"


def test_a_repeated_edit_is_drawn_again_and_never_reaches_the_policy():
    s = RecordingASE(space=SPACE, metric="accuracy", mode="max", seed=3, num_subspaces=2, local_distance=2)
    run_in_process(s, evaluate_on_table, max_trials=60, space=SPACE)
    assert s.resamples > 0  # the policy did propose known architectures (the centre itself, or a repeat) ...
    learned = [Decision.apply(d, centers[d.node]) for centers, d, _ in s.steps]
    assert len(set(learned)) == len(learned) == s.decisions - s.fallbacks  # ... and learned from none of them


# ----------------------------------------------------------------------------------------------
# Defaults: from the budget, the paper's as a preset
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget", [50, 100, 300, None])
def test_k_and_m_default_to_the_budget_setting_and_explicit_values_win(budget):
    from tune_spacenas.searchers.ase.searcher import budget_setting

    s = ASESearcher(space=SPACE, metric="accuracy", mode="max", max_queries=budget)
    s.suggest("c0")
    K, M = budget_setting(budget, SPACE)
    assert (s.num_subspaces, s.local_distance) == (K, M) and s.controller.local_distance == M
    assert 1 <= K and 1 <= M < len(SPACE)
    explicit = ASESearcher(
        space=SPACE, metric="accuracy", mode="max", max_queries=budget, num_subspaces=3, local_distance=2
    )
    explicit.suggest("c0")
    assert (explicit.num_subspaces, explicit.local_distance) == (3, 2)


def test_paper_preset_is_the_papers_setting():
    s = ASESearcher.paper_preset(space=SPACE, metric="accuracy", mode="max", seed=4)
    assert (s.num_subspaces, s.local_distance, s.learning_rate, s.entropy_weight) == (4, 4, 1e-2, 7.5e-4)
    mobile = ASESearcher.paper_preset("mobilenet", learning_rate=1e-3)
    assert (mobile.num_subspaces, mobile.local_distance, mobile.max_madds, mobile.learning_rate) == (10, 3, 600e6, 1e-3)
    with pytest.raises(ValueError, match="unknown paper setting"):
        ASESearcher.paper_preset("darts")
    with pytest.raises(TypeError):
        ASESearcher(4, 4)  # settings are keyword-only


# ----------------------------------------------------------------------------------------------
# A prior: centres chosen before any query
# ----------------------------------------------------------------------------------------------
def conv_count_prior():
    """A made-up prior for the tests: the number of 3x3 convolutions of a cell (plus a tie-breaker)."""
    return {SPACE.to_string(a): a.count(3) + 0.01 * a.count(2) for a in SPACE.enumerate()}


def test_with_a_prior_the_centres_are_its_best_architectures_and_reseeds_its_best_new_ones():
    prior = conv_count_prior()
    s = ASESearcher(
        space=SPACE,
        metric="accuracy",
        mode="max",
        seed=0,
        num_subspaces=3,
        local_distance=1,
        prior=prior,
        max_queries=120,
    )
    evaluated = []
    run_in_process(
        s,
        evaluate_on_table,
        max_queries=120,
        space=SPACE,
        on_result=lambda c, r: evaluated.append((c["arch"], _center(c) is not None)),
    )
    best_first = sorted(prior, key=lambda a: -prior[a])
    assert [a for a, _ in evaluated[:3]] == best_first[:3]
    reseeds = [i for i, (_, centre) in enumerate(evaluated) if centre][3:]
    assert len(reseeds) == s.reseeds >= 1 and s.prior_picks == 3 + s.reseeds
    for i in reseeds:  # the best-scored architecture not evaluated before it
        before = {a for a, _ in evaluated[:i]}
        assert evaluated[i][0] == next(a for a in best_first if a not in before)


def test_a_callable_prior_ranks_a_seeded_pool_and_is_not_saved(tmp_path):
    calls = []

    def prior(arch: str) -> float:
        calls.append(arch)
        return float(arch.count("nor_conv_1x1"))

    s = ASESearcher(space=SPACE, metric="accuracy", mode="max", seed=5, num_subspaces=2, prior=prior, prior_pool=40)
    first = s.suggest("c0")
    assert len(calls) == 40 and first["arch"].count("nor_conv_1x1") == max(a.count("nor_conv_1x1") for a in calls)
    s.save(str(tmp_path / "ase.pkl"))
    restored = ASESearcher(space=SPACE, metric="accuracy", mode="max", prior=prior, prior_pool=40)
    restored.restore(str(tmp_path / "ase.pkl"))
    assert restored.prior is prior and restored.suggest("c1") == s.suggest("c1")
    with pytest.raises(ValueError, match="prior_pool"):
        ASESearcher(space=SPACE, metric="accuracy", mode="max", prior=prior).suggest("x")
    with pytest.raises(ValueError, match="mapping"):
        ASESearcher(prior=3)


def test_prior_edits_evaluate_the_edit_the_prior_ranks_best():
    prior = conv_count_prior()

    def mean_prior_of_edits(edits: int) -> float:
        s = ASESearcher(
            space=SPACE,
            metric="accuracy",
            mode="max",
            seed=1,
            num_subspaces=2,
            local_distance=2,
            prior=prior,
            prior_pool=200,
            prior_edits=edits,
            subspace_update=False,
        )
        seen = []
        run_in_process(
            s,
            evaluate_on_table,
            max_trials=40,
            space=SPACE,
            on_result=lambda c, r: seen.append(c["arch"]) if _decision(c) is not None else None,
        )
        return float(np.mean([prior[a] for a in seen]))

    assert mean_prior_of_edits(8) > mean_prior_of_edits(1) + 0.5
    with pytest.raises(ValueError, match="prior="):
        ASESearcher(prior_edits=4)
