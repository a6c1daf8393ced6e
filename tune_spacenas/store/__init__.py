"""The weight store: one supernet's tensors shared by every trial through Ray's object store."""

from tune_spacenas.store.table import VARIANT_SEP, WeightTable, variant_key

__all__ = ["VARIANT_SEP", "WeightStore", "WeightTable", "variant_key", "NAMESPACE"]


def __getattr__(name: str):
    # The actor module imports Ray; the table alone serves Ray-less, in-process runs.
    if name in ("WeightStore", "NAMESPACE"):
        from tune_spacenas.store import actor

        return getattr(actor, name)
    raise AttributeError(name)
