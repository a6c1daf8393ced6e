"""scikit-learn's 8x8 handwritten digits, offline: for smoke tests and examples only.

Every NAS-Bench-201 cell that learns reaches 96-99% on them and two seeds rank cells at Kendall
tau <= 0.2 (../shared/FACTS.md): never use them for rank correlation or search quality.
"""

from __future__ import annotations

import numpy as np

from tune_spacenas.data.spec import DataSpec, SplitData, split_train_val


def load_digits_data(spec: DataSpec) -> SplitData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.repeat((digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None], 3, axis=3)
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(spec.seed + 1).permutation(len(images))
    test, rest = order[:297], order[297:]
    val_spec = DataSpec("digits", val_size=min(spec.val_size, 300), train_size=spec.train_size, seed=spec.seed)
    x_train, y_train, x_val, y_val = split_train_val(images[rest], labels[rest], val_spec)
    mean = float(images.mean() / 255.0)
    std = float(images.std() / 255.0)
    return SplitData(x_train, y_train, x_val, y_val, images[test], labels[test], 10, (mean,) * 3, (std,) * 3)
