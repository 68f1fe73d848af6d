"""The one dataset table that every reader returns and every consumer reads.

A :class:`DatasetTable` holds one row per image as numpy columns. Labels are global class ids
``0..len(class_names)-1`` and keep their values through :meth:`DatasetTable.select`, so subsets
of one table can be compared by label equality (all the sampler and the evaluation need).

Example:
    >>> import numpy as np
    >>> t = DatasetTable.from_class_keys(["a.jpg", "b.jpg", "c.jpg"], ["cat", "dog", "cat"])
    >>> t.class_names, t.label.tolist(), len(t)
    (('cat', 'dog'), [0, 1, 0], 3)
    >>> t.select(t.label == 1).path.tolist()
    ['b.jpg']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from tfdml.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetTable:
    """Images of one dataset, one row each.

    Attributes:
        path: file path of each image, or a descriptive id when ``images`` holds the pixels.
        label: int64 global class id in ``0..len(class_names)-1``.
        split: ``"train"``, ``"val"``, ``"test"``, or ``""`` before splitting.
        is_query: whether the row is used as a retrieval query (evaluation).
        is_gallery: whether the row is searched by queries (evaluation).
        bbox: float32 ``[N, 4]`` boxes ``x1, y1, x2, y2`` in pixels, NaN where absent.
        class_names: name of each global class id.
        images: uint8 ``[N, H, W, C]`` pixels when the reader holds them in memory, else None.
    """

    path: np.ndarray
    label: np.ndarray
    split: np.ndarray
    is_query: np.ndarray
    is_gallery: np.ndarray
    bbox: np.ndarray
    class_names: tuple[str, ...]
    images: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Coerce once here so every consumer can rely on dtypes; read-only because the
        # dataclass is frozen and columns are shared between selections.
        coerced = {
            "path": np.asarray(self.path, dtype=str),
            "label": np.asarray(self.label, dtype=np.int64),
            "split": np.asarray(self.split, dtype="<U5"),
            "is_query": np.asarray(self.is_query, dtype=bool),
            "is_gallery": np.asarray(self.is_gallery, dtype=bool),
            "bbox": np.asarray(self.bbox, dtype=np.float32),
        }
        if self.images is not None:
            coerced["images"] = np.asarray(self.images)
        for name, value in coerced.items():
            value = value.view()
            value.flags.writeable = False
            object.__setattr__(self, name, value)
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        self._validate()

    def _validate(self) -> None:
        n = len(self.path)
        for name in ("label", "split", "is_query", "is_gallery", "bbox", "images"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise DataError(f"DatasetTable column '{name}' has {len(value)} rows but 'path' has {n}; "
                                "every column needs one entry per image")
        if self.path.ndim != 1 or self.label.ndim != 1:
            raise DataError("DatasetTable 'path' and 'label' must be 1-D arrays")
        if self.bbox.shape != (n, 4):
            raise DataError(f"DatasetTable 'bbox' has shape {self.bbox.shape}; expected ({n}, 4) "
                            "as x1, y1, x2, y2 (NaN where absent)")
        if self.images is not None and (self.images.dtype != np.uint8 or self.images.ndim != 4):
            raise DataError(f"DatasetTable 'images' is {self.images.dtype} {self.images.shape}; "
                            "expected uint8 [N, H, W, C]")
        if n and (self.label.min() < 0 or self.label.max() >= len(self.class_names)):
            raise DataError(f"DatasetTable labels span {self.label.min()}..{self.label.max()} but there are "
                            f"{len(self.class_names)} class names; labels must be in 0..{len(self.class_names) - 1}")
        bad = set(np.unique(self.split).tolist()) - {"", *SPLITS}
        if bad:
            raise DataError(f"DatasetTable has unknown split values {sorted(bad)}; expected one of {SPLITS} or ''")

    @classmethod
    def from_class_keys(
        cls,
        path: Sequence[str] | np.ndarray,
        class_key: Sequence | np.ndarray,
        *,
        split: Sequence[str] | np.ndarray | None = None,
        is_query: Sequence[bool] | np.ndarray | None = None,
        is_gallery: Sequence[bool] | np.ndarray | None = None,
        bbox: np.ndarray | None = None,
        images: np.ndarray | None = None,
    ) -> DatasetTable:
        """Build a table from per-row class keys (any sortable ids), numbering classes in sorted key order.

        Omitted columns default to: split ``""``, every row both query and gallery (the usual
        protocol of searching each test image against all others), bbox NaN.
        """
        keys, label = np.unique(np.asarray(class_key), return_inverse=True)
        n = len(label)
        return cls(
            path=np.asarray(path),
            label=label,
            split=np.full(n, "") if split is None else split,
            is_query=np.ones(n, bool) if is_query is None else is_query,
            is_gallery=np.ones(n, bool) if is_gallery is None else is_gallery,
            bbox=np.full((n, 4), np.nan, np.float32) if bbox is None else bbox,
            class_names=tuple(str(k) for k in keys),
            images=images,
        )

    def __len__(self) -> int:
        return len(self.path)

    @property
    def num_classes(self) -> int:
        """Number of distinct classes present in this table (not ``len(class_names)``)."""
        return len(np.unique(self.label))

    def class_counts(self) -> np.ndarray:
        """Images per global class id, length ``len(class_names)`` (zero for absent classes)."""
        return np.bincount(self.label, minlength=len(self.class_names))

    def dense_labels(self) -> np.ndarray:
        """Labels renumbered ``0..num_classes-1`` in global-id order, for losses with one proxy per class."""
        return np.unique(self.label, return_inverse=True)[1].astype(np.int64)

    def select(self, rows: np.ndarray | Sequence[int] | Sequence[bool]) -> DatasetTable:
        """Rows given by a boolean mask of length ``len(self)`` or by integer indices; labels stay global."""
        rows = np.asarray(rows)
        if rows.dtype == bool and rows.shape != (len(self),):
            raise DataError(f"boolean mask has shape {rows.shape}; expected ({len(self)},)")
        if rows.dtype != bool:
            rows = rows.astype(np.int64, copy=False)
        columns = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v[rows] for k, v in columns.items() if isinstance(v, np.ndarray)})

    def subset(self, split: str) -> DatasetTable:
        """Rows of one split (``"train"``, ``"val"`` or ``"test"``); empty if that split has no rows."""
        if split not in SPLITS:
            raise DataError(f"unknown split '{split}'; expected one of {SPLITS}")
        return self.select(self.split == split)
