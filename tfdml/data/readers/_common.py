"""Helpers shared by the benchmark readers: locating the root, reading list files, checking counts.

Example:
    >>> assert_counts("/data/cub/images.txt", {"images": 11788}, {"images": 11788})
    >>> assert_counts("/data/cub/images.txt", {"images": 20}, {"images": 11788})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tfdml.errors.DataError: /data/cub/images.txt: found 20 images (expected 11,788); ... {check_counts: false}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from tfdml.data.table import DatasetTable
from tfdml.errors import ConfigError, DataError

SKIP_COUNTS = "reader_args: {check_counts: false}"


def dataset_root(root: str | os.PathLike | None, dataset: str, marker: str, folder: str) -> Path:
    """``root`` as a Path, or its ``folder`` child when that is where ``marker`` lies (the unpacked archive)."""
    if root is None:
        raise ConfigError(f"the {dataset} reader needs the dataset's directory: set data.root=/path/to/{folder} "
                          f"(the directory that holds {marker})")
    root = Path(root).expanduser()
    if not (root / marker).exists() and (root / folder / marker).exists():
        return root / folder
    return root


def require(path: Path, layout: str) -> Path:
    """``path`` if it exists, else a DataError naming it and the expected layout."""
    if not path.exists():
        raise DataError(f"{path} is missing; expected the {layout}")
    return path


def read_rows(path: Path, fields: int, *, skip: int = 0) -> list[list[str]]:
    """Whitespace-separated rows of ``path`` after ``skip`` lines; blank lines are ignored."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            row = line.split()
            if number <= skip or not row:
                continue
            if len(row) < fields:
                raise DataError(f"{path}, line {number}: expected {fields} fields, found {len(row)}: {line.strip()!r}")
            rows.append(row)
    return rows


def split_counts(class_id: np.ndarray, split: np.ndarray) -> dict[str, int]:
    """Images and classes in all and per split value: ``{"images": .., "classes": .., "train images": ..}``."""
    out = {"images": len(class_id), "classes": len(np.unique(class_id))}
    for s in np.unique(split).tolist():
        out[f"{s} images"] = int((split == s).sum())
        out[f"{s} classes"] = len(np.unique(class_id[split == s]))
    return out


def assert_counts(file: str | os.PathLike, found: Mapping[str, int], expected: Mapping[str, int]) -> None:
    """Raise a DataError naming ``file`` and every count in ``expected`` that ``found`` does not match."""
    wrong = [f"{found.get(what, 0):,} {what} (expected {n:,})" for what, n in expected.items()
             if found.get(what, 0) != n]
    if wrong:
        raise DataError(f"{file}: found {', '.join(wrong)}; the copy is incomplete or not the official one. "
                        f"To read it anyway, set {SKIP_COUNTS}")


def table_of_ids(path: Sequence[str], class_id: Sequence[int] | np.ndarray, names: Mapping[int, str],
                 **columns: np.ndarray) -> DatasetTable:
    """A table whose labels number the integer ``class_id``s in order and whose class names come from ``names``."""
    table = DatasetTable.from_class_keys(path, np.asarray(class_id, np.int64), **columns)
    return replace(table, class_names=tuple(names.get(int(k), k) for k in table.class_names))
