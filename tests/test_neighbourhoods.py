"""`sampler.neighbourhood`: batches dealt in neighbourhoods of look-alike classes, found once per run."""

from __future__ import annotations

import numpy as np
import pytest

from miniatures import write_colour_classes
from tfdml.config import load_config
from tfdml.data import MPerClassSampler
from tfdml.errors import DataError
from tfdml.training import run
from tfdml.training.neighbourhoods import nearest_classes

BLOCKS = np.repeat(np.arange(10), 4)  # 40 classes; classes 4b..4b+3 are look-alikes


def block_neighbours(num_classes: int = 40) -> np.ndarray:
    """Each class's three block mates first, then the other classes."""
    order = [sorted(range(num_classes), key=lambda o: (BLOCKS[o] != BLOCKS[c], o)) for c in range(num_classes)]
    return np.array([[o for o in row if o != c] for c, row in enumerate(order)])


def whole_blocks(labels: np.ndarray, batches: np.ndarray) -> float:
    """The fraction of batches made of whole blocks only."""
    return float(np.mean([all(np.isin(np.flatnonzero(BLOCKS == b), labels[row]).all()
                              for b in np.unique(BLOCKS[labels[row]])) for row in batches]))


def test_neighbourhood_batches_deal_look_alikes_together_and_cover_the_epoch():
    labels = np.repeat(np.arange(40), 4)
    near = MPerClassSampler(labels, m=2, batch_size=16, seed=3, neighbourhood=4)
    near.set_neighbours(block_neighbours())
    plain = MPerClassSampler(labels, m=2, batch_size=16, seed=3)
    for epoch in range(3):
        batches = near.epoch_batches(epoch)
        assert batches.shape == (10, 16)
        for row in labels[batches]:  # still m per class, 8 distinct classes
            _, counts = np.unique(row, return_counts=True)
            assert len(counts) == 8 and (counts == 2).all()
        assert len(np.unique(batches)) == len(labels)  # every image once
        assert whole_blocks(labels, batches) == 1.0
        assert whole_blocks(labels, plain.epoch_batches(epoch)) < 0.5  # what uniform draws give
    assert np.array_equal(near.epoch_batches(1), near.epoch_batches(1))
    assert not np.array_equal(near.epoch_batches(1), near.epoch_batches(2))


def test_neighbourhood_of_one_or_without_neighbours_is_the_plain_sampler():
    labels = np.repeat(np.arange(40), [3, 5] * 20)
    plain = MPerClassSampler(labels, m=4, batch_size=32, seed=1).epoch_batches(2)
    assert np.array_equal(MPerClassSampler(labels, m=4, batch_size=32, seed=1, neighbourhood=4).epoch_batches(2), plain)
    one = MPerClassSampler(labels, m=4, batch_size=32, seed=1, neighbourhood=1)
    one.set_neighbours(block_neighbours())
    assert np.array_equal(one.epoch_batches(2), plain)


def test_neighbourhood_batches_with_uneven_classes_stay_m_per_class():
    labels = np.repeat(np.arange(40), np.arange(40) % 7 + 1)  # 1 to 7 images: padded and split groups
    sampler = MPerClassSampler(labels, m=2, batch_size=16, seed=0, neighbourhood=3)
    sampler.set_neighbours(block_neighbours())
    for epoch in range(3):
        for row in labels[sampler.epoch_batches(epoch)]:
            _, counts = np.unique(row, return_counts=True)
            assert (counts % 2 == 0).all() and len(counts) >= 7  # a class repeats only when too few are left


def test_neighbourhood_errors_name_the_fix():
    labels = np.repeat(np.arange(40), 4)
    with pytest.raises(DataError, match="neighbourhood=9 classes must be between 1 and the batch's 8"):
        MPerClassSampler(labels, m=2, batch_size=16, neighbourhood=9)
    with pytest.raises(DataError, match=r"neighbours must be \[classes=40, k\]"):
        MPerClassSampler(labels, m=2, batch_size=16, neighbourhood=2).set_neighbours(np.zeros((39, 3)))
    with pytest.raises(DataError, match=r"in \[0, 40\)"):
        MPerClassSampler(labels, m=2, batch_size=16, neighbourhood=2).set_neighbours(np.full((40, 3), 40))


def test_nearest_classes_match_a_brute_force_ranking_of_class_means():
    rng = np.random.default_rng(0)
    embeddings, labels = rng.normal(size=(60, 6)), np.repeat(np.arange(12), 5)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    means = np.stack([unit[labels == c].mean(0) for c in range(12)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    similarity = means @ means.T
    for k, block in ((3, 1024), (11, 5), (20, 5)):  # blocks of 5 classes: the SOP-scale path
        got = nearest_classes(embeddings, labels, k, block=block)
        assert got.shape == (12, min(k, 11))
        for c in range(12):
            expected = [o for o in np.argsort(-similarity[c], kind="stable") if o != c][:min(k, 11)]
            np.testing.assert_allclose(similarity[c, got[c]], similarity[c, expected], atol=1e-6)


def test_a_run_finds_the_neighbourhoods_once_and_a_resumed_run_reads_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDML_CACHE", str(tmp_path / "cache"))
    root = write_colour_classes(tmp_path / "shapes", ext="jpg")
    base = ["data.dataset=folder", f"data.root={root}", "data.image_size=16", "sampler.batch_size=8", "sampler.m=2",
            "sampler.neighbourhood=2", "train.steps_per_epoch=2", "model.backbone_args.widths=[4,8]",
            "model.embedding_dim=8", "eval.batch_size=64", "train.verbose=0", "export.saved_model=false",
            f"output_dir={tmp_path / 'runs'}", "name=near"]
    messages: list[str] = []
    run(load_config(None, [*base, "train.epochs=1"]), log=messages.append)
    saved = tmp_path / "runs" / "near" / "checkpoints" / "class_neighbours.npy"
    assert saved.is_file() and any("batches deal 2 look-alike classes" in m for m in messages), messages
    table = np.load(saved)
    messages.clear()
    run(load_config(None, [*base, "train.epochs=2"]), log=messages.append)
    assert any(f"class neighbourhoods read from {saved}" in m for m in messages), messages
    assert np.array_equal(np.load(saved), table)
    np.save(saved, table[:-1])  # a table for other classes: one line naming the file and the fix
    with pytest.raises(DataError, match=r"class_neighbours.npy: neighbours must be .*delete it"):
        run(load_config(None, [*base, "train.epochs=3"]), log=messages.append)
