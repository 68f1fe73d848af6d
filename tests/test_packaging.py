"""Configs are found by name, in a clone and from a built wheel installed in a fresh virtual environment.

The wheel test builds from a copy of the source tree (nothing is written into the checkout),
installs the wheel with `--no-deps` into a new venv, and lets that venv see the dependencies
(TensorFlow, Keras, ...) through a `.pth` line naming this venv's site-packages. A `.pth` *line*
only appends a directory to `sys.path`; the `.pth` files inside it (the editable tfdml's finder)
are not run, so the fresh venv's tfdml can only be the wheel's, which the test checks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from miniatures import write_colour_classes
from tfdml.cli import train as train_cli
from tfdml.config.locate import REPOSITORY, find_config
from tfdml.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.epochs=1", "train.steps_per_epoch=2", "train.verbose=0", "train.jit_compile=false",
        "data.image_size=16", "data.val_fraction=0.34", "sampler.batch_size=8", "sampler.m=2",
        "model.backbone_args.widths=[4,8]", "model.embedding_dim=8", "export.saved_model=false"]


def test_configs_are_found_by_name_and_a_miss_names_every_place_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert find_config("emoji") == find_config("emoji.yaml") == REPOSITORY / "emoji.yaml"
    (tmp_path / "emoji.yaml").write_text("base: base.yaml\n")  # a path that exists wins over the shipped name
    assert find_config("emoji.yaml") == Path("emoji.yaml")
    with pytest.raises(ConfigError) as err:
        find_config("emoj.yaml")
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "emoj.yaml") in message and str(REPOSITORY) in message
    assert "did you mean emoji.yaml?" in message and "cub_ccp" in message
    assert train_cli.main(["emoj"]) == 2
    err_lines = capsys.readouterr().err.splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("tfdml-train: error: config file not found: emoj (looked")


def test_built_wheel_trains_emoji_yaml_by_name_outside_the_repo(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "runs", "*.egg-info", "__pycache__", ".pytest_cache"))
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist),
                            str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("tfdml-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("tfdml/configs/")}
    assert shipped == {p.name for p in (ROOT / "yaml_configs").glob("*.yaml")} and "emoji.yaml" in shipped

    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True, timeout=120)
    python = fresh / "bin" / "python"
    installed = subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    (site / "dependencies_from_the_test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"  # not the repo, and no yaml_configs/ in sight
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    where = subprocess.run([str(python), "-c", "import tfdml, tfdml.config.locate as l; "
                            "print(tfdml.__file__); print(l.config_dirs())"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    assert where.stdout.splitlines()[0].startswith(str(site)), where.stdout  # the wheel's tfdml, not the editable one
    assert "yaml_configs" not in where.stdout

    data = write_colour_classes(tmp_path / "images", per_class=3, size=(12, 14))
    trained = subprocess.run([str(fresh / "bin" / "tfdml-train"), "emoji.yaml", "data.dataset=folder", "data.reader_args={}",
                              f"data.root={data}", *TINY, f"output_dir={work / 'runs'}", "name=wheel"],
                             cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((work / "runs" / "wheel" / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["map@r"] <= 1.0
    assert (work / "runs" / "wheel" / "config.yaml").read_text().count("folder") >= 1

    missing = subprocess.run([str(fresh / "bin" / "tfdml-train"), "emoj.yaml"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and f"{site}/tfdml/configs/emoj.yaml" in missing.stderr, missing.stderr
