"""`tfdml-search SAVEDMODEL --query IMAGE... [--gallery DIR] [--k 5] [--png GRID]`: the nearest gallery images.

SAVEDMODEL is a retrieval SavedModel (RUN_DIR/retrieval_model, written by tfdml-export: the gallery
is inside, its paths and labels in its manifest.json), or an embedding SavedModel
(RUN_DIR/saved_model) with --gallery DIR, a folder embedded on the spot: DIR/<class>/<image>
(labelled by folder) or images directly in DIR (unlabelled). --gallery with a retrieval SavedModel
searches DIR instead of its own gallery.

Queries are preprocessed as evaluation does (short side resized, centre crop). Each query's k best
matches are printed: rank, cosine similarity, path, label. --png writes a grid: one row per query,
the query (framed blue) then its matches, framed green where their label is the query's, red where
it is not, grey where a label is unknown. A query's label is the name of the folder it is in when
a gallery class has that name, or --query-label (one for all queries, or one each).

Examples:
    tfdml-search runs/emoji/retrieval_model --query my_drawing.png --k 8 --png matches.png
    tfdml-search runs/products/saved_model --gallery /data/catalogue --query q1.jpg q2.jpg
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tfdml.cli.common import make_parser, run_command

FRAME = 4  # pixels of frame around each tile of the --png grid
MARGIN = 2  # white pixels around each frame
COLOURS = {"query": (40, 90, 210), "match": (0, 160, 60), "mismatch": (215, 30, 30), "unknown": (150, 150, 150)}
PLACEHOLDER = 225  # grey of a tile whose image is not a readable file (e.g. an in-memory dataset's id)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("tfdml-search", __doc__)
    parser.add_argument("model", metavar="SAVEDMODEL",
                        help="RUN_DIR/retrieval_model, or RUN_DIR/saved_model with --gallery")
    parser.add_argument("--query", nargs="+", required=True, metavar="IMAGE", help="query image files")
    parser.add_argument("--gallery", metavar="DIR", help="a folder of images to search (DIR/<class>/<image> or flat)")
    parser.add_argument("--k", type=int, default=5, help="matches per query (default: 5)")
    parser.add_argument("--png", metavar="GRID", help="write the queries and their matches as a PNG grid")
    parser.add_argument("--query-label", nargs="+", metavar="LABEL",
                        help="the queries' class names, for the grid's frames")
    parser.add_argument("--tile", type=int, default=64, help="side of each image in the grid, in pixels (default: 64)")
    args = parser.parse_args(argv)
    return run_command("tfdml-search", lambda: search(
        args.model, args.query, gallery=args.gallery, k=args.k, png=args.png, query_labels=args.query_label,
        tile=args.tile))


def search(model: str | Path, queries: Sequence[str], *, gallery: str | Path | None = None, k: int = 5,
           png: str | Path | None = None, query_labels: Sequence[str] | None = None, tile: int = 64,
           log: Callable[[str], None] = print) -> list[list[dict[str, Any]]]:
    """Search as `tfdml-search` does; return each query's matches (`rank`, `score`, `id`, `path`, `label`, `frame`).

    Example:
        >>> search("runs/emoji/retrieval_model", ["my_drawing.png"], k=3)[0][0]["path"]  # doctest: +SKIP
        'google/smile'
    """
    import tensorflow as tf

    from tfdml.data.pipeline import eval_dataset, find_bad_images
    from tfdml.data.table import DatasetTable
    from tfdml.errors import ArtifactError, ConfigError, DataError
    from tfdml.evaluation import nearest_neighbours
    from tfdml.export import KIND_RETRIEVAL, embed_table, load_exported, read_image_folder

    if png is not None:
        from tfdml.cli.common import check_output_path

        check_output_path(png, "--png")
    exported = load_exported(model)
    if gallery is None and exported.kind != KIND_RETRIEVAL:
        raise ArtifactError(f"{model} is an {exported.kind} SavedModel: it holds no gallery to search; pass "
                            "--gallery DIR (a folder of images), or give the retrieval SavedModel that "
                            "`tfdml-export RUN_DIR` writes (RUN_DIR/retrieval_model)")
    if gallery is not None:
        table, labelled = read_image_folder(gallery)
        entries = [{"id": i, "path": p, "class_name": table.class_names[y] if labelled else None}
                   for i, (p, y) in enumerate(zip(table.path.tolist(), table.label.tolist()))]
    else:
        entries = exported.gallery
    if k < 1:
        raise ConfigError(f"--k {k}: k must be at least 1")
    if k > len(entries):
        raise ConfigError(f"--k {k} is larger than the gallery, which has {len(entries)} images; "
                          f"use --k {len(entries)} or less")
    if tile < 1:
        raise ConfigError(f"--tile {tile}: the grid's tiles need at least 1 pixel")
    queries = [str(q) for q in queries]
    if query_labels is not None and len(query_labels) not in (1, len(queries)):
        raise ConfigError(f"{len(query_labels)} --query-label values for {len(queries)} queries; give one for "
                          "all queries or one per query")
    query_table = DatasetTable.from_class_keys(queries, [""] * len(queries))
    bad = find_bad_images(query_table, decode=True)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"cannot read the query image {bad[0][1]}{more}; give JPEG, PNG, GIF or BMP files")

    size, resize = exported.image_size, exported.resize
    if gallery is not None:
        gallery_embeddings = embed_table(exported.embed, table, image_size=size, resize=resize)
        query_embeddings = embed_table(exported.embed, query_table, image_size=size, resize=resize)
        ids, scores = nearest_neighbours(query_embeddings, gallery_embeddings, k)
    else:
        found = [exported.obj.search(images, tf.constant(k, tf.int32))
                 for images, _ in eval_dataset(query_table, image_size=size, batch_size=64, resize=resize)]
        ids = np.concatenate([f["ids"].numpy() for f in found])
        scores = np.concatenate([f["scores"].numpy() for f in found])

    class_names = {e["class_name"] for e in entries if e.get("class_name") is not None}
    results = []
    for q, path in enumerate(queries):
        if query_labels is not None:
            label = query_labels[0 if len(query_labels) == 1 else q]
        else:
            label = Path(path).parent.name if Path(path).parent.name in class_names else None
        log(f"query {q + 1}: {path} (label: {label if label is not None else 'unknown'})")
        matches = []
        for rank, (i, score) in enumerate(zip(ids[q].tolist(), scores[q].tolist()), start=1):
            entry = entries[i]
            name = entry.get("class_name")
            frame = "unknown" if label is None or name is None else ("match" if name == label else "mismatch")
            matches.append({"rank": rank, "score": float(score), "id": int(i), "path": entry["path"],
                            "label": name, "frame": frame})
            log(f"  {rank:>3}  {score:.4f}  {entry['path']}  {name if name is not None else '-'}")
        results.append(matches)
    if png is not None:
        write_grid(png, queries, results, tile=tile, gallery_pixels=None if gallery is not None else
                   exported.gallery_images())
        log(f"wrote {png}")
    return results


def write_grid(png: str | Path, queries: Sequence[str], results: list[list[dict[str, Any]]], *, tile: int = 64,
               gallery_pixels: np.ndarray | None = None) -> np.ndarray:
    """Write the PNG grid of `search`'s results; return its uint8 pixels `[Q * c, (k + 1) * c, 3]`, c = tile + 12.

    Images are shown as evaluation sees them (short side resized, centre crop). Matches come from
    `gallery_pixels[id]` when given (a gallery held in memory), else from their files; a match
    whose file is not a readable image is a plain grey tile in its frame.
    """
    import tensorflow as tf

    from tfdml.data.pipeline import find_bad_images
    from tfdml.data.table import DatasetTable

    cell = tile + 2 * (FRAME + MARGIN)
    columns = 1 + max(len(m) for m in results)
    grid = np.full((len(queries) * cell, columns * cell, 3), 255, np.uint8)
    from_files = [] if gallery_pixels is not None else [m["path"] for row in results for m in row]
    paths = sorted({*queries, *from_files})
    table = DatasetTable.from_class_keys(paths, [""] * len(paths))
    bad = {row for row, _ in find_bad_images(table)}
    table = table.select([i for i in range(len(paths)) if i not in bad])
    thumbnails: dict[Any, np.ndarray] = {}
    if len(table):
        try:
            thumbnails = dict(zip(table.path.tolist(), _thumbnails(table, tile)))
        except tf.errors.OpError:  # a gallery file changed since the export: show placeholders
            thumbnails = {}
    if gallery_pixels is not None:
        ids = sorted({m["id"] for row in results for m in row})
        shown = DatasetTable.from_class_keys([str(i) for i in ids], [""] * len(ids), images=gallery_pixels[ids])
        thumbnails.update(zip(ids, _thumbnails(shown, tile)))
    for r, (query, row) in enumerate(zip(queries, results)):
        keys = [m["id"] if gallery_pixels is not None else m["path"] for m in row]
        for c, (key, frame) in enumerate([(query, "query"), *zip(keys, (m["frame"] for m in row))]):
            y, x = r * cell + MARGIN, c * cell + MARGIN
            grid[y:y + tile + 2 * FRAME, x:x + tile + 2 * FRAME] = COLOURS[frame]
            grid[y + FRAME:y + FRAME + tile, x + FRAME:x + FRAME + tile] = thumbnails.get(key, PLACEHOLDER)
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    tf.io.write_file(str(png), tf.io.encode_png(grid))
    return grid


def _thumbnails(table: Any, tile: int) -> np.ndarray:
    """uint8 `[N, tile, tile, 3]` of a table's images, as the evaluation pipeline prepares them."""
    from tfdml.data.pipeline import eval_dataset

    pixels = np.concatenate([x.numpy() for x, _ in eval_dataset(table, image_size=tile, batch_size=64)])
    return np.round(pixels).clip(0, 255).astype(np.uint8)


if __name__ == "__main__":
    sys.exit(main())
