"""ASE-NAS on the NAS-Bench-201 table: registers ``ase``, ``ase_plus`` and the ablations in the harness.

``benchmarks.nasbench201`` imports this module, so every name below is a ``--methods`` choice:

    python -m benchmarks.nasbench201 --methods ase,ase_plus,random,reinforce,regevo,tpe --runs 100 \
        --dataset cifar100 --queries 100

* ``ase``: ASE-NAS with the paper's NAS-Bench-201 setting (section IV-A: K=4, M=4, Adam lr 1e-2, entropy
  weight 7.5e-4; the rest as ``ASESearcher``'s defaults, from the official code).
* ``ase_plus``: ASE-NAS+ (section IV-A, "Transferability of Subspace Graph to New Datasets"). Run ``r``
  starts from the K final centres of the CIFAR-10 ``ase`` search with the same seed and the same query
  budget (the search that is run ``r`` of ``cifar10.json``, rerun here: it is deterministic), as the
  official code transfers ``graph.nodes`` of its CIFAR-10 search. The centres come from the CIFAR-10
  table only and are evaluated again on the target dataset (their K queries count in the budget);
  the controller starts fresh. On cifar10 itself the method is undefined (the source would be the
  target's own table) and asking for it is an error.
* ablations (sections V-B to V-F): ``ase_no_update``, ``ase_absolute``, ``ase_no_graph``,
  ``ase_m1``/``ase_m2``/``ase_m6`` (M; ``ase`` is M=4) and ``ase_k1``/``ase_k2``/``ase_k8`` (K; ``ase`` is
  K=4), all at the same query budget.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.nasbench201 import _ours, param_space, register_method
from tune_spacenas.runner import run_in_process
from tune_spacenas.searchers import ASESearcher
from tune_spacenas.spaces import NASBench201Space
from tune_spacenas.spaces.base import Architecture
from tune_spacenas.trainables.table import evaluate_on_table

# The controller's tensors are tiny: one thread each, so parallel benchmark processes do not fight.
torch.set_num_threads(1)

SOURCE_DATASET = "cifar10"
PAPER = dict(num_subspaces=4, local_distance=4, learning_rate=1e-2, entropy_weight=7.5e-4)
ABLATIONS: dict[str, dict[str, Any]] = {
    "ase_no_update": {"subspace_update": False},
    "ase_absolute": {"absolute_reward": True},
    "ase_no_graph": {"use_graph": False},
    **{f"ase_m{m}": {"local_distance": m} for m in (1, 2, 6)},
    **{f"ase_k{k}": {"num_subspaces": k} for k in (1, 2, 8)},
}


def transferred_centers(seed: int, queries: int) -> list[Architecture]:
    """The final subspace graph's centres of the CIFAR-10 ``ase`` search with this seed and budget."""
    space = NASBench201Space()
    source = _ours(ASESearcher, **PAPER)(space, seed, queries, SOURCE_DATASET)
    run_in_process(source, evaluate_on_table, max_queries=queries, param_space=param_space(space, SOURCE_DATASET),
                   space=space)
    return list(source.graph.centers)


def ase_plus(space: NASBench201Space, seed: int, queries: int, dataset: str) -> ASESearcher:
    if dataset == SOURCE_DATASET:
        raise ValueError("ase_plus transfers centres from CIFAR-10 searches; on cifar10 they would come from the "
                         "target's own table. Run ase_plus on cifar100 or ImageNet16-120")
    return _ours(ASESearcher, **PAPER, initial_centers=transferred_centers(seed, queries))(space, seed, queries, dataset)


register_method("ase", _ours(ASESearcher, **PAPER))
register_method("ase_plus", ase_plus)
for name, change in ABLATIONS.items():
    register_method(name, _ours(ASESearcher, **{**PAPER, **change}))
