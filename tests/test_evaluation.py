"""Tests of tfdml.evaluation: exact k-NN backends and MLRC retrieval metrics."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from tfdml.evaluation import evaluate_retrieval, nearest_neighbours, nmi, retrieval_metrics
from tfdml.evaluation import neighbours
from tfdml.evaluation.blockwise import blockwise_search, pack, unpack
from tfdml.evaluation.neighbours import as_unit_rows, l2_normalise

EXACT_BACKENDS = ("sklearn", "blockwise")
BACKENDS = (*EXACT_BACKENDS, "faiss")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Every backend; faiss only where it is installed."""
    if request.param == "faiss":
        pytest.importorskip("faiss")
    return request.param


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def assert_tie_free(sims: np.ndarray, depth: int, gap: float = 1e-5) -> None:
    """Precondition: the top `depth` similarities of each row are separated by
    more than float32 rounding, so every exact search must agree on the order."""
    top = -np.sort(-sims, axis=1)[:, : depth + 1]
    assert np.diff(top, axis=1).min() < -gap, "test data has near ties; change the seed"


def brute_force_metrics(x, labels, queries, gallery, ks):
    """Reference: full float64 similarity matrix, one python ranking per query."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = x.astype(np.float64) @ x.T.astype(np.float64)
    scores = {f"recall@{k}": [] for k in ks} | {"r_precision": [], "map@r": []}
    skipped = 0
    for q in queries:
        ranking = sorted((g for g in gallery if g != q), key=lambda g: (-sims[q, g], g))
        rel = [labels[g] == labels[q] for g in ranking]
        r = sum(rel)
        if r == 0:
            skipped += 1
            continue
        for k in ks:
            scores[f"recall@{k}"].append(any(rel[:k]))
        scores["r_precision"].append(sum(rel[:r]) / r)
        scores["map@r"].append(sum(sum(rel[: i + 1]) / (i + 1) for i in range(r) if rel[i]) / r)
    out = {name: float(np.mean(v)) for name, v in scores.items()}
    out["precision@1"] = out["recall@1"]
    out["num_queries"] = len(queries) - skipped
    out["num_queries_without_relevant"] = skipped
    return out, sims


# --- retrieval_metrics on hand-computed rankings ---------------------------------


def test_retrieval_metrics_hand_computed():
    neighbour_labels = np.array(
        [
            [0, 1, 0, 2],  # q0, label 0, R=2: hits at ranks 1 and 3
            [0, 1, 1, 2],  # q1, label 1, R=3: hits at ranks 2 and 3
            [2, 2, 0, 1],  # q2, label 2, R=2: hits at ranks 1 and 2
            [0, 1, 2, 2],  # q3, label 3, R=1: no hit
        ]
    )
    query_labels, relevant_counts = np.array([0, 1, 2, 3]), np.array([2, 3, 2, 1])
    m = retrieval_metrics(neighbour_labels, query_labels, relevant_counts, ks=(1, 2, 4))
    assert m["recall@1"] == pytest.approx((1 + 0 + 1 + 0) / 4)
    assert m["recall@2"] == pytest.approx((1 + 1 + 1 + 0) / 4)
    assert m["recall@4"] == pytest.approx(3 / 4)
    assert m["precision@1"] == m["recall@1"]
    # R-precision: q0 1/2, q1 2/3, q2 2/2, q3 0/1
    assert m["r_precision"] == pytest.approx((1 / 2 + 2 / 3 + 1 + 0) / 4)
    # MAP@R: q0 (1/2)(1/1) (rank 3 is past R), q1 (1/3)(1/2 + 2/3), q2 (1/2)(1/1 + 2/2), q3 0
    assert m["map@r"] == pytest.approx((1 / 2 + 7 / 18 + 1 + 0) / 4)
    assert m["num_queries"] == 4 and m["num_queries_without_relevant"] == 0


def test_map_at_r_counts_precision_at_each_hit_within_r():
    labels = np.array([[0, 1, 0, 1]])
    # R=3, hits at ranks 1 and 3: (1/3)(1/1 + 2/3) = 5/9; R-precision 2/3
    m = retrieval_metrics(labels, np.array([0]), np.array([3]), ks=(1,))
    assert m["map@r"] == pytest.approx(5 / 9)
    assert m["r_precision"] == pytest.approx(2 / 3)
    # R=2, same hits: rank 3 is past R, so (1/2)(1/1) = 1/2
    m = retrieval_metrics(labels, np.array([0]), np.array([2]), ks=(1,))
    assert m["map@r"] == pytest.approx(1 / 2)


def test_queries_without_relevant_items_are_excluded():
    rankings = np.array([[0, 1], [0, 1]])
    base = retrieval_metrics(rankings, np.array([0, 1]), np.array([1, 2]), ks=(1, 2))
    # An extra query with R=0 whose ranking is all misses would lower every metric if counted.
    with_empty = retrieval_metrics(
        np.array([[0, 1], [0, 1], [0, 1]]), np.array([0, 1, 7]), np.array([1, 2, 0]), ks=(1, 2)
    )
    assert base["recall@1"] == pytest.approx(1 / 2)
    for name in ("recall@1", "recall@2", "precision@1", "r_precision", "map@r"):
        assert with_empty[name] == pytest.approx(base[name])
    assert with_empty["num_queries"] == 2 and with_empty["num_queries_without_relevant"] == 1
    none_scored = retrieval_metrics(np.array([[1]]), np.array([0]), np.array([0]), ks=(1,))
    assert np.isnan(none_scored["map@r"]) and none_scored["num_queries"] == 0


def test_retrieval_metrics_needs_k_columns():
    with pytest.raises(ValueError, match="k=4"):
        retrieval_metrics(np.zeros((1, 2), int), np.array([0]), np.array([1]), ks=(1, 4))
    with pytest.raises(ValueError, match="k=3"):
        retrieval_metrics(np.zeros((1, 2), int), np.array([0]), np.array([3]), ks=(1,))


# --- nearest_neighbours ----------------------------------------------------------------


def test_backends_agree_in_self_mode(backend):
    x = unit_rows(np.random.default_rng(1), 250, 16)
    k = 10
    sims = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    assert_tie_free(sims, k)
    # block_size 64 does not divide 250: the last block is partial.
    idx, sim = nearest_neighbours(x, k=k, backend=backend, block_size=64)
    assert idx.dtype == np.int64 and sim.dtype == np.float32 and idx.shape == (250, k)
    np.testing.assert_array_equal(idx, np.argsort(-sims, axis=1, kind="stable")[:, :k])
    np.testing.assert_allclose(sim, np.take_along_axis(sims, idx, axis=1), atol=1e-6)
    assert (np.diff(sim, axis=1) <= 0).all()


def test_backends_agree_in_query_gallery_mode(backend):
    rng = np.random.default_rng(2)
    # Unnormalised inputs: the search must normalise them itself.
    queries = unit_rows(rng, 70, 12) * rng.uniform(0.1, 5, size=(70, 1)).astype(np.float32)
    gallery = unit_rows(rng, 203, 12) * 3.0
    k = 8
    unit_queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = unit_queries.astype(np.float64) @ (gallery / 3.0).T.astype(np.float64)
    assert_tie_free(sims, k)
    idx, sim = nearest_neighbours(queries, gallery, k, backend=backend, block_size=32)
    np.testing.assert_array_equal(idx, np.argsort(-sims, axis=1, kind="stable")[:, :k])
    np.testing.assert_allclose(sim, np.take_along_axis(sims, idx, axis=1), atol=1e-6)


def test_blockwise_symmetric_path_equals_full_path_and_float64_truth():
    # Tile edges that cut through the screening segments, single-row tiles,
    # k larger than a tile, and k = N - 1 (every other row).
    x = unit_rows(np.random.default_rng(8), 301, 24)
    sims = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    cases = [(301, k, block_size) for k, block_size in ((11, None), (11, 37), (40, 7), (300, 64))]
    cases += [(301, 300, 301), (30, 5, 1)]  # one tile; one row per tile
    for n, k, block_size in cases:
        sub = sims[:n, :n]
        assert_tie_free(sub, min(k, n - 2), gap=1e-6)
        truth = np.argsort(-sub, axis=1, kind="stable")
        sym = blockwise_search(x[:n], None, k, block_size=block_size, symmetric=True)
        full = blockwise_search(x[:n], None, k, block_size=block_size, symmetric=False)
        np.testing.assert_array_equal(sym[0], truth[:, :k], err_msg=f"k={k} block={block_size}")
        np.testing.assert_array_equal(full[0], sym[0])
        expected = np.take_along_axis(sub, sym[0], axis=1)
        np.testing.assert_allclose(sym[1], expected, atol=1e-6)
        np.testing.assert_allclose(full[1], expected, atol=1e-6)


def test_blockwise_many_tiles_with_screened_segments():
    # Several 250-row tiles (31 full screening segments and 2 rows left over each).
    rng = np.random.default_rng(9)
    x = unit_rows(rng, 1200, 64)
    sims = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    assert_tie_free(sims, 12, gap=1e-6)
    truth = np.argsort(-sims, axis=1, kind="stable")[:, :12]
    for symmetric in (True, False):
        idx, sim = blockwise_search(x, None, 12, block_size=250, symmetric=symmetric)
        np.testing.assert_array_equal(idx, truth)
        np.testing.assert_allclose(sim, np.take_along_axis(sims, idx, axis=1), atol=1e-6)
    idx_s, _ = nearest_neighbours(x, k=12, backend="sklearn")
    np.testing.assert_array_equal(idx_s, truth)


def test_blockwise_query_gallery_with_odd_blocks_and_k_beyond_a_block():
    rng = np.random.default_rng(16)
    queries, gallery = unit_rows(rng, 45, 16), unit_rows(rng, 130, 16)
    sims = queries.astype(np.float64) @ gallery.T.astype(np.float64)
    truth = np.argsort(-sims, axis=1, kind="stable")
    for k, block_size in ((50, 7), (130, 13), (3, None), (9, 1)):
        assert_tie_free(sims, min(k, 128), gap=1e-6)
        idx, sim = blockwise_search(queries, gallery, k, block_size=block_size)
        np.testing.assert_array_equal(idx, truth[:, :k], err_msg=f"k={k} block={block_size}")
        np.testing.assert_allclose(sim, np.take_along_axis(sims, idx, axis=1), atol=1e-6)


def test_blockwise_ties_are_exact_and_by_index():
    # Binary rows: exact float32 ties everywhere, across tiles and at the k-th place.
    x = l2_normalise(np.random.default_rng(10).integers(0, 2, size=(150, 4)).astype(np.float32) + 0.0)
    x[0] = 0.0  # a zero row: similarity 0 to everything
    sims = x.astype(np.float64) @ x.T.astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    truth = np.argsort(-sims, axis=1, kind="stable")
    for k, block_size in ((20, None), (20, 9), (149, 16)):
        for symmetric in (True, False):
            idx, _ = blockwise_search(x, None, k, block_size=block_size, symmetric=symmetric)
            np.testing.assert_array_equal(idx, truth[:, :k])


def test_pack_orders_by_similarity_then_smaller_index():
    values = np.array([0.5, -0.0, 0.0, -np.inf, 0.5, -1e-30, 1.0, 0.5], np.float32)
    index = np.array([4, 9, 2, 0, 1, 5, 7, 4000000000])
    order = np.argsort(-pack(values, index), kind="stable")
    expected = np.lexsort((index, -values.astype(np.float64)))
    np.testing.assert_array_equal(order, expected)  # -0.0 and 0.0 tie, broken by index
    back_index, back_values = unpack(pack(values, index))
    np.testing.assert_array_equal(back_index, index)
    np.testing.assert_array_equal(back_values, values + np.float32(0.0))


def test_unit_rows_are_searched_without_a_copy():
    rng = np.random.default_rng(11)
    x = unit_rows(rng, 50, 8)
    assert as_unit_rows(x) is x
    scaled = x * 2
    np.testing.assert_allclose(as_unit_rows(scaled), x, atol=1e-6)
    # float64 norms: huge float32 rows neither overflow nor come back non-unit.
    huge = np.full((2, 4), 3e38, np.float32)
    np.testing.assert_allclose(np.linalg.norm(l2_normalise(huge), axis=1), 1.0, atol=1e-6)


def test_auto_picks_sklearn_for_small_sets_and_blockwise_for_large(monkeypatch):
    x = unit_rows(np.random.default_rng(12), 40, 4)
    used = []
    for name in ("_sklearn_search", "blockwise_search"):
        real = getattr(neighbours, name)
        monkeypatch.setattr(
            neighbours, name, lambda *a, _real=real, _name=name, **kw: used.append(_name) or _real(*a, **kw)
        )
    nearest_neighbours(x, k=3)
    monkeypatch.setattr(neighbours, "AUTO_SKLEARN_MAX_PAIRS", 40 * 40 - 1)
    nearest_neighbours(x, k=3)
    assert used == ["_sklearn_search", "blockwise_search"]


def test_missing_faiss_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss" or name.startswith("faiss."):
            raise ModuleNotFoundError("No module named 'faiss'", name="faiss")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "faiss", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_faiss)
    x = unit_rows(np.random.default_rng(13), 10, 4)
    with pytest.raises(ImportError, match=r"pip install 'tfdml\[faiss\]'"):
        nearest_neighbours(x, k=2, backend="faiss")
    with pytest.raises(ImportError, match=r"pip install 'tfdml\[faiss\]'"):
        evaluate_retrieval(x, np.arange(10) % 3, backend="faiss")
    # The other backends never touch faiss.
    evaluate_retrieval(x, np.arange(10) % 3, backend="blockwise")


def test_self_mode_excludes_query_but_keeps_its_duplicate(backend):
    x = unit_rows(np.random.default_rng(3), 20, 8)
    x[13] = x[4]
    idx, sim = nearest_neighbours(x, k=3, backend=backend)
    assert idx[4, 0] == 13 and idx[13, 0] == 4
    assert sim[4, 0] == pytest.approx(1.0, abs=1e-6)
    assert not (idx == np.arange(20)[:, None]).any()
    x[7] = x[4]  # three copies tie at k + 1 = 2: a copy may push the query out of the search
    idx, sim = nearest_neighbours(x, k=1, backend=backend)
    for row in (4, 7, 13):
        assert idx[row, 0] in {4, 7, 13} - {row} and sim[row, 0] == pytest.approx(1.0, abs=1e-6)


def test_zero_reference_ranks_with_similarity_zero(backend):
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    references = np.array([[1.0, 0.2], [0.0, 0.0], [-1.0, 0.1], [0.3, -1.0]], np.float32)
    idx, sim = nearest_neighbours(queries, references, k=4, backend=backend)
    # Query [1, 0]: cosines 0.98, 0 (zero row), 0.29, -0.995.
    np.testing.assert_array_equal(idx, [[0, 3, 1, 2], [0, 2, 1, 3]])
    assert sim[0, 2] == pytest.approx(0.0, abs=1e-6) and np.isfinite(sim).all()


def test_blockwise_breaks_ties_by_smaller_index():
    references = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [3.0, 0.0]], np.float32)
    query = np.array([[1.0, 0.0]])
    # Ties straddle the k-th place (rows 1, 3, 4 at 1.0; rows 0, 2 at 0.0): smaller indices win.
    idx, _ = nearest_neighbours(query, references, k=2, backend="blockwise")
    np.testing.assert_array_equal(idx, [[1, 3]])
    idx, _ = nearest_neighbours(query, references, k=4, backend="blockwise")
    np.testing.assert_array_equal(idx, [[1, 3, 4, 0]])
    for backend in EXACT_BACKENDS:  # exactly the tied rows requested: every backend orders them by index
        idx, _ = nearest_neighbours(query, references, k=3, backend=backend)
        np.testing.assert_array_equal(idx, [[1, 3, 4]])


def test_nearest_neighbours_errors():
    x = np.ones((5, 3), np.float32)
    with pytest.raises(ValueError, match="k=5 exceeds the 4 available"):
        nearest_neighbours(x, k=5)
    with pytest.raises(ValueError, match="k=6 exceeds the 5 available"):
        nearest_neighbours(x, x, k=6)
    with pytest.raises(ValueError, match="unknown backend 'annoy'; valid backends are auto, sklearn, blockwise, faiss"):
        nearest_neighbours(x, k=1, backend="annoy")
    with pytest.raises(ValueError, match="block_size"):
        nearest_neighbours(x, k=1, block_size=0)
    with pytest.raises(ValueError, match="same width"):
        nearest_neighbours(x, np.ones((5, 4), np.float32), k=1)
    with pytest.raises(ValueError, match="2-D float"):
        nearest_neighbours(np.ones((5, 3), int), k=1)
    with pytest.raises(ValueError, match="2-D float"):
        nearest_neighbours(np.ones(5, np.float32), k=1)


# --- evaluate_retrieval and nmi -------------------------------------------------------


def clustered_set(seed: int, n: int = 90, n_classes: int = 6, d: int = 8):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n)
    labels[0] = n_classes  # a singleton class: R = 0 in self mode
    centres = rng.normal(size=(n_classes + 1, d))
    x = (centres[labels] + 0.9 * rng.normal(size=(n, d))).astype(np.float32)
    return x, labels


def test_evaluate_retrieval_matches_brute_force_self_mode(backend):
    x, labels = clustered_set(seed=4)
    ks = (1, 2, 4, 8)
    expected, sims = brute_force_metrics(x, labels, range(len(x)), range(len(x)), ks)
    np.fill_diagonal(sims, -np.inf)
    assert_tie_free(sims, 40, gap=1e-6)
    got = evaluate_retrieval(x, labels, ks=ks, backend=backend)
    assert got.keys() == expected.keys()
    assert 0.2 < got["map@r"] < 0.9 and got["num_queries_without_relevant"] == 1  # non-trivial data
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_evaluate_retrieval_matches_brute_force_query_gallery(backend):
    x, labels = clustered_set(seed=5)
    rng = np.random.default_rng(6)
    query_mask = rng.random(len(x)) < 0.5
    gallery_mask = rng.random(len(x)) < 0.7  # overlaps the queries: those exclude themselves
    assert (query_mask & gallery_mask).any() and (query_mask & ~gallery_mask).any()
    queries, gallery = np.flatnonzero(query_mask), np.flatnonzero(gallery_mask)
    ks = (1, 4, 16)
    expected, sims = brute_force_metrics(x, labels, queries, gallery, ks)
    np.fill_diagonal(sims, -np.inf)
    assert_tie_free(sims[np.ix_(queries, gallery)], 25, gap=1e-6)
    got = evaluate_retrieval(
        x, labels, query_mask=query_mask, gallery_mask=gallery_mask, ks=ks, backend=backend
    )
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def sop_like_set(seed: int, n: int, d: int = 32, noise: float = 1.5):
    """Classes of 2-12 rows around random centres, rows in random order."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 13, size=n)
    labels = rng.permutation(np.repeat(np.arange(n), sizes)[:n])
    centres = rng.normal(size=(labels.max() + 1, d))
    x = centres[labels] + noise * rng.normal(size=(n, d))
    return l2_normalise(x), labels


