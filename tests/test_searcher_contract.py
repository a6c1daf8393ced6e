"""Every searcher of ours against Tune's searcher contract (tests/contract.py): in this process for the
many cases (fast: the table, tiny supernets on digits), under real ``tune.run`` / ``tune.Tuner`` for the
seams only Tune exercises. Skips are features a searcher refuses by design, with the README's reason."""

from __future__ import annotations

import logging
import math
import os
import pickle
import signal
from dataclasses import replace

import numpy as np
import pytest
from conftest import tiny_supernet_spec
from contract import Case, Faults, Replay, drive, finite, non_finite_metric, poisoned
from ray import tune
from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining
from ray.tune.search import ConcurrencyLimiter, Repeater
from test_nse import tiny_space as nse_space

from tune_spacenas.searchers import (
    FINISHED,
    ASESearcher,
    AutoSpaceSearcher,
    EvolutionSettings,
    NSESearcher,
    ProxylessSearcher,
    RandomSearcher,
    RegularizedEvolutionSearcher,
    REINFORCESearcher,
    SENASSearcher,
    SPOSSearcher,
)
from tune_spacenas.spaces import MultiBranchSpace, NASBench201Space, OpenCellSpace
from tune_spacenas.store import SupernetStore
from tune_spacenas.trainables import nasbench201_trainable, supernet_trainable

BATCHES = "it trains the supernet and scores architectures in batches: Repeater hands back only the metric's mean"


nb201_spec = tiny_supernet_spec
TINY_EVOLUTION = EvolutionSettings(population=4, generations=2, parents=2, mutations=2, crossovers=2)


def open_cell_spec():
    return tiny_supernet_spec(OpenCellSpace(widths=(8, 16), strides=(1, 2), stem_channels=8, input_size=8))


def nse_spec():
    return tiny_supernet_spec(nse_space())


def _ok_values(searcher) -> list[float]:
    return [r[searcher.metric] for r in searcher.history if r["status"] == "ok"]


CASES = [
    Case("random", lambda **kw: RandomSearcher(max_queries=12, **kw), learned=_ok_values),
    Case(
        "regevo",
        lambda **kw: RegularizedEvolutionSearcher(max_queries=15, population_size=5, tournament_size=2, **kw),
        learned=lambda s: [v for _, v in s.population],
    ),
    Case(
        "reinforce",
        lambda **kw: REINFORCESearcher(max_queries=12, **kw),
        learned=lambda s: [s.baseline or 0.0, *s.logits[~np.isneginf(s.logits)]],
    ),
    Case(
        "ase",
        lambda **kw: ASESearcher(num_subspaces=2, max_queries=12, **kw),
        learned=lambda s: [s.baseline or 0.0, *s.graph.scores],
    ),
    Case(
        "ase-supernet",
        lambda **kw: ASESearcher(
            num_subspaces=2, local_distance=2, max_queries=6, train_steps=20, steps_per_trial=10, **kw
        ),
        supernet=nb201_spec,
        learned=lambda s: [s.baseline or 0.0, *s.graph.scores],
        refuses={"repeater": "it trains the supernet first (train_steps > 0)"},
    ),
    Case(
        "spos",
        lambda **kw: SPOSSearcher(train_steps=20, steps_per_trial=10, eval_batch=4, evolution=TINY_EVOLUTION, **kw),
        supernet=nb201_spec,
        learned=lambda s: list(s.evolution.scores.values()),
        refuses={"repeater": BATCHES},
    ),
    Case(
        "senas",
        lambda **kw: SENASSearcher(
            stage_steps=10,
            steps_per_trial=10,
            snapshots=2,
            samples_per_op=1,
            eval_batch=3,
            evolution=replace(TINY_EVOLUTION, generations=1),
            **kw,
        ),
        supernet=nb201_spec,
        learned=lambda s: [*s.values.values(), *s.evolution.scores.values()],
        refuses={"repeater": BATCHES, "mode=min": "SE-NAS averages an accuracy to maximise (Eqs. 5-7)"},
    ),
    Case(
        "autospace",
        lambda **kw: AutoSpaceSearcher(
            generations=3, iterations_per_generation=5, cells_per_layer=2, population_size=4, **kw
        ),
        supernet=open_cell_spec,
        metric="loss",
        mode="min",
        learned=lambda s: [m.fitness for population in s.populations for m in population],
        refuses={"repeater": "its trials train supernet generations whose learned fitness Repeater drops"},
    ),
    Case(
        "proxyless",
        lambda **kw: ProxylessSearcher(warmup_steps=10, search_steps=20, steps_per_trial=10, update_every=2, **kw),
        supernet=nb201_spec,
        learned=lambda s: [a for slot in s.alpha for a in slot],
        refuses={"repeater": "its trials train the supernet and report the architecture parameters it learns"},
    ),
    Case(
        "nse",
        lambda **kw: NSESearcher(
            ops_per_layer=3, steps_per_round=10, steps_per_trial=10, samples=6, edge_samples=2, eval_batch=4, **kw
        ),
        supernet=nse_spec,
        learned=lambda s: [f[s.metric] for f in s.front] + list(np.ravel(s.thetas)),
        refuses={"repeater": BATCHES},
    ),
]


