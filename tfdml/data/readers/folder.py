"""Your own images: ``folder`` reads ``root/<class>/<image>``, ``csv`` reads a list with a header.

``folder``: each directory under ``root`` is a class; its images (``.jpg``, ``.jpeg``, ``.png``,
``.gif``, ``.bmp``, at any depth below it) are that class's. ``csv``: columns
``path,label[,split][,is_query,is_gallery][,x1,y1,x2,y2]``; paths are relative to the CSV's
directory unless absolute. Without a split the classes are split by seed (``data.split_seed``).

Example (not run as a doctest: it needs a folder of images):
    >>> table = read_folder("/data/my_products")  # doctest: +SKIP
    >>> table = read_csv("/data/my_products/list.csv")  # doctest: +SKIP
    >>> table.class_names[:2], table.split[0]  # doctest: +SKIP
    (('boots', 'sandals'), '')
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

from tfdml.data.readers import register_reader
from tfdml.data.table import SPLITS, DatasetTable
from tfdml.errors import ConfigError, DataError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")  # what the pipeline decodes
COLUMNS = "path,label[,split][,is_query,is_gallery][,x1,y1,x2,y2]"
_BOOL = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _need_root(root: str | os.PathLike | None, reader: str, what: str) -> Path:
    if root is None:
        raise ConfigError(f"the {reader} reader needs data.root: set data.root=/path/to/{what}")
    return Path(root).expanduser()


@register_reader("folder")
def read_folder(root: str | os.PathLike | None = None) -> DatasetTable:
    """Read ``root/<class>/<image>``: one class per directory, named after it; hidden entries are skipped."""
    root = _need_root(root, "folder", "images (one sub-directory per class)")
    if not root.is_dir():
        raise DataError(f"{root} is not a directory; expected root/<class>/<image> with one directory per class")
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class directories; expected root/<class>/<image>, e.g. {root / 'cat/1.jpg'}")
    paths, keys = [], []
    for folder in classes:
        files = sorted(p for p in folder.rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        images = [p for p in files if p.suffix.lower() in EXTENSIONS]
        if not images:
            found = ", ".join(f"{n} {s or 'no extension'}" for s, n in Counter(p.suffix for p in files).items())
            raise DataError(f"class directory {folder} has no images ({found or 'it is empty'}); expected files "
                            f"ending in {', '.join(EXTENSIONS)} (any case); remove the directory or add images")
        paths += [str(p) for p in images]
        keys += [folder.name] * len(images)
    return DatasetTable.from_class_keys(paths, keys)


def _flag(value: str, where: str) -> bool:
    try:
        return _BOOL[value.strip().lower()]
    except KeyError:
        raise DataError(f"{where}: {value!r} is not a boolean; use 1/0, true/false or yes/no") from None


@register_reader("csv")
def read_csv(root: str | os.PathLike | None = None) -> DatasetTable:
    """Read a CSV with header ``path,label[,split][,is_query,is_gallery][,x1,y1,x2,y2]``.

    ``root`` is the CSV file, or a directory holding exactly one ``.csv``. Integer labels are
    numbered in numeric order, other labels in sorted order; every listed file must exist.
    """
    root = _need_root(root, "csv", "list.csv (header path,label[,split])")
    if root.is_dir():
        found = sorted(root.glob("*.csv"))
        if len(found) != 1:
            raise DataError(f"{root} holds {len(found)} .csv files ({', '.join(p.name for p in found) or 'none'}); "
                            "set data.root to the CSV file itself")
        root = found[0]
    if not root.is_file():
        raise DataError(f"{root} does not exist; expected a CSV file with header {COLUMNS}")
    with open(root, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
        reader = csv.DictReader(f, skipinitialspace=True)
        header = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = header
        rows = list(reader)
    missing = [c for c in ("path", "label") if c not in header]
    if missing:
        raise DataError(f"{root} has no {' or '.join(repr(c) for c in missing)} column: its header has columns "
                        f"{header}; expected {COLUMNS}")
    if not rows:
        raise DataError(f"{root} lists no images; expected a header {COLUMNS} followed by one row per image")
    blank = [i + 2 for i, r in enumerate(rows) if not (r["path"] or "").strip() or not (r["label"] or "").strip()]
    if blank:
        raise DataError(f"{root}, line {blank[0]}: the path or label is empty ({len(blank)} such rows); every row "
                        f"needs both, as in the header {COLUMNS}")
    base = root.parent
    paths = [str(base / r["path"].strip()) for r in rows]  # an absolute path replaces the base
    absent = [f"line {i + 2}: {p}" for i, p in enumerate(paths) if not os.path.isfile(p)]
    if absent:
        raise DataError(f"{root} lists {len(absent)} files that do not exist ({'; '.join(absent[:5])}"
                        f"{'; ...' if len(absent) > 5 else ''}); paths are relative to {base} unless absolute")
    labels = [r["label"].strip() for r in rows]
    keys = np.array([int(x) for x in labels]) if all(re.fullmatch(r"-?\d+", x) for x in labels) else labels
    columns: dict[str, np.ndarray] = {}
    if "split" in header:
        split = np.array([(r["split"] or "").strip().lower() for r in rows])
        bad = sorted(set(split.tolist()) - {"", *SPLITS})
        if bad:
            raise DataError(f"{root}: split values {bad} are not one of {', '.join(SPLITS)} (or empty)")
        columns["split"] = split
    for flag in ("is_query", "is_gallery"):
        if flag in header:
            columns[flag] = np.array([_flag(r[flag] or "", f"{root}, line {i + 2}, {flag}")
                                      for i, r in enumerate(rows)])
    if {"x1", "y1", "x2", "y2"} <= set(header):
        try:
            columns["bbox"] = np.array([[float(r[c] or "nan") for c in ("x1", "y1", "x2", "y2")] for r in rows])
        except ValueError as err:
            raise DataError(f"{root}: a box column x1,y1,x2,y2 holds a non-number ({err}); leave all four empty "
                            "for a row without a box") from None
    return DatasetTable.from_class_keys(paths, keys, **columns)
