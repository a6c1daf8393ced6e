"""The NAS-Bench-201 table as a Tune trainable: an architecture evaluated by lookup, in milliseconds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tune_spacenas.jobs import (
    ACCURACY,
    ARCH_KEY,
    ARCHS_KEY,
    DATASET_KEY,
    EVALUATED,
    PER_ARCH_KEY,
    REWARD,
    STEPS_KEY,
    TABLE_PATH_KEY,
    TRAIN,
    archs_of,
    task_of,
    test_accuracy_key,
)
from tune_spacenas.tables.nasbench201 import DATASET_COLUMNS, TEST_ACCURACY, NASBench201Table, canonical_dataset


def evaluate_on_table(config: Mapping[str, Any]) -> dict[str, Any]:
    """Look up the architecture a trial config names (``arch`` or Tune's ``ops``), or a batch (``archs``).

    Reports ``accuracy`` (the reward: 200-epoch test accuracy on ``config['dataset']``, default
    cifar10), the test accuracy on all three datasets, and ``reward`` naming which reward was used:
    our copy of the table has no 12-epoch validation accuracy, so every result says so. A batch is
    answered as the supernet trainable answers it: the mean, plus ``per_arch`` lists in the batch's order,
    so the table stands in for the supernet under any searcher (a noise-free evaluator).
    """
    if task_of(config) == TRAIN:
        raise ValueError(
            f"the NAS-Bench-201 table trainable only evaluates architectures, but this trial asks it to train a "
            f"supernet ({config.get(STEPS_KEY)} steps): a searcher that trains (SPOS, SE-NAS, NSE, AutoSpace, "
            "ASE with train_steps > 0) runs on supernet_trainable with config=store.param_space() (a SupernetStore); "
            "on the table, pass train_steps=0 (SPOSSearcher, ASESearcher) to search it without training"
        )
    table = NASBench201Table.load(config.get(TABLE_PATH_KEY))
    dataset = canonical_dataset(config.get(DATASET_KEY, "cifar10"))
    per_arch = [_lookup(table, arch, dataset) for arch in archs_of(table.space, config)]
    if ARCHS_KEY not in config:
        return per_arch[0]
    numeric = [k for k, v in per_arch[0].items() if isinstance(v, float)]
    return {
        ACCURACY: sum(r[ACCURACY] for r in per_arch) / len(per_arch),
        EVALUATED: len(per_arch),
        REWARD: per_arch[0][REWARD],
        PER_ARCH_KEY: {k: [r[k] for r in per_arch] for k in numeric},
    }


def _lookup(table: NASBench201Table, arch: Any, dataset: str) -> dict[str, Any]:
    result: dict[str, Any] = {test_accuracy_key(name): table.query(arch, name) for name in DATASET_COLUMNS}
    result.update(
        {
            ACCURACY: result[test_accuracy_key(dataset)],
            REWARD: f"{TEST_ACCURACY}:{dataset}",
            ARCH_KEY: table.space.to_string(arch),
        }
    )
    return result


def nasbench201_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable: ``tune.run(nasbench201_trainable, config={'dataset': 'cifar100', **space.param_space()}, ...)``."""
    from ray import tune

    tune.report(evaluate_on_table(config))
