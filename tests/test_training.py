"""End-to-end runs on the real emoji set with a tiny network: run directory, resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from tfdml.config import load_config
from tfdml.errors import ConfigError, TfdmlError
from tfdml.training import run

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "sampler.batch_size=32", "train.steps_per_epoch=3", "model.backbone_args.widths=[8,16]",
    "model.embedding_dim=16", "eval.batch_size=512", "train.verbose=0", "train.epochs=2",
]


def tiny_config(tmp_path: Path, *extra: str):
    return load_config(ROOT / "yaml_configs" / "emoji.yaml", [*TINY, f"output_dir={tmp_path}", *extra])


def cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfdml.cli.train", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300, cwd=ROOT, **kwargs)


def last_weights(run_dir: Path) -> list[np.ndarray]:
    return keras.models.load_model(run_dir / "checkpoints" / "last.keras").get_weights()


def test_run_writes_the_run_directory_and_resumes_identically(tmp_path):
    metrics = run(tiny_config(tmp_path, "name=whole", "train.epochs=3"), log=lambda _: None)
    whole = tmp_path / "whole"
    for item in ("config.yaml", "logs", "checkpoints/last.keras", "checkpoints/best.weights.h5", "metrics.json",
                 "saved_model/saved_model.pb"):
        assert (whole / item).exists(), item
    assert list((whole / "logs").rglob("events.out.tfevents.*"))
    saved = json.loads((whole / "metrics.json").read_text())
    assert saved["test"]["num_queries"] == 3794 and 0.0 < saved["test"]["map@r"] <= saved["test"]["recall@1"]
    assert metrics["best_val"]["epoch"] in (1, 2, 3) and len(saved["validation"]) == 3 and saved["epochs"] == 3
    assert load_config(whole / "config.yaml").train.epochs == 3

    # The same run interrupted after epoch 2 and resumed ends identically: same batches, same
    # augmentation, same learning-rate schedule and optimizer state.
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tiny_config(tmp_path, "name=cut", "train.epochs=3"), log=lambda _: None, callbacks=[Interrupt()])
    assert json.loads((tmp_path / "cut" / "checkpoints" / "state.json").read_text())["epoch"] == 2
    messages: list[str] = []
    run(tiny_config(tmp_path, "name=cut", "train.epochs=3"), log=messages.append)
    assert any("resuming" in m and "after epoch 2" in m for m in messages)
    for a, b in zip(last_weights(whole), last_weights(tmp_path / "cut")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    state = json.loads((tmp_path / "cut" / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 3 and [v["epoch"] for v in state["validation"]] == [1, 2, 3]


def test_checkpoint_from_another_config_is_refused(tmp_path):
    run(tiny_config(tmp_path, "name=a", "train.epochs=1", "export.saved_model=false"), log=lambda _: None)
    with pytest.raises(ConfigError, match=r"checkpoint of another config \(differs in: optimizer.weight_decay\)"):
        run(tiny_config(tmp_path, "name=a", "train.epochs=1", "optimizer.weight_decay=0.5"), log=lambda _: None)


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    config = tiny_config(tmp_path, "name=nan", "optimizer.name=sgd", "optimizer.learning_rate=1e30",
                         "optimizer.schedule=constant", "optimizer.weight_decay=0")
    # Whichever shows it first, the loss or the embeddings, the error says what happened and what to do.
    with pytest.raises(TfdmlError, match=r"became (nan|NaN).* epoch 1\b.*Lower optimizer.learning_rate"):
        run(config, log=lambda _: None)


def test_cli_interrupted_by_ctrl_c_resumes_from_its_checkpoint(tmp_path):
    args = ["emoji.yaml", *TINY, "train.epochs=40", "name=sigint", f"output_dir={tmp_path}", "export.saved_model=false"]
    state = tmp_path / "sigint" / "checkpoints" / "state.json"
    proc = subprocess.Popen([str(ROOT / "bin" / "tfdml-train"), *args], stdout=subprocess.PIPE,  # the script itself
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not state.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "rerun the same command to resume" in err and "Traceback" not in err
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 40
    resumed = cli(*args[:-4], "train.epochs=" + str(done + 1), *args[-3:])
    assert resumed.returncode == 0, resumed.stderr
    assert f"after epoch {done}" in resumed.stdout
    assert json.loads(state.read_text())["epoch"] == done + 1


@pytest.mark.parametrize(
    "args, env, expected",
    [
        (["emoji.yaml", "optimizer.learnig_rate=0.1"], {},
         "unknown key `optimizer.learnig_rate`; did you mean `optimizer.learning_rate`?"),
        (["emoji.yaml", "model.backbone=resnet50", "model.backbone_weights=/nowhere/r50.h5"], {},
         "backbone weights file not found: /nowhere/r50.h5"),
        (["emoji.yaml", "data.root=EMPTY"], {"PATH": "/nonexistent"}, "npm"),
        (["no_such_config.yaml"], {}, "config file not found"),
    ],
    ids=["mistyped-key", "missing-weights", "no-data-no-npm", "missing-config"],
)
def test_cli_bad_input_gives_one_clear_line_and_nonzero_exit(tmp_path, args, env, expected):
    args = [a.replace("EMPTY", str(tmp_path / "empty")) for a in args]
    if "PATH" in env:  # keep python reachable, hide npm
        env = {"PATH": str(Path(sys.executable).parent)}
    result = cli(*args, f"output_dir={tmp_path}", env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("tfdml-train: error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
