"""ASE-NAS on the NAS-Bench-201 table: registers ``ase`` and its variants in the harness.

``benchmarks.nasbench201`` imports this module, so every name below is a ``--methods`` choice:

    python -m benchmarks.nasbench201 --methods ase,ase_prior,ase_paper,tpe,tpe_warm --runs 100 --seed 1 \
        --dataset cifar100 --budgets 50,100,300

* ``ase``: ``ASESearcher`` with the library's defaults (K and M from the budget: ``budget_setting``).
* ``ase_prior``: the same with the zero-cost proxy prior of the harness (``PRIOR_PROXIES``): initial and
  reseeded centres are the prior's best unevaluated cells.
* ``ase_paper``: ``ASESearcher.paper_preset()``, the paper's NAS-Bench-201 setting (K=4, M=4, Adam lr
  1e-2, entropy weight 7.5e-4) whatever the budget.
* ``ase_plus``: ASE-NAS+ (section IV-A, "Transferability of Subspace Graph to New Datasets"). Run ``r``
  starts from the K final centres of the CIFAR-10 ``ase`` search with the same seed and budget (rerun
  here: it is deterministic), as the official code transfers ``graph.nodes`` of its CIFAR-10 search.
  Only the CIFAR-10 table is read to pick them; they are evaluated again on the target dataset (their
  queries count) and the controller starts fresh. On cifar10 itself it is undefined (an error).
* ablations of the defaults (sections V-B to V-D): ``ase_no_update``, ``ase_absolute``, ``ase_no_graph``,
  and ``ase_untrained`` (learning rate 0: the policy stays at its initialisation);
* the K x M grid the defaults were chosen from (on seed 0 only): ``ase_k{K}_m{M}``, K in 1-4, M in 1-3;
  and the grid ``ase_prior``'s settings were chosen from (seed 0 only): ``ase_prior_k{K}_e{E}``, K in 1-3
  centres, E in 1, 2, 4, 8 policy samples ranked by the prior (``prior_edits``).
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.nasbench201 import (
    PRIOR_POOL,
    _ours,
    param_space,
    prior,
    register_method,
)
from tune_spacenas.runner import run_in_process
from tune_spacenas.searchers import ASESearcher
from tune_spacenas.searchers.ase.searcher import PAPER_SETTINGS
from tune_spacenas.spaces import NASBench201Space
from tune_spacenas.spaces.base import Architecture
from tune_spacenas.trainables.table import evaluate_on_table

# The controller's tensors are tiny: one thread each, so parallel benchmark processes do not fight.
torch.set_num_threads(1)

SOURCE_DATASET = "cifar10"
ABLATIONS: dict[str, dict[str, Any]] = {
    "ase_no_update": {"subspace_update": False},
    "ase_absolute": {"absolute_reward": True},
    "ase_no_graph": {"use_graph": False},
    "ase_untrained": {"learning_rate": 0.0},
}
GRID = {f"ase_k{k}_m{m}": {"num_subspaces": k, "local_distance": m} for k in (1, 2, 3, 4) for m in (1, 2, 3)}
PRIOR_GRID = {f"ase_prior_k{k}_e{e}": {"num_subspaces": k, "prior_edits": e} for k in (1, 2, 3) for e in (1, 2, 4, 8)}
# ase_prior: the library defaults plus the prior, with these settings (chosen on seed 0 from PRIOR_GRID).
PRIOR_SETTING: dict[str, Any] = {}


def _with_prior(**setting: Any):
    def make(space: NASBench201Space, seed: int, queries: int, dataset: str) -> ASESearcher:
        return _ours(ASESearcher, prior=prior(), prior_pool=PRIOR_POOL, **setting)(space, seed, queries, dataset)

    return make


def transferred_centers(seed: int, queries: int) -> list[Architecture]:
    """The final subspace graph's centres of the CIFAR-10 ``ase`` search with this seed and budget."""
    space = NASBench201Space()
    source = _ours(ASESearcher)(space, seed, queries, SOURCE_DATASET)
    run_in_process(
        source, evaluate_on_table, max_queries=queries, param_space=param_space(space, SOURCE_DATASET), space=space
    )
    return list(source.graph.centers)


def ase_plus(space: NASBench201Space, seed: int, queries: int, dataset: str) -> ASESearcher:
    if dataset == SOURCE_DATASET:
        raise ValueError(
            "ase_plus transfers centres from CIFAR-10 searches; on cifar10 they would come from the "
            "target's own table. Run ase_plus on cifar100 or ImageNet16-120"
        )
    return _ours(ASESearcher, initial_centers=transferred_centers(seed, queries))(space, seed, queries, dataset)


register_method("ase", _ours(ASESearcher), budget_aware=True)
register_method("ase_prior", _with_prior(**PRIOR_SETTING), budget_aware=True)
register_method("ase_paper", _ours(ASESearcher, **PAPER_SETTINGS["nasbench201"]))
register_method("ase_plus", ase_plus, budget_aware=True)
for name, change in ABLATIONS.items():
    register_method(name, _ours(ASESearcher, **change), budget_aware=True)
for name, setting in GRID.items():
    register_method(name, _ours(ASESearcher, **setting))
for name, setting in PRIOR_GRID.items():
    register_method(name, _with_prior(**setting))
