"""Cars196 (Stanford Cars) in either published layout; the DML split is classes 1-98 train, 99-196 test.

Layout A (used by DML papers): ``car_ims/`` and ``cars_annos.mat``. Layout B (the devkit):
``cars_train/``, ``cars_test/``, ``devkit/cars_train_annos.mat``, ``cars_test_annos_withlabels.mat``
(in ``devkit/`` or the root) and ``devkit/cars_meta.mat``. The layout is detected; the
classification train/test flag is ignored, since DML splits by class.

Example (not run as a doctest: it needs the dataset on disk):
    >>> table = read_cars("/data/cars196")  # doctest: +SKIP
    >>> len(table), table.class_names[0]  # doctest: +SKIP
    (16185, 'AM General Hummer SUV 2000')
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io

from tfdml.data.readers import register_reader
from tfdml.data.readers._common import assert_counts, dataset_root, require, split_counts, table_of_ids
from tfdml.data.table import DatasetTable
from tfdml.errors import DataError

LAYOUT_A = "Cars196 layout A: <root>/cars_annos.mat and <root>/car_ims/000001.jpg ..."
LAYOUT_B = ("Cars196 devkit layout B: <root>/cars_train/, <root>/cars_test/, <root>/devkit/cars_train_annos.mat, "
            "<root>/devkit/cars_test_annos_withlabels.mat (or at the root) and <root>/devkit/cars_meta.mat")
COUNTS = {"images": 16185, "classes": 196, "train images": 8054, "train classes": 98, "test images": 8131,
          "test classes": 98}
_BOX = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")


def _load(path: Path, layout: str, **wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The variables named in ``wanted`` of a .mat file, each checked to have the struct fields listed."""
    try:
        mat = scipy.io.loadmat(require(path, layout), squeeze_me=True)
    except (ValueError, TypeError, OSError) as err:
        raise DataError(f"{path} cannot be read as a MATLAB file ({err}); expected the {layout}") from None
    for key, fields in wanted.items():
        missing = [f for f in fields if f not in (mat[key].dtype.names or ())] if key in mat else []
        if key not in mat or missing:
            raise DataError(f"{path} has no variable '{key}'" + (f" with fields {missing}" if missing else "")
                            + f"; expected the {layout}")
    return {key: np.atleast_1d(mat[key]) for key in wanted}


def _rows(ann: np.ndarray, folder: Path, path_field: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    paths = [str(folder / str(p)) for p in ann[path_field]]
    # MATLAB boxes are 1-based and inclusive; the table's are 0-based pixel edges.
    box = np.stack([ann[f].astype(np.float32) for f in _BOX], axis=1) - np.float32([1, 1, 0, 0])
    return paths, ann["class"].astype(np.int64), box


@register_reader("cars")
def read_cars(root: str | os.PathLike | None = None, *, check_counts: bool = True) -> DatasetTable:
    """Read Cars196 from ``root`` in layout A or B (detected).

    Returns:
        A table with labels ``class - 1``, the make/model class names, split ``train``/``test`` by
        class and boxes ``x1, y1, x2, y2`` in pixels.
    """
    root = dataset_root(root, "cars", "cars_annos.mat", "cars196")
    annos = (*_BOX, "class")
    if (root / "cars_annos.mat").is_file():
        source = str(root / "cars_annos.mat")
        mat = _load(root / "cars_annos.mat", LAYOUT_A, annotations=(*annos, "relative_im_path"), class_names=())
        names = mat["class_names"]
        require(root / "car_ims", LAYOUT_A)
        paths, class_id, bbox = _rows(mat["annotations"], root, "relative_im_path")
    elif (root / "devkit").is_dir() or (root / "cars_train").is_dir():
        train_file = root / "devkit" / "cars_train_annos.mat"
        test_file = root / "devkit" / "cars_test_annos_withlabels.mat"
        if not test_file.is_file() and (root / test_file.name).is_file():
            test_file = root / test_file.name
        source = f"{train_file} and {test_file}"
        parts = [_rows(_load(f, LAYOUT_B, annotations=(*annos, "fname"))["annotations"],
                       require(root / folder, LAYOUT_B), "fname")
                 for f, folder in ((train_file, "cars_train"), (test_file, "cars_test"))]
        names = _load(root / "devkit" / "cars_meta.mat", LAYOUT_B, class_names=())["class_names"]
        paths = parts[0][0] + parts[1][0]
        class_id, bbox = (np.concatenate([p[k] for p in parts]) for k in (1, 2))
    else:
        raise DataError(f"{root} holds neither Cars196 layout: expected {root / 'cars_annos.mat'} ({LAYOUT_A}) or "
                        f"{root / 'devkit' / 'cars_train_annos.mat'} ({LAYOUT_B})")
    split = np.where(class_id <= 98, "train", "test")
    if check_counts:
        assert_counts(source, split_counts(class_id, split), COUNTS)
    return table_of_ids(paths, class_id, {i + 1: str(n) for i, n in enumerate(names)}, split=split, bbox=bbox)
