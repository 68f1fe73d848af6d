"""Turn what a user has (a table, a folder, image arrays, file paths) into a `DatasetTable` to embed.

Example:
    >>> import numpy as np
    >>> table, labelled = as_table(np.zeros((2, 8, 8, 4), np.uint8), labels=["cat", "dog"])
    >>> table.class_names, labelled, table.path.tolist()
    (('cat', 'dog'), True, ['image 0', 'image 1'])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from tfdml.data.table import DatasetTable
from tfdml.errors import DataError

Images = Union[DatasetTable, str, Path, np.ndarray, Sequence[Union[str, Path]]]
ARRAY_HINT = ("image arrays are [N, H, W, C] (or one [H, W, C]) with C = 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA), "
              "uint8 or float pixel values 0-255; transparent pixels are composited on white as in training")


def as_pixels(images: Any) -> np.ndarray:
    """uint8 `[N, H, W, C]` from image arrays (uint8, or float 0-255); a DataError says what is expected."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] not in (1, 2, 3, 4) or 0 in x.shape:
        raise DataError(f"got an array of shape {x.shape}; {ARRAY_HINT}")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise DataError(f"got {x.dtype} pixels with non-finite values; {ARRAY_HINT}")
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def as_table(images: Images, labels: Sequence[Any] | None = None) -> tuple[DatasetTable, bool]:
    """A table of `images` and whether it is labelled (labels given, a labelled table, or a `root/<class>/` folder).

    `images` is a DatasetTable, a folder (`root/<class>/<image>` or flat), one path, a list of image
    paths, or an image array (see `ARRAY_HINT`). `labels` (any hashable class keys, one per image)
    label paths and arrays; their class names are `str(key)`.
    """
    from tfdml.export.retrieval import read_image_folder

    if isinstance(images, DatasetTable):
        if labels is not None:
            raise DataError("a DatasetTable carries its own labels; do not pass labels with it")
        return images, True
    if isinstance(images, (str, Path)) and Path(images).expanduser().is_dir():
        if labels is not None:
            raise DataError(f"{images} is a folder: its labels are its sub-folder names; do not pass labels")
        return read_image_folder(images)
    if isinstance(images, (str, Path)):
        images = [images]
    if isinstance(images, np.ndarray) and images.dtype.kind not in "US":
        pixels = as_pixels(images)
        names = [f"image {i}" for i in range(len(pixels))]
        return _labelled(names, labels, pixels)
    paths = [str(Path(p).expanduser()) for p in images]
    if not paths:
        raise DataError("no images given")
    return _labelled(paths, labels, None)


def _labelled(paths: list[str], labels: Sequence[Any] | None, pixels: np.ndarray | None) -> tuple[DatasetTable, bool]:
    if labels is not None and len(labels) != len(paths):
        raise DataError(f"{len(labels)} labels for {len(paths)} images; give one label per image")
    keys = [str(k) for k in labels] if labels is not None else [""] * len(paths)
    return DatasetTable.from_class_keys(paths, keys, images=pixels), labels is not None


def class_name_array(table: DatasetTable, labelled: bool) -> np.ndarray:
    """Each row's class name (object array); None where unlabelled."""
    if not labelled:
        return np.full(len(table), None, object)
    return np.array([table.class_names[y] for y in table.label.tolist()], dtype=object)
