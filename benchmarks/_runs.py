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
