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

import keras
import numpy as np

from miniatures import write_colour_classes
from tfdml.config import load_config
from tfdml.training import run

ROOT = Path(__file__).resolve().parents[1]
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


def overrides(data: Path, output_dir: Path) -> list[str]:
    """A tiny run: 2 epochs of 2 steps; SGD, not Adam, so that a wrong gradient scale shows in the weights."""
    return [f"data.root={data}", "data.dataset=folder", "data.reader_args={}", "data.image_size=12",
            "data.val_fraction=0.25", "sampler.batch_size=8", "sampler.m=2", "train.epochs=2",
            "train.steps_per_epoch=2", "train.jit_compile=false", "train.time_budget_s=null", "optimizer.name=sgd",
            "optimizer.learning_rate=0.05", "model.backbone_args.widths=[8,16]", "model.embedding_dim=8",
            "eval.batch_size=64", "train.verbose=0", f"output_dir={output_dir}", "name=mw"]


def test_two_workers_train_as_one_device_and_only_the_chief_writes(tmp_path):
    data = write_colour_classes(tmp_path / "data", size=(12, 12))
    chief_dir, worker_dir = tmp_path / "chief", tmp_path / "worker"  # distinct, to see who writes what
    command = [sys.executable, "-m", "tfdml.cli.train", "emoji.yaml", "distribute=multi_worker"]
    results = run_workers([command + overrides(data, chief_dir), command + overrides(data, worker_dir)])
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

    # One device on the same global batches (each worker took its half) ends with the same weights.
    class FirstWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = self.model.get_weights()

    first, single_dir = FirstWeights(), tmp_path / "single"
    run(load_config(ROOT / "yaml_configs" / "emoji.yaml", [*overrides(data, single_dir), "export.saved_model=false"]),
        log=lambda _: None, callbacks=[first])
    distributed = keras.models.load_model(run_dir / "checkpoints" / "last.keras").get_weights()
    single = keras.models.load_model(single_dir / "mw" / "checkpoints" / "last.keras").get_weights()
    assert max(float(np.abs(a - b).max()) for a, b in zip(single, first.weights)) > 1e-3  # training moved them...
    assert len(distributed) == len(single)
    for a, b in zip(distributed, single):  # ...identically on both sides
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