@pytest.fixture(params=CASES, ids=lambda c: c.name)
def case(request):
    return request.param


def ready(case: Case, trainable, metric: str | None = None, mode: str | None = None, **settings):
    """The searcher as Tune sets it up: constructed with its budget only, then ``set_search_properties``."""
    searcher = case.make(**settings)
    assert searcher.set_search_properties(metric or case.metric, mode or case.mode, trainable.param_space) is True
    return searcher


# --------------------------------------------------------------------------------------------------
# The cycle: set_search_properties, suggest / on_trial_complete, FINISHED
# --------------------------------------------------------------------------------------------------
def test_a_default_instance_runs_to_finished_and_stays_finished(case):
    trainable = case.trainable()
    searcher = ready(case, trainable)
    run = drive(searcher, trainable, case.max_trials)
    assert run.finished, f"no FINISHED within {case.max_trials} trials"
    assert searcher.suggest("after-1") == FINISHED and searcher.suggest("after-2") == FINISHED
    searcher.on_trial_complete("never-suggested", result={case.metric: 1.0})  # ignored, as Tune may send it
    best = searcher.best_architecture()
    assert best is not None and searcher.space.contains(best)
    assert all(math.isfinite(v) for v in case.learned(searcher))
    train = [c for c in run.configs if c["task"] == "train"]
    assert len({c["job_id"] for c in train}) == len(train)  # every training job has its own id


def test_progress_is_plain_data_naming_a_phase_of_the_method(case):
    import json

    trainable = case.trainable()
    searcher = ready(case, trainable)
    assert searcher.progress().phase == searcher.PHASES[0]  # before the first suggestion too
    drive(searcher, trainable, 3)
    report = searcher.progress()
    json.dumps(report.to_dict())  # plain data
    assert report.phase in searcher.PHASES and str(report).startswith(report.phase)
    assert drive(searcher, trainable, case.max_trials).finished
    done = searcher.progress()
    assert done.phase == "finished" and done.steps_done == done.steps_total
    assert done.best_arch is None or searcher.space.contains(done.best_arch)


def test_settings_from_the_constructor_win_over_tunes(case):
    trainable = case.trainable()
    searcher = case.make(metric=case.metric, mode=case.mode)
    searcher.set_search_properties("other", "min" if case.mode == "max" else "max", trainable.param_space)
    assert (searcher.metric, searcher.mode) == (case.metric, case.mode)


def test_missing_metric_mode_or_space_is_a_clear_error(case):
    with pytest.raises(ValueError, match="mode must be"):
        case.make(metric=case.metric, mode="maximize")
    with pytest.raises(ValueError, match="no metric/mode.*no search space"):
        case.make().suggest("t0")


