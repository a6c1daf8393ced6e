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
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|")
    live = runner(evaluate_job(tiny_spec.space, arch))["accuracy"]
    averaged = runner(evaluate_job(tiny_spec.space, arch, senas=SENASJob(average=["stage/0", "stage/1", "stage/2"])))
    assert runner(evaluate_job(tiny_spec.space, arch))["accuracy"] == live
    assert 0 <= averaged["accuracy"] <= 100


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
        jobs = [train_job(15, seed=i, sync_every=5) for i in range(4)] + [evaluate_batch_job(space, archs[:2]),
                                                                          evaluate_job(space, archs[2])]
        searcher, finished = _Jobs(jobs, seed=0), []
        run_with_tune(searcher, store, max_concurrent=2, on_result=lambda config, _: finished.append(config["task"]),
                      **tune_run_kwargs)
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
