"""tfdml.Retriever and SearchResults on an untrained tiny model and real image files in tmp dirs.

The model is untrained: a random small CNN still maps images of one colour close together, so the
classes below (a colour each, under noise) are separable enough for calibration to mean something,
and every expected value is recomputed independently (nearest_neighbours, numpy).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tfdml
from tfdml.errors import DataError
from tfdml.evaluation import nearest_neighbours
from tfdml.export import export_retrieval_model, export_saved_model
from tfdml.losses import MultiSimilarityLoss
from tfdml.models import DMLModel, EmbeddingHead, build_backbone
from tfdml.retrieval import Retriever, SearchResults, calibrate_threshold
from tfdml.retrieval.draw import COLOURS, FRAME, MARGIN

SIZE = 16
COLOUR = [(230, 40, 40), (40, 200, 60), (50, 70, 230), (240, 220, 40)]


@pytest.fixture(scope="module")
def model() -> DMLModel:
    keras_model = DMLModel(build_backbone("small_cnn", (SIZE, SIZE, 3), widths=(8, 16)), EmbeddingHead(8),
                           MultiSimilarityLoss())
    keras_model.build((None, SIZE, SIZE, 3))
    return keras_model


def coloured(n: int, seed: int, size: int = 20, channels: int = 3) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    labels = [f"c{i % len(COLOUR)}" for i in range(n)]
    images = np.stack([np.clip(np.array(COLOUR[int(l[1:])]) + rng.normal(0, 25, (size, size, 3)), 0, 255)
                       for l in labels]).astype(np.uint8)
    if channels == 4:
        images = np.concatenate([images, np.full((n, size, size, 1), 255, np.uint8)], axis=-1)
    return images, labels


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """gallery/<class>/<i>.png, 3 per class, and a flat query folder of JPEG/PNG files of other sizes."""
    root = tmp_path_factory.mktemp("retrieval")
    images, labels = coloured(12, seed=0)
    for i, (img, label) in enumerate(zip(images, labels)):
        (root / "gallery" / label).mkdir(parents=True, exist_ok=True)
        tf.io.write_file(str(root / "gallery" / label / f"{i}.png"), tf.io.encode_png(img))
    return root / "gallery"


def test_search_matches_nearest_neighbours_and_results_convert(model, folder, capsys):
    retriever = tfdml.Retriever(model, folder, image_size=SIZE)
    assert len(retriever) == 12 and "12 gallery images, 4 classes" in repr(retriever)
    queries, labels = coloured(5, seed=1, size=27, channels=4)  # RGBA arrays of another size
    results = retriever.search(queries, k=3, labels=labels)
    expected_ids, expected_scores = nearest_neighbours(retriever.embed(queries), retriever.embeddings, 3,
                                                       backend="sklearn")
    np.testing.assert_array_equal(results.ids, expected_ids)
    np.testing.assert_allclose(results.scores, expected_scores, atol=1e-6)
    assert results.paths[0, 0] == retriever.gallery.path[results.ids[0, 0]]
    assert results.labels[0, 0] == Path(results.paths[0, 0]).parent.name  # class = the folder's name

    records = results.to_records()
    assert len(records) == 15 and records[1]["rank"] == 2 and records[1]["query_label"] == labels[0]
    assert records[0]["relevance"] == ("match" if records[0]["label"] == labels[0] else "mismatch")
    text = str(results)
    assert text.splitlines()[0] == "query 0: image 0 (label: c0)" and len(text.splitlines()) == 5 * 4

    # A gallery file as query finds itself first, with similarity 1.
    path = str(retriever.gallery.path[7])
    itself = retriever.search(path, k=1)
    assert itself.ids[0, 0] == 7 and itself.scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert itself.query_labels == [None] and itself.relevance()[0, 0] == "unknown"


def test_results_save_load_and_pandas(model, folder, tmp_path, monkeypatch):
    retriever = Retriever(model, folder, image_size=SIZE)
    results = retriever.search(folder / "c1", k=4)  # a flat folder of queries: unlabelled
    for name in ("r.npz", "r.json"):
        loaded = SearchResults.load(results.save(tmp_path / name))
        np.testing.assert_array_equal(loaded.ids, results.ids)
        np.testing.assert_allclose(loaded.scores, results.scores)
        assert loaded.paths.tolist() == results.paths.tolist() and loaded.labels.tolist() == results.labels.tolist()
        assert loaded.query_paths == results.query_paths and str(loaded) == str(results)
    (tmp_path / "other.json").write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(tfdml.errors.ArtifactError, match="is not a saved SearchResults"):
        SearchResults.load(tmp_path / "other.json")
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(ImportError, match="needs pandas.*to_records"):
        results.to_pandas()


def test_draw_frames_and_captions_each_match(model, folder, tmp_path):
    retriever = Retriever(model, folder, image_size=SIZE)
    queries, labels = coloured(2, seed=3)
    results = retriever.search(queries, k=2, labels=labels)
    image = results.draw(tmp_path / "grid.png", tile=32)
    grid = tf.io.decode_png(tf.io.read_file(str(tmp_path / "grid.png"))).numpy()
    np.testing.assert_array_equal(np.asarray(image), grid)
    cell_w = 32 + 2 * (FRAME + MARGIN)
    assert grid.shape[1] == 3 * cell_w and grid.shape[0] > 2 * cell_w  # a caption band under each row
    assert tuple(grid[MARGIN + 1, MARGIN + 1]) == COLOURS["query"]
    frame = COLOURS[results.relevance()[0, 0]]
    assert tuple(grid[MARGIN + 1, cell_w + MARGIN + 1]) == frame
    caption = grid[2 * MARGIN + 2 * FRAME + 32: grid.shape[0] // 2, cell_w: 2 * cell_w]
    assert (caption < 100).any()  # text was drawn under the first match


def test_calibrate_threshold_is_exact_on_small_cases():
    scores = np.array([0.9, 0.8, 0.8, 0.6, 0.3])
    same = np.array([True, True, False, True, False])
    best_f1 = calibrate_threshold(scores, same)
    assert best_f1.threshold == pytest.approx(0.6) and best_f1.recall == 1.0 and best_f1.precision == 0.75
    precise = calibrate_threshold(scores, same, target_precision=1.0)
    assert precise.threshold == pytest.approx(0.9) and precise.recall == pytest.approx(1 / 3)  # 0.8 ties with a miss
    with pytest.raises(DataError, match="no threshold reaches precision"):
        calibrate_threshold(np.array([0.9, 0.5]), np.array([False, True]), target_precision=1.0)
    with pytest.raises(DataError, match="no calibration pair has the same class"):
        calibrate_threshold(np.array([0.9]), np.array([False]))


def test_calibrate_then_match(model, folder):
    retriever = Retriever(model, folder, image_size=SIZE)
    with pytest.raises(DataError, match="call calibrate"):
        retriever.match(coloured(1, seed=9)[0])
    queries, labels = coloured(16, seed=4)
    cal = retriever.calibrate(queries, labels, k=3, target_precision=0.7)
    found = retriever.search(queries, k=3, labels=labels)
    kept = found.scores >= cal.threshold
    same = found.relevance() == "match"
    assert same[kept].mean() >= 0.7 and same[kept].mean() == pytest.approx(cal.precision)
    assert cal.recall == pytest.approx(same[kept].sum() / same.sum()) and retriever.threshold == cal.threshold
    matched = retriever.match(queries, labels=labels)
    np.testing.assert_array_equal(matched.matched, matched.scores[:, 0] >= cal.threshold)
    assert matched.predicted_labels == [found.labels[q, 0] if ok else None for q, ok in enumerate(matched.matched)]
    assert all(r["matched"] == (r["score"] >= cal.threshold) for r in matched.to_records())
    none = retriever.match(queries, threshold=1.01)
    assert not none.matched.any() and set(none.predicted_labels) == {None}


def test_from_saved_models_gives_the_same_answers(model, folder, tmp_path):
    table = Retriever(model, folder, image_size=SIZE).gallery
    export_saved_model(model, tmp_path / "embedder", image_size=SIZE)
    export_retrieval_model(model, table, tmp_path / "retrieval", image_size=SIZE)
    queries, labels = coloured(3, seed=5)
    reference = Retriever(model, folder, image_size=SIZE).search(queries, k=4, labels=labels)
    for retriever in (Retriever.from_saved_model(tmp_path / "retrieval"),
                      Retriever.from_saved_model(tmp_path / "embedder", gallery=folder)):
        results = retriever.search(queries, k=4, labels=labels)
        np.testing.assert_array_equal(results.ids, reference.ids)
        np.testing.assert_allclose(results.scores, reference.scores, atol=1e-5)
        assert results.labels.tolist() == reference.labels.tolist()
    with pytest.raises(tfdml.errors.ArtifactError, match="holds no gallery; pass gallery="):
        Retriever.from_saved_model(tmp_path / "embedder")


def test_bad_inputs_say_what_is_expected(model, folder):
    retriever = Retriever(model, folder, image_size=SIZE)
    with pytest.raises(DataError, match=r"shape \(4, 5\).*\[N, H, W, C\]"):
        retriever.search(np.zeros((4, 5)), k=1)
    with pytest.raises(DataError, match="k=13: k must be between 1 and the gallery size 12"):
        retriever.search(coloured(1, seed=0)[0], k=13)
    with pytest.raises(DataError, match="2 labels for 1 images"):
        retriever.search(coloured(1, seed=0)[0], k=1, labels=["a", "b"])


def test_an_approximate_index_searches_like_the_exact_one_on_a_small_gallery(model, folder):
    pytest.importorskip("faiss")
    exact = Retriever(model, folder, image_size=SIZE)
    approximate = Retriever(model, folder, image_size=SIZE, index="hnsw", index_args={"candidates": 2},
                            embeddings=exact.embeddings)
    assert "ApproximateIndex(hnsw, 12 rows" in repr(approximate.index)
    queries, labels = coloured(4, seed=5)
    a, b = exact.search(queries, k=3, labels=labels), approximate.search(queries, k=3, labels=labels)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    with pytest.raises(ValueError, match="unknown index 'nope'"):
        Retriever(model, folder, image_size=SIZE, index="nope", embeddings=exact.embeddings)