def test_a_metric_no_result_carries_names_what_the_trainable_reports(case):
    trainable = case.trainable()
    searcher = ready(case, trainable, metric="acc")
    with pytest.raises(ValueError, match=r"no metric 'acc'.*'accuracy'"):
        drive(searcher, trainable, case.max_trials)


# --------------------------------------------------------------------------------------------------
# Failed trials and bad values
# --------------------------------------------------------------------------------------------------
CRASHES = {"the first": lambda i: i == 0, "every third": lambda i: i % 3 == 1, "all of the first five": lambda i: i < 5}


@pytest.mark.parametrize("pattern", CRASHES)
def test_errored_trials_with_no_result(case, pattern):
    trainable = case.trainable(Faults(crash=CRASHES[pattern]))
    searcher = ready(case, trainable)
    run = drive(searcher, trainable, 3 * case.max_trials)
    assert run.finished
    best = searcher.best_architecture()
    if best is None:  # a small search can lose every evaluation: then it must say so, not pretend
        assert any(r["status"] == "error" for r in searcher.history) and "failed" in searcher.why_no_result()
    else:
        assert searcher.space.contains(best)
    assert all(math.isfinite(v) for v in case.learned(searcher))
    crashed = [config for config, _, error in trainable.log if error and config["task"] == "evaluate"]
    assert sum(r["status"] == "error" for r in searcher.history) == sum(len(c.get("archs", [0])) for c in crashed)


BAD_VALUES = {"nan": (math.nan, "max"), "inf": (math.inf, "max"), "-inf": (-math.inf, "min")}


@pytest.mark.parametrize("label", BAD_VALUES)
def test_non_finite_metrics_are_failed_evaluations_never_a_best(case, label, caplog):
    value, mode = BAD_VALUES[label]
    if mode == "min" and "mode=min" in case.refuses:
        pytest.skip(case.refuses["mode=min"])
    metric = case.metric if mode == case.mode else {"accuracy": "loss", "loss": "accuracy"}[case.metric]
    if case.supernet is None:
        metric = "accuracy"  # the table reports accuracies only: under min the search looks for the worst
    trainable = case.trainable(Faults(value=value, diverge=lambda i: i % 4 == 1), metric=metric)
    searcher = ready(case, trainable, metric=metric, mode=mode)
    with caplog.at_level(logging.WARNING, logger="tune_spacenas.searchers"):
        run = drive(searcher, trainable, 3 * case.max_trials)
    assert run.finished
    best = searcher.best_architecture()
    assert best is not None and searcher.space.contains(best)
    evaluated = {r["arch"] for r in searcher.history}
    assert best not in evaluated or not poisoned(best), "a non-finite score became the best"
    assert all(math.isfinite(v) for v in case.learned(searcher)), "a non-finite value reached what the method learns"
    for record in searcher.history:
        assert (record["status"] == "ok") == (not poisoned(record["arch"]))
        assert finite(record[metric]) == (record["status"] == "ok")
    record = searcher.best_record()
    assert record is None or finite(record[metric])
    # One warning line per trial that reported a non-finite value, naming the trial.
    faulty = [c for c, result, _ in trainable.log if non_finite_metric(result, metric)]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trial ")]
    assert len(lines) == len(faulty) > 0


def test_a_result_without_the_metric_after_others_had_it_is_a_failed_evaluation(case):
    trainable = case.trainable(Faults(drop=lambda i: i >= 2 and i % 3 == 2))
    searcher = ready(case, trainable)
    run = drive(searcher, trainable, 3 * case.max_trials)
    assert run.finished and searcher.best_architecture() is not None
    dropped = [
        c
        for c, result, _ in trainable.log
        if result is not None
        and c["task"] == "evaluate"
        and case.metric not in result
        and f"per_arch/{case.metric}" not in result
    ]
    assert sum(r["status"] == "missing" for r in searcher.history) == sum(len(c.get("archs", [0])) for c in dropped)


