"""CCP on the emoji set: C2, MS and triplet, each with and without CCP, several seeds.

    .venv/bin/python benchmarks/ccp.py [--losses c2 ms triplet] [--seeds 0 1 2] [--epochs 12]
        [--variants plain ccp warmup] [--warmup 3] [key=value ...]

Every run has the same budget (`train.epochs`, no time limit; CCP may stop earlier on its global
patience) and picks its weights on the validation classes. The table gives test P@1 (= R@1),
R-Precision and MAP@R as mean ± standard deviation over the seeds, CCP's rounds, the epochs trained,
and the training time (which includes the re-seeding passes). The `warmup` variant is CCP after
`--warmup` epochs of the pair term alone (`ccp.warmup_epochs`, not in the paper), in the same budget.
"""

from __future__ import annotations

import argparse
import sys

from _runs import mean_spread, train

LOSSES = {  # name -> (config without CCP, loss overrides); CCP adds ccp.enabled and its settings
    "c2": ("emoji_contrastive", []),
    "ms": ("emoji", []),
    "triplet": ("emoji_triplet", []),
}
CCP = ["ccp.enabled=true", "ccp.proxies_per_class=8", "ccp.pool_size=3",
       "optimizer.lr_multipliers={backbone: 1.0, head: 1.0, loss: 1.0}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", nargs="*", default=list(LOSSES), choices=list(LOSSES))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--variants", nargs="*", default=["plain", "ccp"], choices=["plain", "ccp", "warmup"])
    parser.add_argument("--warmup", type=int, default=3, help="epochs of the pair term alone (variant warmup)")
    args, extra = parser.parse_known_args()
    variants = {"plain": ("no", "plain", []), "ccp": ("yes", "ccp", CCP),
                "warmup": (f"yes, warm-up {args.warmup}", f"ccpwarm{args.warmup}",
                           [*CCP, f"ccp.warmup_epochs={args.warmup}"])}
    print("| loss | CCP | runs | test P@1 | test R-Prec | test MAP@R | rounds | epochs | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for loss in args.losses:
        config, loss_extra = LOSSES[loss]
        for variant in args.variants:
            label, tag, ccp = variants[variant]
            runs = []
            for seed in args.seeds:
                overrides = [f"train.epochs={args.epochs}", "train.time_budget_s=null", f"seed={seed}", *loss_extra,
                             *ccp, *extra]
                name = f"{loss}_{tag}_e{args.epochs}_s{seed}"
                runs.append(train(config, name, "bench_ccp", overrides))
            col = lambda key: mean_spread([r["test"][key] for r in runs])  # noqa: E731
            rounds = mean_spread([max([v.get("ccp_round", 0) for v in r["validation"]]) for r in runs])
            epochs = mean_spread([len(r["validation"]) for r in runs])
            seconds = mean_spread([r["train_time_s"] for r in runs])
            print(f"| {loss} | {label} | {len(runs)} | {col('precision@1')} | "
                  f"{col('r_precision')} | {col('map@r')} | {rounds} | {epochs} | {seconds} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
