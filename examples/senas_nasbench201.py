"""SE-NAS end to end on the shared NAS-Bench-201 supernet: train, shrink, expand, train again, search.

    python examples/senas_nasbench201.py               # CIFAR-10 at 16x16, about 15 minutes on 2 CPU cores
    python examples/senas_nasbench201.py --quick       # digits, about a minute: checks the plumbing only
    python examples/senas_nasbench201.py --in-process  # the same search without Ray (runner.run_in_process)

Algorithm 1 of SE-NAS as Tune trials: each stage trains the supernet on uniformly sampled paths of the
current space (the stage's last trial takes Eq. 4's snapshots), scores every operator from sampled child
models (Eqs. 5-7), drops the 10 lowest, merges adjacent small layer-wise spaces and gives each partial
model its own weights (3.4). After two stages the final, expanded space trains once more and an exhaustive
search of it picks the answer, which the NAS-Bench-201 table then scores.
"""

from __future__ import annotations

import argparse

from tune_spacenas.data import DataSpec, prepare_data
from tune_spacenas.searchers import SENASSearcher
from tune_spacenas.spaces import NASBench201Space
from tune_spacenas.supernet.spec import SupernetSpec
from tune_spacenas.tables import NASBench201Table


def make_spec(quick: bool) -> SupernetSpec:
    if quick:
        return SupernetSpec(
            NASBench201Space(channels=8, cells_per_stage=1, input_size=8),
            DataSpec("digits", val_size=300),
            batch_size=64,
            eval_images=300,
            recalibration_batches=2,
        )
    return SupernetSpec(
        NASBench201Space(channels=16, cells_per_stage=1, input_size=16),
        DataSpec("cifar10", resolution=16),
        batch_size=128,
        lr=0.05,
        eval_images=1000,
    )


def make_searcher(quick: bool, **kwargs) -> SENASSearcher:
    steps = 40 if quick else 2457  # per stage and for the final space: 7 epochs at batch 128 (paper: 20)
    return SENASSearcher(
        stages=2,
        stage_steps=steps,
        steps_per_trial=20 if quick else 351,
        snapshots=5,
        snapshot_window=20 if quick else 351,
        samples_per_op=4 if quick else 30,
        drop_per_stage=10,
        merge_threshold=50,
        seed=0,
        **kwargs,
    )


def run_with_tune(quick: bool, spec: SupernetSpec, concurrency: int) -> SENASSearcher:
    from tune_spacenas.cluster import connect
    from tune_spacenas.runner import ProgressPrinter
    from tune_spacenas.runner import run_with_tune as search
    from tune_spacenas.store import SupernetStore

    connect(include_dashboard=False, log_to_driver=False)  # $RAY_ADDRESS's cluster, else a local Ray
    searcher = make_searcher(quick)  # space, metric and mode come from tune.run's config
    with SupernetStore.temporary(spec, prefix="senas-example") as store:
        search(searcher, store, max_concurrent=concurrency, on_result=ProgressPrinter(searcher), verbose=0)
    return searcher


def run_in_process(quick: bool, spec: SupernetSpec) -> SENASSearcher:
    from tune_spacenas.runner import InProcessSupernet, ProgressPrinter
    from tune_spacenas.runner import run_in_process as drive

    runner = InProcessSupernet(spec, "cpu")
    searcher = make_searcher(quick, space=spec.space, metric="accuracy", mode="max")
    drive(searcher, runner, on_result=ProgressPrinter(searcher))
    return searcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="digits and a few steps: a plumbing check")
    parser.add_argument("--in-process", action="store_true", help="no Ray: drive the searcher in this process")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    spec = make_spec(args.quick)
    try:  # the data found or downloaded, and the table read, here: before Ray or any trial starts
        prepare_data(spec.data)
        table = NASBench201Table.load()
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"senas_nasbench201: {err}") from None
    searcher = (
        run_in_process(args.quick, spec) if args.in_process else run_with_tune(args.quick, spec, args.concurrency)
    )

    for record in searcher.stage_log:
        print(
            f"stage {record['stage'] + 1}: dropped {', '.join(record['dropped'])}; {record['size']} cells left; "
            f"merged slot groups {record['merged_spaces']}"
        )
    best = searcher.best_architecture()
    print(
        f"SE-NAS picks {best}: NAS-Bench-201 CIFAR-10 accuracy {table.query(best):.2f}% "
        f"(optimum {table.best()[1]:.2f}%)"
    )


if __name__ == "__main__":
    main()
