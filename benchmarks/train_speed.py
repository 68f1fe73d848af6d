"""Training throughput of the demo config: is the input pipeline ever the bottleneck?

    .venv/bin/python benchmarks/train_speed.py [yaml_configs/emoji.yaml] [key=value ...] [--steps N]

Measures, side by side in one process, images per second of: the tf.data pipeline alone; the
train step on one cached batch (no input pipeline), with and without XLA; and `model.fit` fed by
the pipeline. The ratio fit / cached step shows what the pipeline costs the model.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfdml.config import load_config  # noqa: E402
from tfdml.training.builders import build_data, build_model, build_optimizer  # noqa: E402


def rate(fn, steps: int, batch: int) -> float:
    fn(2)  # warm-up: tracing and compilation
    start = time.perf_counter()
    fn(steps)
    return steps * batch / (time.perf_counter() - start)


def compiled_model(config, data, jit: bool, steps_per_epoch: int):
    keras.utils.set_random_seed(config.seed)
    model = build_model(config, num_classes=data.train.num_classes)
    model.compile(build_optimizer(config, steps_per_epoch), lr_multipliers=config.optimizer.lr_multipliers,
                  jit_compile=jit)
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", nargs="?", default="yaml_configs/emoji.yaml")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    data = build_data(config)
    batch, n = config.sampler.batch_size, len(data.sampler)
    pipeline = data.train_dataset(config)
    iterator = iter(pipeline)
    cached = next(iterator)
    repeated = tf.data.Dataset.from_tensors(cached).repeat()

    results = {"tf.data pipeline alone": rate(lambda s: [next(iterator) for _ in range(s)], args.steps * 4, batch)}
    for jit in (False, True):
        model = compiled_model(config, data, jit, n)
        label = "XLA" if jit else "no XLA"
        results[f"train step, cached batch, {label}"] = rate(
            lambda s: model.fit(repeated, steps_per_epoch=s, epochs=1, verbose=0), args.steps, batch)
        results[f"model.fit on the pipeline, {label}"] = rate(
            lambda s: model.fit(pipeline, steps_per_epoch=s, epochs=1, verbose=0), args.steps, batch)

    base = results["train step, cached batch, no XLA"]
    print(f"config {args.config} {' '.join(args.overrides)}: batch {batch}, image {config.data.image_size} px, "
          f"{os.cpu_count()} CPUs, TF {tf.__version__}, Keras {keras.__version__}\n")
    print("| what | images/s | ratio to cached step without XLA |\n|---|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:,.0f} | {value / base:.2f} |")


if __name__ == "__main__":
    main()
