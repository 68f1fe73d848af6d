"""Every loss in the papers' regime (`emoji_pretrained.yaml`: ImageNet MobileNetV1 fine-tuned at 64 px,
frozen BatchNorm), and the pytorch-metric-learning peer of `../shared/peer/` on the same data, split
and weights, side by side in one session.

    .venv/bin/python benchmarks/pretrained.py [--only ms pa ...] [--seeds 0 1 2] [--epochs N]
        [--peer ~/pml-venv/bin/python] [--peer-budget S] [key=value ...]

Each tfdml run goes through `bin/tfdml-train` in its own process with `train.epochs` fixed and no time
budget, so machine load changes the time, not the result; its training seconds are reported beside
the metrics. The epoch tested is the best on the validation classes. A loss takes its settings
(`loss.*`, the `loss` learning-rate multiplier) from its `yaml_configs/emoji_<loss>.yaml`. The peer
(`--peer`, the Python of a venv with PML 2.9, see `../shared/peer/README.md`) trains for `--peer-budget`
seconds (default: the mean training time of tfdml's MS runs) and picks its epoch the same way. Finished
runs are read back, not retrained. Prints one markdown table: mean ± std over the seeds run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _runs import ROOT, mean_spread, train

SHARED = ROOT.parent / "shared"
LOSSES = {  # key -> (table label, config whose loss settings it takes)
    "ms": ("multi-similarity", "emoji"),
    "ms_mining": ("multi-similarity + mining", "emoji_ms_mining"),
    "c2": ("contrastive C2", "emoji_contrastive"),
    "triplet": ("triplet (all)", "emoji_triplet"),
    "xbm": ("C1 + XBM", "emoji_xbm"),
    "pa": ("proxy anchor", "emoji_proxy_anchor"),
    "nca": ("ProxyNCA++", "emoji_proxy_nca_pp"),
    "softmax": ("normalised softmax", "emoji_normalized_softmax"),
    "arcface": ("ArcFace", "emoji_arcface"),
    "softtriple": ("SoftTriple", "emoji_soft_triple"),
}
PEER_LOSSES = {"ms": "ms", "pa": "pa"}  # what the peer script implements


def loss_overrides(config: str) -> list[str]:
    """The `loss` section and loss learning-rate multiplier of `yaml_configs/<config>.yaml` as overrides."""
    from tfdml.config import load_config
    from tfdml.config.loader import to_dict

    cfg = load_config(ROOT / "yaml_configs" / f"{config}.yaml")
    loss = to_dict(cfg.loss)
    return [f"loss.name={loss['name']}", f"loss.args={json.dumps(loss['args'])}", f"loss.xbm={json.dumps(loss['xbm'])}",
            f"optimizer.lr_multipliers.loss={cfg.optimizer.lr_multipliers['loss']}"]


def run_tfdml(key: str, seed: int, epochs: int | None, extra: list[str]) -> dict:
    overrides = [*loss_overrides(LOSSES[key][1]), f"seed={seed}", "train.time_budget_s=null", *extra]
    if epochs:
        overrides.append(f"train.epochs={epochs}")
    tag = f"{key}_e{epochs or 'cfg'}_s{seed}" + ("_" + "_".join(extra).replace("/", "-") if extra else "")
    return train("emoji_pretrained", tag, "bench_pretrained", overrides)


def run_peer(python: str, loss: str, seed: int, budget: float) -> dict:
    """The PML peer's RESULT (cached under runs/bench_pretrained/peer_*.json)."""
    out = ROOT / "runs" / "bench_pretrained" / f"peer_{loss}_b{budget:.0f}_s{seed}.json"
    if not out.is_file():
        data = Path.home() / ".cache" / "tfdml" / "emoji-datasource-16.0.0" / "package"
        cmd = [python, "pml_peer.py", "emoji", str(data), "--loss", loss, "--budget", str(budget), "--seed", str(seed),
               "--backbone", "mobilenet_v1", "--weights", str(SHARED / "weights" / "mobilenet_v1_imagenet.npz"),
               "--size", "64", "--freeze-bn", "--lr", "1e-4"]
        lines = subprocess.run(cmd, cwd=SHARED / "peer", check=True, capture_output=True, text=True).stdout.splitlines()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(next(line for line in lines if line.startswith("RESULT"))[len("RESULT "):])
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(LOSSES), help="losses to run (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's train.epochs")
    parser.add_argument("--peer", help="python of a venv with pytorch-metric-learning 2.9 (../shared/peer)")
    parser.add_argument("--peer-budget", type=float, default=None)
    args, extra = parser.parse_known_args()
    rows, ms_times = [], []
    for key in args.only or list(LOSSES):
        runs = [run_tfdml(key, seed, args.epochs, extra) for seed in args.seeds]
        if key == "ms":
            ms_times = [r["train_time_s"] for r in runs]
        rows.append(_row(f"tfdml {LOSSES[key][0]}", [r["test"]["recall@1"] for r in runs],
                         [r["test"]["map@r"] for r in runs], [r["train_time_s"] for r in runs],
                         [len(r["validation"]) for r in runs], [r["best_val"]["epoch"] for r in runs]))
        print(rows[-1], flush=True)
    if args.peer:
        budget = args.peer_budget or (statistics.mean(ms_times) if ms_times else 600.0)
        for key in args.only or list(LOSSES):
            if key not in PEER_LOSSES:
                continue
            runs = [run_peer(args.peer, PEER_LOSSES[key], seed, budget) for seed in args.seeds]
            rows.append(_row(f"PML 2.9 {LOSSES[key][0]}", [r["test"]["r_at_1"] for r in runs],
                             [r["test"]["map_at_r"] for r in runs], [r["budget_s"] for r in runs],
                             [r["epochs"] for r in runs], [r["best_epoch"] for r in runs]))
            print(rows[-1], flush=True)
    print(f"\nemoji_pretrained.yaml {' '.join(extra)}; seeds {args.seeds}; test classes never used to pick a run\n")
    print("| run | test R@1 | test MAP@R | train s | epochs | best epoch |\n|---|---|---|---|---|---|")
    print("\n".join(rows))


def _row(label: str, r1: list, mapr: list, seconds: list, epochs: list, best: list) -> str:
    return (f"| {label} | {mean_spread(r1)} | {mean_spread(mapr)} | {statistics.mean(seconds):.0f} | "
            f"{'/'.join(map(str, epochs))} | {'/'.join(map(str, best))} |")


if __name__ == "__main__":
    sys.exit(main())
