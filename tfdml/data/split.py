"""Class-disjoint train/val/test splits for zero-shot retrieval.

Example:
    >>> import numpy as np
    >>> from tfdml.data.table import DatasetTable
    >>> t = DatasetTable.from_class_keys([f"{i}.png" for i in range(40)], np.arange(40) // 2)
    >>> s = split_classes(t, test_fraction=0.5, val_fraction=0.1, seed=0)
    >>> [len(np.unique(s.subset(k).label)) for k in ("train", "val", "test")]
    [9, 1, 10]
    >>> official = DatasetTable.from_class_keys(t.path, t.label, split=np.where(t.label < 15, "train", "test"))
    >>> k = split_classes(official, val_fraction=0.2, keep_split=True)
    >>> [len(np.unique(k.subset(s).label)) for s in ("train", "val", "test")]
    [12, 3, 5]
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
    keep_split: bool = False,
) -> DatasetTable:
    """Assign whole classes to ``"test"``, ``"val"`` and ``"train"``; deterministic in ``seed``.

    Classes with fewer than ``min_images`` images are dropped (a retrieval query needs another
    image of its class). The remaining class ids are shuffled; the first ``test_fraction`` of
    them (rounded, ties to train) become test, then ``val_fraction`` of the remaining classes
    become val, held out from training for model selection (the MLRC protocol); the rest train.

    With ``keep_split=True`` a table whose ``split`` column is filled (a benchmark's official
    class split) keeps it: ``test_fraction`` is ignored, test rows are kept as published, and val
    classes are carved out of the train classes only (none if the table already has val rows).
    A table with no split at all is split by ``seed`` as above.

    Returns:
        A table of the kept rows with the ``split`` column filled; labels stay global.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"test_fraction={test_fraction} must be in [0, 1)")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction={val_fraction} must be in [0, 1)")
    if min_images < 1:
        raise ConfigError(f"min_images={min_images} must be at least 1")
    if keep_split and (table.split != "").any():
        return _keep_split(table, val_fraction=val_fraction, min_images=min_images, seed=seed)
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


def _keep_split(table: DatasetTable, *, val_fraction: float, min_images: int, seed: int) -> DatasetTable:
    unset = int((table.split == "").sum())
    if unset:
        raise DataError(f"{unset} of {len(table)} rows have no split while the others do; give every row a "
                        "split (train, val or test) or none, so that one can be drawn by seed")
    of_class = {s: set(np.unique(table.label[table.split == s]).tolist()) for s in ("train", "val", "test")}
    for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
        shared = sorted(of_class[a] & of_class[b])
        if shared:
            raise DataError(f"the dataset's split is not class-disjoint: {len(shared)} classes have both {a} and "
                            f"{b} images (e.g. '{table.class_names[shared[0]]}'); zero-shot retrieval needs "
                            "each class in one split")
    # Published test sets stay whole, so results compare with the papers'; min_images prunes training only.
    counts = table.class_counts()
    small = np.flatnonzero(counts < min_images)
    out = table.select(~(np.isin(table.label, small) & (table.split != "test")))
    train = np.unique(out.label[out.split == "train"])
    if len(train) < 1 or not (out.split == "test").any():
        raise DataError(f"the dataset's split leaves {len(train)} training classes with at least {min_images} "
                        f"images and {int((out.split == 'test').sum())} test images; both must be non-empty")
    if (out.split == "val").any():
        return out
    n_val = _round_half_down(val_fraction * len(train))
    if n_val >= len(train):
        raise ConfigError(f"val_fraction={val_fraction} leaves no training classes out of {len(train)}; lower it")
    val = np.random.default_rng(seed).permutation(train)[:n_val]
    return replace(out, split=np.where(np.isin(out.label, val), "val", out.split))


def fold_split(table: DatasetTable, folds: int, fold: int) -> DatasetTable:
    """MLRC's class folds: the training classes (with any val classes put back), in class-id order, cut
    into `folds` contiguous folds; fold `fold` becomes `val`, the rest `train`. Test rows are untouched.

    Example:
        >>> t = DatasetTable.from_class_keys([f"i{i}" for i in range(16)], np.repeat(np.arange(8), 2),
        ...                                  split=np.repeat(["train"] * 4 + ["test"] * 4, 2))
        >>> np.unique(fold_split(t, folds=2, fold=1).subset("val").label).tolist()
        [2, 3]
    """
    if folds < 2 or not 0 <= fold < folds:
        raise ConfigError(f"data.fold={fold} must be in 0..{folds - 1}, with data.folds={folds} >= 2")
    training = np.isin(table.split, ("train", "val"))
    classes = np.unique(table.label[training])
    if len(classes) < folds:
        raise ConfigError(f"{len(classes)} training classes cannot make {folds} folds")
    held_out = np.array_split(classes, folds)[fold]
    split = np.where(training, np.where(np.isin(table.label, held_out), "val", "train"), table.split)
    return replace(table, split=split)
