"""Metrix and CCP where the papers measured them: pretrained (`emoji_pretrained.yaml`), against their
plain losses, seed by seed.

    .venv/bin/python benchmarks/methods.py [--only ccp metrix both] [--losses c2 ms ...] [--seeds 0 1 2]
        [--variants CCP feature ...] [--epochs N] [key=value ...]
    .venv/bin/python benchmarks/methods.py --step-cost     # the extra cost per step of each method

CCP is compared on C2, MS and triplet; Metrix at the input, feature and embedding level on C2, MS
and proxy anchor; `both` is Metrix (feature) x CCP on MS. Every run goes through `bin/tfdml-train`
(fixed `train.epochs`, no time limit; CCP may stop earlier on its global patience) and tests the
epoch picked on the validation classes. The table gives test R@1 and MAP@R, mean ± std over the seeds,
and the per-seed deltas against the plain loss of the same seed. Finished runs are read back.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from _runs import ROOT, mean_spread, step_ms
from pretrained import LOSSES, loss_overrides, run_tfdml

CCP = ["ccp.enabled=true", "ccp.proxies_per_class=8", "ccp.pool_size=3", "optimizer.lr_multipliers.loss=1.0"]
METRIX = {level: [f"mixing.level={level}"] for level in ("input", "feature", "embedding")}
GRID = {  # group -> losses -> variants (name -> overrides)
    "ccp": ({"c2", "ms", "triplet"}, {"CCP": CCP}),
    "metrix": ({"c2", "ms", "pa"}, {f"Metrix {level}": o for level, o in METRIX.items()}),
    "both": ({"ms"}, {"Metrix feature x CCP": CCP + METRIX["feature"]}),
}


def step_cost(steps: int, batch: int = 128, classes: int = 860) -> None:
    """Milliseconds per training step of each method against its plain loss, side by side in one process."""
    import numpy as np
    import tensorflow as tf

    from tfdml.config import load_config

    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (batch, 64, 64, 3)).astype("float32"))
    labels = tf.constant(rng.permutation(classes)[np.repeat(np.arange(batch // 4), 4)], tf.int32)
    print(f"| loss | method | ms / step (batch {batch}, 64 px, MobileNetV1) | ratio to plain |\n|---|---|---|---|")
    for group in sorted(GRID):
        losses, variants = GRID[group]
        for loss in sorted(losses):
            plain = None
            for name, overrides in {"plain": [], **variants}.items():
                cfg = load_config(ROOT / "yaml_configs" / "emoji_pretrained.yaml",
                                  [*loss_overrides(LOSSES[loss][1]), *overrides, "model.backbone_weights=null",
                                   "data.image_size=64"])
                # With CCP: lambda > 0, as from round 2 on, so the proximal term is computed too.
                ms = step_ms(cfg, classes, images, labels, steps,
                             prepare=(lambda m: m.proximal.lam.assign(2e-4)) if cfg.ccp.enabled else None)
                plain = plain or ms
                print(f"| {loss} | {name} | {ms:.0f} | {ms / plain:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(GRID), default=sorted(GRID))
    parser.add_argument("--losses", nargs="*", default=["c2", "ms", "triplet", "pa"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="*", default=None,
                        help="only the variants whose name contains one of these (e.g. CCP feature)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--step-cost", action="store_true", help="time each method's step instead")
    parser.add_argument("--steps", type=int, default=10)
    args, extra = parser.parse_known_args()
    if args.step_cost:
        return step_cost(args.steps)
    rows = []
    for group in args.only:
        losses, variants = GRID[group]
        for loss in [x for x in args.losses if x in losses]:
            plain = [run_tfdml(loss, s, args.epochs, extra) for s in args.seeds]
            rows.append(_row(loss, "plain", plain, None))
            print(rows[-1], flush=True)
            for name, overrides in variants.items():
                if args.variants and not any(v in name for v in args.variants):
                    continue
                runs = [run_tfdml(loss, s, args.epochs, [*extra, *overrides]) for s in args.seeds]
                rows.append(_row(loss, name, runs, plain))
                print(rows[-1], flush=True)
    print(f"\nemoji_pretrained.yaml {' '.join(extra)}; seeds {args.seeds}\n")
    print("| loss | method | test R@1 | test MAP@R | R@1 delta per seed | mean delta vs spread | train s |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(dict.fromkeys(rows)))


def _row(loss: str, name: str, runs: list[dict], plain: list[dict] | None) -> str:
    r1 = [r["test"]["recall@1"] for r in runs]
    deltas = "" if plain is None else " / ".join(f"{a - p['test']['recall@1']:+.3f}" for a, p in zip(r1, plain))
    verdict = ""
    if plain is not None and len(runs) > 1:
        gain = statistics.mean(d for d in (a - p["test"]["recall@1"] for a, p in zip(r1, plain)))
        spread = max(statistics.stdev(r1), statistics.stdev([p["test"]["recall@1"] for p in plain]))
        verdict = f"{gain:+.3f} vs {spread:.3f}: {'gain' if gain > spread else 'no clear gain'}"
    seconds = statistics.mean(r["train_time_s"] for r in runs)
    return (f"| {loss} | {name} | {mean_spread(r1)} | {mean_spread([r['test']['map@r'] for r in runs])} | "
            f"{deltas} | {verdict} | {seconds:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
