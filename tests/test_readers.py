"""Benchmark and generic readers on miniature trees in the official layouts (see tests/miniatures.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

import miniatures as mini_
from tfdml.data import (DatasetTable, MPerClassSampler, eval_dataset, read_dataset, split_classes, train_dataset,
                        validate_images)
from tfdml.errors import ConfigError, DataError

WRITERS = {"cub": mini_.write_cub, "cars": mini_.write_cars, "sop": mini_.write_sop, "inshop": mini_.write_inshop}


def read(name: str, root: Path, **kwargs) -> DatasetTable:
    return read_dataset(name, root=root, check_counts=False, **kwargs)


def _check_common(table: DatasetTable, mini: mini_.Mini) -> None:
    assert all(os.path.isfile(p) for p in table.path) and set(table.path) == set(mini.colour)
    assert np.array_equal(np.unique(table.label), np.arange(len(table.class_names)))
    # One class per patch colour: labels and colours agree row by row.
    colour_of = {}
    for label, path in zip(table.label, table.path):
        assert colour_of.setdefault(int(label), mini.colour[path]) == mini.colour[path]
    train, test = (set(table.subset(s).label.tolist()) for s in ("train", "test"))
    assert train and test and not train & test and len(table.subset("train")) + len(table.subset("test")) == len(table)


def _boxes_match(table: DatasetTable, mini: mini_.Mini) -> bool:
    return np.array_equal(table.bbox, np.array([mini.box[p] for p in table.path], np.float32))


# --- the four benchmarks -----------------------------------------------------------------------

def test_cub(tmp_path):
    mini = mini_.write_cub(tmp_path)
    t = read("cub", tmp_path)  # the parent of CUB_200_2011/ works too
    _check_common(t, mini)
    assert t.class_names == ("001.Black_footed_Albatross", "002.Laysan_Albatross", "100.Brown_Pelican",
                             "101.White_Pelican", "102.Western_Wood_Pewee", "200.Common_Yellowthroat")
    assert t.class_counts().tolist() == [3] * 6 and _boxes_match(t, mini)
    assert [t.class_names[i][:3] for i in np.unique(t.subset("train").label)] == ["001", "002", "100"]
    assert t.is_query.all() and t.is_gallery.all()


@pytest.mark.parametrize("layout,in_devkit", [("A", True), ("B", True), ("B", False)])
def test_cars_layouts(tmp_path, layout, in_devkit):
    mini = mini_.write_cars(tmp_path, layout, in_devkit)
    t = read("cars", mini.root)
    _check_common(t, mini)
    assert _boxes_match(t, mini)  # MATLAB's 1-based inclusive boxes became 0-based edges
    assert t.class_names[0] == "AM General Hummer SUV 2000" and t.class_names[3] == "Make99 Model99 1999"
    assert [t.class_names[i] for i in np.unique(t.subset("test").label)][0].startswith("Make99")
    assert len(t) == 18 and t.class_counts().tolist() == [3] * 6
    if layout == "B":
        a = read("cars", mini_.write_cars(tmp_path / "a", "A").root)
        assert a.class_names == t.class_names and sorted(a.bbox.tolist()) == sorted(t.bbox.tolist())


def test_sop(tmp_path):
    mini = mini_.write_sop(tmp_path)
    t = read("sop", mini.root)
    _check_common(t, mini)
    assert t.class_names[:2] == ("bicycle_final/1", "cabinet_final/2") and len(t.class_names) == 8
    assert t.subset("train").num_classes == 4 and np.isnan(t.bbox).all()
    assert t.class_counts().tolist() == [3, 2, 3, 2, 3, 2, 3, 2]


def test_inshop_query_and_gallery(tmp_path):
    mini = mini_.write_inshop(tmp_path)
    t = read("inshop", mini.root)
    _check_common(t, mini)
    assert t.class_names[0] == "id_00000001" and _boxes_match(t, mini)
    train, test = t.subset("train"), t.subset("test")
    assert len(train) == 9 and train.is_query.all() and train.is_gallery.all()
    assert test.is_query.sum() == 6 and test.is_gallery.sum() == 6 and not (test.is_query & test.is_gallery).any()
    assert set(test.label[test.is_query].tolist()) == set(test.label[test.is_gallery].tolist())
    unboxed = read("inshop", mini_.write_inshop(tmp_path / "nobox", with_boxes=False).root)
    assert np.isnan(unboxed.bbox).all()


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_official_split_is_kept_and_val_carved_from_train(tmp_path, name):
    t = read(name, WRITERS[name](tmp_path).root)
    s = split_classes(t, val_fraction=0.34, test_fraction=0.9, seed=1, keep_split=True)
    assert np.array_equal(s.subset("test").path, t.subset("test").path)  # published test set untouched
    classes = {k: set(s.subset(k).label.tolist()) for k in ("train", "val", "test")}
    assert len(classes["val"]) == 1 and classes["train"] | classes["val"] == set(t.subset("train").label.tolist())
    assert not (classes["train"] & classes["val"] or classes["test"] & (classes["train"] | classes["val"]))
    # Without keep_split the classes are drawn by seed, as before.
    assert split_classes(t, test_fraction=0.5, val_fraction=0.0, seed=1).subset("test").num_classes * 2 == len(
        t.class_names)


def test_keep_split_rejects_mixed_or_overlapping_splits():
    t = DatasetTable.from_class_keys(list("abcdef"), [0, 0, 1, 1, 2, 2], split=["train", "train", "test", "", "", ""])
    with pytest.raises(DataError, match="3 of 6 rows have no split"):
        split_classes(t, keep_split=True)
    t = DatasetTable.from_class_keys(list("abcd"), [0, 0, 1, 1], split=["train", "test", "test", "test"])
    with pytest.raises(DataError, match="not class-disjoint.*'0'"):
        split_classes(t, keep_split=True)
    unsplit = DatasetTable.from_class_keys(list("abcd"), [0, 0, 1, 1])
    drawn = split_classes(unsplit, keep_split=True, val_fraction=0)  # no split to keep: drawn by seed
    assert sorted(drawn.split.tolist()) == ["test"] * 2 + ["train"] * 2


# --- errors ---------------------------------------------------------------------------------------

COUNT_FILES = {"cub": ("images.txt", "11,788"), "cars": ("cars_annos.mat", "16,185"),
               "sop": ("Ebay_train.txt", "120,053"), "inshop": ("list_eval_partition.txt", "52,712")}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_count_check_names_file_found_expected_and_the_way_out(tmp_path, name):
    mini = WRITERS[name](tmp_path)
    n = len(mini.colour)
    file, expected = COUNT_FILES[name]
    with pytest.raises(DataError) as err:
        read_dataset(name, root=mini.root)
    message = str(err.value)
    assert file in message and f"found {n} images (expected {expected})" in message
    assert "reader_args: {check_counts: false}" in message


@pytest.mark.parametrize("name,remove,expect", [
    ("cub", "image_class_labels.txt", "CUB-200-2011 layout"),
    ("cub", "images", "CUB-200-2011 layout"),
    ("cars", "car_ims", "Cars196 layout A"),
    ("cars", "cars_annos.mat", "neither Cars196 layout"),
    ("sop", "Ebay_test.txt", "Stanford Online Products layout"),
    ("inshop", "Eval/list_eval_partition.txt", "In-Shop layout"),
])
def test_missing_files_name_the_path_and_the_layout(tmp_path, name, remove, expect):
    mini = WRITERS[name](tmp_path)
    target = mini.root / remove
    if target.is_dir():
        for p in sorted(target.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(DataError, match=re.escape(expect)) as err:
        read(name, mini.root)
    assert str(target) in str(err.value)


def test_cars_devkit_without_test_labels(tmp_path):
    mini = mini_.write_cars(tmp_path, "B")
    os.remove(mini.root / "devkit" / "cars_test_annos_withlabels.mat")
    with pytest.raises(DataError, match=r"cars_test_annos_withlabels\.mat is missing; expected the Cars196 devkit"):
        read("cars", mini.root)


def test_malformed_lists(tmp_path):
    sop = mini_.write_sop(tmp_path)
    lines = (sop.root / "Ebay_test.txt").read_text().splitlines()
    (sop.root / "Ebay_test.txt").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(DataError, match="Ebay_test.txt starts with .*expected the header 'image_id class_id"):
        read("sop", sop.root)
    shop = mini_.write_inshop(tmp_path)
    listing = shop.root / "Eval/list_eval_partition.txt"
    listing.write_text("\n".join(listing.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(DataError, match="announces '21' images on line 1 but lists 19"):
        read("inshop", shop.root)


@pytest.mark.parametrize("name", ["cub", "cars", "sop", "inshop", "folder", "csv"])
def test_root_is_required(name):
    with pytest.raises(ConfigError, match=r"set data\.root=/path/to/"):
        read_dataset(name)


def test_corrupt_image_is_named(tmp_path):
    t = read("cub", mini_.write_cub(tmp_path).root)
    Path(t.path[4]).write_bytes(b"<html>403 Forbidden</html>")
    with pytest.raises(DataError, match=re.escape(t.path[4]) + r" \(not a JPEG"):
        validate_images(t)
    Path(t.path[4]).write_bytes(Path(t.path[5]).read_bytes()[:200])  # a truncated JPEG
    with pytest.raises(DataError, match=re.escape(t.path[4]) + r" \(cannot be decoded"):
        validate_images(t, decode=True)


# --- bounding-box crops through the pipeline ------------------------------------------------------

def _mean_colours(x: np.ndarray) -> np.ndarray:
    return x[:, 3:-3, 3:-3].mean(axis=(1, 2))  # away from the JPEG-blurred edges


def test_bbox_crop_yields_the_patch_colour_from_files(tmp_path):
    mini = mini_.write_cub(tmp_path)
    t = read("cub", mini.root)
    want = np.array([mini.colour[p] for p in t.path], np.float32)
    x = np.concatenate([b[0] for b in eval_dataset(t, image_size=16, batch_size=8, bbox_crop=True)])
    assert np.abs(_mean_colours(x) - want).max() < 12
    whole = np.concatenate([b[0] for b in eval_dataset(t, image_size=16, batch_size=8)])
    assert np.abs(_mean_colours(whole) - want).max(axis=1).min() > 40  # grey shows without the crop
    sampler = MPerClassSampler(t.label, m=3, batch_size=9, seed=0)
    ds = train_dataset(t, sampler, image_size=12, crop_scale=(0.3, 1.0), brightness=0.0, contrast=0.0,
                       bbox_crop=True)
    x, y = next(iter(ds))
    colour_of = dict(zip(t.dense_labels().tolist(), want))
    assert np.abs(_mean_colours(x.numpy()) - np.array([colour_of[i] for i in y.numpy()])).max() < 12


def test_bbox_crop_in_memory_and_rows_without_box(make_table):
    rng = np.random.default_rng(0)
    n, h, w = 6, 30, 40
    images = np.full((n, h, w, 3), 128, np.uint8)
    bbox = np.full((n, 4), np.nan, np.float32)
    colours = np.array(mini_.COLOURS, np.float32)
    for i in range(n - 1):  # the last image has no box
        x1, y1 = rng.integers(0, 20), rng.integers(0, 15)
        bbox[i] = (x1, y1, x1 + 12 + i, y1 + 10)
        images[i, y1:y1 + 10, x1:x1 + 12 + i] = colours[i]
    t = DatasetTable.from_class_keys([f"m/{i}" for i in range(n)], np.arange(n) // 2, images=images, bbox=bbox)
    x = next(iter(eval_dataset(t, image_size=8, batch_size=n, bbox_crop=True)))[0].numpy()
    assert np.abs(x[:-1].mean(axis=(1, 2)) - colours[:-1]).max() < 1e-3 and np.allclose(x[-1], 128.0)
    ds = train_dataset(t, MPerClassSampler(t.label, m=2, batch_size=6), image_size=8, brightness=0.0,
                       contrast=0.0, bbox_crop=True)
    x, _ = next(iter(ds))
    rows = MPerClassSampler(t.label, m=2, batch_size=6).epoch_batches(0)[0]
    for img, row in zip(x.numpy(), rows):
        assert np.allclose(img, colours[row] if row < n - 1 else 128.0, atol=1e-3)


# --- generic readers --------------------------------------------------------------------------------

def _write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_folder_and_csv_give_the_same_table(tmp_path):
    mini = mini_.write_folder(tmp_path)
    folder = read_dataset("folder", root=mini.root)
    assert folder.class_names == mini_.FOLDER_CLASSES and len(folder) == 7 and set(folder.path) == set(mini.colour)
    assert folder.class_counts().tolist() == [3, 2, 2] and (folder.split == "").all()
    rows = [f"{Path(p).relative_to(mini.root)},{folder.class_names[y]}" for p, y in zip(folder.path, folder.label)]
    listed = read_dataset("csv", root=_write_csv(mini.root / "list.csv", "path,label", rows))
    for column in ("path", "label", "split", "is_query", "is_gallery"):
        assert np.array_equal(getattr(listed, column), getattr(folder, column)), column
    assert listed.class_names == folder.class_names
    assert read_dataset("csv", root=mini.root).path.tolist() == listed.path.tolist()  # the one .csv in root


def test_csv_optional_columns(tmp_path):
    mini = mini_.write_folder(tmp_path)
    a, b = (str(p) for p in sorted(mini.colour)[:2])
    rows = [f"{a},10,test,true,no,1,2,30,40", f"{Path(b).relative_to(mini.root)},9,train,0,1,,,,"]
    t = read_dataset("csv", root=_write_csv(mini.root / "l.csv", " path, label,split,is_query,is_gallery,x1,y1,x2,y2",
                                            rows))
    assert t.class_names == ("9", "10") and t.label.tolist() == [1, 0]  # integer labels sort as numbers
    assert t.split.tolist() == ["test", "train"] and t.is_query.tolist() == [True, False]
    assert t.is_gallery.tolist() == [False, True] and t.bbox[0].tolist() == [1, 2, 30, 40] and np.isnan(t.bbox[1]).all()


def test_generic_reader_errors(tmp_path):
    mini = mini_.write_folder(tmp_path)
    (mini.root / "clogs").mkdir()
    (mini.root / "clogs" / "readme.txt").write_text("todo")
    with pytest.raises(DataError, match=r"class directory .*clogs has no images \(1 \.txt\); expected files ending "
                                        r"in \.jpg, \.jpeg, \.png"):
        read_dataset("folder", root=mini.root)
    rows = ["boots/a.jpg,boots", "boots/gone.jpg,boots", "sandals/a.jpg,sandals"]
    with pytest.raises(DataError, match=r"lists 1 files that do not exist \(line 3: .*boots/gone\.jpg\); paths are "
                                        r"relative to"):
        read_dataset("csv", root=_write_csv(tmp_path / "shoes" / "a.csv", "path,label", rows))
    with pytest.raises(DataError, match=r"no 'label' column: its header has columns \['path', 'class'\]; "
                                        r"expected path,label"):
        read_dataset("csv", root=_write_csv(tmp_path / "b.csv", "path,class", ["shoes/boots/a.jpg,boots"]))
    (mini.root / "c.csv").write_text("path,label\n")
    with pytest.raises(DataError, match=r"holds 2 \.csv files \(a\.csv, c\.csv\); set data\.root to the CSV file"):
        read_dataset("csv", root=mini.root)
    with pytest.raises(DataError, match="c.csv lists no images"):
        read_dataset("csv", root=mini.root / "c.csv")


def test_bad_images_fail_by_name_or_are_skipped_with_a_count(tmp_path):
    from tfdml.config import load_config
    from tfdml.errors import DataError
    from tfdml.training.builders import build_data

    root = Path(__file__).resolve().parents[1]
    mini = mini_.write_folder(tmp_path)
    victim = sorted(mini.colour)[0]
    Path(victim).write_bytes(b"not an image at all")
    overrides = ["data.dataset=folder", f"data.root={mini.root}", "data.reader_args={}", "data.test_fraction=0.34", "data.val_fraction=0.0",
                 "sampler.batch_size=4", "sampler.m=2"]
    config = load_config(root / "yaml_configs" / "emoji.yaml", overrides)
    with pytest.raises(DataError, match=f"1 of .* cannot be read: {victim} \\(not a JPEG.*data.skip_bad_images=true"):
        build_data(config)
    messages = []
    data = build_data(load_config(root / "yaml_configs" / "emoji.yaml", [*overrides, "data.skip_bad_images=true"]),
                      messages.append)
    assert victim not in data.table.path and len(data.table) == len(mini.colour) - 1
    assert messages == [f"skipping 1 of {len(mini.colour)} images that cannot be read (data.skip_bad_images): "
                        f"{victim} (not a JPEG, PNG, GIF or BMP file)"]
