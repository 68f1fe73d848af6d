"""Greedy k-center selection per class, vectorised across classes (CCP's proxy re-seeding).

For each class: start from `m` = each pool point's squared distance to the nearest previous proxy of
its class; K times pick the pool point with the largest `m` and lower `m` by the distance to it.
Classes are padded to one pool size with a validity mask, so all classes advance together.

Example:
    >>> import numpy as np
    >>> pool = np.array([[[0.0], [1.0], [5.0], [2.0]]])            # one class, four 1-d points
    >>> greedy_k_center(pool, np.ones((1, 4), bool), np.array([[[0.0]]]), k=2)
    array([[2, 3]])
"""

from __future__ import annotations

import numpy as np


def greedy_k_center(pool: np.ndarray, valid: np.ndarray, previous: np.ndarray, k: int) -> np.ndarray:
    """Indices `[C, k]` into each class's pool of the `k` points chosen by greedy k-center.

    Args:
        pool: `[C, b, D]` pool embeddings per class (padding rows anywhere, marked by `valid`).
        valid: `[C, b]` which pool rows are real.
        previous: `[C, P, D]` previous proxies per class (the starting centres; P may be 0).
        k: centres to choose per class.

    A class with fewer than `k` valid points gets all of them, then repeats its farthest-first
    order from the start (distance 0 to an already chosen point makes it the next pick).
    A class with no valid point is an error: it would have no proxies.
    """
    pool, previous = np.asarray(pool, np.float64), np.asarray(previous, np.float64)
    valid = np.asarray(valid, bool)
    if not valid.any(axis=1).all():
        empty = np.flatnonzero(~valid.any(axis=1))
        raise ValueError(f"classes {empty[:5].tolist()} have no pool points to choose proxies from")
    # Squared distances expanded as |x|^2 + |y|^2 - 2 x.y: no [C, b, P, D] or [C, b, D] temporaries,
    # which at SOP scale (11,318 classes x 7 x 512) cost more than the products themselves.
    norms = (pool ** 2).sum(-1)  # [C, b]
    if previous.shape[1]:
        gaps = norms[:, :, None] + (previous ** 2).sum(-1)[:, None, :] - 2 * pool @ previous.transpose(0, 2, 1)
        nearest = np.maximum(gaps.min(axis=2), 0.0)
    else:
        nearest = np.full(valid.shape, np.inf)
    nearest = np.where(valid, nearest, -np.inf)
    classes = np.arange(len(pool))
    chosen = np.empty((len(pool), k), np.int64)
    for step in range(k):
        pick = nearest.argmax(axis=1)
        chosen[:, step] = pick
        centre = pool[classes, pick]  # [C, D]
        gap = np.maximum(norms + norms[classes, pick][:, None] - 2 * (pool @ centre[:, :, None])[:, :, 0], 0.0)
        nearest = np.where(valid, np.minimum(nearest, gap), -np.inf)
    # A class with n < k valid points: its first n picks cover them all; cycle through them again.
    counts = valid.sum(axis=1)
    for row in np.flatnonzero(counts < k):
        n = int(counts[row])
        chosen[row, n:] = chosen[row, np.arange(n, k) % n]
    return chosen


def pack_by_class(embeddings: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows `[N, D]` with dense labels `0..C-1` as a padded `[C, b, D]` pool and its `[C, b]` validity mask.

    Example:
        >>> pool, valid = pack_by_class(np.array([[1.0], [2.0], [3.0]]), np.array([1, 0, 1]), 2)
        >>> pool[..., 0].tolist(), valid.tolist()
        ([[2.0, 0.0], [1.0, 3.0]], [[True, False], [True, True]])
    """
    labels = np.asarray(labels)
    sizes = np.bincount(labels, minlength=num_classes)
    if (sizes == 0).any():
        raise ValueError(f"the pool has no image of classes {np.flatnonzero(sizes == 0)[:5].tolist()}")
    order = np.argsort(labels, kind="stable")
    slot = np.arange(len(labels)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    pool = np.zeros((num_classes, sizes.max(), embeddings.shape[1]), np.float32)
    valid = np.zeros((num_classes, sizes.max()), bool)
    pool[labels[order], slot], valid[labels[order], slot] = embeddings[order], True
    return pool, valid