@pytest.mark.parametrize("mode", ["self", "query_gallery", "overlapping"])
def test_metrics_equal_sklearn_backend_on_random_sets(backend, mode):
    x, labels = sop_like_set(seed=14, n=900)
    rng = np.random.default_rng(15)
    masks = {
        "self": {},
        "query_gallery": (lambda q: {"query_mask": q, "gallery_mask": ~q})(rng.random(900) < 0.5),
        "overlapping": {"query_mask": rng.random(900) < 0.6, "gallery_mask": rng.random(900) < 0.7},
    }[mode]
    ks = (1, 2, 4, 8, 16)
    expected = evaluate_retrieval(x, labels, ks=ks, backend="sklearn", **masks)
    got = evaluate_retrieval(x, labels, ks=ks, backend=backend, **masks)
    assert 0.1 < expected["map@r"] < 0.9  # non-trivial data
    assert got == expected  # exactly: same neighbours, same float arithmetic


def test_evaluate_retrieval_single_row():
    got = evaluate_retrieval(np.ones((1, 3), np.float32), np.array([0]), ks=(1,))
    assert np.isnan(got["recall@1"]) and got["num_queries_without_relevant"] == 1


def test_evaluate_retrieval_with_fewer_references_than_k():
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.2, 1], [1, 1]], np.float32)
    labels = np.array(["a", "a", "b", "b", "b"])
    got = evaluate_retrieval(x, labels, ks=(1, 8), compute_nmi=True)
    expected, _ = brute_force_metrics(x, labels, range(5), range(5), (1, 8))
    for name, value in expected.items():
        assert got[name] == pytest.approx(value), name
    assert got["recall@8"] == 1.0 and 0.0 <= got["nmi"] <= 1.0


def test_evaluate_retrieval_errors():
    x = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="labels"):
        evaluate_retrieval(x, np.zeros(3))
    with pytest.raises(ValueError, match="query_mask"):
        evaluate_retrieval(x, np.zeros(4), query_mask=np.ones(4, int))
    with pytest.raises(ValueError, match="valid backends"):
        evaluate_retrieval(x, np.zeros(4), backend="annoy")


def test_nmi_is_one_on_separated_clusters():
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(4), 25)
    x = np.eye(6)[labels] * 10 + 0.05 * rng.normal(size=(100, 6))
    assert nmi(x, labels) == pytest.approx(1.0)
    assert evaluate_retrieval(x, labels, compute_nmi=True)["nmi"] == pytest.approx(1.0)
    shuffled = rng.permutation(labels)
    assert nmi(x, shuffled) < 0.2
