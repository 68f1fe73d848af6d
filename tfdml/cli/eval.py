"""`tfdml-eval RUN_DIR|SAVEDMODEL [--dataset NAME|CONFIG|DIR] [--split ...] [--weights best|last] [--out JSON]
[--worst N [--png GRID]]`.

With a RUN_DIR: the run's model (the weights its test used) on the run's dataset and split: the
test split gives the run's metrics.json test metrics again. `--weights last` takes the last epoch's
weights instead of the best validation epoch's (what model selection changed; written to
eval_<dataset>_<split>_last.json by default). With a SavedModel that tfdml exported
(saved_model/ or retrieval_model/), --dataset is needed. Metrics: Recall@K, P@1, R-Precision,
MAP@R (and NMI when the config sets eval.nmi), computed by the code the training evaluation uses,
queries searching a separate gallery where the dataset has one (In-Shop).

--dataset is a config name from yaml_configs/ (emoji, cub, ...), a YAML config, or a folder
(DIR/<class>/<image>, evaluated whole unless --split is given). It sets the data (dataset, root,
reader args, class split, boxes) and the metrics (eval.ks, eval.nmi); the image size and the
evaluation resize are the model's. The metrics are printed and written as JSON (--out; default
RUN_DIR/eval_<dataset>_<split>.json, or eval_<name>_<dataset>_<split>.json next to a SavedModel).

--worst N lists the N queries with the lowest average precision (AP@R, their term of MAP@R) and their
top matches (printed, and under "worst" in the JSON); --png GRID draws them: one row per query (its
AP@R and class under it), then its matches framed green (same class) or red, captioned with rank,
score and class.

Examples:
    tfdml-eval runs/emoji
    tfdml-eval runs/emoji/saved_model --dataset runs/emoji/config.yaml --backend blockwise
    tfdml-eval runs/cub/saved_model --dataset cub --root /data/cub --out cub_test.json
    tfdml-eval runs/products --dataset /data/new_products
    tfdml-eval runs/emoji --worst 8 --png worst.png
    tfdml-eval runs/emoji --weights last
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tfdml.cli.common import make_parser, run_command

SPLITS = ("test", "val", "train", "all")
BACKENDS = ("auto", "sklearn", "blockwise", "faiss")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("tfdml-eval", __doc__)
    parser.add_argument("model", metavar="RUN_DIR|SAVEDMODEL", help="a run directory or an exported SavedModel")
    parser.add_argument("--dataset", metavar="NAME|CONFIG|DIR",
                        help="the data: a config name or file, or a folder of images (default: the run's)")
    parser.add_argument("--root", metavar="DIR", help="the dataset's data.root (where its files are)")
    parser.add_argument("--split", choices=SPLITS, help="default: test (all for a folder)")
    parser.add_argument("--backend", choices=BACKENDS, help="the neighbour search (default: the config's eval.backend)")
    parser.add_argument("--weights", choices=("best", "last"), default="best",
                        help="a RUN_DIR's weights: the epoch its test used (default) or its last epoch")
    parser.add_argument("--out", metavar="JSON", help="where to write the metrics")
    parser.add_argument("--worst", type=int, metavar="N", help="list the N queries of lowest AP@R and their matches")
    parser.add_argument("--png", metavar="GRID", help="draw the --worst queries and their top matches as a PNG grid")
    args = parser.parse_args(argv)
    return run_command("tfdml-eval", lambda: evaluate(args.model, dataset=args.dataset, root=args.root,
                                                      split=args.split, backend=args.backend, out=args.out,
                                                      worst=args.worst, png=args.png, weights=args.weights))


def evaluate(model: str | Path, *, dataset: str | None = None, root: str | None = None, split: str | None = None,
             backend: str | None = None, out: str | Path | None = None,
             log: Callable[[str], None] = print, verbose: int | str = "auto", worst: int | None = None,
             png: str | Path | None = None, weights: str = "best") -> dict[str, Any]:
    """Evaluate a run or an exported SavedModel as `tfdml-eval` does; return what it writes as JSON.

    `worst` adds the `worst` queries of lowest AP@R (`worst_queries`) and `png` draws them. `verbose`
    (0, 1, 2, "auto": a bar on a terminal, one line otherwise) shows the embedding's and the search's progress.
    `weights` ("best" or "last") picks a run's checkpoint (`load_run`); a SavedModel has one set of weights.

    Example (not run as a doctest: it needs a trained run):
        >>> evaluate("runs/emoji")["metrics"]["map@r"]  # doctest: +SKIP
        0.4634
    """
    from tfdml.errors import ConfigError, DataError
    from tfdml.export import embed_table, load_exported
    from tfdml.training import evaluate_table, load_run
    from tfdml.training.builders import build_table
    from tfdml.training.whiten import WHITENING_FILE

    from tfdml.cli.common import check_output_path

    if out is not None:
        check_output_path(out, "--out")
    if worst is not None and worst < 1:
        raise ConfigError(f"--worst {worst}: give how many queries to show, at least 1")
    if png is not None:
        if worst is None:
            raise ConfigError("--png draws the worst queries: give --worst N too (e.g. --worst 8)")
        check_output_path(png, "--png")
    source = Path(model)
    run_config = None
    if (source / "saved_model.pb").is_file():
        if weights != "best":
            raise ConfigError(f"--weights {weights} picks a run directory's checkpoint, but {source} is a SavedModel "
                              "(one set of weights): pass its RUN_DIR instead, or drop --weights")
        exported = load_exported(source)
        if dataset is None:
            raise ConfigError(f"{source} is a SavedModel, which does not record its dataset: pass --dataset (a config "
                              "name such as emoji or cub, a YAML config such as RUN_DIR/config.yaml, or a folder)")
        embedder: Any = exported.embed
        size, resize, described = exported.image_size, exported.resize, f"the {exported.kind} SavedModel {source}"
    else:
        run_config, embedder = load_run(source, weights)
        described = f"the run {source}" + (" (its last epoch's weights)" if weights == "last" else "")
        if weights != "last" and (Path(source) / "checkpoints" / WHITENING_FILE).is_file():
            described += " (with the whitening it fitted)"
        size, resize = run_config.data.image_size, run_config.data.eval_resize
    config, is_folder = _dataset_config(dataset, run_config)
    data = dataclasses.replace(config.data, image_size=size, eval_resize=resize)
    if root is not None:
        data = dataclasses.replace(data, root=str(root))
    config = dataclasses.replace(config, data=data)
    split = split or ("all" if is_folder else "test")

    table = build_table(config, log=log)
    table = table if split == "all" else table.subset(split)
    if len(table) == 0:
        raise DataError(f"the {split} split of {data.dataset} has no images; pick another with "
                        f"--split {'|'.join(SPLITS)}")
    which = f"all of {data.dataset}" if split == "all" else f"the {split} split of {data.dataset}"
    log(f"evaluating {described} on {which}: {len(table)} images, {table.num_classes} classes")
    embeddings = embed_table(embedder, table, image_size=size, resize=resize, batch_size=config.eval.batch_size,
                             bbox_crop=data.bbox_crop, verbose=verbose)
    metrics = evaluate_table(embeddings, table.label, table, config, backend=backend, verbose=verbose)
    result = {"model": str(source), "weights": weights if run_config is not None else "exported",
              "dataset": data.dataset, "root": data.root, "split": split,
              "images": len(table), "classes": table.num_classes, "metrics": metrics}
    width = max(map(len, metrics))
    for name, value in metrics.items():
        log(f"  {name:<{width}}  {value:.4f}" if isinstance(value, float) else f"  {name:<{width}}  {value}")
    if worst is not None:
        result["worst"] = worst_queries(embeddings, table, worst, backend=backend or config.eval.backend)
        _log_worst(result["worst"], log)
        if png is not None:
            draw_worst(result["worst"], table, png)
            log(f"wrote {png}")
    if out is None:
        tag = f"{data.dataset}_{split}" + ("_last" if weights == "last" else "")  # a SavedModel was refused
        out = (source / f"eval_{tag}.json" if run_config is not None
               else source.parent / f"eval_{source.name}_{tag}.json")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    log(f"wrote {out}")
    return result


def worst_queries(embeddings: np.ndarray, table: Any, n: int, *, matches: int = 6,
                  backend: str = "auto") -> list[dict[str, Any]]:
    """The `n` queries of `table` with the lowest AP@R, lowest first, each with its top `matches`.

    The search is the metrics' (In-Shop tables: queries against their gallery). Each entry has the
    query's `row`, `path`, `label` (class name), `ap` and `relevant` (R), and `matches`: `rank`,
    `row`, `path`, `label`, `score` (cosine similarity). Queries without a relevant image are skipped.

    Example (not run as a doctest: it needs a run's test embeddings and table):
        >>> worst_queries(embeddings, table, 2)[0]["ap"]  # doctest: +SKIP
        0.0417
    """
    from tfdml.evaluation.metrics import average_precision_at_r, ranked_neighbours
    from tfdml.evaluation.neighbours import l2_normalise

    unit = l2_normalise(embeddings)
    masks = {} if table.is_query.all() and table.is_gallery.all() else {  # as evaluate_table searches
        "query_mask": table.is_query, "gallery_mask": table.is_gallery}
    query_rows, ranked, relevant = ranked_neighbours(unit, table.label, k=matches, backend=backend, **masks)
    label_of = np.append(table.label, -1)  # ranked's -1 (no neighbour) reads the -1 label: never relevant
    ap = average_precision_at_r(label_of[ranked], table.label[query_rows], relevant)
    order = [q for q in np.argsort(ap, kind="stable") if np.isfinite(ap[q])][:n]  # NaN (R = 0) sorts last
    def name(row: int) -> str:
        return table.class_names[table.label[row]]

    found = []
    for q in order:
        row, shown = int(query_rows[q]), [int(r) for r in ranked[q, :matches] if r >= 0]
        scores = unit[shown] @ unit[row]
        found.append({"row": row, "path": str(table.path[row]), "label": name(row), "ap": float(ap[q]),
                      "relevant": int(relevant[q]),
                      "matches": [{"rank": i + 1, "row": r, "path": str(table.path[r]), "label": name(r),
                                   "score": float(score)} for i, (r, score) in enumerate(zip(shown, scores))]})
    return found


def draw_worst(worst: list[dict[str, Any]], table: Any, png: str | Path, tile: int = 64) -> np.ndarray:
    """Write `worst_queries`' grid as a PNG: each query (its AP@R and class) then its matches; return the pixels.

    Example (not run as a doctest: it needs a run's test embeddings and table):
        >>> draw_worst(worst_queries(embeddings, table, 8), table, "worst.png").shape  # doctest: +SKIP
        (800, 532, 3)
    """
    import tensorflow as tf

    from tfdml.errors import DataError
    from tfdml.retrieval.draw import short, table_grid

    if not worst:
        raise DataError("no query has a relevant image to retrieve: there is no worst query to draw")
    rows = [[q["row"], *(m["row"] for m in q["matches"])] for q in worst]
    frames = [["query", *("match" if m["label"] == q["label"] else "mismatch" for m in q["matches"])] for q in worst]
    captions = [[f"AP@R: {q['ap']:.3f}\n{short(q['label'])}",
                 *(f"{m['rank']}: {m['score']:.3f}\n{short(m['label'])}" for m in q["matches"])] for q in worst]
    grid = table_grid(table, rows, frames, captions, tile)
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    tf.io.write_file(str(png), tf.io.encode_png(grid))
    return grid


def _log_worst(worst: list[dict[str, Any]], log: Callable[[str], None]) -> None:
    log(f"the {len(worst)} worst queries by AP@R (lowest first):")
    for q in worst:
        log(f"  AP@R {q['ap']:.4f}  {q['path']}  {q['label']}  (R={q['relevant']})")
        for m in q["matches"]:
            mark = "+" if m["label"] == q["label"] else "-"
            log(f"      {m['rank']:>3}  {m['score']:.4f}  {mark} {m['path']}  {m['label']}")


def _dataset_config(dataset: str | None, run_config: Any) -> tuple[Any, bool]:
    """The config whose data and eval settings to use, and whether it is a folder of images."""
    from tfdml.config.locate import config_names, find_config
    from tfdml.config import load_config
    from tfdml.config.schema import DataConfig
    from tfdml.errors import ConfigError

    if dataset is None:
        return run_config, False
    if Path(dataset).expanduser().is_dir():
        base = run_config if run_config is not None else load_config()
        return dataclasses.replace(base, data=DataConfig(dataset="folder", root=str(Path(dataset).expanduser()))), True
    try:
        path = find_config(dataset)
    except ConfigError:
        raise ConfigError(f"--dataset {dataset!r} is not a folder, a YAML config file, or a shipped config "
                          f"({', '.join(config_names())})") from None
    return load_config(path), False


if __name__ == "__main__":
    sys.exit(main())
