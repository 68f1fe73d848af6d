"""Exact cosine-similarity k-nearest-neighbour search on numpy arrays.

Three interchangeable backends return the same neighbours (up to exact ties):

* ``"sklearn"``: brute-force euclidean search of scikit-learn on unit vectors,
  whose order equals cosine order because ``|a - b|^2 = 2 - 2 a.b``.
* ``"blockwise"``: tfdml's own float32 matmul over tiles of the similarity
  matrix, so the memory peak is one tile, never ``N x N``. Self-retrieval
  computes each tile of the upper triangle once and feeds both its rows and
  its columns, which halves the matmul work (`tfdml.evaluation.blockwise`).
* ``"faiss"``: ``faiss.IndexFlatIP`` (optional: ``pip install 'tfdml[faiss]'``).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from sklearn.neighbors import NearestNeighbors

from tfdml.evaluation.blockwise import blockwise_search
from tfdml.evaluation.progress import Verbose

BACKENDS = ("auto", "sklearn", "blockwise", "faiss")

# "auto" hands sets up to this many query x reference pairs to scikit-learn.
AUTO_SKLEARN_MAX_PAIRS = 4_000_000


# Rows whose norm is this close to 1 are searched as they are, saving an
# N x D copy: the cosine error (about 2e-6) is that of float32 rounding in a
# 512-term dot product, and every backend sees the same rows.
UNIT_NORM_TOLERANCE = 1e-6

# Rows per chunk of the passes over the embeddings (norms, finiteness).
_NORM_CHUNK = 8192


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Return float32 rows of unit L2 norm; all-zero rows stay zero.

    Norms and division are done in float64, chunk by chunk, so that tiny or
    huge float32 rows neither underflow nor overflow and no float64 copy of
    the whole array is made.

    Example:
        >>> l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
        [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    x = np.asarray(x)
    out = np.empty(x.shape, np.float32)
    for start in range(0, x.shape[0], _NORM_CHUNK):
        chunk = np.asarray(x[start : start + _NORM_CHUNK], dtype=np.float64)
        norms = np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start : start + _NORM_CHUNK] = np.divide(
            chunk, norms, out=np.zeros_like(chunk), where=norms > 0
        )
    return out


def as_unit_rows(x: np.ndarray) -> np.ndarray:
    """``x`` itself when it is already float32 rows of unit norm, else ``l2_normalise(x)``.

    "Unit" means within ``UNIT_NORM_TOLERANCE``; embeddings from a model that
    ends in L2 normalisation pass, so the search makes no copy of them.

    Example:
        >>> x = l2_normalise(np.array([[3.0, 4.0]]))
        >>> as_unit_rows(x) is x
        True
    """
    x = np.asarray(x)
    if x.dtype == np.float32 and x.flags.c_contiguous:
        for start in range(0, x.shape[0], _NORM_CHUNK):
            chunk = x[start : start + _NORM_CHUNK]
            sq_norms = np.einsum("ij,ij->i", chunk, chunk, dtype=np.float64)
            if np.abs(np.sqrt(sq_norms) - 1.0).max() > UNIT_NORM_TOLERANCE:
                break
        else:
            return x
    return l2_normalise(x)


def nearest_neighbours(
    queries: np.ndarray,
    references: np.ndarray | None = None,
    k: int = 10,
    *,
    backend: str = "auto",
    block_size: int | None = None,
    verbose: Verbose = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k references of each query by cosine similarity.

    Rows are L2-normalised here (zero rows get similarity 0 to everything;
    float32 rows of unit norm are used as they are, without a copy). With
    ``references=None`` the queries search themselves and each query excludes
    its own row, by index: an exact duplicate of a query is still a neighbour.

    Args:
        queries: float array ``[Q, D]``.
        references: float array ``[N, D]``, or None for self-retrieval.
        k: neighbours per query; at most N (N - 1 in self mode).
        backend: one of ``BACKENDS``; "auto" picks scikit-learn for small sets
            and "blockwise" for the others.
        block_size: rows and columns per tile of the "blockwise" backend; None
            chooses them from the sizes (``tfdml.evaluation.blockwise.TILE_ELEMENTS``).
        verbose: 0, 1, 2 or "auto": a Progbar over the "blockwise" tiles
            (``tfdml.evaluation.progress``); the other backends show none.

    Returns:
        ``(indices, similarities)``: int64 and float32 arrays ``[Q, k]``,
        sorted by similarity descending, ties by smaller reference index
        (faiss may pick a different member of a tie at the k-th place).

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
    if block_size is not None and not is_positive_int(block_size):
        raise ValueError(f"block_size must be a positive integer or None, got {block_size!r}")
    if k > available:
        where = f"{r.shape[0]} rows minus the query itself" if self_mode else f"{r.shape[0]} rows"
        raise ValueError(f"k={k} exceeds the {available} available references ({where})")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends are {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "sklearn" if q.shape[0] * r.shape[0] <= AUTO_SKLEARN_MAX_PAIRS else "blockwise"

    q = as_unit_rows(q)
    r = q if self_mode else as_unit_rows(r)
    if backend == "sklearn":
        return _sklearn_search(q, r, int(k), self_mode)
    if backend == "faiss":
        return _faiss_search(q, r, int(k), self_mode)
    return blockwise_search(q, None if self_mode else r, int(k), block_size=block_size, verbose=verbose)


def is_positive_int(x: object) -> bool:
    """True for a Python or numpy integer >= 1 (bools excluded)."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 1


