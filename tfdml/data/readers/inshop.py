"""DeepFashion In-Shop Clothes Retrieval: train items, and test items split into queries and a gallery.

``Eval/list_eval_partition.txt`` sets each image's role. Test rows get split ``test`` with
``is_query`` for query images and ``is_gallery`` for gallery images: queries are searched against
the gallery only. Train rows are both (for a val set carved from them). Boxes come from
``Anno/list_bbox_inshop.txt`` when it is there.

Example (not run as a doctest: it needs the dataset on disk):
    >>> table = read_inshop("/data/inshop")  # doctest: +SKIP
    >>> test = table.subset("test")  # doctest: +SKIP
    >>> int(test.is_query.sum()), int(test.is_gallery.sum())  # doctest: +SKIP
    (14218, 12612)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfdml.data.readers import register_reader
from tfdml.data.readers._common import assert_counts, dataset_root, read_rows, require, split_counts
from tfdml.data.table import DatasetTable
from tfdml.errors import DataError

LAYOUT = ("In-Shop layout: <root>/Eval/list_eval_partition.txt (a count line, the header "
          "'image_name item_id evaluation_status', then rows), images under <root>/img/, optionally "
          "<root>/Anno/list_bbox_inshop.txt")
HEADERS = {"Eval/list_eval_partition.txt": ["image_name", "item_id", "evaluation_status"],
           "Anno/list_bbox_inshop.txt": ["image_name", "clothes_type", "pose_type", "x_1", "y_1", "x_2", "y_2"]}
COUNTS = {"images": 52712, "classes": 7982, "train images": 25882, "train classes": 3997, "query images": 14218,
          "gallery images": 12612, "test classes": 3985}


def _read_list(root: Path, name: str) -> list[list[str]]:
    """Rows of a DeepFashion list file, checking its count line and header."""
    path = root / name
    with open(path, encoding="utf-8") as f:
        count, header = f.readline().strip(), f.readline().split()
    if header != HEADERS[name]:
        raise DataError(f"{path}, line 2 is {' '.join(header)!r}; expected the header {' '.join(HEADERS[name])!r} "
                        f"of the {LAYOUT}")
    rows = read_rows(path, len(header), skip=2)
    if not count.isdigit() or int(count) != len(rows):
        raise DataError(f"{path} announces {count!r} images on line 1 but lists {len(rows)}; the file is truncated "
                        "or edited (line 1 must be the number of rows)")
    return rows


@register_reader("inshop")
def read_inshop(root: str | os.PathLike | None = None, *, check_counts: bool = True) -> DatasetTable:
    """Read In-Shop Clothes Retrieval from ``root`` (the directory holding ``Eval/`` and ``img/``).

    Returns:
        A table with one class per item id (sorted), split ``train``/``test``, query/gallery flags
        on the test rows and boxes ``x1, y1, x2, y2`` in pixels where known.
    """
    root = dataset_root(root, "inshop", "Eval/list_eval_partition.txt", "In-shop Clothes Retrieval Benchmark")
    listing = require(root / "Eval/list_eval_partition.txt", LAYOUT)
    rows = _read_list(root, "Eval/list_eval_partition.txt")
    require(root / "img", LAYOUT)
    if not rows:
        raise DataError(f"{listing} lists no images; expected the {LAYOUT}")
    name, item, status = (np.array(column, dtype=str) for column in zip(*(r[:3] for r in rows)))
    unknown = sorted(set(status.tolist()) - {"train", "query", "gallery"})
    if unknown:
        raise DataError(f"{listing} has evaluation_status values {unknown}; expected train, query or gallery")
    bbox = np.full((len(rows), 4), np.nan, np.float32)
    if (root / "Anno/list_bbox_inshop.txt").is_file():
        boxes = {r[0]: [float(v) for v in r[3:7]] for r in _read_list(root, "Anno/list_bbox_inshop.txt")}
        for i, n in enumerate(name):
            bbox[i] = boxes.get(n, bbox[i])
    if check_counts:
        found = split_counts(item, status)
        found["test classes"] = len(np.unique(item[status != "train"]))
        assert_counts(listing, found, COUNTS)
    return DatasetTable.from_class_keys([str(root / n) for n in name], item, bbox=bbox,
                                        split=np.where(status == "train", "train", "test"),
                                        is_query=status != "gallery", is_gallery=status != "query")
