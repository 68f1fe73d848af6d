"""Shared by the benchmark scripts: run one config through `bin/tfdml-train`, or read back a finished run."""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

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
