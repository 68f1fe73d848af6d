"""Training throughput of the demo config: is the input pipeline ever the bottleneck?

    .venv/bin/python benchmarks/train_speed.py [yaml_configs/emoji.yaml] [key=value ...] [--steps N]
    .venv/bin/python benchmarks/train_speed.py --families [--size 64] [--batch 64] [--steps N] [--only NAME ...]
        [--auto-repeats R]

Measures, side by side in one process, images per second of: the tf.data pipeline alone; the
train step on one cached batch (no input pipeline), with and without XLA; and `model.fit` fed by
the pipeline. The ratio fit / cached step shows what the pipeline costs the model.

`--families`: one row per backbone family (small_cnn and keras.applications' MobileNet, MobileNetV2,
EfficientNetV2B0, ResNet50, DenseNet121, ConvNeXtTiny), the cached-batch step with and without XLA,
and what `train.jit_compile: auto` picks there (`tfdml.training.jit.choose_jit_compile`), R times on
fresh models: the last column is the worst of its picks against the faster way.
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


FAMILIES = {"small_cnn": {}, "keras/MobileNet": {}, "keras/MobileNetV2": {}, "keras/EfficientNetV2B0": {},
            "keras/ResNet50": {}, "keras/DenseNet121": {}, "keras/ConvNeXtTiny": {}}


def families(size: int, batch: int, steps: int, only: list[str] | None = None, repeats: int = 1) -> None:
    """Per backbone family: ms per cached-batch step without and with XLA, and the `auto` choice."""
    import numpy as np

    from tfdml.training.jit import choose_jit_compile

    images = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = np.repeat(np.arange(batch // 4), 4).astype("int32")
    repeated = tf.data.Dataset.from_tensors((images, labels)).repeat()
    print(f"batch {batch}, {size} px, multi-similarity, Adam; {os.cpu_count()} CPUs, TF {tf.__version__}, "
          f"Keras {keras.__version__}\n")
    print("| backbone | ms/step no XLA | ms/step XLA | XLA / no XLA | XLA compile s (auto) | auto picks | "
          "auto's worst pick / faster |")
    print("|---|---|---|---|---|---|---|")
    for name, args in FAMILIES.items():
        if only and name not in only:
            continue
        ms = {}
        for jit in (False, True):  # an independent measurement of each, over `steps` steps
            model = _family_model(name, args, size, batch, jit)
            ms[jit] = 1000 * batch / rate(lambda s: model.fit(repeated, steps_per_epoch=s, epochs=1, verbose=0),
                                          steps, batch)
        # What `auto` picks from its own short measurement at the start of a run, on fresh models.
        reports = [choose_jit_compile(_family_model(name, args, size, batch, False), repeated, log=lambda _: None)
                   for _ in range(repeats)]
        picks = [r["chosen"] for r in reports]
        worst = max(ms[p] for p in picks) / min(ms.values())
        compile_s = " / ".join(f"{r['xla_compile_s']:.0f}" for r in reports)
        print(f"| {name} | {ms[False]:.0f} | {ms[True]:.0f} | {ms[True] / ms[False]:.2f} | {compile_s} | "
              f"{' / '.join('XLA' if p else 'no XLA' for p in picks)} | {worst:.2f} |", flush=True)


def _family_model(name: str, args: dict, size: int, batch: int, jit: bool) -> keras.Model:
    from tfdml.config.schema import Config

    config = Config()
    config.model.backbone, config.model.backbone_args, config.data.image_size = name, args, size
    keras.utils.set_random_seed(0)
    model = build_model(config, num_classes=batch // 4)
    model.compile(keras.optimizers.Adam(1e-4), jit_compile=jit)
    model.build_optimizers()
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", nargs="?", default="yaml_configs/emoji.yaml")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--families", action="store_true", help="one row per backbone family, XLA vs not")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--only", nargs="*", choices=sorted(FAMILIES), help="--families: only these backbones")
    parser.add_argument("--auto-repeats", type=int, default=1, help="--families: how many times auto picks")
    args = parser.parse_args()
    if args.families:
        return families(args.size, args.batch, args.steps, args.only, args.auto_repeats)
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
