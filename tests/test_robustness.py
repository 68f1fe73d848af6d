"""Issue 16: nothing lost, nothing silent. Bad images, odd splits, NaN recovery, the run lock, checkpoint
sets, one-line errors and loud config checks, each on real files in tmp dirs with a tiny network on a
tiny folder dataset (12 classes of 4 JPEGs of 16 px)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from miniatures import write_colour_classes
from tfdml.config import load_config
from tfdml.data import DatasetTable
from tfdml.data.pipeline import find_bad_images
from tfdml.errors import ArtifactError, ConfigError, DataError, TfdmlError
from tfdml.training import run

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.dataset=folder", "data.image_size=16", "sampler.batch_size=8", "sampler.m=2",
        "train.steps_per_epoch=2", "train.epochs=2", "model.backbone_args.widths=[4,8]", "model.embedding_dim=8",
        "eval.batch_size=64", "train.verbose=0", "data.min_images=2"]


@pytest.fixture
def shapes(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TFDML_CACHE", str(tmp_path / "cache"))  # no verdicts from other tests
    return write_colour_classes(tmp_path / "shapes", ext="jpg")


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


# ----------------------------------------------------------------------------- 2. odd splits


def test_no_test_classes_trains_skips_the_test_and_still_exports(shapes, tmp_path):
    messages: list[str] = []
    metrics = run(tiny(tmp_path, shapes, "name=notest", "data.test_fraction=0", "train.epochs=1"), log=messages.append)
    run_dir = tmp_path / "runs" / "notest"
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"] is None and saved["test"] is None and "test evaluation was skipped" in saved["test_skipped"]
    assert any("test evaluation was skipped" in m for m in messages)
    assert (run_dir / "saved_model" / "saved_model.pb").is_file()


def test_no_validation_classes_trains_the_schedule_and_keeps_the_last_weights(shapes, tmp_path):
    import keras

    messages: list[str] = []
    metrics = run(tiny(tmp_path, shapes, "name=noval", "data.val_fraction=0", "export.saved_model=false"),
                  log=messages.append)
    checkpoints = tmp_path / "runs" / "noval" / "checkpoints"
    assert any("without validation" in m for m in messages)
    assert json.loads((checkpoints / "state.json").read_text())["epoch"] == 2  # every epoch, resumable
    assert not (checkpoints / "best.weights.h5").exists() and metrics["best_val"] is None
    assert metrics["test"]["num_queries"] == 24 and metrics["epochs"] == 2
    # Resumable: more epochs continue from the checkpoint.
    messages.clear()
    metrics = run(tiny(tmp_path, shapes, "name=noval", "data.val_fraction=0", "export.saved_model=false",
                       "train.epochs=3"), log=messages.append)
    assert metrics["epochs"] == 3  # counted from the start, not from the resume
    assert any("after epoch 2" in m for m in messages)
    assert any("train.epochs changed from 2 to 3 on resume: the cosine learning-rate schedule is rebuilt" in m
               for m in messages), messages
    assert json.loads((checkpoints / "state.json").read_text())["epoch"] == 3
    assert keras.models.load_model(checkpoints / "last.keras").optimizer.iterations.numpy() == 6


@pytest.mark.parametrize("override, expected", [
    ("eval.ks=[]", "`eval.ks` is []"),
    ("data.test_fraction=1", "it must be in [0, 1)"),
    ("eval.monitor=recall@1", "does not compute it"),
])
def test_split_and_metric_values_that_make_no_sense_fail_at_load_time(override, expected):
    extra = ["eval.ks=[2]"] if override.startswith("eval.monitor") else []
    with pytest.raises(ConfigError) as err:
        load_config(None, [override, *extra])
    assert expected in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- 7. silent accepts made loud


def test_empty_config_file_is_rejected(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty.yaml: the file is empty"):
        load_config(path)


@pytest.mark.parametrize("text, expected", [
    ("augment: {crop_scale: [1.0, 0.3]}\n", "`augment.crop_scale` is [1.0, 0.3]"),
    ("optimizer: {learning_rate: .nan}\n", "`optimizer.learning_rate` is NaN"),
    ("loss: {args: {alpha: .nan}}\n", "`loss.args.alpha` is NaN"),
    ("sampler: {m: 1, batch_size: 32}\nloss: {name: contrastive}\n", "no positive pair"),
], ids=["reversed-crop-scale", "nan-float", "nan-in-free-args", "m1-pair-loss"])
def test_values_that_would_train_silently_wrong_fail_at_load_time(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert expected in str(err.value) and str(path) in str(err.value)
    # A proxy loss has positives with one image per class.
    load_config(None, ["sampler.m=1", "loss.name=proxy_anchor"])


def test_single_image_classes_are_dropped_with_a_log_line(shapes, tmp_path):
    from tfdml.training.builders import build_table

    for extra in ("1.jpg", "2.jpg", "3.jpg"):
        (shapes / "class11" / extra).unlink()
    messages: list[str] = []
    build_table(tiny(tmp_path, shapes), log=messages.append)
    assert any("dropped 1 classes with fewer than data.min_images=2 images (1 images)" in m for m in messages), messages


# ----------------------------------------------------------------------------- 6. one line instead of a traceback


def test_non_utf8_config_and_wrong_backbone_args_give_one_line(shapes, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    line = one_error_line(cli("train", str(path)), "tfdml-train")
    assert "not UTF-8" in line
    config = tmp_path / "shapes.yaml"
    config.write_text(f"data: {{dataset: folder, root: {shapes}, image_size: 16}}\nsampler: {{batch_size: 8, m: 2}}\n")
    line = one_error_line(cli("train", str(config), "model.backbone_args={widths: abc}", f"output_dir={tmp_path}"),
                          "tfdml-train")
    assert "model.backbone_args" in line


# ----------------------------------------------------------------------------- 3. NaN recovery


def test_nan_message_names_an_override_that_resumes_and_is_applied(shapes, tmp_path):
    import keras
    import re

    base = ["name=nan", "optimizer.name=sgd", "optimizer.schedule=constant", "optimizer.weight_decay=0",
            "export.saved_model=false"]
    run(tiny(tmp_path, shapes, *base, "train.epochs=1", "optimizer.learning_rate=0.01"), log=lambda _: None)
    with pytest.raises(TfdmlError) as err:  # the rate explodes in epoch 2
        run(tiny(tmp_path, shapes, *base, "train.epochs=3", "optimizer.learning_rate=1e30"), log=lambda _: None)
    message = str(err.value)
    assert "became" in message and "epoch 2" in message and "resumes from the last checkpoint" in message
    overrides = re.findall(r"(optimizer\.(?:learning_rate|clipnorm))=", message)
    assert overrides == ["optimizer.learning_rate", "optimizer.clipnorm"]
    checkpoints = tmp_path / "runs" / "nan" / "checkpoints"
    assert json.loads((checkpoints / "state.json").read_text())["epoch"] == 1  # the NaN epoch was not saved
    # Each named override is accepted by the resume, and applied.
    messages: list[str] = []
    run(tiny(tmp_path, shapes, *base, "train.epochs=2", "optimizer.learning_rate=0.001", "optimizer.clipnorm=10"),
        log=messages.append)
    assert any("after epoch 1" in m for m in messages)
    assert any("optimizer.learning_rate changed from 1e+30 to 0.001" in m or
               "optimizer.learning_rate changed from 0.01 to 0.001" in m for m in messages), messages
    optimizer = keras.models.load_model(checkpoints / "last.keras").optimizer
    assert json.loads((checkpoints / "state.json").read_text())["epoch"] == 2
    assert float(optimizer.learning_rate) == pytest.approx(0.001) and optimizer.iterations.numpy() == 4


# ----------------------------------------------------------------------------- 4. run lock

HOLD = """
import sys, time
from tfdml.training.lock import RunLock
with RunLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_run_of_the_same_run_directory_is_refused_naming_the_holder(shapes, tmp_path):
    run_dir = tmp_path / "runs" / "locked"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        config = tmp_path / "shapes.yaml"
        config.write_text("seed: 0\n")
        line = one_error_line(cli("train", str(config), *TINY, f"data.root={shapes}", "name=locked",
                                  f"output_dir={tmp_path / 'runs'}"),
                              "tfdml-train")
        assert f"in use by another tfdml-train (pid {holder.pid})" in line
        assert not (run_dir / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    # The kernel drops the lock with its holder: the run can start now.
    from tfdml.training.lock import RunLock

    with RunLock(run_dir):
        assert (run_dir / ".lock").read_text().strip() == str(os.getpid())


def test_checkpoint_temporary_files_are_unique_to_the_process(shapes, tmp_path):
    from tfdml.training import callbacks

    written = []
    temporary = callbacks._write_temporary(tmp_path / "last.keras",
                                           lambda p: (written.append(p), Path(p).write_text("x")))
    assert Path(written[0]).name == temporary.name == f".tmp.{os.getpid()}.last.keras" and temporary.is_file()
    assert not (tmp_path / "last.keras").exists()  # renamed into place only once the whole set is written


# ----------------------------------------------------------------------------- 5. checkpoints as one set


def test_mixed_damaged_or_truncated_checkpoint_sets_give_one_line(shapes, tmp_path):
    import shutil

    args = ["name=ckpt", "export.saved_model=false"]
    run(tiny(tmp_path, shapes, *args, "train.epochs=1"), log=lambda _: None)
    checkpoints = tmp_path / "runs" / "ckpt" / "checkpoints"
    epoch1 = tmp_path / "epoch1"
    shutil.copytree(checkpoints, epoch1)
    run(tiny(tmp_path, shapes, *args, "train.epochs=2"), log=lambda _: None)
    assert json.loads((checkpoints / "manifest.json").read_text())["epoch"] == 2
    epoch2 = tmp_path / "epoch2"
    shutil.copytree(checkpoints, epoch2)

    def restore(source: Path, **replace: Path) -> None:
        shutil.rmtree(checkpoints)
        shutil.copytree(source, checkpoints)
        for name, path in replace.items():
            shutil.copy(path, checkpoints / name.replace("_", "."))

    cases = {
        # killed between replacing last.keras (epoch 2) and state.json (still epoch 1)
        "mixed": (lambda: restore(epoch1, last_keras=epoch2 / "last.keras"), "not one set: last.keras"),
        "truncated-state": (lambda: (restore(epoch2), (checkpoints / "state.json").write_text('{"epoch": 2, "be')),
                            "state.json is not the file of epoch 2"),
        "damaged-manifest": (lambda: (restore(epoch2), (checkpoints / "manifest.json").write_text("{")),
                             "manifest.json is damaged"),
        "no-manifest-truncated-state": (lambda: (restore(epoch2), (checkpoints / "manifest.json").unlink(),
                                                 (checkpoints / "state.json").write_text('{"epoch": 2, "be')),
                                        "state.json is damaged"),
    }
    for name, (damage, expected) in cases.items():
        damage()
        with pytest.raises(ArtifactError) as err:
            run(tiny(tmp_path, shapes, *args, "train.epochs=3"), log=lambda _: None)
        assert expected in str(err.value) and "delete" in str(err.value) and "\n" not in str(err.value), name
    # ... and on the command line, one line.
    restore(epoch1, last_keras=epoch2 / "last.keras")
    config = tmp_path / "shapes.yaml"
    config.write_text("seed: 0\n")
    line = one_error_line(cli("train", str(config), *TINY, f"data.root={shapes}", f"output_dir={tmp_path / 'runs'}",
                              *args, "train.epochs=3"), "tfdml-train")
    assert "not one set" in line


def test_exported_models_and_commands_fail_in_one_line(shapes, tmp_path):
    from tfdml.cli.export import export_run

    run(tiny(tmp_path, shapes, "name=exp", "train.epochs=1", "export.saved_model=false"), log=lambda _: None)
    run_dir = tmp_path / "runs" / "exp"
    written = export_run(run_dir, log=lambda _: None)
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")

    # Output paths are checked before the work (a path below a file: unwritable even for root).
    line = one_error_line(cli("export", str(run_dir), "--out", str(a_file / "out")), "tfdml-export")
    assert "--out" in line and "cannot create" in line
    query = str(next(shapes.rglob("*.jpg")))
    line = one_error_line(cli("search", str(written["retrieval_model"]), "--query", query, "--png",
                              str(a_file / "grid.png")), "tfdml-search")
    assert "--png" in line and "cannot create" in line

    # A batch of 0 images gives 0 results.
    embedder = tf.saved_model.load(str(written["saved_model"]))
    empty = tf.zeros([0, 16, 16, 3])
    assert embedder.serve(empty).shape == (0, 8)
    assert embedder.signatures["serve"](images=empty)["output_0"].shape == (0, 8)
    assert embedder.serve_uint8(tf.zeros([0, 16, 16, 3], tf.uint8)).shape == (0, 8)
    retrieval = tf.saved_model.load(str(written["retrieval_model"]))
    found = retrieval.search(empty, tf.constant(3))
    assert found["ids"].shape == (0, 3) and found["scores"].shape == (0, 3)
    assert retrieval.embed(empty).shape == (0, 8)

    # A manifest that disagrees with its SavedModel.
    manifest = written["saved_model"] / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"image_size": 16', '"image_size": 24'))
    line = one_error_line(cli("eval", str(written["saved_model"]), "--dataset", str(shapes)), "tfdml-eval")
    assert "image_size 24" in line and "takes 16" in line
