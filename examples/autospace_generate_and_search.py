"""AutoSpace end to end: generate a search space once, then search it with other searchers.

    python examples/autospace_generate_and_search.py --quick         # digits, about two minutes: the plumbing
    python examples/autospace_generate_and_search.py                 # CIFAR-10 at 16x16, about 20 min on 2 cores
    python examples/autospace_generate_and_search.py --in-process    # the same without Ray
    python examples/autospace_generate_and_search.py --space generated_space.json   # reuse a generated space

1. Generation (AutoSpace, section 3.2): ``AutoSpaceSearcher`` evolves one population of cells per layer on
   the open space's shared supernet; each Tune trial trains one supernet generation (K cells per layer,
   fitness-weighted, binary gates) and reports the learned fitness scores; two generations train at once
   (``ConcurrencyLimiter``). The top-K cells per layer are saved as a ``GeneratedSpace`` (JSON).
2. Search (section 3.3): the generated space's supernet is trained and searched by SPOS (ours: uniform
   path training, then evolution ranked by Eq. 6's regularised loss), then searched again on the same
   trained weights by Tune's own ``OptunaSearch`` through the space's ``param_space()``.
"""

from __future__ import annotations

import argparse
import os
import uuid
from pathlib import Path
from typing import Any

from tune_spacenas.data import DataSpec, prepare_data
from tune_spacenas.jobs import ACCURACY, AUTOSPACE_KEY, LOSS, REGULARIZED_LOSS, AutoSpaceJob
from tune_spacenas.runner import ProgressPrinter
from tune_spacenas.searchers import AutoSpaceSearcher, EvolutionSettings, SPOSSearcher
from tune_spacenas.spaces import GeneratedSpace, OpenCellSpace
from tune_spacenas.supernet.spec import SupernetSpec

MADDS_PENALTY = 2e-8  # Eq. (6)'s lambda: 1M multiply-adds cost as much as 0.02 of cross-entropy


def data_spec(quick: bool) -> DataSpec:
    return DataSpec("digits", val_size=300) if quick else DataSpec("cifar10", resolution=16)


def make_spec(space, quick: bool) -> SupernetSpec:
    if quick:
        return SupernetSpec(space, data_spec(quick), batch_size=64, eval_images=300, recalibration_batches=2)
    return SupernetSpec(space, data_spec(quick), batch_size=128, lr=0.05, eval_images=1000)


def open_space(quick: bool) -> OpenCellSpace:
    if quick:
        return OpenCellSpace(widths=(8, 16, 16), strides=(1, 2, 1), stem_channels=8, input_size=8)
    return OpenCellSpace(input_size=16)


class Runner:
    """The same trials with Ray Tune (a named weight store per supernet) or in this process."""

    def __init__(self, in_process: bool, concurrency: int):
        self.in_process, self.concurrency = in_process, concurrency
        self.stores: dict[str, Any] = {}
        if not in_process:
            from tune_spacenas.cluster import connect

            # SPOS's training trials report the training loss, not the evaluations' regularized_loss.
            os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
            connect(include_dashboard=False, log_to_driver=False)  # $RAY_ADDRESS's cluster, else a local Ray

    def run(
        self,
        searcher: Any,
        spec: SupernetSpec,
        metric: str,
        mode: str,
        constants: dict | None = None,
        trials: int | None = None,
    ) -> None:
        """Run ``searcher`` to its end (or ``trials`` trials) on ``spec``'s supernet; ``constants`` join every
        trial config. Searchers that are not ours (Optuna) search the space's ``param_space()``."""
        progress = ProgressPrinter(searcher, metrics=(LOSS, REGULARIZED_LOSS, ACCURACY))
        key = repr(spec.space.to_spec())
        ours = hasattr(searcher, "propose")
        if self.in_process:
            from tune_spacenas.runner import InProcessSupernet, run_in_process

            runner = self.stores.setdefault(key, InProcessSupernet(spec))
            config = dict(constants or {}) if ours else {**spec.space.param_space(), **(constants or {})}
            if not ours:
                searcher.set_search_properties(metric, mode, config)
            run_in_process(
                searcher,
                runner,
                max_trials=trials or 1_000_000,
                param_space=config,
                space=None if ours else spec.space,
                on_result=progress,
            )
            return
        from tune_spacenas.runner import run_with_tune
        from tune_spacenas.store import SupernetStore

        store = self.stores.get(key) or SupernetStore.create(f"autospace-example-{uuid.uuid4().hex[:6]}", spec)
        self.stores[key] = store
        run_with_tune(
            searcher,
            store,
            max_concurrent=self.concurrency,
            on_result=progress,
            metric=metric,
            mode=mode,
            constants=constants,
            num_samples=trials or -1,
            verbose=0,
        )

    def close(self) -> None:
        if not self.in_process:
            for store in self.stores.values():
                store.kill()


