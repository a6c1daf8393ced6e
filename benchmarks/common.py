"""What every benchmark shares: the command line that produced a result, JSON + Markdown output, stats."""

from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def command_line() -> str:
    """The ``python -m benchmarks.X ...`` invocation that is running now."""
    script = Path(sys.argv[0]).resolve()
    try:
        module = ".".join(script.relative_to(RESULTS.parents[1]).with_suffix("").parts)
    except ValueError:
        module = script.stem
    return shlex.join(["python", "-m", module, *sys.argv[1:]])


def environment() -> dict[str, Any]:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})"
    return {"python": platform.python_version(), "torch": torch.__version__, "device": device,
            "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M")}


def write_json(path: str | Path, payload: dict[str, Any], command: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "command": command or command_line(), "environment": environment()}
    path.write_text(json.dumps(payload, indent=2, default=_plain))
    return path


def write_markdown(path: str | Path, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]],
                   notes: str = "", command: str | None = None) -> Path:
    path = Path(path)
    lines = [f"# {title}", "", f"Command: `{command or command_line()}`", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    if notes:
        lines += ["", notes]
    path.write_text("\n".join(lines) + "\n")
    return path


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = np.asarray(values, float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch's t-test p-value for a difference in means."""
    from scipy.stats import ttest_ind

    return float(ttest_ind(a, b, equal_var=False).pvalue)


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
