"""Class-disjoint train/val/test splits for zero-shot retrieval.

Example:
    >>> import numpy as np
    >>> from tfdml.data.table import DatasetTable
    >>> t = DatasetTable.from_class_keys([f"{i}.png" for i in range(40)], np.arange(40) // 2)
    >>> s = split_classes(t, test_fraction=0.5, val_fraction=0.1, seed=0)
    >>> [len(np.unique(s.subset(k).label)) for k in ("train", "val", "test")]
    [9, 1, 10]
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from tfdml.data.table import DatasetTable
from tfdml.errors import ConfigError, DataError


def _round_half_down(x: float) -> int:
    # Ties go to the training side: 1,911 classes at 50/50 give 956 train and 955 test.
    return math.ceil(x - 0.5 - 1e-9)


def split_classes(
    table: DatasetTable,
    *,
    test_fraction: float = 0.5,
    val_fraction: float = 0.1,
    min_images: int = 2,
    seed: int = 0,
) -> DatasetTable:
    """Assign whole classes to ``"test"``, ``"val"`` and ``"train"``; deterministic in ``seed``.

    Classes with fewer than ``min_images`` images are dropped (a retrieval query needs another
    image of its class). The remaining class ids are shuffled; the first ``test_fraction`` of
    them (rounded, ties to train) become test, then ``val_fraction`` of the remaining classes
    become val, held out from training for model selection (the MLRC protocol); the rest train.

    Returns:
        A table of the kept rows with the ``split`` column filled; labels stay global.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"test_fraction={test_fraction} must be in [0, 1)")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction={val_fraction} must be in [0, 1)")
    if min_images < 1:
        raise ConfigError(f"min_images={min_images} must be at least 1")
    counts = table.class_counts()
    kept = np.flatnonzero(counts >= min_images)
    if len(kept) < 2:
        raise DataError(f"only {len(kept)} classes have at least {min_images} images; a class-disjoint "
                        "split needs at least 2 (lower min_images or check the dataset)")
    classes = np.random.default_rng(seed).permutation(kept)
    n_test = _round_half_down(test_fraction * len(classes))
    n_val = _round_half_down(val_fraction * (len(classes) - n_test))
    if n_test + n_val >= len(classes):
        raise ConfigError(f"test_fraction={test_fraction} and val_fraction={val_fraction} leave no training "
                          f"classes out of {len(classes)}; lower them")
    split_of_class = np.full(len(table.class_names), "", dtype="<U5")
    split_of_class[classes[:n_test]] = "test"
    split_of_class[classes[n_test:n_test + n_val]] = "val"
    split_of_class[classes[n_test + n_val:]] = "train"
    out = table.select(np.isin(table.label, kept))
    return replace(out, split=split_of_class[out.label])
