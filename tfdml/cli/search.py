"""`tfdml-search SAVEDMODEL --query IMAGE... [--gallery DIR] [--k 5] [--png GRID]`: the nearest gallery images.

SAVEDMODEL is a retrieval SavedModel (RUN_DIR/retrieval_model, written by tfdml-export: the gallery
is inside, its paths and labels in its manifest.json), or an embedding SavedModel
(RUN_DIR/saved_model) with --gallery DIR, a folder embedded on the spot: DIR/<class>/<image>
(labelled by folder) or images directly in DIR (unlabelled). --gallery with a retrieval SavedModel
searches DIR instead of its own gallery.

Queries are preprocessed as evaluation does (short side resized, centre crop). Each query's k best
matches are printed: rank, cosine similarity, path, label. --png writes a grid: one row per query,
the query (framed blue) then its matches, framed green where their label is the query's, red where
it is not, grey where a label is unknown, each captioned with its rank, score and class. A query's
label is the name of the folder it is in when a gallery class has that name, or --query-label (one
for all queries, or one each).

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

    Example (not run as a doctest: it needs an exported run):
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
    results, labels = [], []
    for q, path in enumerate(queries):
        if query_labels is not None:
            label = query_labels[0 if len(query_labels) == 1 else q]
        else:
            label = Path(path).parent.name if Path(path).parent.name in class_names else None
        labels.append(label)
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
                   exported.gallery_images(), query_labels=labels)
        log(f"wrote {png}")
    return results


def write_grid(png: str | Path, queries: Sequence[str], results: list[list[dict[str, Any]]], *, tile: int = 64,
               gallery_pixels: np.ndarray | None = None,
               query_labels: Sequence[str | None] | None = None) -> np.ndarray:
    """Write the PNG grid of `search`'s results (`tfdml.retrieval.draw`); return its uint8 pixels.

    Each match is framed by relevance and captioned with its rank, score and class; each query with
    "query N" and its label (`query_labels`, "?" when unknown). Images are shown as evaluation sees
    them (short side resized, centre crop). Matches come from `gallery_pixels[id]` when given (a
    gallery held in memory), else from their files; an unreadable file is a plain grey tile.

    Example (not run as a doctest: it needs an exported run):
        >>> found = search("runs/emoji/retrieval_model", ["q.png"], k=3)  # doctest: +SKIP
        >>> write_grid("grid.png", ["q.png"], found).shape  # doctest: +SKIP
        (100, 304, 3)
    """
    import tensorflow as tf

    from tfdml.retrieval.draw import PLACEHOLDER, draw_grid, short

    query_pixels = _thumbnails(list(queries), tile)
    if gallery_pixels is not None:
        match_pixels = _thumbnails(sorted({m["id"] for row in results for m in row}), tile, gallery_pixels)
    else:
        match_pixels = _thumbnails(sorted({m["path"] for row in results for m in row}), tile)
    tiles = np.full((len(queries), 1 + max(len(m) for m in results), tile, tile, 3), PLACEHOLDER, np.uint8)
    frames, captions = [], []
    for r, (query, row) in enumerate(zip(queries, results)):
        shown = [query_pixels[query], *(match_pixels[m["id"] if gallery_pixels is not None else m["path"]]
                                        for m in row)]
        for c, pixels in enumerate(shown):
            if pixels is not None:
                tiles[r, c] = pixels
        label = query_labels[r] if query_labels is not None else None
        frames.append(["query", *(m["frame"] for m in row)])
        captions.append([f"query {r + 1}\n{short(label) if label is not None else '?'}",
                         *(f"{m['rank']}: {m['score']:.3f}\n{short(m['label']) if m['label'] else '-'}"
                           for m in row)])
    grid = draw_grid(tiles, frames, captions)
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    tf.io.write_file(str(png), tf.io.encode_png(grid))
    return grid


def _thumbnails(keys: list, tile: int, pixels: np.ndarray | None = None) -> dict[Any, np.ndarray | None]:
    """Each key's thumbnail: files by path, or rows `pixels[id]` of a gallery held in memory (None: unreadable)."""
    from tfdml.data.table import DatasetTable
    from tfdml.retrieval.draw import table_thumbnails

    if not keys:
        return {}
    images = None if pixels is None else pixels[keys]
    table = DatasetTable.from_class_keys([str(k) for k in keys], [""] * len(keys), images=images)
    return dict(zip(keys, table_thumbnails(table, tile)))


if __name__ == "__main__":
    sys.exit(main())