# --------------------------------------------------------------------------------------------------
# State: save/restore and pickling mid-search, into a fresh default instance
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["save/restore", "save_to_dir/restore_from_dir", "pickle"])
def test_a_fresh_default_instance_restored_mid_search_carries_on_identically(case, how, tmp_path):
    trainable = case.trainable()
    searcher = ready(case, trainable)
    first = drive(searcher, trainable, case.max_trials, in_flight=2, stop_after=3)  # two trials in flight now
    logged = len(trainable.log)
    if how == "save/restore":
        searcher.save(str(tmp_path / "searcher.pkl"))
    elif how == "save_to_dir/restore_from_dir":
        searcher.save_to_dir(str(tmp_path), session_str="s1")
    else:
        frozen = pickle.dumps(searcher)
    rest = drive(searcher, trainable, case.max_trials, in_flight=2, pending=first.in_flight, start=first.next_trial)

    fresh = type(searcher)()  # as Tuner.restore rebuilds it: every setting comes back from the state
    if how == "save/restore":
        fresh.restore(str(tmp_path / "searcher.pkl"))
    elif how == "save_to_dir/restore_from_dir":
        fresh.restore_from_dir(str(tmp_path))
    else:
        fresh = pickle.loads(frozen)
    again = drive(
        fresh, Replay(trainable, logged), case.max_trials, in_flight=2, pending=first.in_flight, start=first.next_trial
    )
    assert again.configs == rest.configs and again.finished == rest.finished
    assert fresh.best_architecture() == searcher.best_architecture()


# --------------------------------------------------------------------------------------------------
# Tune's wrappers: ConcurrencyLimiter, Repeater
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [False, True], ids=["limiter", "limiter-batch"])
def test_concurrency_limiter_with_trials_completing_out_of_order(case, batch):
    trainable = case.trainable()
    searcher = case.make()
    limiter = ConcurrencyLimiter(searcher, max_concurrent=3, batch=batch)
    assert limiter.set_search_properties(case.metric, case.mode, trainable.param_space)
    run = drive(limiter, trainable, 3 * case.max_trials, in_flight=5, order="lifo")
    assert run.finished and not searcher._live  # every trial it suggested came back
    best = searcher.best_architecture()
    assert best is not None and searcher.space.contains(best)


def test_repeater_averages_single_architecture_evaluations_or_is_refused_at_set_search_properties(case):
    trainable = case.trainable()
    if "repeater" in case.refuses:
        for wrapped in (Repeater(case.make(), repeat=3), Repeater(ConcurrencyLimiter(case.make(), 2), repeat=3)):
            with pytest.raises(ValueError, match=r"cannot run under ray.tune.search.Repeater: .*eval_images"):
                wrapped.set_search_properties(case.metric, case.mode, trainable.param_space)
        with pytest.raises(ValueError, match="Repeater"):  # also when Tune never called set_search_properties
            Repeater(ready(case, trainable), repeat=3).suggest("t0")
        return
    searcher = case.make()
    repeater = Repeater(searcher, repeat=3)
    repeater.set_search_properties(case.metric, case.mode, trainable.param_space)
    run = drive(repeater, trainable, 4 * case.max_trials, in_flight=3)
    assert run.finished
    groups = [run.configs[i : i + 3] for i in range(0, len(run.configs), 3)]
    assert all(
        [c.pop("__trial_index__") for c in group] == [0, 1, 2] and group[0] == group[1] == group[2] for group in groups
    )
    trials = [r for r in searcher.history if r["trial_id"] != "cache"]
    assert len(trials) == len(groups)  # the searcher saw one trial per group: the first, with the mean
    for record in trials:
        values = [r["accuracy"] for c, r, _ in trainable.log if c.get("arch") == record["arch"]]
        assert record["accuracy"] == pytest.approx(float(np.mean(values)))


