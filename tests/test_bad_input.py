"""Bad input, one case per row of the reliability table: each is a clear ValueError / FileNotFoundError /
ConnectionError naming the problem and the fix, and afterwards the store and the searcher still work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import numpy as np
import pytest

from tune_spacenas.data import DataSpec
from tune_spacenas.jobs import check_job, evaluate_job, train_job
from tune_spacenas.runner import run_in_process
from tune_spacenas.searchers import EvolutionSettings, SPOSSearcher
from tune_spacenas.spaces import NASBench201Space
from tune_spacenas.store import SupernetStore
from tune_spacenas.supernet.spec import SupernetSpec
from tune_spacenas.trainables.supernet import supernet_trainable
from tune_spacenas.trainables.worker import SupernetWorker


@pytest.fixture
def store(ray_session, tiny_spec):
    store = SupernetStore.create(f"bad-input-{uuid.uuid4().hex[:8]}", tiny_spec)
    yield store
    store.kill()


def _usable(store: SupernetStore) -> None:
    """The store still answers and still applies pushes."""
    incarnation, arrays = store.pull()
    key = next(iter(arrays))
    step = store.info()["last_step"].get("probe", 0) + 1
    assert store.push({key: np.ones_like(arrays[key][1])}, "probe", step)
    assert store.pull(keys=[key])[1][key][0] == arrays[key][0] + 1


def _spos(space, **kwargs) -> SPOSSearcher:
    return SPOSSearcher(
        space=space,
        seed=0,
        train_steps=20,
        steps_per_trial=10,
        eval_batch=3,
        **kwargs,
        evolution=EvolutionSettings(population=3, generations=1),
    )


def _worker_evaluator(spec, store):
    worker = SupernetWorker(spec, store, "cpu")
    return lambda config: worker.run(config, trial_id=f"t{uuid.uuid4().hex[:6]}")


def test_wrong_mode_names_the_choices(tiny_spec):
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        _spos(tiny_spec.space, metric="accuracy", mode="maximize")


def test_wrong_metric_names_what_the_trainable_reports_and_the_trained_weights_survive(store, tiny_spec):
    searcher = _spos(tiny_spec.space, metric="acc", mode="max")
    with pytest.raises(ValueError, match=r"no metric 'acc'.*'accuracy'.*Pass one of those as metric="):
        run_in_process(searcher, _worker_evaluator(tiny_spec, store))
    assert searcher.training.completed == 20 and searcher.history == []  # trained; nothing half-recorded
    trained = store.info()["push_counts"]
    assert len(trained) == 2  # the supernet's training is in the store: a fixed search starts from it
    fixed = SPOSSearcher(
        space=tiny_spec.space,
        metric="accuracy",
        mode="max",
        train_steps=0,
        eval_batch=3,
        evolution=EvolutionSettings(population=3, generations=1),
    )
    run_in_process(fixed, _worker_evaluator(tiny_spec, store))
    assert fixed.best_architecture() is not None
    _usable(store)


def test_a_space_that_is_not_the_stores_supernet(store, tiny_spec):
    other = NASBench201Space(channels=16, cells_per_stage=1, input_size=8)
    config = {**other.param_space(), **train_job(5), "store": store.name}
    with pytest.raises(ValueError, match=r"does not match weight store .* use the store's own store.param_space\(\)"):
        supernet_trainable(config)
    with pytest.raises(ValueError, match=r"another supernet than the one asked for .*space differ"):
        SupernetStore.create(store.name, SupernetSpec(other, tiny_spec.data), exist_ok=True)
    _usable(store)


def test_an_architecture_that_is_not_in_the_stores_space(store, tiny_spec):
    bad = {
        **evaluate_job(tiny_spec.space, tiny_spec.space.sample(np.random.default_rng(0))),
        "store": store.name,
        "arch": "|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    }
    with pytest.raises(ValueError, match=r"unknown operation 'conv_9x9'.*edited by hand"):
        supernet_trainable(bad)
    _usable(store)


def test_a_spec_given_to_the_generic_store_names_the_supernet_store(ray_session, tiny_spec):
    from tune_spacenas.store.actor import WeightStore

    with pytest.raises(ValueError, match=r"takes tensors.*SupernetStore.create\(name, spec\)"):
        WeightStore.create(f"spec-{uuid.uuid4().hex[:6]}", tiny_spec)


def test_a_store_that_does_not_exist_says_how_to_create_it(ray_session, tiny_spec):
    with pytest.raises(ValueError, match=r"no weight store named 'nope'.*SupernetStore.create\('nope', SupernetSpec"):
        SupernetStore.connect("nope")
    with pytest.raises(ValueError, match=r"SupernetStore.create"):
        supernet_trainable({**tiny_spec.space.param_space(), **train_job(5), "store": "nope"})


def test_restoring_a_checkpoint_of_another_space(store, tiny_spec, tmp_path):
    # A searcher: its state is untouched by the refused restore.
    other = NASBench201Space(channels=16, cells_per_stage=1, input_size=8)
    saved = _spos(other, metric="accuracy", mode="max")
    saved.suggest("t0")
    saved.save(str(tmp_path / "searcher.pkl"))
    searcher = _spos(tiny_spec.space, metric="accuracy", mode="max")
    with pytest.raises(ValueError, match="restore it into a searcher of the same space"):
        searcher.restore(str(tmp_path / "searcher.pkl"))
    assert searcher.suggest("t1")["task"] == "train" and searcher.space == tiny_spec.space
    # A store: the checkpoint is left as it was and the running store goes on.
    path = store.checkpoint(str(tmp_path / "store.npz"))
    before = os.path.getmtime(path)
    other_spec = SupernetSpec(NASBench201Space(channels=4, cells_per_stage=1, input_size=8), tiny_spec.data)
    with pytest.raises(ValueError, match=r"checkpoint .* holds another supernet .* another name / checkpoint_path"):
        SupernetStore.create(f"other-{uuid.uuid4().hex[:6]}", other_spec, checkpoint_path=path)
    assert os.path.getmtime(path) == before
    _usable(store)


@pytest.mark.parametrize(
    "edit, complaint",
    [
        ({"steps": -3}, "'steps' must be a positive integer"),
        ({"steps": "ten"}, "'steps' must be a positive integer"),
        ({"sync_every": 0}, "'sync_every' must be a positive integer"),
        ({"lr": "fast"}, "'lr' must be a non-negative number"),
        ({"subspace": [[0, 1]] * 5}, "restriction names 5 slots but the space has 6"),
        ({"arch": "|conv~0|"}, "is not a NAS-Bench-201 string"),
        ({"task": "fit"}, "unknown task 'fit'"),
    ],
)
def test_a_hand_edited_training_config_names_the_key(tiny_spec, edit, complaint):
    config = {**train_job(10), **edit}
    with pytest.raises(ValueError, match=complaint) as err:
        check_job(config, tiny_spec.space)
    assert "jobs.train_job" in str(err.value)


@pytest.mark.parametrize(
    "edit, complaint",
    [
        ({"archs": []}, "'archs' must be a non-empty list"),
        ({"archs": "|none~0|"}, "'archs' must be a non-empty list"),
        ({"split": "train"}, "'split' must be 'val' or 'test'"),
        ({"images": 0}, "'images' must be a positive integer"),
    ],
)
def test_a_hand_edited_evaluation_config_names_the_key(tiny_spec, edit, complaint):
    config = {**evaluate_job(tiny_spec.space, tiny_spec.space.sample(np.random.default_rng(0))), **edit}
    with pytest.raises(ValueError, match=complaint):
        check_job(config, tiny_spec.space)


def test_a_missing_data_file_names_the_variable_to_set(store, tmp_path):
    spec = SupernetSpec(
        NASBench201Space(channels=8, cells_per_stage=1, input_size=8),
        DataSpec("cifar10", resolution=8, path=str(tmp_path / "nowhere.parquet")),
    )
    with pytest.raises(FileNotFoundError, match=r"no CIFAR-10 at \S*nowhere.parquet(.|\n)*set TUNE_SPACENAS_DATA"):
        SupernetWorker(spec, store, "cpu")
    _usable(store)


def test_a_truncated_data_file_says_what_it_should_hold(store, tmp_path, cifar10_sample):
    truncated = tmp_path / "cifar10_jpeg.parquet"
    with open(cifar10_sample, "rb") as f:
        truncated.write_bytes(f.read(64 * 1024))
    spec = SupernetSpec(
        NASBench201Space(channels=8, cells_per_stage=1, input_size=8),
        DataSpec("cifar10", resolution=8, path=str(truncated)),
    )
    with pytest.raises(ValueError, match="cannot read .* as the CIFAR-10 Parquet file.*columns split, label"):
        SupernetWorker(spec, store, "cpu")
    _usable(store)


def test_a_truncated_nasbench201_table_says_what_it_should_hold(tmp_path, nb201_csv):
    from tune_spacenas.tables import NASBench201Table

    for cut in (5000, 5003):  # at a line end, and inside a line
        truncated = tmp_path / f"table{cut}.csv"
        with open(nb201_csv, "rb") as f:
            truncated.write_bytes(f.read(cut))
        with pytest.raises(ValueError, match=str(truncated)):
            NASBench201Table(truncated)


def test_a_truncated_store_checkpoint_is_refused_before_a_store_starts(store, tiny_spec, tmp_path):
    path = store.checkpoint(str(tmp_path / "store.npz"))
    with open(path, "rb") as f:
        head = f.read(4096)
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(head)
    name = f"damaged-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ValueError, match="cannot be read .* truncated .* move it away"):
        SupernetStore.create(name, tiny_spec, checkpoint_path=str(damaged))
    with pytest.raises(ValueError, match="no weight store named"):
        SupernetStore.connect(name)  # nothing half-started under that name
    _usable(store)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_address_pointing_nowhere_fails_fast_with_the_fix():
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{_free_port()}"}
    code = "from tune_spacenas.cluster import connect; connect()"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "ConnectionError: no Ray cluster answers at 127.0.0.1:" in done.stderr
    assert "Connection refused" in done.stderr  # the socket's own error
    assert "ray start --head" in done.stderr and "unset it" in done.stderr


def test_tune_state_damaged_by_a_killed_driver_is_repaired_from_the_staged_copy(tmp_path):
    import json
    import pickle

    from tune_spacenas.cluster import repair_experiment

    experiment = tmp_path / "results" / "exp"
    staged = tmp_path / "ray" / "session_1" / "artifacts" / "2026-01-01_00-00-00" / "exp" / "driver_artifacts"
    experiment.mkdir(parents=True)
    staged.mkdir(parents=True)
    state = json.dumps({"trials": 3}).encode()
    (staged / "experiment_state-2026.json").write_bytes(state)
    (staged / "searcher-state-2026.pkl").write_bytes(pickle.dumps({"issued": 3}))
    (experiment / "experiment_state-2026.json").write_bytes(state[:5])  # the upload was cut short
    (experiment / "searcher-state-2026.pkl").write_bytes(pickle.dumps({"issued": 2}))  # an older save
    repaired = repair_experiment(str(experiment), staging_root=str(tmp_path / "ray"))
    assert sorted(p.rsplit("/", 1)[1] for p in repaired) == ["experiment_state-2026.json", "searcher-state-2026.pkl"]
    assert json.loads((experiment / "experiment_state-2026.json").read_text()) == {"trials": 3}
    assert repair_experiment(str(experiment), staging_root=str(tmp_path / "ray")) == []  # nothing left to do
    (experiment / "experiment_state-2026.json").write_bytes(b"")
    with pytest.raises(RuntimeError, match="is damaged .* no staged copy .* delete the files of that session"):
        repair_experiment(str(experiment), staging_root=str(tmp_path / "nowhere"))


def test_a_training_searcher_on_the_table_trainable_names_supernet_trainable():
    from tune_spacenas.trainables.table import evaluate_on_table

    searcher = SPOSSearcher(seed=0)
    searcher.set_search_properties("accuracy", "max", NASBench201Space().param_space())
    with pytest.raises(ValueError, match=r"table trainable only evaluates .* supernet_trainable .* train_steps=0"):
        evaluate_on_table(searcher.suggest("t0"))
    table_spos = SPOSSearcher(
        train_steps=0, evolution=EvolutionSettings(population=4, generations=1), eval_batch=4, seed=0
    )
    table_spos.set_search_properties("accuracy", "max", NASBench201Space().param_space())
    assert run_in_process(table_spos, evaluate_on_table) == 1 and table_spos.best_architecture()


def test_a_store_without_a_checkpoint_path_logs_no_error_line(ray_session, tiny_spec):
    import glob

    import ray

    class Holder:
        def __init__(self, arrays):
            self.arrays = arrays

    logs = os.path.join(ray._private.worker._global_node.get_session_dir_path(), "logs", "python-core-driver-*.log")
    control_name = f"control-{uuid.uuid4().hex[:6]}"
    control = ray.remote(Holder).options(max_restarts=1, name=control_name).remote(np.zeros(300_000, np.float32))
    ray.get(control.__ray_ready__.remote())  # a large constructor argument and restarts: Ray's error line
    names = [f"no-checkpoint-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    from tune_spacenas.store.actor import WeightStore

    stores = [
        SupernetStore.create(names[0], tiny_spec),
        WeightStore.create(names[1], arrays={"w": np.zeros(300_000, np.float32)}),
    ]
    assert stores[1].pull()[1]["w"][1].shape == (300_000,)
    lines = [
        line for path in glob.glob(logs) for line in open(path) if "constructor arguments in the object store" in line
    ]
    assert any(control_name in line for line in lines)  # the log is where Ray writes that error line
    assert not any(name in line for line in lines for name in names)
    for store in stores:
        store.kill()
    ray.kill(control)


def test_trial_folders_a_killed_driver_left_after_tunes_last_save_are_listed_and_removed(tmp_path):
    import json

    from tune_spacenas.cluster import orphaned_trials, repair_experiment

    experiment = tmp_path / "results" / "exp"
    staged = tmp_path / "ray" / "session_1" / "artifacts" / "2026-01-01_00-00-00" / "exp" / "driver_artifacts"
    trial_state = [[json.dumps({"trial_id": "aaaa0001"}), "{}"]]
    for folder in (experiment, staged):
        (folder / "supernet_trainable_aaaa0001_1_job_id=s_0_2026-01-01_00-00-00").mkdir(parents=True)
        (folder / "supernet_trainable_bbbb0002_2_job_id=s_1_2026-01-01_00-00-05").mkdir(parents=True)
        (folder / "experiment_state-2026.json").write_text(json.dumps({"trial_data": trial_state}))
    orphans = orphaned_trials(str(experiment), staging_root=str(tmp_path / "ray"))
    orphan = "supernet_trainable_bbbb0002_2_job_id=s_1_2026-01-01_00-00-05"
    assert [o.split("/")[-1] for o in orphans] == [orphan, orphan]  # the uploaded folder and the staged one
    assert repair_experiment(str(experiment), staging_root=str(tmp_path / "ray"), remove_orphans=True) == []
    assert sorted(p.name for p in experiment.iterdir()) == [
        "experiment_state-2026.json",
        "supernet_trainable_aaaa0001_1_job_id=s_0_2026-01-01_00-00-00",
    ]
    assert orphaned_trials(str(experiment), staging_root=str(tmp_path / "ray")) == []
