"""One training run per loss on the emoji set, same budget each, model picked on validation classes.

    .venv/bin/python benchmarks/emoji_losses.py [--epochs 12] [--seed 0] [--only NAME ...] [key=value ...]

Each config `yaml_configs/emoji_<loss>.yaml` runs through `bin/tfdml-train` in its own process with
`train.epochs` fixed and no time budget (so machine load changes the time, not the result), under
`runs/bench_losses/`. Prints a markdown table of the best validation MAP@R and the test metrics of
the weights that achieved it. A finished run is read back, not retrained.
"""

from __future__ import annotations

import argparse
import sys

from _runs import train

CONFIGS = {  # table row -> config
    "contrastive C1": "emoji_c1",
    "contrastive C2": "emoji_contrastive",
    "triplet (all)": "emoji_triplet",
    "multi-similarity": "emoji",
    "multi-similarity + mining": "emoji_ms_mining",
    "C1 + XBM": "emoji_xbm",
    "proxy anchor": "emoji_proxy_anchor",
    "ProxyNCA++": "emoji_proxy_nca_pp",
    "normalised softmax": "emoji_normalized_softmax",
    "ArcFace": "emoji_arcface",
    "SoftTriple": "emoji_soft_triple",
}


def run(config: str, epochs: int, seed: int, extra: list[str]) -> dict:
    overrides = [f"train.epochs={epochs}", "train.time_budget_s=null", f"seed={seed}", *extra]
    return train(config, f"{config}_e{epochs}_s{seed}", "bench_losses", overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="config names to run (default: all)")
    args, extra = parser.parse_known_args()
    rows = []
    for label, config in CONFIGS.items():
        if args.only and config not in args.only:
            continue
        m = run(config, args.epochs, args.seed, extra)
        t, best = m["test"], m["best_val"]
        rows.append(f"| {label} | `{config}` | {best['map@r']:.3f} (ep {best['epoch']}) | {t['recall@1']:.3f} | "
                    f"{t['r_precision']:.3f} | {t['map@r']:.3f} | {m['train_time_s']:.0f} |")
        print(rows[-1], flush=True)
    print(f"\n{args.epochs} epochs each, seed {args.seed}\n")
    print("| loss | config | best val MAP@R | test R@1 | test R-Prec | test MAP@R | train s |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
