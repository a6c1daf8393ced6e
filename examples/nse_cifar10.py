"""NSE end to end on the shared multi-branch supernet: rounds of train -> simplify -> evaluate -> aggregate
-> replenish, as Tune trials, with progress printed as they finish.

    python examples/nse_cifar10.py               # CIFAR-10 at 16x16, about 15 minutes on 2 CPU cores
    python examples/nse_cifar10.py --quick       # digits, a minute or two: checks the plumbing only
    python examples/nse_cifar10.py --in-process  # the same search without Ray (runner.run_in_process)

The space is Table 5's macro-architecture (width 0.25, two layers per stage) over the 27 operations of
NSE's appendix A.1, shuffled per layer; each layer holds K=5 of them at a time. Training trials train
the supernet (every branch Bernoulli(0.5)) and update the fitness indicators on validation batches;
after each round the Pareto front of (validation accuracy, MAdds) inside the MAdds window decides
which operations stay, and fresh ones from the pool fill every layer back to K.
"""

from __future__ import annotations

import argparse
import os

from tune_spacenas.data import DataSpec, prepare_data
from tune_spacenas.jobs import ACCURACY, ARCH_KEY
from tune_spacenas.searchers import NSESearcher
from tune_spacenas.spaces import MultiBranchSpace
from tune_spacenas.supernet.spec import SupernetSpec

SMALL_STAGES = ((16, 1, 1), (24, 2, 2), (40, 2, 2), (80, 2, 2), (96, 2, 1), (192, 2, 2), (320, 1, 1))
QUICK_POOL = ["dw_k3_e1", "dw_k5_e1", "dw_k3_e1_d2", "conv1xk_k5_e1", "dw_k3_e3", "dw_k7_e1"]


def make(quick: bool) -> tuple[SupernetSpec, NSESearcher]:
    if quick:
        space = MultiBranchSpace(
            pool=QUICK_POOL, width_mult=0.25, input_size=8, num_classes=10, stages=((16, 2, 1), (24, 2, 2))
        )
        spec = SupernetSpec(
            space, DataSpec("digits", val_size=300), batch_size=64, eval_images=300, recalibration_batches=2
        )
        searcher = NSESearcher(
            ops_per_layer=3,
            steps_per_round=40,
            steps_per_trial=20,
            samples=8,
            edge_samples=2,
            tau=0.25,
            constraint=(0.2, 10.0),
            eval_batch=4,
            metric="accuracy",
            mode="max",
        )
        return spec, searcher
    space = MultiBranchSpace(width_mult=0.25, input_size=16, num_classes=10, stages=SMALL_STAGES)
    spec = SupernetSpec(space, DataSpec("cifar10", resolution=16), batch_size=128, lr=0.05, eval_images=1000)
    # tau scaled to the small network (millions of MAdds); alpha so the penalty weighs as the paper's at 300M.
    tau = 1.5
    searcher = NSESearcher(
        ops_per_layer=5,
        steps_per_round=150,
        steps_per_trial=50,
        tau=tau,
        alpha=1e-5 * (300 / tau) ** 2,
        samples=30,
        edge_samples=6,
        eval_batch=15,
        metric="accuracy",
        mode="max",
    )
    return spec, searcher


def run_with_tune(searcher: NSESearcher, spec: SupernetSpec, concurrency: int) -> None:
    from tune_spacenas.cluster import connect
    from tune_spacenas.runner import ProgressPrinter
    from tune_spacenas.runner import run_with_tune as search
    from tune_spacenas.store import SupernetStore

    connect(include_dashboard=False, log_to_driver=False)  # $RAY_ADDRESS's cluster, else a local Ray
    with SupernetStore.temporary(spec, prefix="nse-example") as store:
        search(searcher, store, max_concurrent=concurrency, on_result=ProgressPrinter(searcher), verbose=0)


def run_in_process(searcher: NSESearcher, spec: SupernetSpec) -> None:
    from tune_spacenas.runner import InProcessSupernet, ProgressPrinter
    from tune_spacenas.runner import run_in_process as drive

    searcher.space = spec.space
    drive(searcher, InProcessSupernet(spec), on_result=ProgressPrinter(searcher))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="digits and a tiny pool: a plumbing check")
    parser.add_argument("--in-process", action="store_true", help="no Ray: run the trials one after another here")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds-out", default="nse_rounds.parquet", help="per-round history (Parquet)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    spec, searcher = make(args.quick)
    try:  # the data found or downloaded here: before Ray or any trial starts
        prepare_data(spec.data)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"nse_cifar10: {err}") from None
    if args.in_process:
        run_in_process(searcher, spec)
    else:
        run_with_tune(searcher, spec, args.concurrency)
    searcher.export_rounds(args.rounds_out)
    best = searcher.best_architecture()
    print(f"\nfinal Pareto front ({len(searcher.front)} architectures):")
    for f in searcher.front:
        print(f"  {f[ACCURACY]:5.1f}%  {f['cost']:.3f}M MAdds  {f[ARCH_KEY]}")
    print(
        f"best under the constraint: {best}\nsubset after the last round: {searcher.final_subsets}\n"
        f"per-round history: {args.rounds_out}"
    )


if __name__ == "__main__":
    main()
