"""Utilization (Metrix paper, §4): how close the training embeddings come to the test embeddings.

    u(Q, X) = (1/|Q|) sum_{q in Q} min_{x in X} ||q - x||^2

with `Q` the test embeddings and `X` the training embeddings (optionally with mixed ones added).
Lower means training examples reach further into the regions of the unseen classes.

Example:
    >>> import numpy as np
    >>> utilization(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0], [1.0, 0.0]]))
    0.0
"""

from __future__ import annotations

import numpy as np


def utilization(queries: np.ndarray, references: np.ndarray, block_size: int = 2048) -> float:
    """Mean over `queries` of the squared Euclidean distance to the nearest of `references`.

    Exact, in blocks of `block_size` queries so memory stays `block_size x len(references)`.
    """
    q = np.asarray(queries, np.float32)
    r = np.asarray(references, np.float32)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1] or not len(q) or not len(r):
        raise ValueError(f"utilization needs two non-empty [N, D] arrays of one dimension; got {q.shape} and {r.shape}")
    r_sq = np.einsum("ij,ij->i", r, r)
    total = 0.0
    for start in range(0, len(q), block_size):
        block = q[start:start + block_size]
        # ||q - x||^2 = |q|^2 + |x|^2 - 2 q.x, minimised over x per query
        nearest = (r_sq[None, :] - 2.0 * block @ r.T).min(axis=1) + np.einsum("ij,ij->i", block, block)
        total += float(np.maximum(nearest, 0.0).astype(np.float64).sum())
    return total / len(q)


def mix_embeddings(embeddings: np.ndarray, labels: np.ndarray, count: int, alpha: float = 2.0,
                   seed: int = 0) -> np.ndarray:
    """`count` embedding-level mixtures of random pairs of different classes, renormalised (for `utilization`)."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(labels), count)
    second = rng.integers(0, len(labels), count)
    differ = labels[first] != labels[second]
    first, second = first[differ], second[differ]
    lam = rng.beta(alpha, alpha, (len(first), 1)).astype(np.float32)
    mixed = lam * embeddings[first] + (1.0 - lam) * embeddings[second]
    return mixed / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)
