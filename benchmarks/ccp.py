"""CCP on the emoji set: C2, MS and triplet, each with and without CCP, several seeds.

    .venv/bin/python benchmarks/ccp.py [--losses c2 ms triplet] [--seeds 0 1 2] [--epochs 12]
        [--variants plain ccp warmup] [--warmup 3] [key=value ...]
    .venv/bin/python benchmarks/ccp.py --step-cost    # CCP's extra cost per step and per re-seeding

Every run has the same budget (`train.epochs`, no time limit; CCP may stop earlier on its global
patience) and picks its weights on the validation classes. The table gives test P@1 (= R@1),
R-Precision and MAP@R as mean ± standard deviation over the seeds, CCP's rounds, the epochs trained,
and the training time (which includes the re-seeding passes). The `warmup` variant is CCP after
`--warmup` epochs of the pair term alone (`ccp.warmup_epochs`, not in the paper), in the same budget.
`--step-cost` times the training step with and without CCP side by side in one process (with the
proximal term active, as from round 2), and greedy k-center at emoji and SOP scale.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from _runs import mean_spread, step_ms, train

LOSSES = {  # name -> (config without CCP, loss overrides); CCP adds ccp.enabled and its settings
    "c2": ("emoji_contrastive", []),
    "ms": ("emoji", []),
    "triplet": ("emoji_triplet", []),
}
CCP = ["ccp.enabled=true", "ccp.proxies_per_class=8", "ccp.pool_size=3",
       "optimizer.lr_multipliers={backbone: 1.0, head: 1.0, loss: 1.0}"]


def step_cost(steps: int, batch: int, classes: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    from tfdml.ccp import greedy_k_center
    from tfdml.config import load_config

    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (batch, 32, 32, 3)).astype("float32"))
    labels = tf.constant(rng.permutation(classes)[np.repeat(np.arange(batch // 4), 4)], tf.int32)
    print(f"| loss | CCP | ms / step (batch {batch}, {classes} classes x 8 proxies) | ratio to no CCP |")
    print("|---|---|---|---|")
    for loss, (config, loss_extra) in LOSSES.items():
        plain = None
        for with_ccp in (False, True):
            cfg = load_config(f"yaml_configs/{config}.yaml", [*loss_extra, *(CCP if with_ccp else [])])
            # With CCP: lambda > 0, as from round 2 on, so the proximal term is computed too.
            ms = step_ms(cfg, classes, images, labels, steps,
                         prepare=(lambda m: m.proximal.lam.assign(2e-4)) if with_ccp else None)
            plain = plain or ms
            print(f"| {loss} | {'yes' if with_ccp else 'no'} | {ms:.1f} | {ms / plain:.2f}x |", flush=True)
    print("\n| greedy k-center | classes x pool | K | dim | seconds |\n|---|---|---|---|---|")
    for c, b, k, d in ((860, 3, 8, 128), (100, 12, 8, 512), (11318, 7, 4, 512)):
        pool = rng.normal(size=(c, b, d)).astype("float32")
        start = time.perf_counter()
        greedy_k_center(pool, np.ones((c, b), bool), rng.normal(size=(c, k, d)).astype("float32"), k)
        print(f"| {'emoji' if c == 860 else 'CUB' if c == 100 else 'SOP'} | {c} x {b} | {k} | {d} | "
              f"{time.perf_counter() - start:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", nargs="*", default=list(LOSSES), choices=list(LOSSES))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--variants", nargs="*", default=["plain", "ccp"], choices=["plain", "ccp", "warmup"])
    parser.add_argument("--warmup", type=int, default=3, help="epochs of the pair term alone (variant warmup)")
    parser.add_argument("--step-cost", action="store_true", help="time a step with and without CCP instead")
    parser.add_argument("--steps", type=int, default=20)
    args, extra = parser.parse_known_args()
    if args.step_cost:
        return step_cost(args.steps, batch=128, classes=860)
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
