"""The NAS-Bench-201 table as a Tune trainable: an architecture evaluated by lookup, in milliseconds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tune_spacenas.tables.nasbench201 import DATASET_COLUMNS, TEST_ACCURACY, NASBench201Table, canonical_dataset

DATASET_KEY = "dataset"
TABLE_PATH_KEY = "table_path"


def evaluate_on_table(config: Mapping[str, Any]) -> dict[str, Any]:
    """Look up the architecture a trial config names (``arch`` or Tune's ``ops``).

    Reports ``accuracy`` (the reward: 200-epoch test accuracy on ``config['dataset']``, default
    cifar10), the test accuracy on all three datasets, and ``reward`` naming which reward was used:
    our copy of the table has no 12-epoch validation accuracy, so every result says so.
    """
    table = NASBench201Table.load(config.get(TABLE_PATH_KEY))
    dataset = canonical_dataset(config.get(DATASET_KEY, "cifar10"))
    arch = table.space.arch_from_config(config)
    result: dict[str, Any] = {f"{name}_test_accuracy": table.query(arch, name) for name in DATASET_COLUMNS}
    result.update(accuracy=result[f"{dataset}_test_accuracy"], reward=f"{TEST_ACCURACY}:{dataset}",
                  arch=table.space.to_string(arch))
    return result


def nasbench201_trainable(config: dict[str, Any]) -> None:
    """Tune function trainable: ``tune.run(nasbench201_trainable, config={'dataset': 'cifar100', **space.param_space()}, ...)``."""
    from ray import tune

    tune.report(evaluate_on_table(config))
