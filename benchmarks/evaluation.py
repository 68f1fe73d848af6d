"""Retrieval evaluation at SOP scale: time and peak memory of each neighbour search, side by side.

    .venv/bin/python benchmarks/evaluation.py [--n 60502] [--dim 512] [--seed 0]
        [--methods blockwise,sklearn,faiss,naive,matmul] [--block-sizes 1024,3072] [--repeats 1]

Data: N random unit float32 vectors in classes of 2-12 rows (SOP-like, seeded), each row its
class centre plus Gaussian noise, rows shuffled so that class-mates fall in different tiles.
Every method computes R@1/2/4/8, R-Precision and MAP@R over all rows as queries (self-retrieval,
k = largest class - 1 = 11 neighbours) and the metrics of all methods must be equal.

Methods (each runs in its own fresh subprocess, so its peak memory is its own):

* ``blockwise``: ``evaluate_retrieval(backend="blockwise")``, tfdml's exact symmetric tiles.
* ``blockwise_1thread``: the same with BLAS limited to one thread (threadpoolctl), to show what
  the second core gives.
* ``blockwise_full``: the blockwise search without the symmetry (every tile computed).
* ``sklearn``: ``evaluate_retrieval(backend="sklearn")``: NearestNeighbors, euclidean brute force.
* ``faiss``: ``evaluate_retrieval(backend="faiss")``: ``faiss.IndexFlatIP`` (skipped if missing).
* ``naive``: the whole N x N similarity matrix in numpy, then ``argpartition``; run only when
  about 12 N^2 bytes fit in 70% of the available memory (so not at N = 60,502: use ``--n 20000``).
* ``matmul``: the bound, no search: the full N x N x D product in 2048 x 2048 tiles, and
  ``matmul_upper``: only the upper-triangle tiles, the product the symmetric search computes.

Memory: ``ru_maxrss`` of each subprocess (peak resident set, which unlike tracemalloc also
counts what BLAS, OpenMP and faiss allocate in C), and its increase over the RSS measured just
before the method ran (the embeddings, ``N * D * 4`` bytes, and the imports are in both).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfdml.evaluation import evaluate_retrieval, nearest_neighbours, retrieval_metrics  # noqa: E402
from tfdml.evaluation.blockwise import blockwise_search  # noqa: E402

KS = (1, 2, 4, 8)
METHODS = (
    "blockwise", "blockwise_1thread", "blockwise_full", "sklearn", "faiss", "naive", "matmul",
    "matmul_upper",
)
BASELINES = ("sklearn", "faiss", "naive")
TILE = 2048
# Noise around the class centres: R@1 about 0.8 at N = 60,502 and D = 512, like a good SOP model.
NOISE = 2.2


def sop_like_data(n: int, dim: int, seed: int, noise: float = NOISE) -> tuple[np.ndarray, np.ndarray]:
    """Unit float32 rows and labels: classes of 2-12 rows, class centre plus noise, shuffled.

    Built in chunks so that no temporary outgrows the ``[n, dim]`` result.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 13, size=n // 2 + 1)
    n_classes = int(np.searchsorted(np.cumsum(sizes), n)) + 1
    sizes = sizes[:n_classes]
    sizes[-1] -= sizes.sum() - n
    if sizes[-1] == 1:  # no singleton class: move a row from the largest class
        sizes[-1], sizes[np.argmax(sizes[:-1])] = 2, sizes[:-1].max() - 1
    labels = rng.permutation(np.repeat(np.arange(n_classes), sizes))
    centres = rng.standard_normal((n_classes, dim), dtype=np.float32)
    x = np.empty((n, dim), np.float32)
    for start in range(0, n, 8192):
        rows = labels[start : start + 8192]
        chunk = centres[rows] + noise * rng.standard_normal((len(rows), dim), dtype=np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        x[start : start + len(rows)] = chunk
    return x, labels


def metrics_from_neighbours(idx: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Self-retrieval metrics of ranked neighbour rows, as ``evaluate_retrieval`` computes them."""
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return retrieval_metrics(codes[idx], codes, counts[codes] - 1, KS)


def needed_k(labels: np.ndarray) -> int:
    """Neighbours MAP@R and the largest recall@k need: max(max(KS), largest class - 1)."""
    return max(max(KS), int(np.bincount(labels).max()) - 1)


def naive_search(x: np.ndarray, k: int) -> np.ndarray:
    """The whole similarity matrix, then argpartition and a sort of the top k of each row."""
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(sims, sims.shape[1] - k, axis=1)[:, -k:]
    order = np.lexsort((top, -np.take_along_axis(sims, top, axis=1)), axis=1)
    return np.take_along_axis(top, order, axis=1)


def tiled_matmul(x: np.ndarray, upper_only: bool) -> None:
    """The similarity product in ``TILE`` x ``TILE`` tiles into one reused buffer, nothing else."""
    n = len(x)
    edges = [i * n // math.ceil(n / TILE) for i in range(math.ceil(n / TILE) + 1)]
    buf = np.empty(TILE * TILE, np.float32)
    for i in range(len(edges) - 1):
        for j in range(i if upper_only else 0, len(edges) - 1):
            a, b = x[edges[i] : edges[i + 1]], x[edges[j] : edges[j + 1]]
            np.matmul(a, b.T, out=buf[: len(a) * len(b)].reshape(len(a), len(b)))


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_worker(method: str, n: int, dim: int, seed: int, noise: float, block_size: int | None) -> dict:
    """Run one method in this (fresh) process; wall time, memory and metrics."""
    x, labels = sop_like_data(n, dim, seed, noise)
    k = needed_k(labels)
    result: dict = {"method": method, "n": n, "dim": dim, "k": k}
    if method == "naive":
        need, avail = 12 * n * n, _available_bytes()
        if need > 0.7 * avail:
            return result | {"skipped": f"needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available"}
    if method == "faiss":
        try:
            import faiss  # noqa: F401  (imported before the clock and the baseline RSS)
        except ImportError:
            return result | {"skipped": "faiss not installed (pip install 'tfdml[faiss]')"}
    rss_before = rss_bytes()
    start = time.perf_counter()
    metrics = None
    if method == "blockwise" and block_size is None:
        metrics = evaluate_retrieval(x, labels, ks=KS, backend="blockwise")
    elif method == "blockwise":
        idx, _ = nearest_neighbours(x, k=k, backend="blockwise", block_size=block_size)
        metrics = metrics_from_neighbours(idx, labels)
    elif method == "blockwise_1thread":
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            metrics = evaluate_retrieval(x, labels, ks=KS, backend="blockwise")
    elif method == "blockwise_full":
        metrics = metrics_from_neighbours(blockwise_search(x, None, k, symmetric=False)[0], labels)
    elif method in ("sklearn", "faiss"):
        metrics = evaluate_retrieval(x, labels, ks=KS, backend=method)
    elif method == "naive":
        metrics = metrics_from_neighbours(naive_search(x, k), labels)
    elif method in ("matmul", "matmul_upper"):
        tiled_matmul(x, upper_only=method == "matmul_upper")
    else:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    result |= {"seconds": seconds, "peak_bytes": peak, "increase_bytes": peak - rss_before}
    if metrics is not None:
        result["metrics"] = {m: metrics[m] for m in ("recall@1", "recall@2", "recall@4", "recall@8", "r_precision", "map@r")}
    if method in ("matmul", "matmul_upper"):
        n_tiles = math.ceil(n / TILE)
        full_flop = 2.0 * n * n * dim
        # Upper triangle: diagonal tiles plus half of the others, i.e. (N^2 + N * tile) / 2 pairs.
        flop = full_flop if method == "matmul" else full_flop * (n_tiles + 1) / (2 * n_tiles)
        result |= {"flop": flop, "gflops": flop / seconds / 1e9}
    return result


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")),
        platform.processor(),
    )
    return f"{os.cpu_count()} CPUs ({model}), {_available_bytes() / 2**30:.0f} GiB available"


def versions() -> str:
    import sklearn
    from threadpoolctl import threadpool_info

    parts = [f"numpy {np.__version__}", f"scikit-learn {sklearn.__version__}"]
    try:
        import faiss

        parts.append(f"faiss {faiss.__version__}")
    except ImportError:
        parts.append("faiss not installed")
    blas = [f"{i['internal_api']} {i.get('version')} x{i['num_threads']}" for i in threadpool_info()
            if i["user_api"] == "blas"]
    return ", ".join(parts) + "; BLAS threads: " + "; ".join(blas)


def table(results: list[dict], n: int) -> str:
    """Markdown table of each method's fastest run; ratios to the fastest baseline (sklearn, faiss, naive)."""
    done = [r for r in results if "seconds" in r]
    base = min((r for r in done if r["method"] in BASELINES), key=lambda r: r["seconds"], default=None)
    rows = [
        f"| method (N = {n:,}) | time (s) | time / {base['method'] if base else 'baseline'} "
        "| all runs (s) | peak RSS (GB) | increase during method (GB) | R@1 | R-Precision | MAP@R |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "skipped" in r:
            rows.append(f"| {r['label']} | skipped: {r['skipped']} | | | | | | | |")
            continue
        m = r.get("metrics")
        cells = [f"{m['recall@1']:.4f}", f"{m['r_precision']:.4f}", f"{m['map@r']:.4f}"] if m else [
            f"({r['gflops']:.0f} GFLOP/s)", "", ""]
        ratio = f"{r['seconds'] / base['seconds']:.2f}" if base else ""
        rows.append(
            f"| {r['label']} | {_s(r['seconds'])} | {ratio} "
            f"| {', '.join(_s(t) for t in r['all_seconds'])} | {r['peak_bytes'] / 1e9:.2f} "
            f"| {r['increase_bytes'] / 1e9:.2f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(rows)


def _s(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds >= 10 else f"{seconds:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60_502, help="rows (SOP test set: 60,502)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=NOISE,
                        help="per-coordinate noise around unit-variance class centres (harder when larger)")
    parser.add_argument("--methods", default="blockwise,blockwise_1thread,blockwise_full,sklearn,faiss,naive,"
                        "matmul,matmul_upper", help=f"comma-separated, from: {', '.join(METHODS)}")
    parser.add_argument("--block-sizes", default="",
                        help="extra blockwise rows with these explicit block sizes, e.g. 1024,3072")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds over all methods, interleaved; the table gives each method's fastest")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--block-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(args.worker, args.n, args.dim, args.seed, args.noise, args.block_size)))
        return 0

    jobs = [(m, None) for m in args.methods.split(",") if m]
    jobs += [("blockwise", int(b)) for b in args.block_sizes.split(",") if b]
    unknown = {m for m, _ in jobs} - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {machine()}")
    print(f"versions: {versions()}")
    print(f"data: N={args.n:,} x {args.dim}, seed {args.seed}, noise {args.noise}; each method in its own subprocess")
    print("load average (1, 5, 15 min) at start: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + "\n")
    runs: dict[str, list[dict]] = {}
    for round_ in range(args.repeats):
        for method, block_size in jobs:
            cmd = [sys.executable, __file__, "--worker", method, "--n", str(args.n), "--dim", str(args.dim),
                   "--seed", str(args.seed), "--noise", str(args.noise)]
            cmd += ["--block-size", str(block_size)] if block_size else []
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.stderr.write(out.stderr)
                raise SystemExit(f"{method} failed (exit {out.returncode})")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["label"] = method + (f" (block {block_size})" if block_size else "")
            runs.setdefault(r["label"], []).append(r)
            print(f"  round {round_ + 1}, {r['label']}: " + (r["skipped"] if "skipped" in r else
                  f"{r['seconds']:.1f} s, peak {r['peak_bytes'] / 1e9:.2f} GB"), flush=True)
    # Other work on a shared machine only ever slows a run down: keep each method's fastest run.
    results = [min(rs, key=lambda r: r.get("seconds", 0.0)) | {"all_seconds": [r.get("seconds") for r in rs]}
               for rs in runs.values()]
    print("load average at end: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print("\n" + table(results, args.n) + "\n")
    metrics = {r["label"]: r["metrics"] for r in results if "metrics" in r}
    if metrics:
        first_label, first = next(iter(metrics.items()))
        print(f"k = {results[0]['k']} neighbours; metrics of {len(metrics)} searches compared with {first_label}'s:")
        for name in first:
            worst = max(metrics, key=lambda label: abs(metrics[label][name] - first[name]))
            gap = abs(metrics[worst][name] - first[name])
            print(f"  {name}: " + ("equal in all" if gap == 0 else f"largest difference {gap:.1e} ({worst})"))
    timed = {r["label"]: r for r in results if "seconds" in r}
    if "matmul" in timed:
        mm = timed["matmul"]
        print(f"matmul bound: the full {args.n:,} x {args.n:,} x {args.dim} product ({mm['flop'] / 1e12:.2f} TFLOP) "
              f"took {mm['seconds']:.1f} s in {TILE}-row tiles = {mm['gflops']:.0f} GFLOP/s.")
        for label in ("blockwise", "blockwise_full"):
            if label in timed:
                print(f"  {label}: {timed[label]['seconds'] / mm['seconds']:.2f} x the full-product time")
    if "matmul_upper" in timed and "blockwise" in timed:
        up = timed["matmul_upper"]
        print(f"symmetric bound: the upper-triangle tiles alone took {up['seconds']:.1f} s "
              f"({up['gflops']:.0f} GFLOP/s); blockwise takes {timed['blockwise']['seconds'] / up['seconds']:.2f} x that.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
