"""Gallery indexes for `Retriever`: exact search, or a faiss approximate index whose candidates are
re-ranked exactly.

An approximate index (IVF, IVF-PQ or HNSW) only proposes `candidates * k` gallery rows per query;
`rerank` scores those rows against the float32 gallery by cosine similarity and keeps the best `k`.
So the scores are always exact, and the top `k` is wrong only where the true neighbour was not
among the candidates. A query with fewer than `k` candidates (an IVF probe of near-empty lists)
is searched exactly. `benchmarks/ann_recall.py` measures recall against exact search at SOP scale.

Example:
    >>> import numpy as np
    >>> gallery = np.random.default_rng(0).normal(size=(2000, 16)).astype("float32")
    >>> index = build_index(gallery, "exact")
    >>> ids, scores = index.search(gallery[:3], k=2)
    >>> ids[:, 0].tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Protocol

import numpy as np

from tfdml.evaluation.neighbours import as_unit_rows, import_faiss, nearest_neighbours

INDEX_KINDS = ("exact", "ivf", "ivfpq", "hnsw")
_RERANK_FLOATS = 1 << 24  # 64 MiB of gathered candidate rows at a time


class GalleryIndex(Protocol):
    """What `Retriever` asks of an index: the `k` best gallery rows of each query, best first."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


class ExactIndex:
    """Brute-force cosine search (`tfdml.evaluation.nearest_neighbours`, any of its backends)."""

    def __init__(self, gallery: np.ndarray, backend: str = "auto") -> None:
        self.gallery, self.backend = as_unit_rows(gallery), backend

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return nearest_neighbours(as_unit_rows(queries), self.gallery, int(k), backend=self.backend)

    def __repr__(self) -> str:
        return f"ExactIndex({len(self.gallery)} rows, backend={self.backend!r})"


class ApproximateIndex:
    """A faiss index over the unit gallery rows (inner product = cosine), re-ranked exactly.

    Args:
        gallery: `[N, dim]` embeddings (normalised here).
        kind: "ivf" (inverted lists of full vectors), "ivfpq" (lists of product-quantised codes:
            a fraction of the memory, approximate distances, hence the re-ranking) or "hnsw" (a graph).
        candidates: rows proposed per query, as a multiple of `k`, before exact re-ranking.
        nlist, nprobe: IVF lists (default ~4 sqrt(N), at most N / 39 so each list trains on enough
            rows) and lists visited per query.
        pq_bytes: IVF-PQ sub-vectors per vector (must divide `dim`; each an 8-bit code when the gallery
            has 10,000 rows or more, fewer bits below).
        hnsw_m, ef_search: HNSW neighbours per node and search breadth (raised to the candidate count).
        seed: the k-means seed of IVF training.
    """

    def __init__(self, gallery: np.ndarray, kind: str = "hnsw", *, candidates: int = 4, nlist: int | None = None,
                 nprobe: int = 16, pq_bytes: int | None = None, hnsw_m: int = 32, ef_search: int = 64,
                 seed: int = 0) -> None:
        if kind not in INDEX_KINDS[1:]:
            raise ValueError(f"unknown approximate index {kind!r}; valid kinds are {', '.join(INDEX_KINDS[1:])}")
        if candidates < 1:
            raise ValueError(f"candidates={candidates}: the candidate multiple must be at least 1")
        faiss = import_faiss()
        self.gallery = as_unit_rows(gallery)
        n, dim = self.gallery.shape
        self.kind, self.candidates, self.ef_search = kind, int(candidates), int(ef_search)
        if kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        else:
            self.nlist = int(nlist or max(1, min(round(4 * math.sqrt(n)), n // 39)))
            quantizer = faiss.IndexFlatIP(dim)
            if kind == "ivf":
                self.index = faiss.IndexIVFFlat(quantizer, dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
            else:
                pq_bytes = int(pq_bytes or _largest_divisor(dim, at_most=dim // 4))
                if dim % pq_bytes:
                    raise ValueError(f"pq_bytes={pq_bytes} must divide the embedding size {dim}")
                bits = max(1, min(8, int(math.log2(max(2, n // 39)))))  # 39 training rows per code centroid
                self.index = faiss.IndexIVFPQ(quantizer, dim, self.nlist, pq_bytes, bits, faiss.METRIC_INNER_PRODUCT)
            self.index.cp.seed = int(seed)
            self.index.train(self.gallery)
            self.index.nprobe = min(int(nprobe), self.nlist)
            self._quantizer = quantizer  # faiss holds a raw pointer to it
        self.index.add(self.gallery)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = as_unit_rows(queries)
        k = int(k)
        wanted = min(len(self.gallery), k * self.candidates)
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.ef_search, wanted)
        _, candidate_ids = self.index.search(queries, wanted)
        ids, scores = rerank(queries, self.gallery, candidate_ids, k)
        short = np.flatnonzero((candidate_ids >= 0).sum(axis=1) < k)
        if short.size:  # too few candidates (near-empty IVF lists): exact search for those queries
            ids[short], scores[short] = nearest_neighbours(queries[short], self.gallery, k)
        return ids, scores

    def __repr__(self) -> str:
        extra = f", nlist={self.nlist}, nprobe={self.index.nprobe}" if self.kind != "hnsw" else ""
        return f"ApproximateIndex({self.kind}, {len(self.gallery)} rows, candidates={self.candidates}x{extra})"


def rerank(queries: np.ndarray, gallery: np.ndarray, candidate_ids: np.ndarray, k: int,
           ) -> tuple[np.ndarray, np.ndarray]:
    """The `k` best of each query's candidate rows (`-1`: none) by exact inner product, best first.

    Example:
        >>> g = np.eye(3, dtype="float32")
        >>> rerank(g[:1], g, np.array([[2, 0, -1]]), k=1)
        (array([[0]]), array([[1.]], dtype=float32))
    """
    valid = candidate_ids >= 0
    safe = np.where(valid, candidate_ids, 0)
    scores = np.empty(safe.shape, np.float32)
    rows = max(1, _RERANK_FLOATS // max(1, safe.shape[1] * gallery.shape[1]))  # bounds the gathered copy
    for start in range(0, len(safe), rows):
        part = slice(start, start + rows)
        scores[part] = np.einsum("qd,qcd->qc", queries[part], gallery[safe[part]])
    scores[~valid] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(safe, order, axis=1), np.take_along_axis(scores, order, axis=1)


def build_index(gallery: np.ndarray, kind: str = "exact", **kwargs: Any) -> GalleryIndex:
    """An index of kind `exact` (kwargs: `backend`) or an approximate one (kwargs: `ApproximateIndex`'s)."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index {kind!r}; valid indexes are {', '.join(INDEX_KINDS)}")
    cls = ExactIndex if kind == "exact" else ApproximateIndex
    valid = [name for name in inspect.signature(cls).parameters if name not in ("gallery", "kind")]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"index {kind!r} takes no argument {', '.join(unknown)}; its arguments: {', '.join(valid)}")
    return cls(gallery, **kwargs) if cls is ExactIndex else cls(gallery, kind, **kwargs)


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, max(1, at_most) + 1) if n % d == 0)
