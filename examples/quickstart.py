"""Quickstart: a one-shot architecture search on real CIFAR-10, every trial sharing one supernet.

    python examples/quickstart.py            # a few minutes on 2 CPU cores; uses a GPU when there is one

CIFAR-10 is found or downloaded once, before Ray, torch and the searchers are even imported (the order:
tune_spacenas.data.cifar10); without a copy and without the internet it stops within seconds, naming the
three ways to provide it.

SPOS on the NAS-Bench-201 space: training trials train sampled paths of the shared supernet (weights
live in a named weight-store actor; trials push deltas), then evaluation trials score candidates with
inherited weights for an evolutionary search. CPU scale: 16x16 images (CIFAR-10 average-pooled 2x2),
width 16, one cell per stage. The architecture found is looked up in the NAS-Bench-201 table, which
knows its true CIFAR-10 accuracy after 200 epochs of standalone training.
Runs on the local embedded Ray, or on a cluster when RAY_ADDRESS is set.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tune_spacenas.data import DataSpec, prepare_data
from tune_spacenas.tables import NASBench201Table

if TYPE_CHECKING:
    from tune_spacenas.searchers import SPOSSearcher

DATA = DataSpec("cifar10", resolution=16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-steps", type=int, default=1500, help="supernet training steps (batch 128)")
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:  # CIFAR-10 found or downloaded, and the table read, before Ray, torch or any trial starts
        prepare_data(DATA)
        table = NASBench201Table.load()
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"quickstart: {err}") from None

    searcher = search(args)
    best = searcher.best_architecture()
    print(f"\nbest architecture (supernet accuracy {searcher.progress().best:.1f}% on 1,000 validation images):")
    print(f"  {best}")
    print(
        f"  NAS-Bench-201 CIFAR-10 test accuracy after 200 epochs: {table.query(best):.2f}% "
        f"(table optimum {table.best()[1]:.2f}%)"
    )


def search(args: argparse.Namespace) -> SPOSSearcher:
    """SPOS under ``tune.Tuner`` on a weight store made for this search alone."""
    import torch
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from tune_spacenas.cluster import connect
    from tune_spacenas.runner import ProgressPrinter, result_callback
    from tune_spacenas.searchers import EvolutionSettings, SPOSSearcher
    from tune_spacenas.spaces import NASBench201Space
    from tune_spacenas.store import SupernetStore
    from tune_spacenas.supernet.spec import SupernetSpec
    from tune_spacenas.trainables import supernet_trainable

    connect(include_dashboard=False, log_to_driver=False)  # $RAY_ADDRESS's cluster, else a local Ray
    space = NASBench201Space(channels=16, cells_per_stage=1, input_size=16)
    spec = SupernetSpec(space, DATA, batch_size=128, lr=0.05, eval_images=1000)
    evolution = EvolutionSettings(
        population=args.population,
        generations=args.generations,
        parents=5,
        mutations=args.population // 2,
        crossovers=args.population // 2,
    )
    searcher = SPOSSearcher(
        train_steps=args.train_steps, steps_per_trial=150, evolution=evolution, eval_batch=10, seed=args.seed
    )
    with SupernetStore.temporary(spec, prefix="quickstart") as store:  # the shared supernet, for this search only
        tuner = tune.Tuner(
            tune.with_resources(supernet_trainable, {"cpu": 1, "gpu": 1 if torch.cuda.is_available() else 0}),
            param_space=store.param_space(),
            tune_config=tune.TuneConfig(
                metric="accuracy",
                mode="max",
                num_samples=-1,
                reuse_actors=True,
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=args.concurrency),
            ),
            run_config=tune.RunConfig(
                name="quickstart", verbose=0, callbacks=[result_callback(ProgressPrinter(searcher))]
            ),
        )
        tuner.fit()
    return searcher


if __name__ == "__main__":
    main()
