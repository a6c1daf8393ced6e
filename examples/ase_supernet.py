"""ASE-NAS end to end on the shared supernet: train it, then evoke subspaces with inherited weights.

    python examples/ase_supernet.py               # CIFAR-10 at 16x16, a few minutes on 2 CPU cores
    python examples/ase_supernet.py --quick       # digits, about a minute: checks the plumbing only
    python examples/ase_supernet.py --in-process  # the same search without Ray (runner.run_in_process)

Algorithm 1 of ASE-NAS as Tune trials on the NAS-Bench-201 space (width 16, one cell per stage):
line 1, training trials train uniformly sampled paths of the supernet (weights live in a named
weight-store actor; trials push deltas); then K centres are evaluated and every further trial
evaluates one architecture ``b = a (+) Delta a`` proposed by the controller, its reward ``R(b) - R(a)``
measured with weights inherited from the supernet (line 10). Progress is printed as trials finish.
The best centre is looked up in the NAS-Bench-201 table, which knows its true CIFAR-10 accuracy.
"""

from __future__ import annotations

import argparse

from tune_spacenas.data import DataSpec, prepare_data
from tune_spacenas.searchers import ASESearcher
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


def run_with_tune(searcher: ASESearcher, spec: SupernetSpec, concurrency: int) -> None:
    from tune_spacenas.cluster import connect
    from tune_spacenas.runner import ProgressPrinter
    from tune_spacenas.runner import run_with_tune as search
    from tune_spacenas.store import SupernetStore

    connect(include_dashboard=False, log_to_driver=False)  # $RAY_ADDRESS's cluster, else a local Ray
    with SupernetStore.temporary(spec, prefix="ase-example") as store:
        search(searcher, store, max_concurrent=concurrency, on_result=ProgressPrinter(searcher), verbose=0)


def run_in_process(searcher: ASESearcher, spec: SupernetSpec) -> None:
    from tune_spacenas.runner import InProcessSupernet, ProgressPrinter, run_in_process

    run_in_process(searcher, InProcessSupernet(spec), on_result=ProgressPrinter(searcher))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="digits at 8x8 and a tiny budget")
    parser.add_argument("--in-process", action="store_true", help="no Ray: one process, same search")
    parser.add_argument("--train-steps", type=int, default=None, help="supernet training steps (Algorithm 1 line 1)")
    parser.add_argument("--queries", type=int, default=None, help="distinct architectures evaluated")
    parser.add_argument("--subspaces", type=int, default=None, help="K (default: from the budget)")
    parser.add_argument("--distance", type=int, default=None, help="M (default: from the space)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--save-graph", default=None, help="write the final subspace graph here (for ASE-NAS+)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train_steps = args.train_steps if args.train_steps is not None else (100 if args.quick else 2500)
    queries = args.queries if args.queries is not None else (20 if args.quick else 100)

    spec = make_spec(args.quick)
    try:  # the data found or downloaded, and the table read, here: before Ray or any trial starts
        prepare_data(spec.data)
        table = NASBench201Table.load()
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"ase_supernet: {err}") from None
    searcher = ASESearcher(
        space=spec.space,
        metric="accuracy",
        mode="max",
        seed=args.seed,
        max_queries=queries,
        num_subspaces=args.subspaces,
        local_distance=args.distance,
        train_steps=train_steps,
        steps_per_trial=50 if args.quick else 250,
        train_lr=spec.lr,
    )
    if args.in_process:
        run_in_process(searcher, spec)
    else:
        run_with_tune(searcher, spec, args.concurrency)

    print("\nfinal subspace graph (supernet accuracy | NAS-Bench-201 CIFAR-10 test accuracy after 200 epochs):")
    for center, score in sorted(zip(searcher.graph.centers, searcher.graph.scores), key=lambda c: -c[1]):
        print(f"  {score:5.1f}% | {table.query(center):5.2f}%  {spec.space.to_string(center)}")
    best = searcher.best_architecture()
    print(
        f"best centre: {best}\n  table accuracy {table.query(best):.2f}% (table optimum {table.best()[1]:.2f}%); "
        f"{searcher.replacements} centre replacements in {searcher.decisions} decisions"
    )
    if args.save_graph:
        searcher.save_graph(args.save_graph)
        print(f"wrote {args.save_graph}: start ASE-NAS+ with ASESearcher(initial_centers={args.save_graph!r})")


if __name__ == "__main__":
    main()
