"""Approximate gallery indexes (faiss IVF, IVF-PQ, HNSW) with exact re-ranking, against exact search.

Clustered unit vectors stand in for trained embeddings; every expectation is recomputed by brute force.
"""

from __future__ import annotations

import numpy as np
import pytest

from tfdml.evaluation import nearest_neighbours
from tfdml.evaluation.neighbours import l2_normalise
from tfdml.retrieval.index import ApproximateIndex, ExactIndex, build_index, rerank

faiss = pytest.importorskip("faiss")


def clustered(n: int, dim: int = 32, classes: int = 100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    return l2_normalise(centres[rng.integers(0, classes, n)] + 0.35 * rng.normal(size=(n, dim)))


def recall(ids: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, exact)]))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    gallery, queries = clustered(4000), clustered(300, seed=1)
    exact_ids, exact_scores = nearest_neighbours(queries, gallery, 10, backend="sklearn")
    return gallery, queries, exact_ids, exact_scores


def test_rerank_keeps_the_exact_best_of_the_candidates():
    rng = np.random.default_rng(0)
    gallery, queries = l2_normalise(rng.normal(size=(50, 8))), l2_normalise(rng.normal(size=(6, 8)))
    candidates = np.stack([rng.permutation(50)[:12] for _ in range(6)])
    candidates[:, -3:] = -1  # faiss's "no candidate"
    ids, scores = rerank(queries, gallery, candidates, k=4)
    for q in range(6):
        pool = candidates[q][candidates[q] >= 0]
        sims = gallery[pool] @ queries[q]
        np.testing.assert_array_equal(ids[q], pool[np.argsort(-sims)[:4]])
        np.testing.assert_allclose(scores[q], np.sort(sims)[::-1][:4], rtol=1e-6)


def test_exact_index_is_nearest_neighbours(data):
    gallery, queries, exact_ids, exact_scores = data
    ids, scores = build_index(gallery, "exact", backend="blockwise").search(queries, 10)
    np.testing.assert_array_equal(ids, exact_ids)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-6)
    assert isinstance(build_index(gallery), ExactIndex)


def test_ivf_probing_every_list_is_exact(data):
    gallery, queries, exact_ids, exact_scores = data
    index = ApproximateIndex(gallery, "ivf", nprobe=10_000)  # every list visited: nothing approximate left
    ids, scores = index.search(queries, 10)
    np.testing.assert_array_equal(ids, exact_ids)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)


@pytest.mark.parametrize("kind", ["ivf", "ivfpq", "hnsw"])
def test_approximate_scores_are_exact_and_recall_is_high(data, kind):
    gallery, queries, exact_ids, _ = data
    index = build_index(gallery, kind, candidates=8)
    ids, scores = index.search(queries, 10)
    # Re-ranked: each score is the exact cosine of the row returned, best first.
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, gallery[ids]), rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 1e-7)
    assert recall(ids, exact_ids) >= 0.9, (kind, recall(ids, exact_ids))


def test_reranking_more_candidates_repairs_product_quantisation(data):
    gallery, queries, exact_ids, _ = data
    few = recall(ApproximateIndex(gallery, "ivfpq", candidates=1, pq_bytes=4).search(queries, 10)[0], exact_ids)
    many = recall(ApproximateIndex(gallery, "ivfpq", candidates=16, pq_bytes=4).search(queries, 10)[0], exact_ids)
    assert many > few + 0.1, (few, many)


def test_queries_with_too_few_candidates_fall_back_to_exact_search():
    gallery = clustered(2000, classes=400)
    queries = clustered(50, classes=400, seed=3)
    index = ApproximateIndex(gallery, "ivf", nlist=50, nprobe=1, candidates=1)
    ids, scores = index.search(queries, 40)  # one list often holds fewer than 40 rows
    assert np.all(ids >= 0) and np.all(np.isfinite(scores))
    assert np.all(np.diff(scores, axis=1) <= 1e-7)


def test_bad_index_arguments_say_what_is_valid(data):
    gallery = data[0]
    with pytest.raises(ValueError, match="unknown index 'annoy'; valid indexes are exact, ivf, ivfpq, hnsw"):
        build_index(gallery, "annoy")
    with pytest.raises(ValueError, match="index 'ivf' takes no argument nprob; its arguments: candidates, nlist, nprobe"):
        build_index(gallery, "ivf", nprob=4)
    with pytest.raises(ValueError, match="pq_bytes=5 must divide the embedding size 32"):
        ApproximateIndex(gallery, "ivfpq", pq_bytes=5)
    with pytest.raises(ValueError, match="candidate multiple must be at least 1"):
        ApproximateIndex(gallery, "hnsw", candidates=0)
