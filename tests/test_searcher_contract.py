"""Every searcher against the shared contract (tests/contract.py)."""

from __future__ import annotations

import pytest
from conftest import tiny_supernet_spec
from contract import Case, drive, finishes
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from test_nse import tiny_nse
from test_nse import tiny_spec as _nse_spec

from tune_spacenas.searchers import (
    ASESearcher,
    AutoSpaceSearcher,
    EvolutionSettings,
    RandomSearcher,
    RegularizedEvolutionSearcher,
    REINFORCESearcher,
    SENASSearcher,
    SPOSSearcher,
)
from tune_spacenas.spaces import NASBench201Space
from tune_spacenas.store import SupernetStore
from tune_spacenas.trainables import nasbench201_trainable, supernet_trainable

_tiny_spec = tiny_supernet_spec


def _autospace_spec():
    from tune_spacenas.spaces import OpenCellSpace

    return tiny_supernet_spec(OpenCellSpace(widths=(8, 16), strides=(1, 2), stem_channels=8, input_size=8))


CASES = [
    Case("random", lambda **kw: RandomSearcher(space=NASBench201Space(), max_queries=30, **kw)),
    Case("regevo", lambda **kw: RegularizedEvolutionSearcher(space=NASBench201Space(), max_queries=30,
                                                             population_size=8, **kw)),
    Case("reinforce", lambda **kw: REINFORCESearcher(space=NASBench201Space(), max_queries=30, **kw)),
    Case("ase", lambda **kw: ASESearcher(space=NASBench201Space(), max_queries=30, num_subspaces=2, **kw)),
    Case("spos", lambda **kw: SPOSSearcher(space=_tiny_spec().space, train_steps=40, steps_per_trial=20, eval_batch=3, **kw, evolution=EvolutionSettings(population=6, generations=2, parents=3, mutations=3, crossovers=3)),
         evaluator="supernet", spec=_tiny_spec, max_trials=20),
    Case("senas", lambda **kw: SENASSearcher(space=_tiny_spec().space, stage_steps=20, steps_per_trial=10, snapshots=2, samples_per_op=2, eval_batch=30, **kw, evolution=EvolutionSettings(population=6, generations=2, parents=3, mutations=3, crossovers=3)),
         evaluator="supernet", spec=_tiny_spec, max_trials=30),
    Case("autospace", lambda **kw: AutoSpaceSearcher(space=_autospace_spec().space, generations=4,
                                                     iterations_per_generation=10, cells_per_layer=2,
                                                     population_size=6, **kw),
         evaluator="supernet", spec=_autospace_spec, max_trials=10),
    Case("nse", lambda **kw: tiny_nse(**kw), evaluator="supernet", spec=_nse_spec, max_trials=30),
]


@pytest.fixture(params=CASES, ids=lambda c: c.name)
def case(request):
    return request.param


def test_runs_to_the_end_in_process(case):
    searcher = case.make(metric="accuracy", mode="max", seed=0)
    assert finishes(searcher, case.evaluate_fn(), case.max_trials)
    best = searcher.best_architecture()
    assert best is not None and searcher.space.contains(best)


def test_same_seed_same_suggestions_and_save_restore_resumes(case, tmp_path):
    evaluate = case.evaluate_fn()
    first = case.make(metric="accuracy", mode="max", seed=3)
    drive(first, evaluate, 4)
    first.save(str(tmp_path / "state.pkl"))
    rest = drive(first, evaluate, 6)

    resumed = case.make(metric="accuracy", mode="max", seed=99)  # the seed comes back from the checkpoint
    resumed.restore(str(tmp_path / "state.pkl"))
    evaluate = case.evaluate_fn() if case.evaluator == "table" else evaluate
    if case.evaluator == "table":
        assert drive(resumed, evaluate, 6) == rest
    else:  # the supernet moved on after the save; the suggestions must still be the same jobs
        assert [c["task"] for c in drive(resumed, evaluate, 6)] == [c["task"] for c in rest]


def test_missing_metric_mode_or_space_is_a_clear_error(case):
    with pytest.raises(ValueError, match="mode must be"):
        case.make(metric="accuracy", mode="maximize")
    searcher = case.make()
    with pytest.raises(ValueError, match="metric"):
        searcher.suggest("t0")


def test_wrong_metric_in_results_names_the_reported_keys(case):
    searcher = case.make(metric="acc", mode="max")
    evaluate = case.evaluate_fn()
    with pytest.raises(ValueError, match="no metric 'acc'.*accuracy"):
        for i in range(case.max_trials):
            config = searcher.suggest(f"t{i}")
            searcher.on_trial_complete(f"t{i}", result=evaluate(config))


def test_a_crashed_trial_does_not_stop_the_search(case):
    searcher = case.make(metric="accuracy", mode="max", seed=1)
    config = searcher.suggest("crash")
    searcher.on_trial_complete("crash", result=None, error=True)
    assert config is not None
    assert finishes(searcher, case.evaluate_fn(), case.max_trials)


@pytest.mark.slow
def test_under_tune_with_concurrency_limiter_and_asha(case, ray_session, tune_run_kwargs):
    searcher = case.make(seed=0)
    if case.evaluator == "table":
        trainable, config = nasbench201_trainable, NASBench201Space().param_space()
    else:
        store = SupernetStore.create(f"contract-{case.name}", case.spec())
        trainable, config = supernet_trainable, store.param_space()
    analysis = tune.run(trainable, config=config, metric="accuracy", mode="max",
                        search_alg=ConcurrencyLimiter(searcher, max_concurrent=2),
                        scheduler=ASHAScheduler(max_t=100, grace_period=1), num_samples=-1, **tune_run_kwargs)
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    assert searcher.suggest("after") == "FINISHED"
    best = searcher.best_architecture()
    assert best is not None and searcher.space.contains(best)
    if case.evaluator == "supernet":
        store.kill()


def test_progress_is_plain_data_naming_a_phase_of_the_method(case):
    import json

    searcher = case.make(metric="accuracy", mode="max", seed=0)
    assert searcher.progress().phase == searcher.PHASES[0]  # before the first suggestion too
    drive(searcher, case.evaluate_fn(), 3)
    report = searcher.progress()
    json.dumps(report.to_dict())  # plain data
    assert report.phase in searcher.PHASES and str(report).startswith(report.phase)
    assert finishes(searcher, case.evaluate_fn(), case.max_trials)
    done = searcher.progress()
    assert done.phase == "finished" and done.steps_done == done.steps_total
    if searcher.best_architecture() is not None and done.best_arch is not None:
        assert searcher.space.contains(done.best_arch)
