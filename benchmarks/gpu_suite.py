"""Every GPU measurement in one command, in under 10 minutes, without Ray (the GPU image has none).

    python -m benchmarks.gpu_suite --out benchmarks/results/gpu/gpu_suite.json
    python -m benchmarks.gpu_suite --smoke          # seconds on CPU: checks every section runs

Each section is a module ``benchmarks.gpu.<name>`` with ``run(budget_s, smoke) -> dict``; it runs
in-process (``tune_spacenas.runner``: the same worker the Tune trainable wraps) on CIFAR-10 at 32x32
and is budgeted in wall seconds. A failing section is recorded and the suite goes on; results are
written after every section, so a run cut short keeps what it measured. ``--plot`` redraws the PNGs
from a results file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
import traceback
from pathlib import Path

from benchmarks.harness import RESULTS, write_json

# (section, seconds): about 8.3 minutes together, leaving the device's 10-minute limit a margin for
# start-up, data decoding and each section's scoring tail.
SECTIONS = (
    ("throughput", 25),
    ("spos_rank", 140),
    ("senas", 140),
    ("nse", 90),
    ("autospace", 90),
    ("store_transfer", 10),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu" / "gpu_suite.json")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets and data: a CPU check that it runs")
    parser.add_argument("--only", default="", help="comma-separated sections")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every section's budget")
    parser.add_argument("--plot", type=Path, default=None, help="only redraw plots from this results file")
    args = parser.parse_args()
    if args.plot:
        return plot(json.loads(args.plot.read_text()), args.plot.parent)

    import torch

    if args.smoke:
        # On a shared 2-core CPU, two torch threads per process spin against other processes: the NSE section's
        # smoke took over 10 minutes with the default threads and 33 s with one.
        torch.set_num_threads(1)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    wanted = set(filter(None, args.only.split(",")))
    results: dict = {"sections": {}, "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    for name, budget in SECTIONS:
        if wanted and name not in wanted:
            continue
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.gpu.{name}")
            section = module.run(budget_s=(5 if args.smoke else budget) * args.scale, smoke=args.smoke)
        except ModuleNotFoundError as err:
            section = {"skipped": f"section not written yet ({err})"}
        except Exception:  # record and go on: one broken section must not cost the others' GPU time
            section = {"error": traceback.format_exc()}
        section["wall_s"] = round(time.perf_counter() - start, 1)
        results["sections"][name] = section
        print(f"== {name}: {section['wall_s']} s", json.dumps(section)[:2000], flush=True)
        write_json(args.out, results)
    if not args.smoke:
        plot(results, args.out.parent)


def plot(results: dict, folder: Path) -> None:
    for name, section in results["sections"].items():
        try:
            module = importlib.import_module(f"benchmarks.gpu.{name}")
        except ModuleNotFoundError:
            continue
        if hasattr(module, "plot") and "error" not in section and "skipped" not in section:
            module.plot(section, folder)


if __name__ == "__main__":
    main()
