"""Would averaging the weights over training lift the pretrained benchmark? A probe.

    .venv/bin/python benchmarks/weight_average_probe.py [KEY=VALUE ...] [--config emoji_pretrained]
        [--seeds 0] [--decay 0.98] [--swa-from 13 9 5]

(overrides first: the options take every word after them)

Each seed trains `yaml_configs/<config>.yaml` once (its budget and schedule unchanged) while a
callback keeps a moving average of the trainable weights, updated after every step with the rate
`min(decay, (1 + t) / (10 + t))` after t steps (`tf.train.ExponentialMovingAverage` with
`num_updates`), and saves it after every epoch. The warm-up term is the smaller one until t = 440
for decay 0.98 (more for larger decays), so in a run of 16 x 26 steps the average spans about the
last 40-47 steps, about 1.5 epochs, whatever the decay: a smoothed copy of each epoch's weights.
Afterwards:

- `ema`: the saved averages, scored on the validation classes epoch by epoch; the epoch with the
  best validation MAP@R is tested;
- `swa K`: the uniform average of the saved averages of epochs K to the last (stochastic weight
  averaging over the epochs' ends), scored on validation and tested (one model, no selection).

The run's own result (its raw weights at their best validation epoch) is the `raw` row, so all of
them come from one training run. Test columns are for the record: nothing is chosen on them.
Runs are kept under runs/probe_weight_average/ (the averages under <run>/ema/, the scores in
<run>/averages_swa<K...>.json) and read back.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from _runs import ROOT

GROUP = ROOT / "runs" / "probe_weight_average"


class MovingAverage(keras.callbacks.Callback):
    """A moving average of the trainable weights, updated after every step, saved after every epoch."""

    def __init__(self, decay: float, out_dir: Path) -> None:
        super().__init__()
        self.decay, self.out_dir = decay, out_dir

    def on_train_begin(self, logs: dict | None = None) -> None:
        variables = list(self.model.trainable_variables)
        self.shadow = [tf.Variable(v.value, trainable=False) for v in variables]
        count = tf.Variable(0.0, trainable=False)

        @tf.function
        def update() -> None:
            count.assign_add(1.0)
            rate = tf.minimum(self.decay, (1.0 + count) / (10.0 + count))
            for s, v in zip(self.shadow, variables):
                s.assign(rate * s + (1.0 - rate) * v.value)

        self.update = update
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.update()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        np.savez(self.out_dir / f"e{epoch + 1}.npz", *[s.numpy() for s in self.shadow])


def load_average(path: Path) -> list[np.ndarray]:
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def probe(config_name: str, seed: int, decay: float, swa_from: list[int], overrides: list[str]) -> dict:
    from tfdml.config import load_config
    from tfdml.evaluation.callback import embed_dataset
    from tfdml.training import run
    from tfdml.training.builders import build_data
    from tfdml.training.runner import evaluate_table, load_run

    run_dir = GROUP / (f"{config_name}_s{seed}_d{decay}" + "".join(f"_{o}" for o in overrides))
    if not (run_dir / "metrics.json").is_file():
        config = load_config(ROOT / "yaml_configs" / f"{config_name}.yaml",
                             [f"output_dir={GROUP}", f"name={run_dir.name}", "train.verbose=2",
                              "export.saved_model=false", f"seed={seed}", *overrides])
        run(config, callbacks=[MovingAverage(decay, run_dir / "ema")])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    epochs = len(metrics["validation"])
    if not all(1 <= k <= epochs for k in swa_from):
        raise SystemExit(f"--swa-from {' '.join(map(str, swa_from))}: the run has {epochs} epochs; "
                         f"give first epochs between 1 and {epochs}")
    scores = run_dir / f"averages_swa{'_'.join(map(str, swa_from))}.json"
    if scores.is_file():
        return json.loads(scores.read_text())
    config, model = load_run(run_dir)
    data = build_data(config, lambda *_: None)
    splits = {name: (data.eval_dataset(table, config), table) for name, table in (("val", data.val), ("test", data.test))}

    def score(weights: list[np.ndarray], split: str) -> dict:
        for v, w in zip(model.trainable_variables, weights):
            v.assign(w)
        dataset, table = splits[split]
        return evaluate_table(*embed_dataset(model, dataset), table, config)

    rows = {"raw": {"val": metrics["best_val"]["map@r"], "epoch": metrics["best_val"]["epoch"], "test": metrics["test"]}}
    averages = {e: load_average(run_dir / "ema" / f"e{e}.npz") for e in range(1, epochs + 1)}
    curve = [score(averages[e], "val")["map@r"] for e in range(1, epochs + 1)]
    best = int(np.argmax(curve)) + 1
    rows["ema"] = {"val": max(curve), "epoch": best, "test": score(averages[best], "test"), "curve": curve}
    for k in swa_from:
        mean = [np.mean([averages[e][i] for e in range(k, epochs + 1)], axis=0) for i in range(len(averages[1]))]
        rows[f"swa {k}"] = {"val": score(mean, "val")["map@r"], "epoch": f"{k}-{epochs}", "test": score(mean, "test")}
    scores.write_text(json.dumps(rows, indent=1))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="emoji_pretrained")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--decay", type=float, default=0.98)
    parser.add_argument("--swa-from", nargs="*", type=int, default=[13, 9, 5])
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (part of the run's name)")
    args = parser.parse_args()
    print("| seed | weights | epoch(s) | val MAP@R | test R@1 | test MAP@R | R@1 vs raw |\n|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        rows = probe(args.config, seed, args.decay, args.swa_from, args.overrides)
        raw = rows["raw"]["test"]["recall@1"]
        for name, row in rows.items():
            test = row["test"]
            print(f"| {seed} | {name} | {row['epoch']} | {row['val']:.4f} | {test['recall@1']:.4f} | "
                  f"{test['map@r']:.4f} | {test['recall@1'] - raw:+.4f} |", flush=True)


if __name__ == "__main__":
    main()
