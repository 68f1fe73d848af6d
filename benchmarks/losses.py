"""Forward + backward time of every loss per batch, against the B x B similarity matmul they all need.

    .venv/bin/python benchmarks/losses.py [--batches 32 128 512] [--dims 128 512] [--repeats 20] [--jit]
        [--only triplet ...]

Each loss runs in a `tf.function` on random unit embeddings with m-per-class labels (4 per class);
proxy losses have 200 classes (SoftTriple 10 centres each, the others 1). The baseline is
`sum(E @ E.T)` with its gradient: the similarity matmul and its backward pass. Times are medians over
`--repeats` calls after a warm-up; the table prints milliseconds and the ratio to the baseline of
the same (B, D), measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfdml.losses import (ArcFaceLoss, ContrastiveLoss, CrossBatchMemory, MultiSimilarityLoss,  # noqa: E402
                          NormalizedSoftmaxLoss, ProxyAnchorLoss, ProxyNCAPlusPlusLoss, SoftTripleLoss, TripletLoss)

CLASSES = 200
LOSSES = {
    "contrastive C1": lambda: ContrastiveLoss.c1(),
    "contrastive C2": lambda: ContrastiveLoss(),
    "triplet all": lambda: TripletLoss(mining="all"),
    "triplet semihard": lambda: TripletLoss(mining="semihard"),
    "triplet hard": lambda: TripletLoss(mining="hard"),
    "multi-similarity": lambda: MultiSimilarityLoss(mining_epsilon=None),
    "multi-similarity mined": lambda: MultiSimilarityLoss(),
    "XBM (C1, memory 4096)": lambda: CrossBatchMemory(ContrastiveLoss.c1(), memory_size=4096, start_step=0),
    "proxy anchor": lambda: ProxyAnchorLoss(CLASSES),
    "ProxyNCA++": lambda: ProxyNCAPlusPlusLoss(CLASSES),
    "normalised softmax": lambda: NormalizedSoftmaxLoss(CLASSES),
    "ArcFace": lambda: ArcFaceLoss(CLASSES),
    "SoftTriple (K=10)": lambda: SoftTripleLoss(CLASSES, 10),
}


def timed(step, x, labels, repeats: int) -> float:
    step(x, labels)  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(x, labels)[0].numpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def make_step(loss, jit: bool):
    def step(x, labels):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(x, labels, training=True) if loss is not None else tf.reduce_sum(tf.matmul(x, x, transpose_b=True))
        return tape.gradient(value, x), value

    return tf.function(step, jit_compile=jit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="*", default=[32, 128, 512])
    parser.add_argument("--dims", type=int, nargs="*", default=[128, 512])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--jit", action="store_true", help="compile each step with XLA")
    parser.add_argument("--only", nargs="*", default=[], help="time only the losses whose names contain these words")
    args = parser.parse_args()
    losses = {name: f for name, f in LOSSES.items() if not args.only or any(w in name for w in args.only)}
    rng = np.random.default_rng(0)
    shapes = [(b, d) for b in args.batches for d in args.dims]
    results: dict[str, list[float]] = {}
    for b, d in shapes:
        x = rng.normal(size=(b, d)).astype("float32")
        x = tf.constant(x / np.linalg.norm(x, axis=1, keepdims=True))
        labels = tf.constant(np.repeat(np.arange(b // 4), 4) % CLASSES, tf.int32)
        results.setdefault("similarity matmul (baseline)", []).append(timed(make_step(None, args.jit), x, labels,
                                                                            args.repeats))
        for name, factory in losses.items():
            loss = factory()
            loss.build((None, d))
            results.setdefault(name, []).append(timed(make_step(loss, args.jit), x, labels, args.repeats))
        print(f"done B={b} D={d}", flush=True)
    print(f"\nforward + backward, ms (ratio to the matmul baseline); tf.function{' + XLA' if args.jit else ''}\n")
    print("| loss | " + " | ".join(f"B={b} D={d}" for b, d in shapes) + " |")
    print("|---|" + "---|" * len(shapes))
    base = results["similarity matmul (baseline)"]
    for name, times in results.items():
        cells = [f"{t:.2f} ({t / b0:.1f}x)" for t, b0 in zip(times, base)]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
