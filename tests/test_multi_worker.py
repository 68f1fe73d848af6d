"""Two local workers (MultiWorkerMirroredStrategy, `$TF_CONFIG` on loopback) train as one device would.

Each worker is a subprocess bounded in time; the cluster's ports are free ones picked just before.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).parent / "scripts" / "multi_worker_step.py"
TIMEOUT_S = 150


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_workers(commands: list[list[str]], cwd: Path = ROOT) -> list[subprocess.CompletedProcess]:
    """Start one process per command as workers 0..n-1 of a loopback cluster; wait for all (bounded)."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(len(commands))]}
    procs = []
    for index, command in enumerate(commands):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                      cwd=cwd))
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=TIMEOUT_S)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:  # a worker left waiting for a dead peer must not outlive the test
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def test_two_workers_take_the_step_of_one_device(tmp_path):
    out = tmp_path / "result.json"
    results = run_workers([[sys.executable, str(SCRIPT), "2", str(out)]] * 2)
    for index, result in enumerate(results):
        assert result.returncode == 0, f"worker {index}: {result.stderr[-3000:]}"
    result = json.loads(out.read_text())
    assert result["replicas"] == 2
    assert result["loss_distributed"] == pytest.approx(result["loss_single"], rel=1e-5)
    assert result["max_update"] > 1e-3  # the steps did move the weights...
    assert result["max_weight_diff"] < 1e-4 * max(1.0, result["max_update"])  # ...identically on both sides


def write_folder(root: Path, classes: int = 12, per_class: int = 4) -> Path:
    """`root/<class>/<k>.png`: tiny images whose colour depends on the class (so training can learn)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for c in range(classes):
        base = rng.integers(0, 256, 3)
        for k in range(per_class):
            pixels = np.clip(base + rng.normal(0, 30, (12, 12, 3)), 0, 255).astype(np.uint8)
            (root / f"c{c:02d}").mkdir(parents=True, exist_ok=True)
            tf.io.write_file(str(root / f"c{c:02d}" / f"{k}.png"), tf.io.encode_png(pixels))
    return root


def train_command(data: Path, output_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tfdml.cli.train", "emoji.yaml", "distribute=multi_worker", "data.dataset=folder",
            f"data.root={data}", "data.reader_args={}", "data.image_size=12", "data.val_fraction=0.25",
            "sampler.batch_size=8", "sampler.m=2", "train.steps_per_epoch=2", "train.jit_compile=false",
            "train.time_budget_s=null", "model.backbone_args.widths=[8,16]", "model.embedding_dim=8",
            "eval.batch_size=64", "train.verbose=0", f"output_dir={output_dir}", "name=mw", *extra]


def test_only_the_chief_writes_the_run_directory(tmp_path):
    data = write_folder(tmp_path / "data")
    chief_dir, worker_dir = tmp_path / "chief", tmp_path / "worker"  # distinct, to see who writes what
    results = run_workers([train_command(data, chief_dir, "train.epochs=2"),
                           train_command(data, worker_dir, "train.epochs=2")])
    for index, result in enumerate(results):
        assert result.returncode == 0, f"worker {index}: {result.stderr[-3000:]}"
    run_dir = chief_dir / "mw"
    for item in ("config.yaml", "checkpoints/last.keras", "checkpoints/state.json", "metrics.json",
                 "saved_model/saved_model.pb"):
        assert (run_dir / item).exists(), item
    assert list((run_dir / "logs").rglob("events.out.tfevents.*"))
    assert json.loads((run_dir / "checkpoints" / "state.json").read_text())["epoch"] == 2
    assert not worker_dir.exists()
    assert "the chief tests, exports and writes" in results[1].stdout
