"""`Retriever`: search a gallery with a trained model, calibrate a match threshold, and match.

Built from a `DMLModel` (or any Keras model: images -> embeddings) or an exported SavedModel, and a
gallery: a `DatasetTable`, a folder (`root/<class>/<image>` or flat), image paths or image arrays.
Images are preprocessed as evaluation does (resized, centre crop; alpha composited on white) and
searched by cosine similarity: exactly (`tfdml.evaluation.nearest_neighbours`), or with an approximate faiss
index whose candidates are re-ranked exactly (`index="hnsw"`, "ivf", "ivfpq"; `tfdml.retrieval.index`).

Example (not run as a doctest: it needs a trained model, a gallery and image files):
    >>> retriever = Retriever(model, test, image_size=32)                     # doctest: +SKIP
    >>> results = retriever.search(["my_drawing.png"], k=5)                  # doctest: +SKIP
    >>> print(results); results.draw("matches.png")                          # doctest: +SKIP
    >>> retriever.calibrate(val_images, val_labels, target_precision=0.9)   # doctest: +SKIP
    >>> retriever.match(["new.png"]).predicted_labels                        # doctest: +SKIP
    >>> Retriever.from_saved_model("runs/emoji/retrieval_model")             # doctest: +SKIP
    >>> Retriever(model, sop_test, image_size=224, index="hnsw")             # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import numpy as np

from tfdml.data.table import DatasetTable
from tfdml.errors import ArtifactError, DataError
from tfdml.evaluation.neighbours import l2_normalise
from tfdml.retrieval.calibration import Calibration, calibrate_threshold
from tfdml.retrieval.index import build_index
from tfdml.retrieval.inputs import Images, as_table, class_name_array
from tfdml.retrieval.results import SearchResults


class Retriever:
    """A gallery's embeddings and the model that embeds queries the same way.

    Args:
        embedder: a Keras model (e.g. `DMLModel`), or a function of a float32 image batch `[B, S, S, 3]`
            (0-255) returning embeddings, such as a loaded SavedModel's `serve`.
        gallery: a DatasetTable, a folder, image paths, or an image array `[N, H, W, C]`.
        gallery_labels: class keys of paths or arrays (one per image); None: unlabelled.
        image_size, resize: the model's input side and the evaluation short side (None: `image_size`).
        embeddings: the gallery's embeddings if already computed (one row per image).
        backend: the exact search backend (`tfdml.evaluation.neighbours.BACKENDS`).
        index: "exact", or an approximate faiss index ("ivf", "ivfpq", "hnsw") whose candidates are
            re-ranked exactly (`tfdml.retrieval.index`); `index_args` go to it (e.g. `nprobe`, `candidates`).
    """

    def __init__(self, embedder: keras.Model | Callable[[Any], Any], gallery: Images,
                 gallery_labels: Sequence[Any] | None = None, *, image_size: int, resize: int | None = None,
                 embeddings: np.ndarray | None = None, backend: str = "auto", batch_size: int = 256,
                 index: str = "exact", index_args: dict[str, Any] | None = None) -> None:
        self.embedder, self.image_size, self.resize = embedder, int(image_size), resize
        self.batch_size = batch_size
        self.gallery, self.labelled = as_table(gallery, gallery_labels)
        if embeddings is None:
            embeddings = self.embed(self.gallery)
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or len(embeddings) != len(self.gallery):
            raise DataError(f"gallery embeddings have shape {embeddings.shape}; expected one row per gallery image "
                            f"({len(self.gallery)}, dim)")
        self.embeddings = l2_normalise(embeddings)
        self.index = build_index(self.embeddings, index, **({"backend": backend} if index == "exact" else {}),
                                 **(index_args or {}))
        self.gallery_labels = class_name_array(self.gallery, self.labelled)
        self.threshold: float | None = None
        self.calibration: Calibration | None = None

    @classmethod
    def from_saved_model(cls, path: str | Path, gallery: Images | None = None,
                         gallery_labels: Sequence[Any] | None = None, **kwargs: Any) -> "Retriever":
        """From an exported SavedModel: a retrieval one searches its own gallery unless `gallery` is given;
        an embedding one needs `gallery`."""
        from tfdml.export import KIND_RETRIEVAL, load_exported
        from tfdml.export.retrieval import GALLERY_COLLECTION

        exported = load_exported(path)
        sizes = {"image_size": exported.image_size, "resize": exported.resize}
        if gallery is not None:
            return cls(exported.embed, gallery, gallery_labels, **sizes, **kwargs)
        if exported.kind != KIND_RETRIEVAL:
            raise ArtifactError(f"{path} is an {exported.kind} SavedModel: it holds no gallery; pass gallery= (a "
                                "folder, paths or images) or load RUN_DIR/retrieval_model")
        stored = getattr(exported.obj, GALLERY_COLLECTION, None)
        if stored is None:
            raise ArtifactError(f"{path} was exported before retrieval SavedModels exposed their gallery "
                                f"embeddings; re-export it with tfdml-export")
        rows = exported.gallery
        names = [r["class_name"] if r["class_name"] is not None else "" for r in rows]
        table = DatasetTable.from_class_keys([r["path"] for r in rows], names, images=exported.gallery_images())
        labels = names if exported.manifest.get("labelled", True) else None
        retriever = cls(exported.embed, [r["path"] for r in rows], labels, **sizes,
                        embeddings=stored[0].numpy(), **kwargs)
        retriever.gallery = table  # keeps the in-memory pixels for pictures
        retriever.exported = exported  # the SavedModel's variables live as long as this retriever
        return retriever

    def __len__(self) -> int:
        return len(self.gallery)

    def __repr__(self) -> str:
        classes = f", {len(set(self.gallery_labels.tolist()))} classes" if self.labelled else ", unlabelled"
        threshold = f", threshold={self.threshold:.4f}" if self.threshold is not None else ""
        return f"Retriever({len(self)} gallery images{classes}, dim={self.embeddings.shape[1]}{threshold})"

    # ------------------------------------------------------------------ embedding and search

    def embed(self, images: Images) -> np.ndarray:
        """float32 embeddings `[N, dim]` of images, paths, a folder or a table, preprocessed as evaluation does."""
        from tfdml.export.retrieval import embed_table

        table = images if isinstance(images, DatasetTable) else as_table(images)[0]
        return embed_table(self.embedder, table, image_size=self.image_size, resize=self.resize,
                           batch_size=self.batch_size)

    def search(self, queries: Images, k: int = 5, labels: Sequence[Any] | None = None) -> SearchResults:
        """The `k` most similar gallery images of each query (paths, arrays, a folder or a table), best first.

        `labels` (class names, one per query) colour the picture and fill `relevance`; a table or a
        `root/<class>/` folder brings its own.
        """
        table, labelled = as_table(queries, labels)
        if not 1 <= k <= len(self):
            raise DataError(f"k={k}: k must be between 1 and the gallery size {len(self)}")
        ids, scores = self.index.search(self.embed(table), int(k))
        return SearchResults(ids=ids, scores=scores, paths=self.gallery.path.astype(object)[ids],
                             labels=self.gallery_labels[ids], query_paths=[str(p) for p in table.path.tolist()],
                             query_labels=class_name_array(table, labelled).tolist(), query_table=table,
                             gallery_table=self.gallery)

    # ------------------------------------------------------------------ thresholds

    def calibrate(self, queries: Images, labels: Sequence[Any] | None = None, *, k: int = 1,
                  target_precision: float | None = None) -> Calibration:
        """Choose the score threshold for `match` on labelled queries (not gallery images themselves).

        Each query and each of its `k` best gallery matches is a pair, positive when both have the
        same class. The threshold maximises F1 over those pairs, or is the lowest whose precision
        reaches `target_precision`. It is kept (`self.threshold`) and returned with its numbers.
        """
        if not self.labelled:
            raise DataError("calibrate needs a labelled gallery (labels, a table, or a root/<class>/ folder)")
        results = self.search(queries, k=k, labels=labels)
        if any(label is None for label in results.query_labels):
            raise DataError("calibrate needs each query's class: pass labels=, a table, or a root/<class>/ folder")
        same = results.relevance() == "match"
        self.calibration = calibrate_threshold(results.scores, same, target_precision=target_precision)
        self.threshold = self.calibration.threshold
        return self.calibration

    def match(self, queries: Images, threshold: float | None = None, labels: Sequence[Any] | None = None,
              ) -> SearchResults:
        """Each query's best gallery image, kept as a match when its score reaches the threshold
        (`threshold`, else the calibrated one): see `results.matched` and `results.predicted_labels`."""
        threshold = self.threshold if threshold is None else float(threshold)
        if threshold is None:
            raise DataError("no threshold: call calibrate(...) on labelled queries first, or pass threshold=")
        results = self.search(queries, k=1, labels=labels)
        results.threshold = threshold
        return results
