"""Every loss in the papers' regime (`emoji_pretrained.yaml`: ImageNet MobileNetV1 fine-tuned at 128 px,
frozen BatchNorm), and the pytorch-metric-learning peer of `../shared/peer/` on the same data, split
and weights, side by side in one session.

    .venv/bin/python benchmarks/pretrained.py [--only ms pa ...] [--seeds 0 1 2] [--epochs N]
        [--budget S] [--peer ~/pml-venv/bin/python [--peer-after]] [key=value ...]

Each tfdml run goes through `bin/tfdml-train` in its own process and tests the epoch that was best on
the validation classes. Without `--budget` it trains `train.epochs` with no time limit, so machine
load changes the time, not the result; with `--budget S` it stops after the epoch in which S seconds
of training ran out (`train.time_budget_s`). A loss takes its `loss.*` settings from its
`yaml_configs/emoji_<loss>.yaml`. Proxy losses train from `emoji_pretrained_proxy.yaml`: proxies at
x100 (as the Proxy Anchor paper) with the head at the backbone's rate (x1, as that paper does, not
multi-similarity's x10), after one epoch that trains the head and proxies alone (the Metrix code's 5
of 100 epochs, scaled), on batches of one image from each of 128 classes (`sampler.m: 1`, since
2026-12-03; add `sampler.m=4` to repeat the earlier rows). The rates were chosen on the validation
classes (proxy anchor, 64 px, seed 0, 4 epochs; RESULTS.md "Why proxy anchor collapsed": head x10
with proxies x100 collapses once the backbone unfreezes), the batches too (3 seeds, RESULTS.md
"Proxy anchor with one image per class per batch").
With `--peer` (the Python of a venv with PML 2.9, see `../shared/peer/README.md`) the peer trains the
same loss (MS or proxy anchor) on the same split, weights, image size and emoji sheets *at the same
time* as the tfdml run of the same seed, for the same wall-clock budget (`--budget`, default 600 s),
so both share the machine's load; with `--peer-after` it runs right after it instead, so each has
the whole machine for its budget. Finished runs are read back, not retrained. Prints one markdown
table: mean ± std over the seeds run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

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
GROUP = "bench_pretrained"  # runs/<GROUP>/<run_name>
PEER_LOSSES = {"ms": "ms", "pa": "pa"}  # what the peer script implements
PROXY_LOSSES = {"pa", "nca", "softmax", "arcface", "softtriple"}  # trained from emoji_pretrained_proxy.yaml


def loss_overrides(config: str) -> list[str]:
    """The `loss` section and loss learning-rate multiplier of `yaml_configs/<config>.yaml` as overrides."""
    from tfdml.config import load_config
    from tfdml.config.loader import to_dict

    cfg = load_config(ROOT / "yaml_configs" / f"{config}.yaml")
    loss = to_dict(cfg.loss)
    return [f"loss.name={loss['name']}", f"loss.args={json.dumps(loss['args'])}", f"loss.xbm={json.dumps(loss['xbm'])}"]


def run_name(key: str, seed: int, epochs: int | None, extra: list[str], budget: float | None = None) -> str:
    """The directory name under runs/bench_pretrained/ of `run_tfdml` with the same arguments."""
    return (f"{key}_e{epochs or 'cfg'}_s{seed}" + (f"_b{budget:.0f}" if budget else "")
            + ("_" + "_".join(extra).replace("/", "-") if extra else ""))


def run_dir(*args: Any, **kwargs: Any) -> Path:
    """The run directory of `run_tfdml(*args, **kwargs)` (`test_embeddings.npz`, checkpoints, logs)."""
    return ROOT / "runs" / GROUP / run_name(*args, **kwargs)


def run_tfdml(key: str, seed: int, epochs: int | None, extra: list[str], budget: float | None = None) -> dict:
    overrides = [*loss_overrides(LOSSES[key][1]), f"seed={seed}", f"train.time_budget_s={budget or 'null'}", *extra]
    if epochs:
        overrides.append(f"train.epochs={epochs}")
    config = "emoji_pretrained_proxy" if key in PROXY_LOSSES else "emoji_pretrained"  # head x1 + warm-up for proxies
    return train(config, run_name(key, seed, epochs, extra, budget), GROUP, overrides)


def start_peer(python: str, loss: str, seed: int, budget: float, size: int,
               sheet: int = 32) -> tuple[Path, subprocess.Popen | None]:
    """Start the PML peer in the background (unless its RESULT is cached under runs/bench_pretrained/).

    `size`: the network's input in pixels; `sheet`: the emoji sprites' own size (32, or the vendors'
    64 px drawings through `pml_peer_sheets.py`, which runs the peer's code on them unchanged)."""
    tag = "" if sheet == 32 else f"_sheet{sheet}"
    out = ROOT / "runs" / GROUP / f"peer_{loss}_{size}px{tag}_b{budget:.0f}_s{seed}.json"
    if out.is_file():
        return out, None
    from tfdml.data.readers.emoji import data_dir

    data = data_dir() / "emoji-datasource-16.0.0" / "package"
    script = ["pml_peer.py"] if sheet == 32 else [str(ROOT / "benchmarks" / "pml_peer_sheets.py"), str(sheet)]
    cmd = [python, *script, "emoji", str(data), "--loss", loss, "--budget", str(budget), "--seed", str(seed),
           "--backbone", "mobilenet_v1", "--weights", str(SHARED / "weights" / "mobilenet_v1_imagenet.npz"),
           "--size", str(size), "--freeze-bn", "--lr", "1e-4"]
    return out, subprocess.Popen(cmd, cwd=SHARED / "peer", stdout=subprocess.PIPE, text=True)


def finish_peer(out: Path, process: subprocess.Popen | None) -> dict:
    if process is not None:
        lines = process.communicate()[0].splitlines()
        if process.returncode:
            raise RuntimeError(f"the peer failed (exit {process.returncode}): {lines[-3:]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(next(line for line in lines if line.startswith("RESULT"))[len("RESULT "):])
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(LOSSES), help="losses to run (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's train.epochs")
    parser.add_argument("--budget", type=float, default=None, help="seconds of training per run (tfdml and peer)")
    parser.add_argument("--peer", help="python of a venv with pytorch-metric-learning 2.9 (../shared/peer)")
    parser.add_argument("--peer-after", action="store_true",
                        help="run the peer after each tfdml run, not beside it: each gets the whole machine")
    args, extra = parser.parse_known_args()
    from tfdml.config import load_config

    # The image and sheet sizes the peer matches; only the data overrides (others, such as sampler.m=1,
    # may be valid for a proxy loss and not for this config's multi-similarity).
    data = load_config(ROOT / "yaml_configs" / "emoji_pretrained.yaml", [o for o in extra if o.startswith("data.")]).data
    size, sheet = data.image_size, data.reader_args.get("size", 32)
    rows = []
    for key in args.only or list(LOSSES):
        runs, peers = [], []
        with_peer = args.peer and key in PEER_LOSSES
        for seed in args.seeds:
            peer = lambda: start_peer(args.peer, PEER_LOSSES[key], seed, args.budget or 600.0, size, sheet)  # noqa: E731
            beside = peer() if with_peer and not args.peer_after else None
            runs.append(run_tfdml(key, seed, args.epochs, extra, args.budget))
            if with_peer:  # with --peer-after each runs alone on the machine, one after the other
                peers.append(finish_peer(*(beside or peer())))
        rows.append(_row(f"tfdml {LOSSES[key][0]}", [r["test"]["recall@1"] for r in runs],
                         [r["test"]["map@r"] for r in runs], [r["train_time_s"] for r in runs],
                         [r.get("epochs", len(r["validation"])) for r in runs],
                         [r["best_val"]["epoch"] if r["best_val"] else "last" for r in runs]))
        print(rows[-1], flush=True)
        if any("whitening" in r for r in runs):  # model.whitening: the same runs' test before it
            raw = [r.get("whitening", {}).get("test_unwhitened") or r["test"] for r in runs]
            rows.append(_row(f"tfdml {LOSSES[key][0]}, not whitened", [t["recall@1"] for t in raw],
                             [t["map@r"] for t in raw], [r["train_time_s"] for r in runs],
                             [r.get("epochs", len(r["validation"])) for r in runs],
                             [r.get("whitening", {}).get("shrinkage") for r in runs]))
            print(rows[-1] + " (last column: the shrinkage chosen)", flush=True)
        if peers:
            rows.append(_row(f"PML 2.9 {LOSSES[key][0]}", [r["test"]["r_at_1"] for r in peers],
                             [r["test"]["map_at_r"] for r in peers], [r["budget_s"] for r in peers],
                             [r["epochs"] for r in peers], [r["best_epoch"] for r in peers]))
            print(rows[-1], flush=True)
    print(f"\nemoji_pretrained.yaml {' '.join(extra)}; seeds {args.seeds}; test classes never used to pick a run\n")
    print("| run | test R@1 | test MAP@R | train s | epochs | best epoch |\n|---|---|---|---|---|---|")
    print("\n".join(rows))


def _row(label: str, r1: list, mapr: list, seconds: list, epochs: list, best: list) -> str:
    return (f"| {label} | {mean_spread(r1)} | {mean_spread(mapr)} | {statistics.mean(seconds):.0f} | "
            f"{'/'.join(map(str, epochs))} | {'/'.join(map(str, best))} |")


if __name__ == "__main__":
    sys.exit(main())
