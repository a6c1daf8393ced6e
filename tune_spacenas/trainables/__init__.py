"""Tune trainables: the NAS-Bench-201 table lookup and the shared-supernet trainable."""

from tune_spacenas.trainables.supernet import supernet_trainable
from tune_spacenas.trainables.table import evaluate_on_table, nasbench201_trainable
from tune_spacenas.trainables.worker import SupernetWorker

__all__ = ["SupernetWorker", "evaluate_on_table", "nasbench201_trainable", "supernet_trainable"]
