"""`tfdml-eval RUN_DIR|SAVEDMODEL [--dataset NAME|CONFIG|DIR] [--split ...] [--out JSON]`: retrieval metrics.

With a RUN_DIR: the run's model (the weights its test used) on the run's dataset and split: the
test split gives the run's metrics.json test metrics again. With a SavedModel that tfdml exported
(saved_model/ or retrieval_model/), --dataset is needed. Metrics: Recall@K, P@1, R-Precision,
MAP@R (and NMI when the config sets eval.nmi), computed by the code the training evaluation uses,
queries searching a separate gallery where the dataset has one (In-Shop).

--dataset is a config name from yaml_configs/ (emoji, cub, ...), a YAML config, or a folder
(DIR/<class>/<image>, evaluated whole unless --split is given). It sets the data (dataset, root,
reader args, class split, boxes) and the metrics (eval.ks, eval.nmi); the image size and the
evaluation resize are the model's. The metrics are printed and written as JSON (--out; default
RUN_DIR/eval_<dataset>_<split>.json, or eval_<name>_<dataset>_<split>.json next to a SavedModel).

Examples:
    tfdml-eval runs/emoji
    tfdml-eval runs/emoji/saved_model --dataset runs/emoji/config.yaml --backend blockwise
    tfdml-eval runs/cub/saved_model --dataset cub --root /data/cub --out cub_test.json
    tfdml-eval runs/products --dataset /data/new_products
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable

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
    parser.add_argument("--out", metavar="JSON", help="where to write the metrics")
    args = parser.parse_args(argv)
    return run_command("tfdml-eval", lambda: evaluate(args.model, dataset=args.dataset, root=args.root,
                                                      split=args.split, backend=args.backend, out=args.out))


def evaluate(model: str | Path, *, dataset: str | None = None, root: str | None = None, split: str | None = None,
             backend: str | None = None, out: str | Path | None = None,
             log: Callable[[str], None] = print, verbose: int | str = "auto") -> dict[str, Any]:
    """Evaluate a run or an exported SavedModel as `tfdml-eval` does; return what it writes as JSON.

    `verbose` (0, 1, 2, "auto": a bar on a terminal, one line otherwise) shows the embedding's and the
    search's progress.

    Example:
        >>> evaluate("runs/emoji")["metrics"]["map@r"]  # doctest: +SKIP
        0.4634
    """
    from tfdml.errors import ConfigError, DataError
    from tfdml.export import embed_table, load_exported
    from tfdml.training import evaluate_table, load_run
    from tfdml.training.builders import build_table

    from tfdml.cli.common import check_output_path

    if out is not None:
        check_output_path(out, "--out")
    source = Path(model)
    run_config = None
    if (source / "saved_model.pb").is_file():
        exported = load_exported(source)
        if dataset is None:
            raise ConfigError(f"{source} is a SavedModel, which does not record its dataset: pass --dataset (a config "
                              "name such as emoji or cub, a YAML config such as RUN_DIR/config.yaml, or a folder)")
        embedder: Any = exported.embed
        size, resize, described = exported.image_size, exported.resize, f"the {exported.kind} SavedModel {source}"
    else:
        run_config, embedder = load_run(source)
        size, resize, described = run_config.data.image_size, run_config.data.eval_resize, f"the run {source}"
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
    result = {"model": str(source), "dataset": data.dataset, "root": data.root, "split": split,
              "images": len(table), "classes": table.num_classes, "metrics": metrics}
    width = max(map(len, metrics))
    for name, value in metrics.items():
        log(f"  {name:<{width}}  {value:.4f}" if isinstance(value, float) else f"  {name:<{width}}  {value}")
    if out is None:
        tag = f"{data.dataset}_{split}"
        out = (source / f"eval_{tag}.json" if run_config is not None
               else source.parent / f"eval_{source.name}_{tag}.json")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    log(f"wrote {out}")
    return result


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
