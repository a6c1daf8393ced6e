"""A search on an existing Ray cluster that survives a killed driver: run it again and it resumes.

    RAY_AUTH_MODE=disabled RAY_ADDRESS=127.0.0.1:6379 python examples/cluster_search.py \\
        --storage /shared/ray_results --name digits-spos

SPOS on a tiny NAS-Bench-201 supernet (scikit-learn digits, seconds per trial). Everything a resume needs
lives in the experiment directory ``<storage>/<name>`` (a shared filesystem or a pyarrow.fs URI such as
``s3://bucket/results``): Tune's trial state and the searcher's state, and the weight store's checkpoint
(written on every push, so a crash loses no update). Started again with the same arguments after the
driver died, it re-creates the store from that checkpoint and calls ``Tuner.restore``: the searcher
resumes where its last saved state was (Tune saves it every 10 s or more), unfinished trials restart from
their own checkpoints, and pushes they repeat are ignored by the store. The training jobs the searcher
issued after that save are issued again under the same job ids, so the store applies none of their steps
twice and answers a finished one with its recorded result; the folders of the trials that ran them are
listed and removed (``ORPHAN`` lines).

Prints one line per finished trial (``COMPLETE <trial> <task> <node>``) and, at the end, a JSON summary of
the search's bookkeeping (read back from the searcher state Tune saved, so from a local or mounted
``--storage``) and the store's ledger (also written to ``--summary``).
"""

from __future__ import annotations

import argparse
import json
import sys

from ray import tune

from tune_spacenas import storage
from tune_spacenas.cluster import connect, orphaned_trials, repair_experiment, round_robin
from tune_spacenas.data import DataSpec
from tune_spacenas.jobs import NODE_ID, TASK_KEY
from tune_spacenas.searchers import EvolutionSettings, SPOSSearcher
from tune_spacenas.spaces import NASBench201Space
from tune_spacenas.store import SupernetStore
from tune_spacenas.supernet.spec import SupernetSpec
from tune_spacenas.trainables import supernet_trainable


def tiny_spec() -> SupernetSpec:
    space = NASBench201Space(channels=8, cells_per_stage=1, input_size=8)
    return SupernetSpec(
        space, DataSpec("digits", val_size=300), batch_size=64, eval_images=300, recalibration_batches=2
    )


def make_searcher(args: argparse.Namespace, space=None) -> SPOSSearcher:
    evolution = EvolutionSettings(population=4, generations=args.generations, parents=2, mutations=2, crossovers=2)
    searcher = SPOSSearcher(
        space=space or tiny_spec().space,
        metric="accuracy",
        mode="max",
        seed=args.seed,
        train_steps=args.train_steps,
        steps_per_trial=args.steps_per_trial,
        evolution=evolution,
        eval_batch=4,
    )
    searcher.training.sync_every = args.sync_every
    return searcher


class PrintCompleted(tune.Callback):
    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        print(f"COMPLETE {trial.trial_id} {trial.config.get(TASK_KEY)} {result.get(NODE_ID, '?')}", flush=True)


def trainable(args: argparse.Namespace):
    """The supernet trainable; with ``--spread N``, trials go to nodes ``node0..node{N-1}`` in turn (custom
    resources the nodes were started with): short trials otherwise stay on one warm actor's node."""
    return tune.with_resources(supernet_trainable, round_robin(args.spread)) if args.spread > 1 else supernet_trainable


def run(args: argparse.Namespace) -> dict:
    experiment = storage.join(args.storage, args.name)
    store = SupernetStore.create(
        args.name,
        tiny_spec(),
        exist_ok=True,
        checkpoint_every=1,
        shards=args.shards,
        checkpoint_path=storage.store_checkpoint_path(args.storage, args.name),
    )
    if tune.Tuner.can_restore(experiment):
        for path in repair_experiment(experiment):  # a driver killed mid-upload leaves Tune's files damaged
            print(f"REPAIRED {path} from the driver's staged copy", flush=True)
        for path in orphaned_trials(experiment):  # trials run after Tune's last save: their jobs come again
            print(f"ORPHAN {path}", flush=True)
            storage.remove_tree(path)
        print(f"RESUME {experiment}", flush=True)
        tuner = tune.Tuner.restore(experiment, trainable=trainable(args), resume_unfinished=True)
    else:
        tuner = tune.Tuner(
            trainable(args),
            param_space=store.param_space(),
            tune_config=tune.TuneConfig(search_alg=make_searcher(args), num_samples=-1, reuse_actors=True),
            run_config=tune.RunConfig(
                name=args.name,
                storage_path=args.storage,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=3),
                callbacks=[PrintCompleted()],
            ),
        )
    grid = tuner.fit()
    searcher = make_searcher(args)
    searcher.restore_from_dir(experiment)  # the state Tune saved last: the search's own bookkeeping
    info = store.info()
    return {
        "trials": sorted([r.metrics.get("trial_id"), r.metrics.get(NODE_ID)] for r in grid if r.metrics),
        "errors": sum(r.error is not None for r in grid),
        "training": {
            "issued": searcher.training.issued,
            "completed": searcher.training.completed,
            "failed": searcher.training.failed,
        },
        "history": len(searcher.history),
        "history_trials": sorted({h["trial_id"] for h in searcher.history}),
        "best": searcher.best_architecture(),
        "weight_store": {k: info[k] for k in ("push_counts", "last_step")} | {"stats": info["stats"]},
        "applied_steps": sum(info["last_step"].values()),  # each job's pushes cover its steps up to its last
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", required=True, help="Tune storage_path: a shared filesystem or a URI")
    parser.add_argument("--name", default="cluster-search", help="experiment name (also the store's name)")
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--steps-per-trial", type=int, default=10)
    parser.add_argument("--sync-every", type=int, default=5)
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spread", type=int, default=0, help="place trials on nodes node0..node{N-1} in turn")
    parser.add_argument("--shards", type=int, default=1, help="split the weight store over this many actors")
    parser.add_argument("--summary", default=None, help="also write the JSON summary here")
    parser.add_argument("--keep-store", action="store_true", help="leave the store running at the end")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    connect(log_to_driver=False)
    summary = run(args)
    if not args.keep_store:
        SupernetStore.connect(args.name).kill()
    text = json.dumps(summary, indent=1)
    if args.summary:
        with open(args.summary, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
