"""Issue 16: nothing lost, nothing silent. Bad images, odd splits, NaN recovery, the run lock, checkpoint
sets, one-line errors and loud config checks, each on real files in tmp dirs with a tiny network on a
tiny folder dataset (12 classes of 4 JPEGs of 16 px)."""

from __future__ import annotations

import fcntl
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfdml.config import load_config
from tfdml.data import DatasetTable
from tfdml.data.pipeline import find_bad_images
from tfdml.errors import ArtifactError, ConfigError, DataError, TfdmlError
from tfdml.training import run

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.dataset=folder", "data.image_size=16", "sampler.batch_size=8", "sampler.m=2",
        "train.steps_per_epoch=2", "train.epochs=2", "model.backbone_args.widths=[4,8]", "model.embedding_dim=8",
        "eval.batch_size=64", "train.verbose=0", "data.min_images=2"]


def write_shapes(root: Path, classes: int = 12, per_class: int = 4) -> Path:
    """`root/<class>/<i>.jpg`: small JPEGs, one colour per class plus noise."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        colour = rng.integers(0, 256, 3)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
            path = root / f"class{c:02d}" / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tf.io.encode_jpeg(pixels).numpy())
    return root


@pytest.fixture
def shapes(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TFDML_CACHE", str(tmp_path / "cache"))  # no verdicts from other tests
    return write_shapes(tmp_path / "shapes")


def tiny(tmp_path: Path, root: Path, *extra: str):
    return load_config(None, [*TINY, f"data.root={root}", f"output_dir={tmp_path / 'runs'}", *extra])


def cli(prog: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **kwargs.pop("env", {})}
    return subprocess.run([sys.executable, "-m", f"tfdml.cli.{prog}", *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=ROOT, **kwargs)


def one_error_line(result: subprocess.CompletedProcess, prog: str) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{prog}: error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def split_of(config) -> dict[str, list[str]]:
    from tfdml.training.builders import build_table

    table = build_table(config, log=lambda _: None)
    return {s: sorted(set(table.subset(s).class_names[i] for i in table.subset(s).label)) for s in ("train", "val", "test")}


# ----------------------------------------------------------------------------- 1. undecodable images


def test_decoding_check_finds_truncated_files_in_parallel_and_caches_the_verdict(shapes, tmp_path):
    paths = sorted(str(p) for p in shapes.rglob("*.jpg"))
    truncate(Path(paths[3]))
    table = DatasetTable.from_class_keys(paths, [Path(p).parent.name for p in paths])
    assert find_bad_images(table) == []  # the magic bytes are fine
    bad = find_bad_images(table, decode=True, cache_dir=tmp_path / "checks")
    assert [row for row, _ in bad] == [3] and paths[3] in bad[0][1] and "cannot be decoded" in bad[0][1]
    cached = list((tmp_path / "checks").glob("*.json"))
    assert len(cached) == 1 and paths[3] in cached[0].read_text()
    # The verdict is reused for the same files; a changed file is decoded again.
    assert find_bad_images(table, decode=True, cache_dir=tmp_path / "checks") == bad
    Path(paths[3]).write_bytes(Path(paths[0]).read_bytes())
    assert find_bad_images(table, decode=True, cache_dir=tmp_path / "checks") == []


def test_truncated_test_image_fails_before_training_naming_it(shapes, tmp_path):
    config = tiny(tmp_path, shapes, "name=bad")
    bad = shapes / split_of(config)["test"][0] / "1.jpg"
    truncate(bad)
    with pytest.raises(DataError, match=rf"{bad}.*cannot be decoded.*skip_bad_images"):
        run(config, log=lambda _: None)
    assert not (tmp_path / "runs" / "bad" / "checkpoints").exists()  # nothing trained


def test_truncated_training_image_is_named_when_it_fails(shapes, tmp_path):
    config = tiny(tmp_path, shapes, "name=badtrain")
    bad = shapes / split_of(config)["train"][0] / "0.jpg"
    truncate(bad)
    with pytest.raises(DataError, match=rf"{bad}.*cannot be decoded"):
        run(config, log=lambda _: None)


def test_skip_bad_images_decodes_and_skips(shapes, tmp_path):
    config = tiny(tmp_path, shapes, "name=skip", "data.skip_bad_images=true", "train.epochs=1",
                  "export.saved_model=false")
    bad = shapes / split_of(config)["test"][0] / "2.jpg"
    truncate(bad)
    messages: list[str] = []
    metrics = run(config, log=messages.append)
    assert any("skipping 1 of 48 images" in m and str(bad) in m for m in messages), messages
    assert metrics["test"]["num_queries"] == 6 * 4 - 1