# --------------------------------------------------------------------------------------------------
# Constraints that no architecture of the space meets
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: SPOSSearcher(max_madds=5e6, **kw),
        lambda **kw: SENASSearcher(max_madds=5e6, **kw),
        lambda **kw: ASESearcher(max_madds=5e6, **kw),
    ],
    ids=["spos", "senas", "ase"],
)
def test_a_cost_limit_below_the_spaces_cheapest_architecture_is_refused_with_its_range(make):
    space = NASBench201Space()  # 32 px, C=16, N=5: 7.8M to 220M MAdds
    with pytest.raises(ValueError, match=r"max_madds=5e\+06 admits no architecture .* cost 7\.783e\+06 to 2\.201e\+08"):
        make().set_search_properties("accuracy", "max", space.param_space())
    with pytest.raises(ValueError, match="admits no architecture"):
        make(space=space, metric="accuracy", mode="max").suggest("t0")
    small = NASBench201Space(channels=16, cells_per_stage=1, input_size=16)  # from 1.95M: the limit is met
    assert make().set_search_properties("accuracy", "max", small.param_space())


def test_a_cost_window_keeps_the_search_inside_it_and_an_empty_window_is_refused():
    space = NASBench201Space(channels=16, cells_per_stage=1, input_size=16)
    low, high = space.cost_range()
    window = (low + 0.4 * (high - low), low + 0.5 * (high - low))
    searcher = SPOSSearcher(
        space=space, metric="accuracy", mode="max", min_madds=window[0], max_madds=window[1], train_steps=0, seed=0
    )
    searcher.suggest("t0")
    archs = space.sample_many(np.random.default_rng(0), 200)
    inside = [a for a in archs if searcher.constraint(a)]
    assert 0 < len(inside) < len(archs)
    assert all(window[0] <= space.cost(a).madds <= window[1] for a in inside)
    with pytest.raises(ValueError, match=r"min_madds=.* admits no architecture .* cost"):
        SPOSSearcher(min_madds=2 * high).set_search_properties("accuracy", "max", space.param_space())
    with pytest.raises(ValueError, match="the window is empty"):
        SPOSSearcher(min_madds=high, max_madds=low).set_search_properties("accuracy", "max", space.param_space())


def test_nse_window_outside_the_spaces_cost_range_is_refused_and_the_default_fits_the_space():
    space = nse_space()
    with pytest.raises(ValueError, match=r"window 270-330 .* holds no architecture .* costs range 0\.\d+-\d+\.\d+"):
        NSESearcher(tau=300).set_search_properties("accuracy", "max", space.param_space())
    searcher = NSESearcher(seed=0)
    searcher.set_search_properties("accuracy", "max", space.param_space())
    searcher.suggest("t0")
    low, high = searcher.constraint
    cheapest, dearest = searcher.cost_span
    assert cheapest < low < searcher.tau < high < dearest
    paper = NSESearcher()
    paper.set_search_properties("accuracy", "max", MultiBranchSpace().param_space())
    paper.suggest("t0")
    assert paper.tau == 300.0  # the paper's target on the paper's ImageNet-size space


