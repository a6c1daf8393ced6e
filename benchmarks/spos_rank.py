"""SPOS rank correlation on the NAS-Bench-201 supernet trained on CIFAR-10 (the number SE-NAS must beat).

    python -m benchmarks.spos_rank --seeds 3 --out benchmarks/results/spos_rank.json

CPU setting (../shared/FACTS.md): 16x16 input (CIFAR-10 average-pooled 2x2), C=16, N=1, all 45,000
training images, SGD with cosine learning rate, batch 128; each seed trains in its own single-threaded
process, two at a time. 200 cells are scored on 1,000 validation images after recalibrating BatchNorm
on 4 training batches; ground truth is the table's CIFAR-10 accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.harness import RESULTS, cifar10_spec, mean_std, process_pool, train, write_json, write_markdown
from benchmarks.rank import parameter_counts, rank_report, rank_sample, score, table_truth


def one_seed(args: argparse.Namespace, seed: int) -> dict:
    import torch

    from tune_spacenas.runner import InProcessSupernet
    from tune_spacenas.spaces import NASBench201Space

    torch.manual_seed(seed)
    space = NASBench201Space(channels=args.channels, cells_per_stage=args.cells, input_size=args.resolution)
    spec = cifar10_spec(
        space, args.resolution, init_seed=seed, batch_size=args.batch_size, lr=args.lr, eval_images=args.eval_images
    )
    runner = InProcessSupernet(spec, args.device)
    steps = args.epochs * runner.worker.data.size("train") // spec.batch_size
    seconds = train(
        runner,
        steps,
        args.steps_per_job,
        spec.lr,
        seed,
        progress=lambda done, r: print(
            f"[seed {seed}] step {done}/{steps} loss {r['loss']:.3f} {r['images_per_s']:.0f} img/s", flush=True
        ),
    )
    archs = rank_sample(args.archs, seed=args.sample_seed)
    scores = score(runner, archs)
    truth = table_truth(archs)
    report = rank_report(scores, truth, parameter_counts(spec.space, archs))
    print(f"[seed {seed}] tau {report['kendall_tau']:.3f} (params {report['params_tau']:.3f})", flush=True)
    return {"seed": seed, "steps": steps, "train_seconds": seconds, "scores": scores, **report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cells", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--archs", type=int, default=200)
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--eval-images", type=int, default=1000)
    parser.add_argument("--steps-per-job", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=2, help="seeds trained side by side, one thread each")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "spos_rank.json")
    args = parser.parse_args()

    with process_pool(args.parallel, args.threads) as pool:
        runs = pool.starmap(one_seed, [(args, seed) for seed in range(args.seeds)])
    taus = [r["kendall_tau"] for r in runs]
    payload = {
        "dataset": f"CIFAR-10 (shared JPEG Parquet), {args.resolution}x{args.resolution}, 45,000 train / 5,000 val",
        "ground_truth": "NAS-Bench-201 table, CIFAR-10 test accuracy after 200 epochs",
        "architectures": args.archs,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "supernet": f"NAS-Bench-201 C={args.channels} N={args.cells}",
        "kendall_tau": taus,
        "kendall_tau_top_half": [r["kendall_tau_top_half"] for r in runs],
        "params_tau": runs[0]["params_tau"],
        "params_tau_top_half": runs[0]["params_tau_top_half"],
        "supernet_plus_params_tau": [r["supernet_plus_params_tau"] for r in runs],
        "runs": runs,
    }
    write_json(args.out, payload)
    mean, std = mean_std(taus)
    write_markdown(
        args.out.with_suffix(".md"),
        "SPOS rank correlation (NAS-Bench-201, CIFAR-10)",
        ["seed", "tau (all)", "tau (better half)", "steps", "train s"],
        [[r["seed"], r["kendall_tau"], r["kendall_tau_top_half"], r["steps"], round(r["train_seconds"])] for r in runs],
        notes=f"Mean tau {mean:.3f} +- {std:.3f} over {args.seeds} seeds; parameter count's tau on the "
        f"same {args.archs} cells: {runs[0]['params_tau']:.3f} (better half "
        f"{runs[0]['params_tau_top_half']:.3f}), the floor a supernet must beat.",
    )
    print(f"SPOS tau {mean:.3f} +- {std:.3f}; params {runs[0]['params_tau']:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
