"""Metrix on the emoji set: each loss without mixing and with each mixing level, several seeds.

    .venv/bin/python benchmarks/metrix.py [--losses contrastive multi_similarity proxy_anchor]
        [--levels none input feature embedding] [--seeds 0 1 2] [--epochs 12] [key=value ...]
    .venv/bin/python benchmarks/metrix.py --step-cost      # extra cost of each level per training step

Every run has the same budget (`train.epochs`, no time limit) and picks its weights on the
validation classes; the table gives test R@1, MAP@R and utilization as mean ± standard deviation
over the seeds. `--step-cost` times the training step of each level side by side in one process,
as a ratio to the plain step.
"""

from __future__ import annotations

import argparse
import os
import sys

from _runs import mean_spread, step_ms, train

LOSSES = {  # name -> (config, extra overrides)
    "contrastive": ("emoji_contrastive", []),
    "multi_similarity": ("emoji", []),
    "proxy_anchor": ("emoji_proxy_anchor", []),
}


def quality(args: argparse.Namespace, extra: list[str]) -> None:
    print("| loss | mixing | runs | test R@1 | test MAP@R | utilization | best val MAP@R |")
    print("|---|---|---|---|---|---|---|")
    for loss in args.losses:
        config, loss_extra = LOSSES[loss]
        for level in args.levels:
            runs = []
            for seed in args.seeds:
                overrides = [f"train.epochs={args.epochs}", "train.time_budget_s=null", f"seed={seed}",
                             f"mixing.level={level}", *loss_extra, *extra]
                runs.append(train(config, f"{loss}_{level}_e{args.epochs}_s{seed}", "bench_metrix", overrides))
            col = lambda key: mean_spread([r["test"][key] for r in runs])  # noqa: E731
            val = mean_spread([r["best_val"]["map@r"] for r in runs])
            print(f"| {loss} | {level} | {len(runs)} | {col('recall@1')} | {col('map@r')} | {col('utilization')} | "
                  f"{val} |", flush=True)


def step_cost(steps: int, batch: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    from tfdml.config import load_config

    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (batch, 32, 32, 3)).astype("float32"))
    labels = tf.constant(np.repeat(np.arange(batch // 4), 4), tf.int32)
    print(f"| loss | level | ms / step (batch {batch}) | ratio to no mixing |\n|---|---|---|---|")
    for loss, (config, loss_extra) in LOSSES.items():
        plain = None
        for level in ("none", "embedding", "feature", "input"):
            cfg = load_config(f"yaml_configs/{config}.yaml", [f"mixing.level={level}", *loss_extra])
            ms = step_ms(cfg, batch // 4, images, labels, steps)
            plain = plain or ms
            print(f"| {loss} | {level} | {ms:.1f} | {ms / plain:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", nargs="*", default=list(LOSSES), choices=list(LOSSES))
    parser.add_argument("--levels", nargs="*", default=["none", "input", "feature", "embedding"])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--step-cost", action="store_true", help="time one training step per level instead")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=128)
    args, extra = parser.parse_known_args()
    if args.step_cost:
        step_cost(args.steps, args.batch)
    else:
        quality(args, extra)


if __name__ == "__main__":
    sys.exit(main())
