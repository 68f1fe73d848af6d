"""Input-pipeline throughput from JPEG files on disk, next to what a ResNet-50 training step consumes.

    .venv/bin/python benchmarks/pipeline.py [--images 512] [--size 224] [--batch 64] [--model-steps 3]

Generates ``--images`` smooth random 500x375 JPEGs (the size of a typical SOP/CUB photo) in a
temporary directory, then measures images/s of, all with the same parallelism (AUTOTUNE) and batch:

- plain decode: ``tf.io.decode_jpeg`` + resize to the training size;
- decode, then random resized crop (``crop_and_resize``): the training path before it fused the crop;
- fused ``tf.image.decode_and_crop_jpeg`` of the same random window + resize;
- ``tfdml.data.train_dataset``: the fused path plus sampler, flip and colour jitter, batched;
- a ResNet-50 (``weights=None``) training step on one cached batch of 32, no XLA: the model's rate.

Crops are MLRC's: area 0.16-1, aspect 3/4-4/3. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfdml.data import DatasetTable, MPerClassSampler, train_dataset  # noqa: E402
from tfdml.data.pipeline import _random_boxes  # noqa: E402 - the pipeline's own crop sampler
from tfdml.losses import MultiSimilarityLoss  # noqa: E402
from tfdml.models import DMLModel, EmbeddingHead, build_backbone  # noqa: E402

SCALE, RATIO = (0.16, 1.0), (3 / 4, 4 / 3)
AUTOTUNE = tf.data.AUTOTUNE


def write_jpegs(folder: str, n: int, seed: int = 0) -> list[str]:
    """``n`` smooth random 375x500 RGB JPEGs (quality 90): low-resolution noise upsampled, plus grain."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = tf.image.resize(rng.uniform(0, 255, (1, 12, 16, 3)), [375, 500], method="bicubic")[0]
        img = tf.clip_by_value(img + rng.normal(0, 8, (375, 500, 3)), 0, 255)
        paths.append(os.path.join(folder, f"{i:05d}.jpg"))
        tf.io.write_file(paths[-1], tf.io.encode_jpeg(tf.cast(img, tf.uint8), quality=90))
    return paths


def plain_maps(size: int) -> dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]]:
    """Per-file maps ``(path, seed) -> float32 [S, S, 3]`` for the three decoding strategies."""
    out = [size, size]

    def decode_resize(path: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        x = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        return tf.image.resize(tf.image.convert_image_dtype(x, tf.float32), out)

    def decode_then_crop(path: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        x = tf.image.convert_image_dtype(tf.io.decode_jpeg(tf.io.read_file(path), channels=3), tf.float32)
        hw = tf.cast(tf.shape(x)[:2], tf.float32)
        return tf.image.crop_and_resize(x[None], _random_boxes(1, seed, SCALE, RATIO, hw[1] / hw[0]), [0], out)[0]

    def fused(path: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        data = tf.io.read_file(path)
        hw = tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.float32)
        box = _random_boxes(1, seed, SCALE, RATIO, hw[1] / hw[0])[0]
        start = tf.floor(box[:2] * hw)
        size_ = tf.clip_by_value(tf.math.ceil(box[2:] * hw), start + 1.0, hw) - start
        x = tf.image.decode_and_crop_jpeg(data, tf.cast(tf.concat([start, size_], 0), tf.int32), channels=3)
        return tf.image.resize(tf.image.convert_image_dtype(x, tf.float32), out)

    return {"`decode_jpeg` + resize (whole image, no crop)": decode_resize,
            "`decode_jpeg`, then random `crop_and_resize` (previous training path)": decode_then_crop,
            "`decode_and_crop_jpeg` (random window) + resize": fused}


def images_per_second(dataset: tf.data.Dataset, batches: int, batch: int, repeats: int) -> float:
    """Median rate of ``repeats`` runs of ``batches`` batches, after one warm-up batch (tracing, thread pools)."""
    iterator = iter(dataset)
    next(iterator)
    rates = []
    for _ in range(repeats):  # the median resists other jobs' bursts on a shared machine
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        rates.append(batches * batch / (time.perf_counter() - start))
    return float(np.median(rates))


def model_rate(size: int, batch: int, steps: int) -> float:
    """Images/s of ResNet-50 + 128-d head + MS loss training steps on one cached batch (Adam, no XLA)."""
    keras.utils.set_random_seed(0)
    model = DMLModel(build_backbone("resnet50", (size, size, 3)), EmbeddingHead(128), MultiSimilarityLoss())
    model.compile(keras.optimizers.Adam(1e-5), jit_compile=False)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = np.repeat(np.arange(batch // 4), 4).astype("int32")
    data = tf.data.Dataset.from_tensors((images, labels)).repeat()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)  # warm-up: tracing
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512, help="JPEG files to generate")
    parser.add_argument("--size", type=int, default=224, help="training crop size")
    parser.add_argument("--batch", type=int, default=64, help="pipeline batch size")
    parser.add_argument("--passes", type=int, default=2, help="passes over the files per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per pipeline; the median is reported")
    parser.add_argument("--model-batch", type=int, default=32)
    parser.add_argument("--model-steps", type=int, default=3, help="timed ResNet-50 steps; 0 skips the model")
    args = parser.parse_args()
    batches = max(1, args.images * args.passes // args.batch)
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        paths = write_jpegs(folder, args.images)
        seeds = tf.random.experimental.stateless_split(tf.constant([0, 1], tf.int64), args.images)
        files = tf.data.Dataset.from_tensor_slices((paths, seeds)).repeat()
        for name, fn in plain_maps(args.size).items():
            ds = files.map(fn, num_parallel_calls=AUTOTUNE).batch(args.batch).prefetch(AUTOTUNE)
            rows.append((name, images_per_second(ds, batches, args.batch, args.repeats)))
        table = DatasetTable.from_class_keys(paths, [str(i // 8) for i in range(len(paths))])
        sampler = MPerClassSampler(table.label, m=4, batch_size=args.batch, seed=0)
        ds = train_dataset(table, sampler, image_size=args.size, crop_scale=SCALE, crop_ratio=RATIO, flip=True)
        rows.append(("`tfdml.data.train_dataset` (fused crop, flip, colour jitter, m-per-class)",
                     images_per_second(ds, batches, args.batch, args.repeats)))
    if args.model_steps:
        rows.append((f"ResNet-50 training step (weights=None, batch {args.model_batch}, Adam, no XLA): model rate",
                     model_rate(args.size, args.model_batch, args.model_steps)))
    print(f"\n{args.images} JPEGs 500x375 -> {args.size} px, pipeline batch {args.batch}, median of "
          f"{args.repeats} x {batches} timed batches, tf.data AUTOTUNE, {os.cpu_count()} CPUs\n")
    model = rows[-1][1] if args.model_steps else None
    print("| stage | images/s |" + (" x model rate |\n|---|---|---|" if model else "\n|---|---|"))
    for name, rate in rows:
        shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"
        print(f"| {name} | {shown} |" + (f" {rate / model:,.0f} |" if model else ""))


if __name__ == "__main__":
    main()
