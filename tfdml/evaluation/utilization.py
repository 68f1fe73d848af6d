"""Utilization (Metrix paper, §4): how close the training embeddings come to the test embeddings.

    u(Q, X) = (1/|Q|) sum_{q in Q} min_{x in X} ||q - x||^2

with `Q` the test embeddings and `X` the training embeddings (optionally with mixed ones added, drawn
and mixed by `tfdml.mixing.Metrix`, the code the training step mixes with, so the two cannot drift).
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
                   seed: int = 0, chunk: int = 256) -> np.ndarray:
    """Up to `count` embedding-level mixtures for `utilization`, drawn and mixed by the training step's own
    code (`tfdml.mixing.Metrix.draw` and `.mix`): pairs of different classes, one `lambda ~ Beta(alpha,
    alpha)` per pair, renormalised. Drawn `chunk` at a time (a draw scores `chunk x len(labels)` pairs)."""
    from tfdml.mixing import Metrix  # here, not at the top: tfdml.evaluation's metrics load without TensorFlow

    embeddings, labels = np.asarray(embeddings, np.float32), np.asarray(labels, np.int32)
    metrix = Metrix(level="embedding", alpha=alpha, lambda_per="pair", max_mixtures=max(1, min(chunk, count)),
                    seed=seed)
    mixed = []
    for _ in range(0, count, metrix.max_mixtures):
        first, second, lam, valid = metrix.draw(labels)
        mixtures = np.asarray(metrix.mix(None, None, None, embeddings, first, second, lam))
        mixed.append(mixtures[np.asarray(valid) > 0])  # a single-class set has no pair to mix
    return np.concatenate(mixed)[:count] if mixed else np.zeros((0, embeddings.shape[1]), np.float32)
