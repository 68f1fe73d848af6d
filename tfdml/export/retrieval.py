"""Export a retrieval SavedModel: an embedding model together with a gallery's embeddings.

The SavedModel searches its gallery by cosine similarity and needs neither tfdml nor Keras
(not run as a doctest: it needs an exported run):

    >>> import tensorflow as tf                                                # doctest: +SKIP
    >>> retrieval = tf.saved_model.load("runs/emoji/retrieval_model")           # doctest: +SKIP
    >>> found = retrieval.search(images, tf.constant(5))  # float32 [B, H, W, C] 0-255, any size  # doctest: +SKIP
    >>> found = retrieval.search_bytes(tf.stack([tf.io.read_file("q.png")]), tf.constant(5))  # doctest: +SKIP
    >>> found["ids"], found["scores"]  # int32 and float32 [B, 5], best first   # doctest: +SKIP

`ids` are rows of the gallery listed in the directory's `manifest.json` (`"gallery"`: `id`,
`path`, `label`, `class_name`); `scores` are cosine similarities. A gallery held in memory (the
emoji set: its paths are ids, not files) also leaves its pixels in `gallery_images.npz`. `search` fails with "k must be
between 1 and the gallery size N" for a k outside 1..N. The `embed`, `embed_uint8` and
`embed_bytes` signatures return the L2-normalised query embeddings `[B, dim]`, as the embedding
SavedModel's `serve` ones do.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from tfdml.data.pipeline import eval_dataset, find_bad_images, reraise_data_errors
from tfdml.data.readers.folder import EXTENSIONS, read_folder
from tfdml.data.table import DatasetTable
from tfdml.errors import DataError
from tfdml.evaluation.callback import dataset_length, embed_dataset
from tfdml.evaluation.neighbours import l2_normalise
from tfdml.evaluation.progress import Verbose, with_progress
from tfdml.export.saved_model import (KIND_RETRIEVAL, add_image_endpoints, base_manifest, mark_kind, output_dim,
                                      unit_embeddings, write_archive)
from tfdml.export.serving import ANY_IMAGES, ENCODED_IMAGES, decode_images, prepare_images

Embedder = keras.Model | Callable[[tf.Tensor], Any]
GALLERY_IMAGES = "gallery_images.npz"
GALLERY_COLLECTION = "tfdml_gallery"  # the loaded object's `tfdml_gallery[0]`: the unit gallery embeddings [N, dim]


def export_retrieval_model(
    model: keras.Model,
    gallery: DatasetTable,
    path: str | Path,
    *,
    image_size: int,
    resize: int | None = None,
    batch_size: int = 256,
    bbox_crop: bool = False,
    labelled: bool = True,
    embeddings: np.ndarray | None = None,
    source: dict[str, Any] | None = None,
) -> Path:
    """Write a retrieval SavedModel of `model` and the images of `gallery` at `path`; return the path.

    The gallery is embedded as evaluation embeds (`eval_dataset`: short side `resize`, centre crop
    `image_size`, boxes with `bbox_crop`) unless `embeddings` (one row per gallery row) are given;
    rows are L2-normalised and stored as a non-trainable variable. `labelled=False` records no
    labels (a flat folder of images). `source` is recorded in the manifest as it is.

    Example (not run as a doctest: it needs a trained model and a folder of images):
        >>> table = read_folder("/data/my_products")  # doctest: +SKIP
        >>> export_retrieval_model(model, table, "products_search", image_size=224, resize=256)  # doctest: +SKIP
        PosixPath('products_search')
    """
    path = Path(path)
    if len(gallery) == 0:
        raise DataError("the gallery has no images; a retrieval SavedModel needs at least one")
    if embeddings is None:
        embeddings = embed_table(model, gallery, image_size=image_size, resize=resize, batch_size=batch_size,
                                 bbox_crop=bbox_crop)
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(gallery):
        raise ValueError(f"embeddings have shape {embeddings.shape}; expected one row per gallery image "
                         f"({len(gallery)}, dim)")
    unit = l2_normalise(embeddings)
    size, dim = len(gallery), unit.shape[1]

    archive = keras.export.ExportArchive()
    archive.track(model)
    gallery_var = tf.Variable(unit, trainable=False, name="gallery")

    embed_unit = unit_embeddings(model, image_size)

    def search_prepared(images: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        valid = tf.logical_and(k >= 1, k <= size)
        check = tf.debugging.Assert(valid, [f"tfdml: k must be between 1 and the gallery size {size}; got k =", k])
        with tf.control_dependencies([check]):
            queries = embed_unit(images)
            top = tf.math.top_k(tf.matmul(queries, gallery_var, transpose_b=True), k=k)  # ties: smaller id first
        return {"ids": top.indices, "scores": top.values}

    k_spec = tf.TensorSpec([], tf.int32, name="k")
    archive.add_endpoint("search", lambda images, k: search_prepared(prepare_images(images, image_size, resize), k),
                         input_signature=[ANY_IMAGES, k_spec])
    archive.add_endpoint("search_bytes", lambda images, k: search_prepared(decode_images(images, image_size, resize),
                                                                           k), input_signature=[ENCODED_IMAGES, k_spec])
    embed = add_image_endpoints(archive, model, image_size, resize, "embed")
    mark_kind(archive, KIND_RETRIEVAL, image_size)
    archive.add_variable_collection(GALLERY_COLLECTION, [gallery_var])  # for tfdml.Retriever.from_saved_model
    if output_dim(embed) != dim:
        raise ValueError(f"the gallery embeddings have {dim} dimensions but the model embeds in {output_dim(embed)}")
    manifest = {
        **base_manifest(KIND_RETRIEVAL, image_size, resize, dim),
        "gallery_size": size,
        "labelled": bool(labelled),
        "source": source or {},
        "gallery": [
            {"id": i, "path": str(p), "label": int(y) if labelled else None,
             "class_name": gallery.class_names[y] if labelled else None}
            for i, (p, y) in enumerate(zip(gallery.path.tolist(), gallery.label.tolist()))
        ],
    }
    def save_pixels(directory: Path) -> None:
        np.savez_compressed(directory / GALLERY_IMAGES, images=gallery.images)

    if gallery.images is not None:  # no files to show in tfdml-search's grid: keep the pixels as the reader gave them
        manifest["gallery_images"] = GALLERY_IMAGES
    write_archive(archive, path, manifest, save_pixels if gallery.images is not None else None)
    return path


def embed_table(embedder: Embedder, table: DatasetTable, *, image_size: int, resize: int | None = None,
                batch_size: int = 256, bbox_crop: bool = False, verbose: Verbose = 0) -> np.ndarray:
    """float32 embeddings `[N, dim]` of a table's images, preprocessed as evaluation does (`eval_dataset`).

    `embedder` is a Keras model (embedded as the run's evaluation does) or any function of an
    image batch, e.g. a loaded SavedModel's `serve`. Files that are missing, not images, or do
    not decode raise a DataError that names them. `verbose` (0, 1, 2, "auto") shows a Progbar.

    Example (not run as a doctest: it needs an exported run and a table):
        >>> embeddings = embed_table(tf.saved_model.load("runs/emoji/saved_model").serve, table,
        ...                          image_size=32)  # doctest: +SKIP
    """
    if len(table) == 0:
        raise DataError("no images to embed")
    _raise_bad_images(table, decode=False)  # cheap: names missing files and non-images
    dataset = eval_dataset(table, image_size=image_size, batch_size=batch_size, bbox_crop=bbox_crop, resize=resize)
    try:
        with reraise_data_errors():
            if isinstance(embedder, keras.Model):
                return embed_dataset(embedder, dataset, verbose=verbose)[0]
            batches = with_progress(dataset, verbose, total=dataset_length(dataset))
            return np.concatenate([np.asarray(embedder(images)) for images, _ in batches]).astype(np.float32)
    except DataError:
        _raise_bad_images(table, decode=True)  # name the file that failed (a truncated one, say)
        raise


def _raise_bad_images(table: DatasetTable, *, decode: bool, max_listed: int = 5) -> None:
    bad = [reason for _, reason in find_bad_images(table, decode=decode)]
    if bad:
        listed = "; ".join(bad[:max_listed]) + (f"; and {len(bad) - max_listed} more" if len(bad) > max_listed else "")
        raise DataError(f"{len(bad)} of {len(table)} images cannot be read: {listed}; fix or remove them")


def read_image_folder(root: str | Path) -> tuple[DatasetTable, bool]:
    """A folder of images as a table, and whether it is labelled.

    `root/<class>/<image>` (one sub-folder per class, as the `folder` reader reads it) is labelled
    by folder name; a flat folder `root/<image>` is unlabelled (every row has label 0 and the
    class name ""). Hidden files and folders are skipped.

    Example (not run as a doctest: it needs a trained model and a folder of images):
        >>> table, labelled = read_image_folder("/data/my_products")  # doctest: +SKIP
    """
    root = Path(root).expanduser()
    layout = f"expected images ({', '.join(EXTENSIONS)}) in {root}/<class>/ sub-folders or directly in {root}"
    if not root.is_dir():
        raise DataError(f"{root} is {'a file' if root.exists() else 'missing'}, not a folder of images; {layout}")
    visible = [p for p in root.iterdir() if not p.name.startswith(".")]
    if any(p.is_dir() for p in visible):
        files = [p for d in visible if d.is_dir() for p in d.rglob("*") if p.is_file()]
        if not any(p.suffix.lower() in EXTENSIONS for p in files):
            raise DataError(f"{root} holds no images ({_found(files)}); {layout}")
        return read_folder(root), True
    images = sorted(p for p in visible if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not images:
        raise DataError(f"{root} holds no images ({_found([p for p in visible if p.is_file()])}); {layout}")
    return DatasetTable.from_class_keys([str(p) for p in images], [""] * len(images)), False


def _found(files: list[Path]) -> str:
    counts = Counter(p.suffix.lower() or "no extension" for p in files)
    return "found " + ", ".join(f"{n} {s}" for s, n in counts.most_common()) if counts else "it is empty"
