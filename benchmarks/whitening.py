"""What `model.whitening` would do to finished runs: the choice on validation, and the test before and after.

Each run is loaded as it tested (`load_run`), its training, validation and test splits embedded, and
`choose_whitening` applied exactly as a run with `model.whitening: SETTING` does after training
(fitted on the training classes, shrinkage chosen on the validation classes). The test column is
read for the record, after the choice. `--descriptor-layers L...` does what `model.descriptor_layers`
adds (`tfdml.training.whiten.with_descriptor_layers`). Usage:

    .venv/bin/python benchmarks/whitening.py runs/bench_pretrained/ms_e24_s{0,1,2}_b600_train.jit_compile=false
    .venv/bin/python benchmarks/whitening.py RUN... --descriptor-layers conv_pw_11_relu conv_pw_12_relu
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--setting", default="auto", help="auto, or a shrinkage in (0, 1]")
    parser.add_argument("--descriptor-layers", nargs="*", default=[],
                        help="backbone layers whose pooled features join the embedding (model.descriptor_layers)")
    args = parser.parse_args()
    setting = args.setting if args.setting == "auto" else float(args.setting)

    from tfdml.evaluation.callback import embed_dataset
    from tfdml.models.whitening import apply_whitening, unfitted_whitening
    from tfdml.training.builders import build_data
    from tfdml.training.runner import evaluate_table, load_run
    from tfdml.training.whiten import choose_whitening, describe_raw, with_descriptor_layers

    print(f"model.whitening: {setting}\n\n| run | validation (eval.monitor) raw / whitened | shrinkage | "
          "test R@1 raw -> whitened | test MAP@R raw -> whitened |\n|---|---|---|---|---|")
    gains: dict[str, list[float]] = {"recall@1": [], "map@r": []}
    for run_dir in args.runs:
        config, model = load_run(run_dir)
        if args.descriptor_layers:  # the tested weights; the new head keeps the linear layer, not a whitening
            model = with_descriptor_layers(model, args.descriptor_layers)
        if model.head.whitening is not None:  # a run's own fitted whitening: start from its raw descriptors
            describe_raw(model.head)
        data = build_data(config, lambda *_: None)
        train, val, test = (embed_dataset(model, data.eval_dataset(t, config)) for t in (data.train, data.val, data.test))
        monitor = config.eval.monitor
        keep = config.model.embedding_dim
        report = choose_whitening(setting, train, val, lambda x, y: evaluate_table(x, y, data.val, config)[monitor],
                                  keep=keep)
        raw = apply_whitening(test[0], *unfitted_whitening(test[0].shape[1], keep))  # the embedding alone
        whitened = apply_whitening(test[0], report["mean"], report["projection"])
        before, after = (evaluate_table(x, test[1], data.test, config) for x in (raw, whitened))
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
