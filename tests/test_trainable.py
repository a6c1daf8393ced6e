"""The shared-supernet trainable: train and evaluate jobs in-process and under a real tune.run."""

import numpy as np
import pytest

from tune_spacenas.jobs import SENASJob, SnapshotRequest, evaluate_batch_job, evaluate_job, train_job
from tune_spacenas.runner import InProcessSupernet, run_with_tune
from tune_spacenas.searchers.base import ArchSearcher
from tune_spacenas.store import SupernetStore
from tune_spacenas.trainables import supernet_trainable


def test_train_job_moves_only_sampled_paths_and_evaluate_reports_per_architecture(tiny_spec):
    runner = InProcessSupernet(tiny_spec, "cpu")
    before = {k: v.copy() for k, v in runner.store.arrays.items()}
    space = tiny_spec.space
    sub = space.restrict({s.name: ["skip_connect", "nor_conv_3x3"] for s in space.slots})
    result = runner(train_job(20, sub, seed=0, sync_every=10))
    assert result["steps_done"] == 20 and np.isfinite(result["loss"])
    assert runner.store.stats["applied"] == 2
    changed = {k for k in before if not np.array_equal(before[k], runner.store.arrays[k])}
    net = runner.worker.net
    never_sampled = {n for s in range(6) for o in (0, 2, 4) for n in net.choice_parameter_names(s, o)}
    assert changed and not changed & never_sampled
    archs = sub.sample_many(np.random.default_rng(1), 3, distinct=True)
    batch = runner(evaluate_batch_job(space, archs))
    assert len(batch["per_arch"]["accuracy"]) == 3 and batch["evaluated"] == 3
    single = runner(evaluate_job(space, archs[0]))
    assert single["accuracy"] == pytest.approx(batch["per_arch"]["accuracy"][0])


def test_evaluation_with_averaged_snapshots_restores_live_weights(tiny_spec):
    runner = InProcessSupernet(tiny_spec, "cpu")
    runner(train_job(12, seed=0, senas=SENASJob(snapshots=SnapshotRequest(name="stage", count=3))))
    assert sorted(runner.store.snapshots) == ["stage/0", "stage/1", "stage/2"]
    arch = tiny_spec.space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    )
    live = runner(evaluate_job(tiny_spec.space, arch))["accuracy"]
    averaged = runner(evaluate_job(tiny_spec.space, arch, senas=SENASJob(average=["stage/0", "stage/1", "stage/2"])))
    assert runner(evaluate_job(tiny_spec.space, arch))["accuracy"] == live
    assert 0 <= averaged["accuracy"] <= 100


def test_a_job_issued_again_trains_only_its_missing_steps_and_a_finished_one_is_answered_from_the_store(tiny_spec):
    runner = InProcessSupernet(tiny_spec, "cpu")
    job = train_job(10, seed=3, sync_every=2, job_id="search/7")

    def killed_after_step_4(metrics, synced):
        if metrics["steps_done"] == 4:
            raise KeyboardInterrupt  # the driver died: steps 2 and 4 are in the store

    with pytest.raises(KeyboardInterrupt):
        runner.worker.run(job, "trial-a", killed_after_step_4)
    assert runner.store.progress("search/7") == (4, None)
    steps = []
    result = runner.worker.run(job, "trial-b", lambda metrics, synced: steps.append(metrics["steps_done"]))
    assert steps == [6, 8, 10] and result["steps_done"] == 10  # trained from step 5 on, under a new trial id
    assert runner.store.push_counts == {"search/7": 5} and runner.store.last_step == {"search/7": 10}
    before = {k: v.copy() for k, v in runner.store.arrays.items()}
    again = runner.worker.run(job, "trial-c")
    assert again == {**result, "replayed": True} and runner.store.push_counts == {"search/7": 5}
    assert all(np.array_equal(before[k], v) for k, v in runner.store.arrays.items())  # nothing trained again


@pytest.mark.parametrize("lr", [1e6, 1e30])
def test_a_diverging_job_stops_before_non_finite_weights_reach_the_store(tiny_spec, lr):
    runner = InProcessSupernet(tiny_spec, "cpu")
    result = runner(train_job(10, seed=0, sync_every=2, lr=lr, job_id="search/0"))
    assert np.isnan(result["loss"]) and np.isnan(result["accuracy"]) and result["diverged_at_step"] <= 10
    assert result["steps_done"] == runner.store.last_step.get("search/0", 0) < result["diverged_at_step"]
    assert all(np.isfinite(a).all() for a in runner.store.arrays.values())
    healthy = runner(train_job(10, seed=1, sync_every=5, job_id="search/1"))  # the same worker trains on
    assert np.isfinite(healthy["loss"]) and all(np.isfinite(a).all() for a in runner.store.arrays.values())


class _Jobs(ArchSearcher):
    """A fixed list of jobs: what any method's searcher hands the trainable."""

    def __init__(self, jobs, **kw):
        super().__init__(None, **kw)
        self.jobs, self.results = list(jobs), []

    def propose(self):
        return self.jobs.pop(0) if self.jobs else "FINISHED"

    def observe(self, job, result):
        self.results.append((job["task"], result))


@pytest.mark.slow
def test_train_and_evaluate_trials_under_tune(ray_session, tiny_spec, tune_run_kwargs):
    with SupernetStore.temporary(tiny_spec, prefix="test-trainable") as store:
        space = tiny_spec.space
        archs = space.sample_many(np.random.default_rng(0), 4, distinct=True)
        jobs = [train_job(15, seed=i, sync_every=5) for i in range(4)] + [
            evaluate_batch_job(space, archs[:2]),
            evaluate_job(space, archs[2]),
        ]
        searcher, finished = _Jobs(jobs, seed=0), []
        run_with_tune(
            searcher,
            store,
            max_concurrent=2,
            on_result=lambda config, _: finished.append(config["task"]),
            **tune_run_kwargs,
        )
        tasks = [t for t, _ in searcher.results]
        assert tasks.count("train") == 4 and tasks.count("evaluate") == 2
        assert sorted(finished) == sorted(tasks)  # on_result saw every finished trial
        assert all(r is not None for _, r in searcher.results)
        assert store.info()["stats"]["applied"] == 4 * 3  # every sync of every training trial counted once
        assert sorted(h["arch"] for h in searcher.history) == sorted(space.to_string(a) for a in archs[:3])
    with pytest.raises(ValueError, match="no weight store named"):  # the block's end killed it
        SupernetStore.connect(store.name)


def test_trainable_rejects_configs_without_a_store_or_of_another_space(ray_session, tiny_spec):
    with pytest.raises(ValueError, match="names no weight store"):
        supernet_trainable({"task": "train", "steps": 1})
    with pytest.raises(ValueError, match="no weight store named 'nope'.*SupernetStore.create"):
        supernet_trainable({"task": "train", "steps": 1, "store": "nope"})
