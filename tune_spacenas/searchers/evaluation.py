"""``EvaluationQueue``: architectures to score, handed out in batches, with what is still in flight.

NSE's candidate evaluation, SE-NAS's operator scoring and the evolutionary search all evaluate many
architectures in batch trials (a trial costs ~1 s of Tune overhead; a batch amortises it) and wait until
every batch has come back before they go on: this is that queue, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EvaluationQueue:
    """``put`` architectures, take them ``next_batch`` by batch, ``complete`` each batch when it comes back
    (failed or not); ``drained`` once nothing waits and nothing is in flight."""

    batch_size: int
    pending: list[Any] = field(default_factory=list)
    outstanding: int = 0

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"an evaluation batch holds at least one architecture, got batch_size={self.batch_size}")

    def put(self, archs: Iterable[Any]) -> None:
        self.pending.extend(archs)

    def next_batch(self) -> list[Any] | None:
        """Up to ``batch_size`` architectures, or None when none waits."""
        if not self.pending:
            return None
        batch, self.pending = self.pending[: self.batch_size], self.pending[self.batch_size :]
        self.outstanding += len(batch)
        return batch

    def complete(self, count: int) -> None:
        """A batch of ``count`` architectures came back."""
        self.outstanding -= count

    @property
    def drained(self) -> bool:
        return not self.pending and not self.outstanding
