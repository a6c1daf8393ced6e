"""tune_spacenas: Ray Tune search plugins for search-space-adaptive neural architecture search.

Searchers (``tune_spacenas.searchers``) decide what to train or evaluate next; spaces, supernets, the
weight store, trainables and tables are shared mechanics every method composes.
"""

__version__ = "0.1.0"
