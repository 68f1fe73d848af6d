"""Tests of tfdml.data: table, splits, the emoji reader on real data, the sampler and the pipelines."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from tfdml.data import (DatasetTable, MPerClassSampler, eval_dataset, read_dataset, read_emoji,
                        reraise_data_errors, split_classes, train_dataset, validate_images)
from tfdml.errors import ConfigError, DataError, TfdmlError

VENDORS = ("apple", "google", "twitter", "facebook")


# --- table -----------------------------------------------------------------------------------

def test_errors_are_user_facing():
    assert issubclass(DataError, TfdmlError) and issubclass(ConfigError, TfdmlError)


def test_table_select_keeps_global_labels(small_table):
    picked = small_table.select(small_table.label >= 10)
    assert set(picked.label.tolist()) == {10, 11}
    assert picked.class_names == small_table.class_names
    assert picked.num_classes == 2 and picked.dense_labels().tolist() == [0] * 11 + [1] * 12
    assert np.array_equal(picked.images, small_table.images[small_table.label >= 10])
    assert small_table.select([3, 0]).path.tolist() == ["img/3", "img/0"]
    assert small_table.class_counts().tolist() == list(range(1, 13))


def test_table_validates_and_is_read_only(small_table):
    with pytest.raises(DataError, match="'label' has 2 rows but 'path' has 3"):
        DatasetTable(path=["a", "b", "c"], label=[0, 1], split=[""] * 3, is_query=[True] * 3,
                     is_gallery=[True] * 3, bbox=np.zeros((3, 4)), class_names=("x", "y"))
    with pytest.raises(DataError, match="labels must be in 0..0"):
        DatasetTable(path=["a"], label=[1], split=[""], is_query=[True], is_gallery=[True],
                     bbox=np.zeros((1, 4)), class_names=("x",))
    with pytest.raises(DataError, match="unknown split"):
        small_table.subset("training")
    with pytest.raises(ValueError):
        small_table.label[0] = 5


# --- splits ----------------------------------------------------------------------------------

def _classes(table: DatasetTable, split: str) -> set[int]:
    return set(table.subset(split).label.tolist())


def test_split_is_class_disjoint_and_deterministic(make_table):
    table = make_table([1, 2, 3, 4] * 25)  # 100 classes, 25 of them with a single image
    a = split_classes(table, test_fraction=0.4, val_fraction=0.2, min_images=2, seed=3)
    train, val, test = (_classes(a, s) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert len(train | val | test) == 75 and min(a.class_counts()[list(train | val | test)]) >= 2
    assert (len(test), len(val), len(train)) == (30, 9, 36)  # 40% of 75; 20% of the other 45
    assert len(a) == len(table) - 25 and not (a.split == "").any()
    again = split_classes(table, test_fraction=0.4, val_fraction=0.2, seed=3)
    assert np.array_equal(a.split, again.split) and np.array_equal(a.path, again.path)
    other = split_classes(table, test_fraction=0.4, val_fraction=0.2, seed=4)
    assert _classes(other, "test") != test


def test_split_rejects_bad_fractions(small_table):
    with pytest.raises(ConfigError, match="test_fraction"):
        split_classes(small_table, test_fraction=1.0)
    with pytest.raises(DataError, match="at least 50 images"):
        split_classes(small_table, min_images=50)


# --- emoji reader (real data) ----------------------------------------------------------------

def test_emoji_counts_and_pixels(emoji_table):
    t = emoji_table
    assert 1850 <= len(t.class_names) <= 1950 and 7400 <= len(t) <= 7800
    assert np.array_equal(np.unique(t.label), np.arange(len(t.class_names)))
    assert t.images.shape[1:] == (32, 32, 4) and t.images.dtype == np.uint8
    assert (t.images[..., 3] > 0).any(axis=(1, 2)).all()  # every cell holds a drawing
    assert (t.split == "").all() and t.is_query.all() and t.is_gallery.all()


def test_emoji_known_class_has_four_distinct_vendor_drawings(emoji_table):
    rows = np.flatnonzero(emoji_table.label == emoji_table.class_names.index("grinning"))
    assert emoji_table.path[rows].tolist() == [f"{v}/grinning" for v in VENDORS]
    drawings = emoji_table.images[rows].astype(int)
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(drawings[i] - drawings[j]).mean() > 5


def test_emoji_vendor_subset_and_cache(emoji_root, emoji_table):
    google = read_dataset("emoji", root=emoji_root, vendors=("google",))
    assert all(p.startswith("google/") for p in google.path)
    assert np.array_equal(np.unique(google.label), np.arange(len(google.class_names)))
    full = emoji_table.select(np.char.startswith(emoji_table.path, "google/"))
    assert np.array_equal(google.images, full.images) and google.path.tolist() == full.path.tolist()
    assert list(Path(emoji_root, "emoji-datasource-16.0.0").glob("emoji_google_32px_*.npz"))
    with pytest.raises(ConfigError, match="choose distinct names"):
        read_emoji(emoji_root, vendors=("apple", "samsung"))
    with pytest.raises(ConfigError, match=r"emoji size 48 has no sprite sheet; choose one of \[16, 20, 32, 64\]"):
        read_emoji(emoji_root, size=48)


def test_emoji_64px_sheets_come_from_the_vendor_package_and_match_the_32px_drawings(emoji_root, emoji_table):
    big = read_emoji(emoji_root, vendors=("google",), size=64)
    small = emoji_table.select(np.char.startswith(emoji_table.path, "google/"))
    assert big.images.shape == (len(small), 64, 64, 4) and big.path.tolist() == small.path.tolist()
    assert Path(emoji_root, "emoji-datasource-16.0.0/package/img/google/sheets/64.png").is_file()
    # Right cells: each 64 px drawing averaged 2x2 is close to its own 32 px drawing, far from its neighbour's.
    pooled = big.images.reshape(-1, 32, 2, 32, 2, 4).astype(float).mean(axis=(2, 4))
    own = np.abs(pooled - small.images).mean()
    assert own < 15 and np.abs(np.roll(pooled, 1, axis=0) - small.images).mean() > 3 * own


def test_emoji_split_matches_reference(emoji_table):
    t = split_classes(emoji_table, test_fraction=0.5, val_fraction=0.1, seed=0)
    assert len(_classes(t, "test")) == 955  # 1,911 classes: ties go to train
    assert len(_classes(t, "val")) + len(_classes(t, "train")) == len(emoji_table.class_names) - 955


def test_emoji_without_npm_says_what_to_do(tmp_path, monkeypatch):
    empty_bin, data = tmp_path / "bin", tmp_path / "data"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    monkeypatch.setenv("TFDML_DATA", str(data))
    with pytest.raises(DataError) as err:
        read_emoji()
    message = str(err.value)
    assert "npm" in message and "npm pack emoji-datasource@16.0.0" in message and "$TFDML_DATA" in message
    assert str(data / "emoji-datasource-16.0.0" / "package" / "emoji.json") in message
    assert not data.exists() or not any(data.iterdir())


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(DataError, match="known datasets: .*emoji"):
        read_dataset("imagenet")


# --- sampler ---------------------------------------------------------------------------------

def _assert_m_per_class(labels: np.ndarray, batches: np.ndarray, m: int) -> None:
    for row in labels[batches]:
        _, counts = np.unique(row, return_counts=True)
        assert len(counts) == batches.shape[1] // m and (counts == m).all()


def test_sampler_batches_are_m_per_class_and_cover_the_epoch(make_table):
    labels = make_table([1, 2, 3, 5, 8, 13, 21, 4, 4, 7] * 3).label  # classes smaller than m included
    m, batch_size = 4, 24
    sampler = MPerClassSampler(labels, m=m, batch_size=batch_size, seed=1)
    for epoch in range(5):
        batches = sampler.epoch_batches(epoch)
        assert batches.shape == (len(sampler), batch_size) and batches.dtype == np.int64
        _assert_m_per_class(labels, batches, m)
        # Only the groups of the dropped last, incomplete batch go unvisited.
        assert len(np.unique(batches)) >= len(labels) - (batch_size - m)
    seen = np.unique(np.concatenate([sampler.epoch_batches(e) for e in range(5)]))
    assert set(labels[seen].tolist()) == set(labels.tolist())
    # A one-image class fills its group by repeating that image.
    single = np.flatnonzero(labels == 0)[0]
    rows = [b for b in sampler.epoch_batches(0) if single in b]
    assert not rows or (rows[0] == single).sum() == m


def test_sampler_keeps_classes_apart_when_crowded():
    # Up to 8 groups of a class for 9 batches: shuffling alone would put two in one batch.
    labels = np.repeat(np.arange(6), [16, 16, 16, 14, 10, 6])
    for seed in range(10):
        sampler = MPerClassSampler(labels, m=2, batch_size=8, seed=seed)
        for epoch in range(3):
            _assert_m_per_class(labels, sampler.epoch_batches(epoch), m=2)


def test_sampler_is_deterministic_in_seed_and_epoch(small_table):
    a = MPerClassSampler(small_table.label, m=2, batch_size=8, seed=7)
    b = MPerClassSampler(small_table.label, m=2, batch_size=8, seed=7)
    assert np.array_equal(a.epoch_batches(3), b.epoch_batches(3))
    assert not np.array_equal(a.epoch_batches(3), a.epoch_batches(4))
    assert not np.array_equal(a.epoch_batches(3), MPerClassSampler(small_table.label, m=2, batch_size=8,
                                                                   seed=8).epoch_batches(3))


def test_sampler_with_one_dominant_class_still_fills_batches():
    labels = np.repeat(np.arange(4), [100, 4, 4, 4])  # class 0 must repeat within batches
    batches = MPerClassSampler(labels, m=4, batch_size=8).epoch_batches(0)
    assert batches.shape == (14, 8)
    assert all((labels[b].reshape(2, 4) == labels[b].reshape(2, 4)[:, :1]).all() for b in batches)


def test_sampler_rejects_impossible_batches(small_table):
    with pytest.raises(DataError, match="multiple of m=3"):
        MPerClassSampler(small_table.label, m=3, batch_size=8)
    with pytest.raises(DataError, match="12 classes cannot fill"):
        MPerClassSampler(small_table.label, m=2, batch_size=26)


def test_sampler_dataset_runs_over_epochs(small_table):
    sampler = MPerClassSampler(small_table.label, m=2, batch_size=8, seed=2)
    ds = sampler.as_dataset(start_epoch=1)
    assert ds.element_spec.shape.as_list() == [8]
    got = np.stack(list(ds.take(2 * len(sampler)).as_numpy_iterator()))
    assert np.array_equal(got, np.concatenate([sampler.epoch_batches(1), sampler.epoch_batches(2)]))


# --- pipelines -------------------------------------------------------------------------------

def test_train_dataset_in_memory(small_table):
    sampler = MPerClassSampler(small_table.label, m=2, batch_size=8)
    ds = train_dataset(small_table, sampler, image_size=12, seed=5)
    (x1, y1), (x2, _) = list(ds.take(2).as_numpy_iterator())
    assert x1.shape == (8, 12, 12, 3) and x1.dtype == np.float32 and y1.dtype == np.int32
    assert 0.0 <= x1.min() and x1.max() <= 255.0 and x1.max() > 1.0 and not np.allclose(x1, x2)
    assert np.array_equal(y1, small_table.dense_labels()[sampler.epoch_batches(0)[0]])
    again = next(iter(train_dataset(small_table, sampler, image_size=12, seed=5)))[0].numpy()
    other = next(iter(train_dataset(small_table, sampler, image_size=12, seed=6)))[0].numpy()
    assert np.array_equal(x1, again) and not np.allclose(x1, other)
    with pytest.raises(DataError, match="sampler was built for other labels"):
        train_dataset(small_table.select(small_table.label > 0), sampler, image_size=12)


def test_eval_dataset_composites_alpha_on_white(make_table):
    table = make_table([3, 4], image_size=6)
    images = table.images.copy()
    images[0, ..., 3] = 0  # fully transparent image: must come out white
    images[1, ..., 3] = 255  # opaque: the RGB values unchanged
    table = DatasetTable.from_class_keys(table.path, table.label, images=images)
    batches = list(eval_dataset(table, image_size=6, batch_size=4).as_numpy_iterator())
    x = np.concatenate([b[0] for b in batches])
    assert [len(b[1]) for b in batches] == [4, 3]
    assert np.concatenate([b[1] for b in batches]).tolist() == [0] * 3 + [1] * 4
    assert np.allclose(x[0], 255.0) and np.allclose(x[1], images[1, ..., :3], atol=1e-4)


def test_file_pipelines_decode_mixed_formats(file_table):
    validate_images(file_table, decode=True)
    sampler = MPerClassSampler(file_table.label, m=2, batch_size=6)
    x, y = next(iter(train_dataset(file_table, sampler, image_size=16, flip=True)))
    assert x.shape == (6, 16, 16, 3) and y.shape == (6,) and x.dtype.name == "float32"
    batches = list(eval_dataset(file_table, image_size=16, batch_size=5).as_numpy_iterator())
    assert [b[0].shape for b in batches] == [(5, 16, 16, 3), (5, 16, 16, 3), (2, 16, 16, 3)]
    assert np.concatenate([b[1] for b in batches]).tolist() == file_table.label.tolist()


def test_corrupt_image_file_is_named(file_table):
    bad, name = file_table.path[3], re.escape(file_table.path[3])
    Path(bad).write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match=f"{name} \\(not a JPEG"):
        validate_images(file_table)
    with pytest.raises(DataError, match=f"{name} is not a JPEG"), reraise_data_errors():
        list(eval_dataset(file_table, image_size=8, batch_size=4))
    os.remove(bad)
    with pytest.raises(DataError, match=f"missing.*{name}"), reraise_data_errors():
        list(eval_dataset(file_table, image_size=8, batch_size=4))


def test_sampler_at_sop_scale_deals_every_group_into_m_per_class_batches():
    # Stanford Online Products: 11,318 training classes of mostly 2-12 images (59,551 in all).
    rng = np.random.default_rng(0)
    counts = 2 + rng.binomial(10, 0.33, 11_318)
    labels = rng.permutation(np.repeat(np.arange(11_318), counts))
    m, k = 5, 20  # SOP's usual 20 classes x 5 images: about half the classes are smaller than m
    batches = MPerClassSampler(labels, m=m, batch_size=k * m, seed=0).epoch_batches(0)
    groups = int((-(-counts // m)).sum())
    assert batches.shape == (groups // k, k * m)
    _assert_m_per_class(labels, batches, m)
    # Only the images of the groups left over for the dropped, incomplete last batch go unvisited.
    unseen = np.setdiff1d(np.arange(len(labels)), batches)
    assert len(unseen) <= (groups % k) * m and len(np.unique(labels[unseen])) <= groups % k
    # A class smaller than m fills its one group with all its images, repeating some of them.
    rows_of = np.split(np.argsort(labels, kind="stable"), np.cumsum(counts)[:-1])
    small = [g for g in batches.reshape(-1, m) if counts[labels[g[0]]] < m]
    assert len(small) > 1000 and all(set(g) == set(rows_of[labels[g[0]]]) for g in small)


# --- JPEG crop window -----------------------------------------------------------------------

def test_train_jpeg_crop_window_matches_the_full_decode(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):  # smooth 30x50 images, so JPEG and resizing differences stay small
        img = tf.image.resize(rng.uniform(0, 255, (1, 3, 5, 3)), [30, 50]).numpy()[0].astype(np.uint8)
        paths.append(str(tmp_path / f"{i}.jpg"))
        tf.io.write_file(paths[-1], tf.io.encode_jpeg(img))
    table = DatasetTable.from_class_keys(paths, ["a", "a", "b", "b"])
    sampler = MPerClassSampler(table.label, m=2, batch_size=4)
    # Whole-image crops (area 1, the image's own aspect): the cropped decode must see every pixel, in order.
    x, _ = next(iter(train_dataset(table, sampler, image_size=16, crop_scale=(1.0, 1.0), crop_ratio=(5 / 3, 5 / 3),
                                   brightness=0.0, contrast=0.0)))
    for img, row in zip(x.numpy(), sampler.epoch_batches(0)[0]):
        full = tf.image.decode_jpeg(tf.io.read_file(paths[row]))
        np.testing.assert_allclose(img, tf.image.resize(tf.cast(full, tf.float32), [16, 16]).numpy(), atol=1e-3)
    Path(paths[1]).write_bytes(Path(paths[0]).read_bytes()[:200])  # truncated inside the header
    with pytest.raises(DataError, match="cannot be decoded"), reraise_data_errors():
        list(train_dataset(table, sampler, image_size=16).take(2))


def test_file_and_in_memory_paths_jitter_alike(tmp_path):
    # The file path jitters image by image, the in-memory path batch by batch: same draws, same pixels.
    import tensorflow as tf

    images = np.random.default_rng(0).integers(0, 256, (8, 12, 18, 3), np.uint8)
    paths = [str(tmp_path / f"{i}.png") for i in range(8)]
    for path, img in zip(paths, images):
        tf.io.write_file(path, tf.io.encode_png(img))
    keys = [str(i // 2) for i in range(8)]
    args = dict(image_size=10, crop_scale=(1.0, 1.0), crop_ratio=(1.5, 1.5), flip=True, brightness=0.2,
                contrast=0.2, saturation=0.3, grayscale=0.3, seed=3)
    got = []
    for table in (DatasetTable.from_class_keys(paths, keys), DatasetTable.from_class_keys(paths, keys, images=images)):
        got.append(next(iter(train_dataset(table, MPerClassSampler(table.label, m=2, batch_size=8), **args))))
    np.testing.assert_allclose(got[0][0], got[1][0], atol=1e-3)
    assert np.array_equal(got[0][1], got[1][1])


def test_eval_resize_sets_the_short_side_before_the_centre_crop(tmp_path):
    import tensorflow as tf

    from tfdml.data import DatasetTable, eval_dataset

    # 40 x 40 image: a grey 20 x 20 centre in black. Resized to 80 first, the 40 px crop is all grey.
    pixels = np.zeros((40, 40, 3), np.uint8)
    pixels[10:30, 10:30] = 200
    path = tmp_path / "a.png"
    tf.io.write_file(str(path), tf.io.encode_png(pixels))
    table = DatasetTable.from_class_keys([str(path)], ["c"])
    plain = next(iter(eval_dataset(table, image_size=40, batch_size=1)))[0].numpy()[0]
    zoomed = next(iter(eval_dataset(table, image_size=40, batch_size=1, resize=80)))[0].numpy()[0]
    assert plain.shape == zoomed.shape == (40, 40, 3)
    assert plain[0, 0].max() < 1 and zoomed[1:-1, 1:-1].min() > 190


def test_eval_cache_gives_the_same_batches_without_rereading_files(tmp_path):
    import tensorflow as tf

    from tfdml.data import DatasetTable, eval_dataset

    path = tmp_path / "a.png"
    tf.io.write_file(str(path), tf.io.encode_png(np.full((8, 8, 3), 50, np.uint8)))
    ds = eval_dataset(DatasetTable.from_class_keys([str(path)], ["c"]), image_size=8, batch_size=1, cache=True)
    first = next(iter(ds))[0].numpy()
    path.unlink()  # a cached dataset no longer needs the file
    np.testing.assert_array_equal(next(iter(ds))[0].numpy(), first)