def test_a_search_that_ends_without_a_result_says_why_in_one_line(caplog):
    trainable = CASES[0].trainable(Faults(crash=lambda i: True))
    searcher = RandomSearcher(max_queries=4, seed=0)
    searcher.set_search_properties("accuracy", "max", trainable.param_space)
    with caplog.at_level(logging.WARNING, logger="tune_spacenas.searchers"):
        assert drive(searcher, trainable, 10).finished
    ends = [r.getMessage() for r in caplog.records if "finished without a result" in r.getMessage()]
    assert ends == [
        "RandomSearcher finished without a result: all 4 evaluations failed (4 error for metric 'accuracy')"
    ]
    nse = next(c for c in CASES if c.name == "nse")
    trainable = nse.trainable()
    searcher = nse.make(tau=0.2)
    searcher.set_search_properties("accuracy", "max", trainable.param_space)
    low = searcher.cost_span[0]
    # Inside the space's range, just above its cheapest architecture: no architecture costs that, however many
    # are drawn (the cheapest itself is drawn once a round draws hundreds).
    searcher.constraint = (low * (1 + 1e-9), low * (1 + 2e-9))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tune_spacenas.searchers"):
        assert drive(searcher, trainable, 100).finished
    ends = [r.getMessage() for r in caplog.records if "finished without a result" in r.getMessage()]
    assert len(ends) == 1 and "no sampled architecture fell inside the constraint window" in ends[0]


# --------------------------------------------------------------------------------------------------
# Under Tune
# --------------------------------------------------------------------------------------------------
def poisoned_table_trainable():
    """The table, with poisoned architectures (``contract.poisoned``) reporting +inf: under mode max it would
    always win. Built here so that Ray ships it by value (the tests folder is not importable on workers)."""

    def trainable(config):
        import zlib

        from ray import tune

        from tune_spacenas.trainables.table import evaluate_on_table

        result = evaluate_on_table(config)
        if zlib.crc32(result["arch"].encode()) % 3 == 0:
            result["accuracy"] = float("inf")
        tune.report(result)

    return trainable


@pytest.mark.slow
def test_under_tune_with_concurrency_limiter_and_asha(case, ray_session, tune_run_kwargs):
    searcher = case.make()
    if case.supernet is None:
        trainable, config = poisoned_table_trainable(), NASBench201Space().param_space()
    else:
        store = SupernetStore.create(f"contract-{case.name}", case.supernet())
        trainable, config = supernet_trainable, store.param_space()
    analysis = tune.run(
        trainable,
        config=config,
        metric=case.metric,
        mode=case.mode,
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=2),
        scheduler=ASHAScheduler(max_t=100, grace_period=1),
        num_samples=-1,
        **tune_run_kwargs,
    )
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert searcher.suggest("after") == FINISHED
    best = searcher.best_architecture()
    assert best is not None and searcher.space.contains(best)
    if case.supernet is None:
        assert not poisoned(best) and any(poisoned(r["arch"]) for r in searcher.history)
    else:
        store.kill()


@pytest.mark.slow
def test_repeater_under_tune(ray_session, tune_run_kwargs):
    searcher = RandomSearcher(max_queries=3, seed=1)
    analysis = tune.run(
        nasbench201_trainable,
        config=NASBench201Space().param_space(),
        metric="accuracy",
        mode="max",
        search_alg=Repeater(searcher, repeat=2),
        num_samples=-1,
        **tune_run_kwargs,
    )
    assert len(analysis.trials) == 6 and len(searcher.history) == 3 and searcher.best_architecture()
    with pytest.raises(Exception, match="cannot run under ray.tune.search.Repeater"):
        store = SupernetStore.create("contract-repeater", nb201_spec())
        try:
            tune.run(
                supernet_trainable,
                config=store.param_space(),
                metric="accuracy",
                mode="max",
                search_alg=Repeater(SPOSSearcher(), repeat=2),
                num_samples=-1,
                **tune_run_kwargs,
            )
        finally:
            store.kill()


@pytest.mark.slow
def test_pbt_is_refused_by_tune_itself(ray_session, tune_run_kwargs):
    pbt = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=1,
        hyperparam_mutations={"dataset": ["cifar10", "cifar100"]},
    )
    with pytest.raises(Exception, match="Search algorithms cannot be used with PopulationBasedTraining"):
        tune.run(
            nasbench201_trainable,
            config=NASBench201Space().param_space(),
            metric="accuracy",
            mode="max",
            search_alg=RandomSearcher(max_queries=2),
            scheduler=pbt,
            num_samples=-1,
            **tune_run_kwargs,
        )


