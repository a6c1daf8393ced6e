"""The weight store: one supernet's tensors shared by every trial through Ray's object store.

``table`` (``WeightTable``: the state and its rules, plain numpy), ``actor`` (the named Ray actor and its
generic client ``WeightStore``), ``supernet`` (``SupernetStore``: a store of one ``SupernetSpec``'s
supernet, the one a search creates and names in Tune's ``param_space``).
"""

from tune_spacenas.store.table import VARIANT_SEP, WeightTable, variant_key

__all__ = ["NAMESPACE", "VARIANT_SEP", "SupernetStore", "WeightStore", "WeightTable", "variant_key"]


def __getattr__(name: str):
    # The actor imports Ray; the table alone serves Ray-less, in-process runs.
    if name in ("WeightStore", "NAMESPACE"):
        from tune_spacenas.store import actor

        return getattr(actor, name)
    if name == "SupernetStore":
        from tune_spacenas.store.supernet import SupernetStore

        return SupernetStore
    raise AttributeError(name)
