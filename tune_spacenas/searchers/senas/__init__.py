"""SE-NAS (Hu et al., Pattern Recognition 2021): Improving One-Shot NAS with Shrinking-and-Expanding Supernet.

Where each step lives:
  * ``scores``:    Eq. (5) ``selection_importance``, Eq. (6) ``selection_confidence``, Eq. (7)
                   ``operator_scores`` (``mean_normalize`` or ``min_max_normalize``), child-model
                   sampling ``operator_sample``, and section 4.2's ``ground_truth_operator_scores`` (Fig. 6);
  * ``shrinking``: ``shrink_operators`` (3.3, Algorithm 1 line 4);
  * ``expanding``: ``merge_layer_spaces`` (3.4, Algorithm 1 lines 5-8; the private weight copies
                   themselves live in the weight store, swapped in by SE-NAS's worker extension,
                   ``trainables.extensions.senas``, for a job's ``SENASJob.expanded``);
  * ``searcher``:  ``SENASSearcher``, the whole loop as Tune trials (Eq. 4's snapshots are a job's
                   ``SENASJob.snapshots``, scored with ``SENASJob.average``).
"""

from tune_spacenas.searchers.senas.expanding import merge_layer_spaces
from tune_spacenas.searchers.senas.scores import (
    ground_truth_operator_scores,
    mean_normalize,
    min_max_normalize,
    operator_sample,
    operator_scores,
    selection_confidence,
    selection_importance,
)
from tune_spacenas.searchers.senas.searcher import SENASSearcher
from tune_spacenas.searchers.senas.shrinking import shrink_operators

__all__ = [
    "SENASSearcher",
    "ground_truth_operator_scores",
    "mean_normalize",
    "merge_layer_spaces",
    "min_max_normalize",
    "operator_sample",
    "operator_scores",
    "selection_confidence",
    "selection_importance",
    "shrink_operators",
]
