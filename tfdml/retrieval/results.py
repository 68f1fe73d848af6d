"""`SearchResults`: each query's k best gallery matches, to print, tabulate, draw and save.

Example (not run as a doctest: it needs a retriever over a trained model):
    >>> results = retriever.search(["query.png"], k=3)  # doctest: +SKIP
    >>> print(results)  # doctest: +SKIP
    query 0: query.png (label: unknown)
        1  0.9731  gallery/cats/1.png  cats
    >>> results.to_records()[0]["score"], results.ids[0, 0]  # doctest: +SKIP
    >>> results.draw("matches.png")  # doctest: +SKIP
    >>> SearchResults.load(results.save("results.npz"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfdml.data.table import DatasetTable
from tfdml.errors import ArtifactError

FORMAT = 1


@dataclass
class SearchResults:
    """Per query, the `k` best gallery rows, best first.

    Attributes:
        ids: int64 `[Q, k]` gallery row ids.
        scores: float32 `[Q, k]` cosine similarities.
        paths: `[Q, k]` gallery paths (file paths, or ids such as `image 3` for arrays).
        labels: `[Q, k]` gallery class names; None where the gallery is unlabelled.
        query_paths: each query's path (or `image i`).
        query_labels: each query's class name, None where unknown.
        threshold: set by `Retriever.match`: a match needs `score >= threshold`.
    """

    ids: np.ndarray
    scores: np.ndarray
    paths: np.ndarray
    labels: np.ndarray
    query_paths: list[str]
    query_labels: list[str | None]
    threshold: float | None = None
    query_table: DatasetTable | None = field(default=None, repr=False)  # for pictures; not saved
    gallery_table: DatasetTable | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.query_paths)

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])

    @property
    def matched(self) -> np.ndarray:
        """bool `[Q]`: the best match clears the threshold (`Retriever.match`); all True without a threshold."""
        if self.threshold is None:
            return np.ones(len(self), bool)
        return self.scores[:, 0] >= self.threshold

    @property
    def predicted_labels(self) -> list[str | None]:
        """The best match's class for matched queries, None for the others."""
        return [self.labels[q, 0] if ok else None for q, ok in enumerate(self.matched.tolist())]

    def relevance(self) -> np.ndarray:
        """`[Q, k]` of "match" (same class as the query), "mismatch", or "unknown" (a label is missing)."""
        out = np.full(self.ids.shape, "unknown", object)
        for q, label in enumerate(self.query_labels):
            if label is not None:
                for r, name in enumerate(self.labels[q].tolist()):
                    if name is not None:
                        out[q, r] = "match" if name == label else "mismatch"
        return out

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per (query, rank): `query`, `query_path`, `query_label`, `rank` (1-based), `id`, `score`,
        `path`, `label`, `relevance` (and `matched` after `match`)."""
        relevance = self.relevance()
        records = []
        for q in range(len(self)):
            for r in range(self.k):
                row = {"query": q, "query_path": self.query_paths[q], "query_label": self.query_labels[q],
                       "rank": r + 1, "id": int(self.ids[q, r]), "score": float(self.scores[q, r]),
                       "path": str(self.paths[q, r]), "label": self.labels[q, r], "relevance": relevance[q, r]}
                if self.threshold is not None:
                    row["matched"] = bool(self.scores[q, r] >= self.threshold)
                records.append(row)
        return records

    def to_pandas(self) -> Any:
        """The records as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("SearchResults.to_pandas needs pandas (pip install pandas); "
                              "to_records() gives the same rows as dicts") from None
        return pd.DataFrame.from_records(self.to_records())

    def __str__(self) -> str:
        lines = []
        for q in range(len(self)):
            label = self.query_labels[q]
            extra = "" if self.threshold is None else (" matched" if self.matched[q] else " no match")
            lines.append(f"query {q}: {self.query_paths[q]} (label: {label if label is not None else 'unknown'})"
                         f"{extra}")
            for r in range(self.k):
                name = self.labels[q, r]
                lines.append(f"  {r + 1:>3}  {self.scores[q, r]:.4f}  {self.paths[q, r]}  "
                             f"{name if name is not None else '-'}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython shows the table, not the arrays
        printer.text(str(self))

    # ------------------------------------------------------------------ pictures

    def draw(self, path: str | Path | None = None, *, tile: int = 64, max_queries: int | None = None) -> Any:
        """A grid: one row per query (framed blue), its matches framed green (same class), red (other) or
        grey (unknown), each captioned with rank, score and class. Writes a PNG at `path` if given;
        returns a PIL image (shown inline in a notebook) when Pillow is installed, else the uint8 array.
        """
        from tfdml.retrieval.draw import PLACEHOLDER, draw_grid, short, table_thumbnails

        n = len(self) if max_queries is None else min(max_queries, len(self))
        queries = self.query_table if self.query_table is not None else _paths_table(self.query_paths)
        query_tiles = table_thumbnails(queries.select(np.arange(n)), tile)
        gallery = self.gallery_table
        ids = np.unique(self.ids[:n])
        path_of = {int(i): str(p) for i, p in zip(self.ids[:n].ravel(), self.paths[:n].ravel())}
        shown = gallery.select(ids) if gallery is not None else _paths_table([path_of[int(i)] for i in ids])
        by_id = dict(zip(ids.tolist(), table_thumbnails(shown, tile)))
        tiles = np.full((n, self.k + 1, tile, tile, 3), PLACEHOLDER, np.uint8)
        relevance = self.relevance()
        frames, captions = [], []
        for q in range(n):
            if query_tiles[q] is not None:
                tiles[q, 0] = query_tiles[q]
            label = self.query_labels[q]
            frames.append(["query", *relevance[q].tolist()])
            captions.append([f"query {q}\n{short(label) if label is not None else '?'}"])
            for r in range(self.k):
                pixels = by_id[int(self.ids[q, r])]
                if pixels is not None:
                    tiles[q, r + 1] = pixels
                name = self.labels[q, r]
                mark = "" if self.threshold is None else (" ok" if self.scores[q, r] >= self.threshold else " no")
                captions[q].append(f"{r + 1}: {self.scores[q, r]:.3f}{mark}\n{short(name) if name else '-'}")
        grid = draw_grid(tiles, frames, captions)
        if path is not None:
            import tensorflow as tf

            Path(path).parent.mkdir(parents=True, exist_ok=True)
            tf.io.write_file(str(path), tf.io.encode_png(grid))
        try:
            from PIL import Image
        except ImportError:
            return grid
        return Image.fromarray(grid)

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path) -> Path:
        """Write `.npz` (arrays and a JSON header) or `.json` (the header and the records); return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format": FORMAT, "kind": "tfdml.SearchResults", "threshold": self.threshold,
                  "query_paths": self.query_paths, "query_labels": self.query_labels,
                  "paths": self.paths.tolist(), "labels": self.labels.tolist()}
        if path.suffix == ".json":
            path.write_text(json.dumps({**header, "ids": self.ids.tolist(), "scores": self.scores.tolist()}))
        else:
            with open(path, "wb") as f:  # np.savez would append .npz to another suffix
                np.savez_compressed(f, ids=self.ids, scores=self.scores, header=np.array(json.dumps(header)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SearchResults":
        """Read what `save` wrote."""
        path = Path(path)
        try:
            if path.suffix == ".json":
                header = json.loads(path.read_text())
                ids, scores = header["ids"], header["scores"]
            else:
                with np.load(path) as data:
                    header, ids, scores = json.loads(str(data["header"])), data["ids"], data["scores"]
        except (OSError, ValueError, KeyError) as err:
            raise ArtifactError(f"{path} is not a saved SearchResults ({type(err).__name__}: {err})") from None
        if header.get("kind") != "tfdml.SearchResults":
            raise ArtifactError(f"{path} is not a saved SearchResults (kind {header.get('kind')!r})")
        shape = np.shape(ids)
        return cls(np.asarray(ids, np.int64).reshape(shape), np.asarray(scores, np.float32).reshape(shape),
                   _objects(header["paths"], shape), _objects(header["labels"], shape), header["query_paths"],
                   header["query_labels"], header["threshold"])


def _objects(rows: list, shape: tuple) -> np.ndarray:
    out = np.empty(shape, object)
    for q, row in enumerate(rows):
        out[q, :] = row
    return out


def _paths_table(paths: list[str]) -> DatasetTable:
    return DatasetTable.from_class_keys(paths, [""] * len(paths))