class _InterruptAfter(tune.Callback):
    """SIGINT to this driver after ``n`` finished trials, once (``Tuner.restore`` brings callbacks back: the
    marker file stops the restored one): Tune stops the run gracefully and saves its state."""

    def __init__(self, n: int, marker: str):
        self.n, self.marker, self.seen = n, marker, 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.seen += 1
        if self.seen == self.n and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow
def test_tuner_with_max_concurrent_trials_interrupted_and_restored(ray_session, tmp_path):
    searcher = RegularizedEvolutionSearcher(max_queries=8, population_size=4, tournament_size=2, seed=0)
    tuner = tune.Tuner(
        nasbench201_trainable,
        param_space=NASBench201Space().param_space(),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            metric="accuracy",
            mode="max",
            num_samples=-1,
            max_concurrent_trials=2,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name="restore",
            storage_path=str(tmp_path),
            verbose=0,
            callbacks=[_InterruptAfter(3, str(tmp_path / "interrupted"))],
        ),
    )
    tuner.fit()
    assert searcher.queries < 8 and searcher.suggest("t") != FINISHED  # interrupted mid-search
    experiment = str(tmp_path / "restore")
    assert tune.Tuner.can_restore(experiment)
    grid = tune.Tuner.restore(experiment, trainable=nasbench201_trainable, resume_unfinished=True).fit()
    restored = RegularizedEvolutionSearcher()
    restored.restore_from_dir(experiment)
    assert restored.queries == 8 and restored.suggest("after") == FINISHED and not restored._live
    trials = [r["trial_id"] for r in restored.history if r["trial_id"] != "cache"]  # cache: a repeat, no trial
    assert len(set(trials)) == len(trials) == 8  # none lost, none counted twice
    assert not any(result.error for result in grid)


def diverging_supernet_trainable(job_suffix: str, lr: float):
    """The supernet trainable, with an absurd learning rate for the training job whose id ends in
    ``job_suffix``: its loss becomes NaN (a diverging supernet trial)."""

    def trainable(config):
        from tune_spacenas.trainables import supernet_trainable

        if str(config.get("job_id", "")).endswith(job_suffix):
            config = {**config, "lr": lr}
        supernet_trainable(config)

    return trainable


@pytest.mark.slow
def test_a_diverging_supernet_trial_finishes_and_the_best_architecture_has_a_finite_score(
    ray_session, tune_run_kwargs, caplog
):
    store = SupernetStore.create("contract-diverging", nb201_spec())
    searcher = SPOSSearcher(train_steps=30, steps_per_trial=10, eval_batch=4, seed=0, evolution=TINY_EVOLUTION)
    try:
        with caplog.at_level(logging.WARNING, logger="tune_spacenas.searchers"):
            analysis = tune.run(
                diverging_supernet_trainable("/1", 1e12),
                config=store.param_space(),
                metric="accuracy",
                mode="max",
                search_alg=ConcurrencyLimiter(searcher, 2),
                num_samples=-1,
                **tune_run_kwargs,
            )
        diverged = [t for t in analysis.trials if t.config.get("job_id", "").endswith("/1")]
        assert [t.status for t in analysis.trials] == ["TERMINATED"] * len(analysis.trials)  # the run finished
        assert len(diverged) == 1 and math.isnan(diverged[0].last_result["loss"])
        assert diverged[0].last_result["diverged_at_step"] >= 1
        assert searcher.training.failed == 10 and searcher.training.completed == 20
        assert any("diverged at step" in r.getMessage() for r in caplog.records)
        _, arrays = store.pull()
        assert all(np.isfinite(array).all() for _, array in arrays.values())  # no NaN reached the shared weights
        best = searcher.best_architecture()
        score = searcher.evolution.scores[searcher.space.from_string(best)]
        assert math.isfinite(score) and all(math.isfinite(v) for v in searcher.evolution.scores.values())
    finally:
        store.kill()
