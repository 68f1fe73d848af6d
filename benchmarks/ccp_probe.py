"""Why CCP trails its plain loss in the pretrained regime: probes on the validation classes.

    .venv/bin/python benchmarks/ccp_probe.py [KEY=VALUE ...] [--loss c2] [--epochs 12] [--only ccp ...] [--seeds 0 1 2]
        [--subsets N [--subset-classes 96 ...]]

(overrides first: `--only` and `--seeds` take every word after them)

CCP on `emoji_pretrained.yaml` at 64 px (seed 0 unless `--seeds`), as `benchmarks/methods.py` runs it (K 8, pool 3,
proxies at the backbone's learning rate), against single changes: the proxies at x100 (the
pretrained config's rate for proxy losses), the pair term at full weight (w_pair 1), and the proxy
term at a tenth (w_proxy 0.1), and patience 1 (so that the rounds, re-seeding and the proximal
term, happen within the short run). Prints validation MAP@R per epoch, the last round reached and
the test metrics of the epoch picked on validation (for the record: probes are chosen on validation).
Runs are kept under runs/probe_ccp/ and read back. `--subsets N` (finished runs only) re-scores each
probe's test embeddings against plain's on N random sets of 96 test classes per seed (the
validation split's size): how much a validation gain of that size can owe to the luck of one draw;
`--subset-classes` sets other sizes, to see how a difference changes with the size of the gallery.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _runs import ROOT, load_test_embeddings, print_subset_differences, subset_differences, train
from methods import CCP
from pretrained import LOSSES, loss_overrides

PROBES = {
    "plain": [],
    "ccp": CCP,
    "ccp_proxies_x100": [*CCP, "optimizer.lr_multipliers.loss=100.0"],
    "ccp_w_pair_1": [*CCP, "ccp.w_pair=1.0"],
    "ccp_w_proxy_0.1": [*CCP, "ccp.w_proxy=0.1"],
    # The rounds themselves: patience 1 starts a round after one flat validation, so 12 epochs hold several.
    "ccp_patience_1": [*CCP, "ccp.patience=1"],
    "ccp_w_pair_1_patience_1": [*CCP, "ccp.w_pair=1.0", "ccp.patience=1"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="c2", choices=sorted(LOSSES))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--only", nargs="*", default=list(PROBES))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--subsets", type=int, default=0, help="random 96-class test subsets (finished runs)")
    parser.add_argument("--subset-classes", nargs="*", type=int, default=[96], help="classes per subset")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (part of the run's name)")
    args = parser.parse_args()
    suffix = "".join(f"_{o}" for o in args.overrides)
    if args.subsets:
        return subsets(args, suffix)
    print("| probe | seed | validation MAP@R per epoch | best | rounds | test R@1 / MAP@R |\n|---|---|---|---|---|---|")
    for name in args.only:
        for seed in args.seeds:
            metrics = train("emoji_pretrained", run_name(args, name, seed, suffix), "probe_ccp",
                            [*loss_overrides(LOSSES[args.loss][1]), "data.image_size=64", f"train.epochs={args.epochs}",
                             "train.time_budget_s=null", "train.jit_compile=false", f"seed={seed}", *PROBES[name],
                             *args.overrides])
            curve = [v["map@r"] for v in metrics["validation"]]
            rounds = max((v.get("ccp_round", 0) for v in metrics["validation"]), default=0)
            test = metrics["test"]
            print(f"| {name} | {seed} | {', '.join(f'{x:.3f}' for x in curve)} | {max(curve):.3f} | {rounds or '-'} | "
                  f"{test['recall@1']:.3f} / {test['map@r']:.3f} |", flush=True)


def run_name(args: argparse.Namespace, probe: str, seed: int, suffix: str) -> str:
    return f"{args.loss}_{probe}_e{args.epochs}" + (f"_s{seed}" if seed else "") + suffix


def subsets(args: argparse.Namespace, suffix: str) -> None:
    """Each probe's MAP@R and R@1 minus plain's on random sets of the test classes, over the seeds."""
    def embeddings(probe: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return load_test_embeddings(Path(ROOT, "runs", "probe_ccp", run_name(args, probe, seed, suffix)))

    probes = [p for p in args.only if p != "plain"]
    for classes in args.subset_classes:
        diffs = subset_differences(embeddings, probes, args.seeds, args.subsets, classes)
        print_subset_differences(diffs, f"\n{args.loss}, {args.epochs} epochs, {args.subsets} random sets of {classes} "
                                        f"test classes per seed, seeds {args.seeds}")


if __name__ == "__main__":
    main()
