"""Approximate gallery indexes (`tfdml.retrieval.index`) against exact search at SOP scale.

    .venv/bin/python benchmarks/ann_recall.py [--queries 10000] [--dim 512] [--embeddings run/test_embeddings.npz]

The gallery has Stanford Online Products' test-set shape: 60,502 embeddings of 11,316 classes
(2-12 images each, as SOP), 512-d. They are synthetic, since SOP itself is not on this machine:
class centres and the spread around them in a 64-d subspace (trained embeddings have a low
intrinsic dimension), plus a little isotropic noise; the spread puts exact R@1 near the ~0.8 of a
good SOP model. `--embeddings` adds the real
test embeddings of a tfdml run (e.g. the emoji pretrained run's 3,794) as a second, small gallery.

Each query is a gallery row searching the others (itself dropped), as the SOP protocol does. For
every index the table gives the recall of exact search's top 1 and top 10 (the fraction of those
neighbours it finds), retrieval R@1 by class (against exact search's), build seconds and
milliseconds per query (one process, side by side; faiss uses every core). Needs faiss
(`pip install 'tfdml[faiss]'`).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tfdml.evaluation.neighbours import l2_normalise
from tfdml.retrieval.index import build_index

CONFIGS = [  # (label, kind, kwargs)
    ("exact (blockwise numpy)", "exact", {"backend": "blockwise"}),
    ("exact (faiss flat)", "exact", {"backend": "faiss"}),
    ("IVF nprobe 8, no re-rank", "ivf", {"nprobe": 8, "candidates": 1}),
    ("IVF nprobe 8, 4k candidates", "ivf", {"nprobe": 8, "candidates": 4}),
    ("IVF nprobe 32, 4k candidates", "ivf", {"nprobe": 32, "candidates": 4}),
    ("IVF nprobe 128, 4k candidates", "ivf", {"nprobe": 128, "candidates": 4}),
    ("IVF-PQ 64 B, nprobe 32, no re-rank", "ivfpq", {"nprobe": 32, "pq_bytes": 64, "candidates": 1}),
    ("IVF-PQ 64 B, nprobe 32, 4k candidates", "ivfpq", {"nprobe": 32, "pq_bytes": 64, "candidates": 4}),
    ("IVF-PQ 64 B, nprobe 32, 16k candidates", "ivfpq", {"nprobe": 32, "pq_bytes": 64, "candidates": 16}),
    ("HNSW M 32, no re-rank", "hnsw", {"candidates": 1}),
    ("HNSW M 32, 4k candidates", "hnsw", {"candidates": 4}),
    ("HNSW M 32, ef 256, 4k candidates", "hnsw", {"candidates": 4, "ef_search": 256}),
]
K = 10


def sop_like(dim: int, seed: int = 0, latent: int = 64, spread: float = 1.0, noise: float = 0.02,
             ) -> tuple[np.ndarray, np.ndarray]:
    """60,502 unit rows in 11,316 classes of 2-12 images: SOP's test-set shape."""
    rng = np.random.default_rng(seed)
    sizes = 2 + rng.binomial(10, (60_502 / 11_316 - 2) / 10, 11_316)
    gap = 60_502 - sizes.sum()  # a few hundred: moved one image at a time, sizes kept in 2-12
    eligible = np.flatnonzero(sizes < 12 if gap > 0 else sizes > 2)
    sizes[rng.choice(eligible, abs(gap), replace=False)] += np.sign(gap)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centres = l2_normalise(rng.normal(size=(len(sizes), latent)))
    within = l2_normalise(centres[labels] + spread / np.sqrt(latent) * rng.normal(size=(len(labels), latent)))
    projection = np.linalg.qr(rng.normal(size=(dim, latent)))[0].T  # orthonormal rows: latent -> dim
    return l2_normalise(within @ projection + noise * rng.normal(size=(len(labels), dim))), labels


def without_self(ids: np.ndarray, scores: np.ndarray, query_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop each query's own row (or, when the index missed it, the last) from `k + 1` results."""
    keep = ids != query_ids[:, None]
    keep[keep.all(axis=1), -1] = False
    return ids[keep].reshape(len(ids), k), scores[keep].reshape(len(ids), k)


def table(name: str, gallery: np.ndarray, labels: np.ndarray, queries: int, seed: int = 0) -> None:
    query_ids = np.random.default_rng(seed).choice(len(gallery), min(queries, len(gallery)), replace=False)
    print(f"\n{name}: {len(gallery):,} gallery rows, {gallery.shape[1]}-d, {len(query_ids):,} queries\n")
    print("| index | recall of exact top-1 | recall of exact top-10 | R@1 (class) | build s | ms / query |")
    print("|---|---|---|---|---|---|")
    exact = None
    for label, kind, kwargs in CONFIGS:
        if kind == "ivfpq" and gallery.shape[1] % kwargs["pq_bytes"]:
            continue
        start = time.perf_counter()
        index = build_index(gallery, kind, **kwargs)
        built = time.perf_counter() - start
        start = time.perf_counter()
        ids, scores = index.search(gallery[query_ids], K + 1)
        ms = (time.perf_counter() - start) / len(query_ids) * 1e3
        ids, _ = without_self(ids, scores, query_ids, K)
        exact = ids if exact is None else exact
        top1 = float(np.mean(ids[:, 0] == exact[:, 0]))
        top10 = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, exact)]))
        r1 = float(np.mean(labels[ids[:, 0]] == labels[query_ids]))
        print(f"| {label} | {top1:.4f} | {top10:.4f} | {r1:.4f} | {built:.1f} | {ms:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--embeddings", help="a run's test_embeddings.npz (keys: embeddings, labels)")
    args = parser.parse_args()
    table("SOP-shaped synthetic", *sop_like(args.dim), args.queries)
    if args.embeddings:
        stored = np.load(args.embeddings)
        table(f"real embeddings ({args.embeddings})", l2_normalise(stored["embeddings"]), stored["labels"],
              args.queries)


if __name__ == "__main__":
    main()