def generate(args: argparse.Namespace, runner: Runner) -> GeneratedSpace:
    space = open_space(args.quick)
    searcher = AutoSpaceSearcher(
        num_layers=space.num_layers,
        metric="loss",
        mode="min",
        space=space,
        cells_per_layer=args.cells,
        population_size=4 * args.cells,
        generations=args.generations,
        iterations_per_generation=args.iterations,
        seed=args.seed,
    )
    print(
        f"== generating: {args.generations} generations of {args.iterations} iterations, K={args.cells}, "
        f"{space.num_layers} layers, {searcher.population_size} cells per population"
    )
    runner.run(searcher, make_spec(space, args.quick), "loss", "min")
    generated = searcher.generated_space()
    generated.save(args.save)
    print(
        f"wrote {args.save}: {generated} (top-{args.cells} cells of each layer); population history -> "
        f"{Path(args.save).with_suffix('.parquet')}"
    )
    searcher.export_history(Path(args.save).with_suffix(".parquet"))
    return generated


def search(args: argparse.Namespace, space: GeneratedSpace, runner: Runner) -> None:
    from ray.tune.search.optuna import OptunaSearch

    spec = make_spec(space, args.quick)
    constants = {AUTOSPACE_KEY: AutoSpaceJob(madds_penalty=MADDS_PENALTY).to_dict()}  # Eq. 6 in every evaluation
    spos = SPOSSearcher(
        space=space,
        metric=REGULARIZED_LOSS,
        mode="min",
        seed=args.seed,
        train_steps=args.supernet_steps,
        steps_per_trial=max(1, args.supernet_steps // 6),
        eval_batch=12,
        evolution=EvolutionSettings(population=12, generations=4, parents=4, mutations=6, crossovers=6),
    )
    print(
        f"\n== SPOS on the generated space ({space.size} architectures): {args.supernet_steps} training steps, "
        f"then evolution"
    )
    runner.run(spos, spec, REGULARIZED_LOSS, "min", constants)
    best_madds = space.cost(space.from_string(spos.best_architecture())).madds
    print(f"SPOS found {spos.best_architecture()}  ({best_madds / 1e6:.2f}M MAdds)")

    print(f"\n== Optuna (Tune's own searcher) on the same trained supernet: {args.optuna_trials} architectures")
    optuna = OptunaSearch(metric=REGULARIZED_LOSS, mode="min", seed=args.seed)
    runner.run(optuna, spec, REGULARIZED_LOSS, "min", constants, trials=args.optuna_trials)
    best = optuna._ot_study.best_trial
    print(f"Optuna found {','.join(best.params[f'ops/{s.name}'] for s in space.slots)} (Eq. 6 loss {best.value:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="digits at 8x8 and a tiny budget")
    parser.add_argument("--in-process", action="store_true", help="no Ray: one process, the same searches")
    parser.add_argument("--space", default=None, help="search this saved GeneratedSpace instead of generating one")
    parser.add_argument("--save", default="generated_space.json", help="where the generated space is written")
    parser.add_argument("--cells", type=int, default=4, help="K cells per layer")
    parser.add_argument("--generations", type=int, default=None)
    parser.add_argument("--iterations", type=int, default=None, help="f: iterations per supernet generation")
    parser.add_argument("--supernet-steps", type=int, default=None)
    parser.add_argument("--optuna-trials", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.generations = args.generations or (6 if args.quick else 12)
    args.iterations = args.iterations or (10 if args.quick else 50)
    args.supernet_steps = args.supernet_steps or (60 if args.quick else 1500)
    args.optuna_trials = args.optuna_trials or (8 if args.quick else 30)

    try:  # the data found or downloaded here: before Ray or any trial starts
        prepare_data(data_spec(args.quick))
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"autospace_generate_and_search: {err}") from None
    runner = Runner(args.in_process, args.concurrency)
    try:
        space = GeneratedSpace.load(args.space) if args.space else generate(args, runner)
        search(args, space, runner)
    finally:
        runner.close()


if __name__ == "__main__":
    main()
