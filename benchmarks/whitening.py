"""What `model.whitening` would do to finished runs: the choice on validation, and the test before and after.

Each run is loaded as it tested (`load_run`), its training, validation and test splits embedded, and
`choose_whitening` applied exactly as a run with `model.whitening: SETTING` does after training
(fitted on the training classes, shrinkage chosen on the validation classes). The test column is
read for the record, after the choice. Usage:

    .venv/bin/python benchmarks/whitening.py runs/bench_pretrained/ms_e24_s{0,1,2}_b600_train.jit_compile=false
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--setting", default="auto", help="auto, or a shrinkage in (0, 1]")
    args = parser.parse_args()
    setting = args.setting if args.setting == "auto" else float(args.setting)

    from tfdml.evaluation.callback import embed_dataset
    from tfdml.models import apply_whitening
    from tfdml.training.builders import build_data
    from tfdml.training.runner import evaluate_table, load_run
    from tfdml.training.whiten import choose_whitening

    print(f"model.whitening: {setting}\n\n| run | validation (eval.monitor) raw / whitened | shrinkage | "
          "test R@1 raw -> whitened | test MAP@R raw -> whitened |\n|---|---|---|---|---|")
    gains: dict[str, list[float]] = {"recall@1": [], "map@r": []}
    for run_dir in args.runs:
        config, model = load_run(run_dir)
        data = build_data(config, lambda *_: None)
        train, val, test = (embed_dataset(model, data.eval_dataset(t, config)) for t in (data.train, data.val, data.test))
        monitor = config.eval.monitor
        report = choose_whitening(setting, train, val, lambda x, y: evaluate_table(x, y, data.val, config)[monitor])
        whitened = test[0]
        if report["shrinkage"] is not None:
            whitened = apply_whitening(test[0], report["mean"], report["projection"])
        before, after = (evaluate_table(x, test[1], data.test, config) for x in (test[0], whitened))
        for key, values in gains.items():
            values.append(after[key] - before[key])
        chosen = report["validation"].get(str(report["shrinkage"]), report["validation"]["none"])
        print(f"| {run_dir.name} | {report['validation']['none']:.4f} / {chosen:.4f} | {report['shrinkage']} | "
              f"{before['recall@1']:.4f} -> {after['recall@1']:.4f} | {before['map@r']:.4f} -> {after['map@r']:.4f} |",
              flush=True)
    if len(args.runs) > 1:
        print("\nTest gain over the runs (mean ± std): " + ", ".join(
            f"{key} {statistics.mean(v):+.4f} ± {statistics.stdev(v):.4f}" for key, v in gains.items()))


if __name__ == "__main__":
    main()
