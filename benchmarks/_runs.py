"""Shared by the benchmark scripts: run one config through `bin/tfdml-train`, or read back a finished run."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]


def train(config: str, name: str, group: str, overrides: list[str]) -> dict:
    """`metrics.json` of `runs/<group>/<name>`, training it first (in its own process) if it has not finished."""
    metrics = ROOT / "runs" / group / name / "metrics.json"
    if not metrics.is_file():
        args = [f"output_dir=runs/{group}", f"name={name}", "train.verbose=2", "export.saved_model=false", *overrides]
        subprocess.run([str(ROOT / "bin" / "tfdml-train"), f"yaml_configs/{config}.yaml", *args], cwd=ROOT, check=True)
    return json.loads(metrics.read_text())


def mean_spread(values: list[float]) -> str:
    """`mean ± standard deviation` (sample), or the value alone for one run."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def step_ms(config: Any, num_classes: int, images: Any, labels: Any, steps: int,
            prepare: Callable[[Any], None] | None = None) -> float:
    """Milliseconds per training step of `config`'s model (a `tf.function`, no XLA) on one fixed batch,
    after a first traced step; `prepare(model)` runs before it (e.g. to switch a term on)."""
    import tensorflow as tf

    from tfdml.training.builders import build_model

    model = build_model(config, num_classes=num_classes)
    model.compile(optimizer="adam", jit_compile=False)
    model.build_optimizers()
    if prepare is not None:
        prepare(model)
    step = tf.function(model.train_step)
    step((images, labels))
    start = time.perf_counter()
    for _ in range(steps):
        step((images, labels))["loss"].numpy()
    return (time.perf_counter() - start) / steps * 1e3


def load_test_embeddings(run_dir: Path) -> tuple[Any, Any]:
    """The test embeddings and labels a finished run saved (`test_embeddings.npz`), or one line saying how to make them."""
    import numpy as np

    path = run_dir / "test_embeddings.npz"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: that run has not finished; train it first (for a probe script: the "
                         f"same command without --subsets)")
    with np.load(path) as saved:
        return saved["embeddings"], saved["labels"]


def subset_differences(load: Callable[[str, int], tuple[Any, Any]], probes: list[str], seeds: list[int],
                       draws: int, classes: int = 96) -> dict[str, dict[str, list[float]]]:
    """MAP@R and R@1 of each probe minus plain's on `draws` random sets of `classes` test classes per
    seed: what a validation split of that size would show of their difference by the luck of its
    draw. `load(probe, seed)` gives a finished run's test embeddings and labels (`"plain"` included)."""
    import numpy as np

    from tfdml.evaluation import evaluate_retrieval

    diffs: dict[str, dict[str, list[float]]] = {probe: {"map@r": [], "recall@1": []} for probe in probes}
    for seed in seeds:
        base, labels = load("plain", seed)
        rng = np.random.default_rng(seed)
        sets = [np.isin(labels, rng.choice(np.unique(labels), classes, replace=False)) for _ in range(draws)]
        plain = [evaluate_retrieval(base[rows], labels[rows], ks=(1,)) for rows in sets]  # once, for every probe
        for probe in probes:
            other = load(probe, seed)[0]
            for rows, a in zip(sets, plain):
                b = evaluate_retrieval(other[rows], labels[rows], ks=(1,))
                for key, values in diffs[probe].items():
                    values.append(b[key] - a[key])
    return diffs


def print_subset_differences(diffs: dict[str, dict[str, list[float]]], title: str) -> None:
    """One markdown row per model: the mean ± std of its differences and how often it wins."""
    import numpy as np

    print(f"{title}\n\n| probe | MAP@R diff (mean ± std) | wins | R@1 diff (mean ± std) | wins |\n|---|---|---|---|---|")
    for name, by_metric in diffs.items():
        cells = [f"{statistics.mean(d):+.4f} ± {statistics.stdev(d):.4f} | {np.mean(np.array(d) > 0):.0%}"
                 for d in by_metric.values()]
        print(f"| {name} | {' | '.join(cells)} |", flush=True)
