"""Tabular benchmarks: architectures answered by lookup instead of training."""

from tune_spacenas.tables.nasbench201 import (
    DATASET_COLUMNS,
    TEST_ACCURACY,
    MissingMetricError,
    NASBench201Table,
)

__all__ = ["DATASET_COLUMNS", "TEST_ACCURACY", "MissingMetricError", "NASBench201Table"]
