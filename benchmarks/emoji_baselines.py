"""Untrained baselines on the demo's emoji split: raw pixels, and a random (untrained) network.

    .venv/bin/python benchmarks/emoji_baselines.py [yaml_configs/emoji.yaml] [key=value ...]

Prints one table row per method with the same metrics and test classes as `make demo`.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfdml.config import load_config  # noqa: E402
from tfdml.evaluation import evaluate_retrieval  # noqa: E402
from tfdml.evaluation.callback import embed_dataset  # noqa: E402
from tfdml.training.builders import build_data, build_model  # noqa: E402


def main(argv: list[str]) -> None:
    path = argv[0] if argv and argv[0].endswith(".yaml") else "yaml_configs/emoji.yaml"
    config = load_config(path, [a for a in argv if "=" in a])
    keras.utils.set_random_seed(config.seed)
    data = build_data(config)
    test = data.eval_dataset(data.test, config)
    pixels = np.concatenate([x.numpy().reshape(len(x), -1) for x, _ in test])
    labels = data.test.label
    rows = {
        "raw pixels (RGB on white, cosine)": evaluate_retrieval(pixels, labels),
        "untrained network (random init)": evaluate_retrieval(embed_dataset(build_model(config), test)[0], labels),
    }
    print(f"test: {data.test.num_classes} classes / {len(data.test)} images (split seed {config.data.split_seed})\n")
    print("| method | R@1 | R@4 | R-Precision | MAP@R |\n|---|---|---|---|---|")
    for name, m in rows.items():
        print(f"| {name} | {m['recall@1']:.3f} | {m['recall@4']:.3f} | {m['r_precision']:.3f} | {m['map@r']:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