def import_faiss() -> ModuleType:
    """The faiss module, imported on first use; ImportError naming the extra if missing.

    Example (not run as a doctest: faiss is optional and may not be installed):
        >>> import_faiss().IndexFlatIP  # doctest: +SKIP
    """
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "the 'faiss' neighbour backend needs faiss, which is not installed; "
            "install it with: pip install 'tfdml[faiss]' (or use backend='blockwise', "
            "which is exact and needs nothing more)"
        ) from err
    return faiss


def _check_matrix(x: np.ndarray, name: str) -> np.ndarray:
    """Validate a non-empty, finite, 2-D floating-point array."""
    x = np.asarray(x)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{name} must be a 2-D float array, got shape {x.shape} and dtype {x.dtype}"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column, got shape {x.shape}")
    # In chunks: a boolean copy of an SOP-sized set would be 31 MB of peak memory.
    if not all(np.isfinite(x[i : i + _NORM_CHUNK]).all() for i in range(0, len(x), _NORM_CHUNK)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _sort_by_similarity(idx: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by similarity descending, then by index ascending."""
    order = np.lexsort((idx, -sims), axis=-1)
    return (
        np.take_along_axis(idx, order, axis=1).astype(np.int64),
        np.take_along_axis(sims, order, axis=1).astype(np.float32),
    )


def _drop_self(idx: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    """Remove each query's own row from k + 1 results (self-retrieval).

    If exact duplicates pushed the query out of its k + 1 results, all of them
    rank before it, so the last result is dropped instead.
    """
    n, width = idx.shape
    drop = idx == np.arange(n)[:, None]
    drop[~drop.any(axis=1), -1] = True
    return [a[~drop].reshape(n, width - 1) for a in (idx, *arrays)]


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
        idx, dist = _drop_self(idx, dist)
    sims = 0.5 * (q_sq[:, None] + 1.0 - dist.astype(np.float64) ** 2)
    sims[q_sq == 0] = 0.0  # exact, instead of rounding noise around 0
    return _sort_by_similarity(idx, sims)


def _faiss_search(
    q: np.ndarray, r: np.ndarray, k: int, self_mode: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Inner-product brute force of ``faiss.IndexFlatIP`` on unit rows."""
    faiss = import_faiss()
    index = faiss.IndexFlatIP(r.shape[1])
    index.add(np.ascontiguousarray(r, dtype=np.float32))
    sims, idx = index.search(np.ascontiguousarray(q, dtype=np.float32), k + 1 if self_mode else k)
    if self_mode:
        idx, sims = _drop_self(idx, sims)
    return _sort_by_similarity(idx, sims)
