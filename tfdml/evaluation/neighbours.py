"""Exact cosine-similarity k-nearest-neighbour search on numpy arrays.

Two interchangeable backends return the same ranking (up to exact ties):

* ``"sklearn"``: brute-force euclidean search of scikit-learn on unit vectors,
  whose order equals cosine order because ``|a - b|^2 = 2 - 2 a.b``.
* ``"blockwise"``: tfdml's own float32 matmul over blocks of queries, so the
  memory peak is ``block_size x N`` similarities, never ``N x N``.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

BACKENDS = ("auto", "sklearn", "blockwise")

# "auto" hands sets up to this many query x reference pairs to scikit-learn.
AUTO_SKLEARN_MAX_PAIRS = 4_000_000


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Return float32 rows of unit L2 norm; all-zero rows stay zero.

    Norms are taken in float64 so that tiny or huge float32 rows neither
    underflow nor overflow.

    Example:
        >>> l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
        [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    x64 = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x64, axis=1, keepdims=True)
    return np.divide(x64, norms, out=np.zeros_like(x64), where=norms > 0).astype(np.float32)


def nearest_neighbours(
    queries: np.ndarray,
    references: np.ndarray | None = None,
    k: int = 10,
    *,
    backend: str = "auto",
    block_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k references of each query by cosine similarity.

    Rows are L2-normalised here (zero rows get similarity 0 to everything).
    With ``references=None`` the queries search themselves and each query
    excludes its own row, by index: an exact duplicate of a query is still a
    neighbour.

    Args:
        queries: float array ``[Q, D]``.
        references: float array ``[N, D]``, or None for self-retrieval.
        k: neighbours per query; at most N (N - 1 in self mode).
        backend: one of ``BACKENDS``; "auto" picks scikit-learn for small sets.
        block_size: queries per matmul block of the "blockwise" backend.

    Returns:
        ``(indices, similarities)``: int64 and float32 arrays ``[Q, k]``,
        sorted by similarity descending, ties by smaller reference index.

    Example:
        >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> idx, sim = nearest_neighbours(x, k=1)
        >>> idx[:, 0].tolist()
        [1, 0, 1]
    """
    self_mode = references is None
    q = _check_matrix(queries, "queries")
    r = q if self_mode else _check_matrix(references, "references")
    if r.shape[1] != q.shape[1]:
        raise ValueError(
            f"queries and references must have the same width, got {q.shape[1]} and {r.shape[1]}"
        )
    available = r.shape[0] - 1 if self_mode else r.shape[0]
    if not is_positive_int(k):
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not is_positive_int(block_size):
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    if k > available:
        where = f"{r.shape[0]} rows minus the query itself" if self_mode else f"{r.shape[0]} rows"
        raise ValueError(f"k={k} exceeds the {available} available references ({where})")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends are {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "sklearn" if q.shape[0] * r.shape[0] <= AUTO_SKLEARN_MAX_PAIRS else "blockwise"

    q = l2_normalise(q)
    r = q if self_mode else l2_normalise(r)
    if backend == "sklearn":
        return _sklearn_search(q, r, int(k), self_mode)
    return _blockwise_search(q, r, int(k), self_mode, int(block_size))


def is_positive_int(x: object) -> bool:
    """True for a Python or numpy integer >= 1 (bools excluded)."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 1


def _check_matrix(x: np.ndarray, name: str) -> np.ndarray:
    """Validate a non-empty, finite, 2-D floating-point array."""
    x = np.asarray(x)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{name} must be a 2-D float array, got shape {x.shape} and dtype {x.dtype}"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _sort_by_similarity(idx: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by similarity descending, then by index ascending."""
    order = np.lexsort((idx, -sims), axis=-1)
    return (
        np.take_along_axis(idx, order, axis=1).astype(np.int64),
        np.take_along_axis(sims, order, axis=1).astype(np.float32),
    )


def _sklearn_search(
    q: np.ndarray, r: np.ndarray, k: int, self_mode: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean brute force of scikit-learn on unit rows."""
    q_sq = q.any(axis=1).astype(np.float64)  # |q|^2: 1 for unit rows, 0 for zero rows
    r_zero = ~r.any(axis=1)
    if r_zero.any():
        # A zero reference is at distance 1 from every unit query, which would
        # rank it like similarity 0.5. A unit-norm extra coordinate for zero
        # references (0 for queries) puts every reference on the unit sphere
        # without changing any inner product, so d^2 = |q|^2 + 1 - 2 q.r again.
        r = np.hstack([r, r_zero[:, None].astype(np.float32)])
        q = np.hstack([q, np.zeros((q.shape[0], 1), np.float32)])
    n_search = k + 1 if self_mode else k
    search = NearestNeighbors(n_neighbors=n_search, metric="euclidean", algorithm="brute").fit(r)
    dist, idx = search.kneighbors(q)
    if self_mode:
        # Drop the query's own row; if exact duplicates pushed it out of the
        # k + 1 results, all of them rank before it, so drop the last instead.
        drop = idx == np.arange(q.shape[0])[:, None]
        drop[~drop.any(axis=1), -1] = True
        idx = idx[~drop].reshape(q.shape[0], k)
        dist = dist[~drop].reshape(q.shape[0], k)
    sims = 0.5 * (q_sq[:, None] + 1.0 - dist.astype(np.float64) ** 2)
    sims[q_sq == 0] = 0.0  # exact, instead of rounding noise around 0
    return _sort_by_similarity(idx, sims)


def _blockwise_search(
    q: np.ndarray, r: np.ndarray, k: int, self_mode: bool, block_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k from float32 BLAS matmuls over blocks of query rows."""
    indices = np.empty((q.shape[0], k), np.int64)
    sims = np.empty((q.shape[0], k), np.float32)
    for start in range(0, q.shape[0], block_size):
        stop = min(start + block_size, q.shape[0])
        block = q[start:stop] @ r.T  # float32 in, float32 accumulation
        if self_mode:
            rows = np.arange(stop - start)
            block[rows, start + rows] = -np.inf
        indices[start:stop], sims[start:stop] = _top_k_rows(block, k)
    return indices, sims


def _top_k_rows(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns of each row of ``block``, ties broken by smaller column."""
    n = block.shape[1]
    if k < n:
        cand = np.argpartition(block, n - k, axis=1)[:, n - k :]
    else:
        cand = np.tile(np.arange(n), (len(block), 1))
    vals = np.take_along_axis(block, cand, axis=1)
    # argpartition picks arbitrarily among values tied with the k-th largest;
    # redo the rare rows with such a tie so the smallest indices win.
    kth = vals.min(axis=1)
    for row in np.flatnonzero((block >= kth[:, None]).sum(axis=1) > k):
        tied = np.flatnonzero(block[row] >= kth[row])
        cand[row] = tied[np.lexsort((tied, -block[row, tied]))[:k]]
        vals[row] = block[row, cand[row]]
    return _sort_by_similarity(cand, vals)
