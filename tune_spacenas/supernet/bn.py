"""BatchNorm recalibration: statistics of one path, re-estimated on a few training batches (NSE 3.3.2)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def recalibrate_batchnorm(
    net: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[torch.Tensor]
) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them with ``forward`` on ``batches``.

    Statistics are a cumulative average over the batches (momentum ``None``), so the result does not
    depend on their order; learnable weights are untouched. The network is left in eval mode.
    """
    norms = [m for m in net.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    for x in batches:
        forward(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    net.eval()
