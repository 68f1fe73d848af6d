"""Where a finished emoji run's nearest neighbours go wrong: same vendor or another, which look-alikes.

    .venv/bin/python benchmarks/error_anatomy.py RUN_DIR [RUN_DIR ...] [--split val|test] [--examples 10]

Each emoji class holds one drawing per vendor, so a query's right answers are always another vendor's
drawings: a nearest neighbour from the query's own vendor is always wrong. The share of errors that
are same-vendor says how much of what is left is style (one vendor's look-alike emoji: male and female
elf, moon phases) rather than content. `--split test` reads the run's saved `test_embeddings.npz` (for
the record: nothing is chosen on it); `--split val` embeds the validation classes with the run's
selected weights. Prints one markdown row per run and, with `--examples`, some errors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _runs import load_test_embeddings


def anatomy(embeddings: np.ndarray, labels: np.ndarray, vendors: np.ndarray) -> dict[str, float]:
    """R@1, the share of errors whose neighbour is the query's own vendor, and R@1 if the gallery held
    only other vendors' drawings (what the errors would be without the style confusions)."""
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(1)
    wrong = labels[nearest] != labels
    same = vendors[nearest] == vendors
    similarity[vendors[:, None] == vendors[None, :]] = -np.inf
    return {"recall@1": 1 - wrong.mean(), "errors": int(wrong.sum()),
            "same_vendor_share": (wrong & same).sum() / max(1, wrong.sum()),
            "recall@1_other_vendors_only": float((labels[similarity.argmax(1)] == labels).mean()), "nearest": nearest}


def split_rows(run_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Embeddings, labels and image paths of a run's validation or test split, in the table's order."""
    from tfdml.config import load_config
    from tfdml.evaluation.callback import embed_dataset
    from tfdml.training.builders import build_data, build_table
    from tfdml.training.runner import load_run

    if split == "test":  # the saved embeddings: only the table's paths are needed, no image is decoded
        embeddings, labels = load_test_embeddings(run_dir)
        table = build_table(load_config(run_dir / "config.yaml"), lambda *_: None).subset("test")
    else:
        config, model = load_run(run_dir)
        data = build_data(config, lambda *_: None)
        table = data.val
        embeddings, labels = embed_dataset(model, data.eval_dataset(table, config))
    return embeddings, labels, [str(p) for p in table.path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--examples", type=int, default=0)
    args = parser.parse_args()
    print(f"| run | {args.split} R@1 | errors | same-vendor share of errors | R@1, other vendors' drawings only |\n"
          "|---|---|---|---|---|")
    for run_dir in args.runs:
        embeddings, labels, paths = split_rows(run_dir, args.split)
        vendors = np.array([Path(p).parent.name for p in paths])
        a = anatomy(embeddings, labels, vendors)
        print(f"| {run_dir.name} | {a['recall@1']:.4f} | {a['errors']} | {a['same_vendor_share']:.2f} | "
              f"{a['recall@1_other_vendors_only']:.4f} |", flush=True)
        for i in np.flatnonzero(labels[a["nearest"]] != labels)[:args.examples]:
            j = a["nearest"][i]
            print(f"  {vendors[i]}/{Path(paths[i]).name} -> {vendors[j]}/{Path(paths[j]).name}")


if __name__ == "__main__":
    main()
