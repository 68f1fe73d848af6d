"""Why Metrix (feature level) gains on the validation classes but not on test in the pretrained regime:
single changes against the run `benchmarks/methods.py` makes.

    .venv/bin/python benchmarks/metrix_probe.py [--loss ms] [--seeds 0] [--epochs 12] [--only plain w1 ...]

`emoji_pretrained.yaml` at 64 px as `methods.py` runs it (same run names, so finished runs are shared
and read back from runs/bench_pretrained/). The changes: the mixed loss at full weight (w = 1 instead
of 0.4), 16x more mixtures per batch (the authors' code mixes every anchor-negative pair, tens of
thousands per batch; tfdml bounds them at `mixing.max_mixtures`, 64 by default), no negative-negative
mixtures (the authors' code never makes them), and the authors' 5-epoch head warm-up. Prints the best
validation MAP@R (the selection metric) and, for diagnosis only, the test metrics of the epoch it
picked; no setting is chosen on them.

`--subsets N` asks whether a validation gain of the validation set's size should be expected to show
on test: it draws N random sets of 96 test classes (the validation split's size) and reports, per
probe against plain of the same seed, the mean and spread of the MAP@R and R@1 differences on them
and how often the probe wins, from the saved test embeddings (no training).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from _runs import load_test_embeddings, print_subset_differences, subset_differences
from pretrained import run_dir, run_tfdml

FEATURE = ["mixing.level=feature"]
PROBES = {
    "plain": [],
    "feature": FEATURE,
    "w1": [*FEATURE, "mixing.weight=1.0"],
    "mixtures_1024": [*FEATURE, "mixing.max_mixtures=1024"],
    "no_neg_neg": [*FEATURE, "mixing.kinds=[pos_neg,anchor_neg]"],
    "head_warmup_5": [*FEATURE, "train.head_warmup_epochs=5"],
    "plain_head_warmup_5": ["train.head_warmup_epochs=5"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="ms", choices=["c2", "ms", "pa"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--only", nargs="*", default=list(PROBES), choices=list(PROBES))
    parser.add_argument("--subsets", type=int, default=0, help="test-class subsets of the validation size")
    args = parser.parse_args()
    if args.subsets:
        return subsets(args)
    print(f"{args.loss}, 64 px, {args.epochs} epochs, seeds {args.seeds} (mean over seeds)\n")
    print("| probe | best val MAP@R | test R@1 | test MAP@R | utilization |\n|---|---|---|---|---|")
    for name in args.only:
        runs = [run_tfdml(args.loss, seed, args.epochs, ["data.image_size=64", *PROBES[name]]) for seed in args.seeds]
        mean = lambda get: statistics.mean(get(r) for r in runs)  # noqa: E731
        print(f"| {name} | {mean(lambda r: r['best_val']['map@r']):.3f} | {mean(lambda r: r['test']['recall@1']):.3f} | "
              f"{mean(lambda r: r['test']['map@r']):.3f} | {mean(lambda r: r['test']['utilization']):.3f} |", flush=True)


def subsets(args: argparse.Namespace, classes: int = 96) -> None:
    """Per probe: MAP@R and R@1 differences against plain on random `classes`-class subsets of the test split."""
    def embeddings(probe: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return load_test_embeddings(run_dir(args.loss, seed, args.epochs, ["data.image_size=64", *PROBES[probe]]))

    probes = [p for p in args.only if p != "plain"]
    diffs = subset_differences(embeddings, probes, args.seeds, args.subsets, classes)
    print_subset_differences(diffs, f"{args.loss}, {args.subsets} random sets of {classes} test classes per seed, "
                                    f"seeds {args.seeds}")


if __name__ == "__main__":
    main()
