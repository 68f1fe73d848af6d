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
