"""`tfdml-export RUN_DIR [--gallery test|train|val|all|DIR] [--out DIR] [--no-retrieval]`: export a trained run.

Writes OUT/saved_model/ (images -> L2-normalised embeddings) and OUT/retrieval_model/ (images and k
-> ids and cosine scores of the k nearest gallery images; its manifest.json lists each gallery id's
path, label and class name). OUT defaults to RUN_DIR. The model has the weights the run was tested
with (the best validation epoch). Both load with plain `tf.saved_model.load`, without tfdml.

The gallery is a split of the run's dataset (default: test, the held-out classes; `all`: every
split) or a folder: DIR/<class>/<image> (labelled by folder) or images directly in DIR (unlabelled).

Examples:
    tfdml-export runs/emoji
    tfdml-export runs/emoji --gallery all --out exports/emoji
    tfdml-export runs/products --gallery /data/catalogue
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from tfdml.cli.common import make_parser, run_command

SPLITS = ("test", "train", "val", "all")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("tfdml-export", __doc__)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory that tfdml-train wrote, e.g. runs/emoji")
    parser.add_argument("--gallery", default="test", metavar="test|train|val|all|DIR",
                        help="the retrieval model's gallery: a split of the run's dataset, or a folder (default: test)")
    parser.add_argument("--out", metavar="DIR", help="where saved_model/ and retrieval_model/ go (default: RUN_DIR)")
    parser.add_argument("--no-retrieval", action="store_true", help="write only the embedding SavedModel")
    args = parser.parse_args(argv)
    return run_command("tfdml-export", lambda: export_run(args.run_dir, args.gallery, args.out, not args.no_retrieval))


def export_run(run_dir: str | Path, gallery: str = "test", out: str | Path | None = None,
               retrieval: bool = True, log: Callable[[str], None] = print,
               verbose: int | str = "auto") -> dict[str, Path]:
    """Export `run_dir` as `tfdml-export` does; return the paths written (`saved_model`, `retrieval_model`).

    `verbose` (0, 1, 2, "auto": a bar on a terminal, one line otherwise) shows the gallery embedding's progress.

    Example (not run as a doctest: it needs a trained run):
        >>> export_run("runs/emoji", gallery="test")  # doctest: +SKIP
        {'saved_model': PosixPath('runs/emoji/saved_model'), 'retrieval_model': PosixPath('runs/emoji/retrieval_model')}
    """
    from tfdml.errors import DataError
    from tfdml.export import embed_table, export_retrieval_model, export_saved_model, read_image_folder
    from tfdml.training import load_run
    from tfdml.training.builders import build_table

    from tfdml.cli.common import check_output_path

    run_dir = Path(run_dir)
    if out is not None:
        check_output_path(out, "--out", directory=True)
    config, model = load_run(run_dir)
    out = Path(out) if out is not None else run_dir
    size, resize = config.data.image_size, config.data.eval_resize
    if retrieval:  # the gallery first: its errors (a folder without images, a bad file) come before any writing
        if gallery in SPLITS:
            table, labelled = build_table(config, log=log), True
            table = table if gallery == "all" else table.subset(gallery)
            dataset = config.data.dataset
            what = f"all of {dataset}" if gallery == "all" else f"the {gallery} split of {dataset}"
        else:
            table, labelled = read_image_folder(gallery)
            what = f"the folder {gallery}"
        if len(table) == 0:
            raise DataError(f"{what} has no images; pick another gallery (--gallery {'|'.join(SPLITS)}|DIR)")
        log(f"embedding the gallery: {what}, {len(table)} images")
        embeddings = embed_table(model, table, image_size=size, resize=resize, batch_size=config.eval.batch_size,
                                 bbox_crop=config.data.bbox_crop, verbose=verbose)
    written = {"saved_model": export_saved_model(model, out / "saved_model", image_size=size, resize=resize)}
    log(f"embedding SavedModel: {written['saved_model']}")
    if retrieval:
        source = {"run": str(run_dir), "gallery": gallery,
                  "dataset": config.data.dataset if gallery in SPLITS else None}
        written["retrieval_model"] = export_retrieval_model(
            model, table, out / "retrieval_model", image_size=size, resize=resize, batch_size=config.eval.batch_size,
            labelled=labelled, embeddings=embeddings, source=source)
        classes = f"{table.num_classes} classes" if labelled else "unlabelled"
        log(f"retrieval SavedModel: {written['retrieval_model']} (gallery: {what}, {len(table)} images, {classes})")
    return written


if __name__ == "__main__":
    sys.exit(main())
