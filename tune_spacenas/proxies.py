"""Zero-cost proxies: score an *untrained* network in one forward/backward pass on one real batch.

Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021) compare such scores; the ones
here are those that rank NAS-Bench-201 cells best there, plus the activation-pattern score of Mellor
et al. ("Neural Architecture Search without Training", ICML 2021):

* ``synflow`` (Tanaka et al. 2020): every weight replaced by its absolute value, the network in double
  precision fed an all-ones image, ``R = sum(f(1))``; score ``sum |theta * dR/dtheta|``. BatchNorm is an
  identity here (evaluation mode with its initial statistics), as the paper computes synflow without it.
* ``naswot``: the binary ReLU codes ``c_i`` of the batch's images over every ReLU of the network;
  ``K_ij = N_A - hamming(c_i, c_j)``; score ``log |det K|`` (Mellor et al. 2021, Eq. 2).
* ``jacov`` (Mellor et al., v1): the per-image input gradients of the summed outputs, their correlation
  matrix's eigenvalues ``v``; score ``-sum(log(v + k) + 1 / (v + k))``, ``k = 1e-5``.
* ``grad_norm``: the sum of the per-parameter-tensor L2 norms of the cross-entropy loss's gradients.

Higher is better for each. ``ProxyScorer`` builds the networks with the project's own builders (the
space's supernet skeleton, one path at a time, from one seeded initialisation), feeds them one seeded
CIFAR-10 training batch, and caches the scores per architecture. Searchers never import this module:
they take a prior as a plain mapping or callable (``tune_spacenas.searchers.prior``), built here or
read from a precomputed table (``tune_spacenas.tables.proxies``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tune_spacenas.data.spec import DataSpec
from tune_spacenas.spaces.base import Architecture, SearchSpace

PROXIES = ("synflow", "naswot", "jacov", "grad_norm")
JACOV_K = 1e-5

Forward = Callable[[Tensor], Tensor]


def synflow(net: nn.Module, forward: Forward, input_shape: Sequence[int]) -> float:
    """``sum |theta * dR/dtheta|`` with ``R = sum(f(1))``; ``net`` must already hold ``|theta|`` in double
    precision with BatchNorm in evaluation mode (``ProxyScorer`` prepares that copy once)."""
    net.zero_grad(set_to_none=True)
    forward(torch.ones(1, *input_shape, dtype=torch.float64)).sum().backward()
    with torch.no_grad():
        return float(sum((p * p.grad).abs().sum() for p in net.parameters() if p.grad is not None))


class ReLUCodes:
    """Forward hooks on every ``nn.ReLU`` that accumulate NASWOT's kernel ``K = N_A - hamming`` over a batch."""

    def __init__(self, net: nn.Module):
        self.kernel: Tensor | None = None
        self.handles = [m.register_forward_hook(self._hook) for m in net.modules() if isinstance(m, nn.ReLU)]

    def _hook(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        codes = (output.detach() > 0).flatten(1).double()
        ones = codes.sum(1)
        # c c^T + (1 - c)(1 - c)^T = 2 c c^T + N - |c_i| - |c_j|: one matrix product per ReLU
        k = 2 * codes @ codes.T + codes.shape[1] - ones[:, None] - ones[None, :]
        self.kernel = k if self.kernel is None else self.kernel + k

    def score(self) -> float:
        if self.kernel is None:  # no ReLU on the path: every image gets the same (empty) code
            return float("-inf")
        return float(torch.linalg.slogdet(self.kernel).logabsdet)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def jacov(input_grad: Tensor) -> float:
    """Mellor et al. (v1): ``-sum(log(v + k) + 1/(v + k))`` over the eigenvalues of the per-image input
    gradients' correlation matrix. An image with a constant gradient has no correlation: -inf."""
    jac = input_grad.flatten(1).double()
    if not torch.all(jac.std(1) > 0):
        return float("-inf")
    v = torch.linalg.eigvalsh(torch.corrcoef(jac)).clamp_min(0)
    return float(-(torch.log(v + JACOV_K) + 1.0 / (v + JACOV_K)).sum())


def grad_norm(net: nn.Module) -> float:
    """Sum of the L2 norms of every parameter tensor's gradient (after ``loss.backward()``)."""
    with torch.no_grad():
        return float(sum(p.grad.norm() for p in net.parameters() if p.grad is not None))


def batch_scores(net: nn.Module, forward: Forward, x: Tensor, y: Tensor, proxies: Sequence[str]) -> dict[str, float]:
    """``naswot``, ``jacov`` and ``grad_norm`` from one forward pass of ``x`` (training-mode BatchNorm,
    as the reference implementations run them) and two backward passes."""
    wanted = set(proxies) & {"naswot", "jacov", "grad_norm"}
    out: dict[str, float] = {}
    if not wanted:
        return out
    net.train()
    net.zero_grad(set_to_none=True)
    codes = ReLUCodes(net) if "naswot" in wanted else None
    x = x.clone().requires_grad_("jacov" in wanted)
    try:
        logits = forward(x)
    finally:
        if codes is not None:
            codes.remove()
    if codes is not None:
        out["naswot"] = codes.score()
    if "jacov" in wanted:
        (input_grad,) = torch.autograd.grad(logits.sum(), x, retain_graph="grad_norm" in wanted, allow_unused=True)
        # no path from the image to the output (every cell edge ``none``): nothing to correlate
        out["jacov"] = float("-inf") if input_grad is None else jacov(input_grad)
    if "grad_norm" in wanted:
        F.cross_entropy(logits, y).backward()
        out["grad_norm"] = grad_norm(net)
    return out


class ProxyScorer:
    """Zero-cost proxy scores of a space's architectures, computed once each and cached.

    The networks are the space's supernet skeleton (``tune_spacenas.supernet``) run one path at a time,
    so architecture ``a`` is scored with the same network the supernet would train for it; all paths
    start from one seeded initialisation (``init_seed``). The batch is ``batch_size`` seeded CIFAR-10
    training images at the space's ``input_size`` (or ``data``).

    Args:
        space: the space whose architectures are scored (its width, depth and input size set the scale).
        proxies: which of ``PROXIES`` to compute.
        batch_size: images in the batch (64 in Abdelfattah et al.'s NAS-Bench-201 runs).
        data: the dataset; default CIFAR-10 at the space's input size.
        init_seed, batch_seed: seed the initial weights and the choice of images.
    """

    def __init__(
        self,
        space: SearchSpace,
        proxies: Sequence[str] = ("synflow", "naswot", "jacov", "grad_norm"),
        batch_size: int = 64,
        data: DataSpec | None = None,
        init_seed: int = 0,
        batch_seed: int = 0,
    ):
        unknown = [p for p in proxies if p not in PROXIES]
        if unknown:
            raise ValueError(f"unknown proxies {unknown}; known: {list(PROXIES)}")
        from tune_spacenas.data import DeviceData, load_data
        from tune_spacenas.supernet import build_supernet

        self.space, self.proxies = space, tuple(proxies)
        data = data or DataSpec("cifar10", resolution=getattr(space, "input_size", None))
        split = load_data(data)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.net = build_supernet(space, num_classes=split.num_classes)
        self.x, self.y = DeviceData(split, "cpu", augment=False).fixed_batches("train", batch_size, 1, seed=batch_seed)[
            0
        ]
        self.input_shape = tuple(self.x.shape[1:])
        self.synflow_net = _synflow_copy(self.net) if "synflow" in self.proxies else None
        self.cache: dict[Architecture, dict[str, float]] = {}

    def scores(self, arch: Sequence[int] | str) -> dict[str, float]:
        """Every proxy of ``arch`` (a string or an index tuple), computed on first use."""
        arch = self.space.validate(arch)
        if arch not in self.cache:
            out = batch_scores(self.net, lambda x: self.net(x, arch), self.x, self.y, self.proxies)
            if self.synflow_net is not None:
                out["synflow"] = synflow(self.synflow_net, lambda x: self.synflow_net(x, arch), self.input_shape)
            self.cache[arch] = {p: out[p] for p in self.proxies}
        return self.cache[arch]

    def prior(self, proxy: str = "synflow") -> Callable[[str], float]:
        """One proxy as a plain callable ``architecture string -> score`` (what a searcher's ``prior`` takes)."""
        if proxy not in self.proxies:
            raise ValueError(f"this scorer computes {list(self.proxies)}, not {proxy!r}")
        return lambda arch: self.scores(arch)[proxy]


def _synflow_copy(net: nn.Module) -> nn.Module:
    """``|theta|`` in double precision, BatchNorm as the identity (evaluation mode, initial statistics)."""
    twin = copy.deepcopy(net).double().eval()
    with torch.no_grad():
        for p in twin.parameters():
            p.abs_()
    return twin
