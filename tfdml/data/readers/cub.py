"""CUB-200-2011 birds, in the archive's own layout; the DML split is classes 1-100 train, 101-200 test.

``train_test_split.txt`` is the classification split and is not used. Boxes come from
``bounding_boxes.txt`` (``x y width height``) when it is there.

Example (not run as a doctest: it needs the dataset on disk):
    >>> table = read_cub("/data/CUB_200_2011")  # doctest: +SKIP
    >>> len(table), len(table.class_names), table.class_names[0]  # doctest: +SKIP
    (11788, 200, '001.Black_footed_Albatross')
"""

from __future__ import annotations

import os

import numpy as np

from tfdml.data.readers import register_reader
from tfdml.data.readers._common import assert_counts, dataset_root, read_rows, require, split_counts, table_of_ids
from tfdml.data.table import DatasetTable
from tfdml.errors import DataError

LAYOUT = ("CUB-200-2011 layout: <root>/images.txt, image_class_labels.txt, classes.txt, bounding_boxes.txt "
          "and images/<class>/<image>.jpg, as unpacked from CUB_200_2011.tgz")
COUNTS = {"images": 11788, "classes": 200, "train images": 5864, "train classes": 100, "test images": 5924,
          "test classes": 100}


@register_reader("cub")
def read_cub(root: str | os.PathLike | None = None, *, check_counts: bool = True) -> DatasetTable:
    """Read CUB-200-2011 from ``root`` (the ``CUB_200_2011`` directory or its parent).

    Returns:
        A table with labels ``class_id - 1``, the class folder names, split ``train``/``test`` by
        class and boxes ``x1, y1, x2, y2`` in pixels.
    """
    root = dataset_root(root, "cub", "images.txt", "CUB_200_2011")
    listing = require(root / "images.txt", LAYOUT)
    images = {r[0]: r[1] for r in read_rows(listing, 2)}
    labels = {r[0]: int(r[1]) for r in read_rows(require(root / "image_class_labels.txt", LAYOUT), 2)}
    names = {int(r[0]): r[1] for r in read_rows(require(root / "classes.txt", LAYOUT), 2)}
    require(root / "images", LAYOUT)
    unlabelled = sorted(images.keys() - labels.keys(), key=int)
    if unlabelled:
        raise DataError(f"{root / 'image_class_labels.txt'} has no class for {len(unlabelled)} images of "
                        f"images.txt (e.g. image_id {unlabelled[0]}); the two files must list the same ids")
    ids = list(images)
    class_id = np.array([labels[i] for i in ids])
    bbox = np.full((len(ids), 4), np.nan, np.float32)
    if (root / "bounding_boxes.txt").is_file():
        boxes = {r[0]: [float(v) for v in r[1:5]] for r in read_rows(root / "bounding_boxes.txt", 5)}
        for row, i in enumerate(ids):
            if i in boxes:
                x, y, w, h = boxes[i]
                bbox[row] = (x, y, x + w, y + h)
    split = np.where(class_id <= 100, "train", "test")
    if check_counts:
        assert_counts(listing, split_counts(class_id, split), COUNTS)
    return table_of_ids([str(root / "images" / images[i]) for i in ids], class_id, names, split=split, bbox=bbox)

