"""Stanford Online Products: ``Ebay_train.txt`` and ``Ebay_test.txt`` give the official class-disjoint split.

Most of its 22,634 products have 2-12 images, so use a sampler ``m`` no larger than that.

Example (not run as a doctest: it needs the dataset on disk):
    >>> table = read_sop("/data/Stanford_Online_Products")  # doctest: +SKIP
    >>> table.subset("train").num_classes, table.class_names[0]  # doctest: +SKIP
    (11318, 'bicycle_final/1')
"""

from __future__ import annotations

import os

import numpy as np

from tfdml.data.readers import register_reader
from tfdml.data.readers._common import assert_counts, dataset_root, read_rows, require, split_counts, table_of_ids
from tfdml.data.table import DatasetTable
from tfdml.errors import DataError

LAYOUT = ("Stanford Online Products layout: <root>/Ebay_train.txt and <root>/Ebay_test.txt (header "
          "'image_id class_id super_class_id path'), images under <root>/<super_class>_final/")
HEADER = ["image_id", "class_id", "super_class_id", "path"]
COUNTS = {"images": 120053, "classes": 22634, "train images": 59551, "train classes": 11318,
          "test images": 60502, "test classes": 11316}


@register_reader("sop")
def read_sop(root: str | os.PathLike | None = None, *, check_counts: bool = True) -> DatasetTable:
    """Read Stanford Online Products from ``root`` (the ``Stanford_Online_Products`` directory or its parent).

    Returns:
        A table with labels ``class_id - 1``, class names ``<super-class folder>/<class_id>`` and
        split ``train``/``test`` from the two list files; no boxes.
    """
    root = dataset_root(root, "sop", "Ebay_train.txt", "Stanford_Online_Products")
    paths, class_id, split, names = [], [], [], {}
    for part in ("train", "test"):
        listing = require(root / f"Ebay_{part}.txt", LAYOUT)
        with open(listing, encoding="utf-8") as f:
            header = f.readline().split()
        if header != HEADER:
            raise DataError(f"{listing} starts with {' '.join(header)!r}; expected the header {' '.join(HEADER)!r} "
                            f"of the {LAYOUT}")
        for _, cls, _, path in (r[:4] for r in read_rows(listing, 4, skip=1)):
            paths.append(str(root / path))
            class_id.append(int(cls))
            names.setdefault(int(cls), f"{path.split('/')[0]}/{cls}")
        split += [part] * (len(paths) - len(split))
    class_id, split = np.array(class_id), np.array(split)
    if check_counts:
        assert_counts(f"{root / 'Ebay_train.txt'} with Ebay_test.txt", split_counts(class_id, split), COUNTS)
    return table_of_ids(paths, class_id, names, split=split)
