"""Batches of look-alike classes (`sampler.neighbourhood`): each class's nearest classes, found once.

The emoji test's errors are mostly one vendor's drawing of a sibling emoji (male and female elf, moon
phases, flags): classes that uniform draws of 32 of 860 classes rarely put in one batch, so the loss
seldom sees them as negatives of each other. Before the first step the model as it is then (pretrained
backbone, new head) embeds a few training images per class; each class's nearest classes by the
cosine of their mean embeddings are what `MPerClassSampler.set_neighbours` deals batches by. The table
is saved in the run directory, so a resumed run deals the same batches. On that benchmark it
measured level (benchmarks/RESULTS.md, "Batches of look-alike classes"): an option, not a default.

Example:
    >>> import numpy as np
    >>> emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    >>> nearest_classes(emb, np.array([0, 1, 2, 3, 4]), k=2).tolist()
    [[1, 3], [0, 3], [3, 1], [2, 1], [2, 3]]
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras
import numpy as np

from tfdml.ccp.rounds import Pool
from tfdml.data.sampler import MPerClassSampler
from tfdml.errors import DataError
from tfdml.training.proxy_seeding import class_seeds

#: Training images per class whose mean embedding places the class.
NEIGHBOUR_POOL_SIZE = 4


def nearest_classes(embeddings: np.ndarray, labels: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """`[C, k]` dense class indices, each class's `k` nearest other classes (nearest first) by the cosine
    of the classes' normalised mean embeddings. `labels` are dense, `0..C-1`. Rows go `block` classes at
    a time, so SOP's 11,316 classes need a 1024 x 11,316 similarity block, not the full square."""
    num_classes = int(labels.max()) + 1
    centres = class_seeds(embeddings, labels, num_classes, k=1)[:, 0]
    k = min(k, num_classes - 1)
    rows = []
    for start in range(0, num_classes, block):
        similarity = centres[start:start + block] @ centres.T
        similarity[np.arange(len(similarity)), np.arange(start, start + len(similarity))] = -np.inf  # not itself
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(similarity, nearest, axis=1), axis=1, kind="stable")
        rows.append(np.take_along_axis(nearest, order, axis=1))
    return np.concatenate(rows)


def set_class_neighbourhoods(sampler: MPerClassSampler, model: keras.Model, pool: Pool, path: Path,
                             log: Callable[[str], None] = print) -> None:
    """Give `sampler` its classes' neighbours: read from `path` (a resumed run), else found with `model`
    on `pool(model, 0)` and saved there. Call it before the training dataset is iterated."""
    if path.is_file():
        neighbours = np.load(path)
        log(f"class neighbourhoods read from {path}")
    else:
        embeddings, labels = pool(model, 0)
        neighbours = nearest_classes(embeddings, labels, k=4 * sampler.neighbourhood)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, neighbours)
        log(f"class neighbourhoods: batches deal {sampler.neighbourhood} look-alike classes at a time, "
            f"neighbours from {len(labels)} training images embedded by the model before training")
    try:
        sampler.set_neighbours(neighbours)
    except DataError as error:  # a table saved by a run over other classes
        raise DataError(f"{path}: {error}; it was saved for other training classes: delete it to find them again, "
                        f"or resume with the config that saved it") from None
