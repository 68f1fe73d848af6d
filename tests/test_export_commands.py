"""Retrieval export and the tfdml-export / tfdml-eval / tfdml-search commands, on a tiny real run.

One run trains for two steps on generated PNG files listed in a CSV with an In-Shop style test
split (test queries search a separate test gallery), then `tfdml-export` exports it; every test
reads that run. The commands' `main(argv)` run in-process; the `bin/` shim runs once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfdml.cli import eval as eval_cli
from tfdml.cli import export as export_cli
from tfdml.cli import search as search_cli
from tfdml.config import load_config
from tfdml.evaluation import nearest_neighbours
from tfdml.training import run
from tfdml.retrieval.draw import table_thumbnails
from tfdml.training.projector import TENSOR_NAME, write_projector

ROOT = Path(__file__).resolve().parents[1]
CLASSES, PER_CLASS, TEST_CLASSES = 12, 4, range(6, 12)
TEST_IMAGES = len(TEST_CLASSES) * PER_CLASS  # the retrieval model's gallery: the whole test split
GREEN, RED = (0, 160, 60), (215, 30, 30)
CELL = 64 + 2 * (4 + 2)  # --png tiles: 64 px, a 4 px frame, a 2 px margin
CELL_H = CELL + 2 * 12 * bool(importlib.util.find_spec("PIL"))  # a two-line caption (12 px lines) under each tile


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished run directory, exported with `tfdml-export RUN_DIR` (gallery: its test split)."""
    tmp = tmp_path_factory.mktemp("export")
    data, rng = tmp / "data", np.random.default_rng(0)
    rows = ["path,label,split,is_query,is_gallery"]
    for c in range(CLASSES):
        colour = rng.integers(40, 216, 3)
        for i in range(PER_CLASS):  # a weak class colour under strong noise: metrics well below 1
            img = np.clip(colour + rng.normal(0, 70, (20, 24, 3)), 0, 255).astype(np.uint8)
            path = data / f"class{c:02d}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            tf.io.write_file(str(path), tf.io.encode_png(img))
            test = c in TEST_CLASSES
            query, gallery = (i % 2 == 0, i % 2 == 1) if test else (True, True)
            split = "test" if test else "train"
            rows.append(f"{path.relative_to(data)},class{c:02d},{split},{int(query)},{int(gallery)}")
    (data / "list.csv").write_text("\n".join(rows) + "\n")
    config = load_config(ROOT / "yaml_configs" / "base.yaml", [
        "data.dataset=csv", f"data.root={data / 'list.csv'}", "data.image_size=16", "data.val_fraction=0.34",
        "sampler.batch_size=8", "sampler.m=2", "train.steps_per_epoch=2", "train.epochs=1",
        "model.backbone_args.widths=[4,8]", "model.embedding_dim=8", f"output_dir={tmp / 'runs'}", "name=tiny"])
    printed = io.StringIO()  # train.verbose is `auto`; this stdout is not a terminal, as a log piped to a file
    with contextlib.redirect_stdout(printed):
        run(config, log=lambda _: None)
    run_dir = tmp / "runs" / "tiny"
    (tmp / "train_stdout.txt").write_text(printed.getvalue())
    assert export_cli.main([str(run_dir)]) == 0
    return run_dir


def test_a_run_piped_to_a_file_prints_plain_lines(trained):
    printed = (trained.parents[1] / "train_stdout.txt").read_text()
    assert not re.search(r"[\r\x1b\b]", printed), repr(printed[:300])  # no bar redrawn in place, no colours
    epoch, *embedded = printed.splitlines()  # (Keras writes no "Epoch 1/1" header for a single epoch)
    assert re.fullmatch(r"2/2 - \d+s - \d+m?s/step - loss: .* - val_map@r: .*", epoch), epoch
    # Then the test and training splits are embedded: one line each when done.
    assert len(embedded) == 2 and all(re.fullmatch(r"1/1 - \d+s - \d+[mu]?s/batch", line) for line in embedded), embedded


def test_the_run_leaves_its_test_embeddings_for_the_projector(trained):
    projector, saved = trained / "logs" / "projector", np.load(trained / "test_embeddings.npz")
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(projector)))  # as TensorBoard finds it
    np.testing.assert_allclose(reader.get_tensor(TENSOR_NAME), saved["embeddings"])
    gallery = json.loads((trained / "retrieval_model" / "manifest.json").read_text())["gallery"]  # the test rows
    assert (projector / "metadata.tsv").read_text().splitlines() == [e["class_name"] for e in gallery]
    assert tf.io.decode_png(tf.io.read_file(str(projector / "sprite.png"))).shape == (5 * 32, 5 * 32, 3)  # 24 of 25
    config = (projector / "projector_config.pbtxt").read_text()
    assert all(name in config for name in (TENSOR_NAME, '"metadata.tsv"', '"sprite.png"'))
    assert list(projector.glob("events.out.tfevents.*"))  # what makes the folder a run TensorBoard lists


def test_the_projector_keeps_a_seeded_sample_of_a_large_test_set(tmp_path, make_table):
    table = make_table([4, 3, 5])
    embeddings = np.random.default_rng(0).normal(size=(len(table), 6)).astype(np.float32)
    projector = write_projector(tmp_path / "projector", embeddings, table, max_points=5, seed=1, thumbnail=16)
    points = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(projector))).get_tensor(TENSOR_NAME)
    rows = [int(np.flatnonzero((embeddings == p).all(axis=1))[0]) for p in points]
    assert len(rows) == 5 and rows == sorted(rows)
    names = (projector / "metadata.tsv").read_text().splitlines()
    assert names == [table.class_names[table.label[r]] for r in rows]
    sprite = tf.io.decode_png(tf.io.read_file(str(projector / "sprite.png"))).numpy()
    assert sprite.shape == (3 * 16, 3 * 16, 3)  # 5 points in a 3 x 3 grid
    np.testing.assert_array_equal(sprite[16:32, 16:32], table_thumbnails(table.select([rows[4]]), 16)[0])


def errors_of(capsys, prog: str) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"{prog}: error:")]


def test_retrieval_model_finds_the_neighbours_of_nearest_neighbours(trained):
    retrieval = tf.saved_model.load(str(trained / "retrieval_model"))
    saved = np.load(trained / "test_embeddings.npz")  # the run's own embeddings of the test split
    assert retrieval.tfdml_kind[0].numpy() == b"retrieval"
    images = tf.random.stateless_uniform([7, 16, 16, 3], seed=[1, 2], maxval=255.0)
    k = 5
    found = retrieval.signatures["search"](images=images, k=tf.constant(k))
    ids, scores = nearest_neighbours(retrieval.embed(images).numpy(), saved["embeddings"], k, backend="sklearn")
    assert found["ids"].shape == (7, k) and found["scores"].dtype == tf.float32
    np.testing.assert_array_equal(found["ids"].numpy(), ids)
    np.testing.assert_allclose(found["scores"].numpy(), scores, atol=1e-5)
    assert (np.diff(found["scores"].numpy(), axis=1) <= 0).all()  # best first
    manifest = json.loads((trained / "retrieval_model" / "manifest.json").read_text())
    assert manifest["kind"] == "retrieval" and manifest["gallery_size"] == TEST_IMAGES == len(manifest["gallery"])
    assert manifest["image_size"] == 16 and manifest["embedding_dim"] == 8
    row = manifest["gallery"][5]
    assert row["id"] == 5 and Path(row["path"]).is_file() and row["class_name"] == Path(row["path"]).parent.name
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"k must be between 1 and the gallery size {TEST_IMAGES}"
                                                             rf".*\[{TEST_IMAGES + 1}\]"):
        retrieval.search(images, tf.constant(TEST_IMAGES + 1))


def test_both_saved_models_run_in_plain_tensorflow_without_tfdml(trained, tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        class NoTfdml:  # tfdml is installed in this venv (editable); make importing it fail
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] == "tfdml":
                    raise ImportError("tfdml must not be needed")
        sys.meta_path.insert(0, NoTfdml())
        import numpy as np, tensorflow as tf
        images = tf.constant((np.arange(2 * 16 * 16 * 3) * 7 % 256).astype(np.float32).reshape(2, 16, 16, 3))
        embedder = tf.saved_model.load({str(trained / "saved_model")!r})
        retrieval = tf.saved_model.load({str(trained / "retrieval_model")!r})
        found = retrieval.search(images, tf.constant(3))
        print(json.dumps({{
            "kinds": [embedder.tfdml_kind[0].numpy().decode(), retrieval.tfdml_kind[0].numpy().decode()],
            "serve": embedder.serve(images).numpy().tolist(),
            "uint8": embedder.serve_uint8(tf.cast(images, tf.uint8)).numpy().tolist(),
            "ids": found["ids"].numpy().tolist(), "scores": found["scores"].numpy().tolist(),
            "tfdml_loaded": "tfdml" in sys.modules}}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["kinds"] == ["embedding", "retrieval"] and out["tfdml_loaded"] is False
    images = tf.constant((np.arange(2 * 16 * 16 * 3) * 7 % 256).astype(np.float32).reshape(2, 16, 16, 3))
    retrieval = tf.saved_model.load(str(trained / "retrieval_model"))  # kept: its functions need its variables
    here = retrieval.search(images, tf.constant(3))
    np.testing.assert_allclose(np.linalg.norm(out["serve"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["uint8"], out["serve"], atol=1e-5)
    assert out["ids"] == here["ids"].numpy().tolist()
    np.testing.assert_allclose(out["scores"], here["scores"].numpy(), atol=1e-5)


def test_eval_of_the_run_and_of_its_saved_model_gives_the_run_test_metrics(trained, tmp_path, capsys):
    expected = json.loads((trained / "metrics.json").read_text())["test"]
    assert expected["num_queries"] == TEST_IMAGES // 2  # the In-Shop masks: only query rows search
    assert 0.0 < expected["map@r"] < 1.0 and expected["recall@1"] < 1.0  # not saturated: a mistake would show

    def same_metrics(metrics: dict, atol: float) -> None:
        assert set(metrics) == set(expected) - {"utilization"}
        for name, value in metrics.items():
            assert value == pytest.approx(expected[name], abs=atol), name

    assert eval_cli.main([str(trained), "--out", str(tmp_path / "run.json")]) == 0
    result = json.loads((tmp_path / "run.json").read_text())
    assert result["split"] == "test" and result["images"] == TEST_IMAGES
    same_metrics(result["metrics"], 1e-6)
    printed = capsys.readouterr().out
    assert "map@r" in printed and f"{expected['map@r']:.4f}" in printed

    assert eval_cli.main([str(trained / "saved_model"), "--dataset", str(trained / "config.yaml"),
                          "--backend", "blockwise", "--out", str(tmp_path / "saved.json")]) == 0
    same_metrics(json.loads((tmp_path / "saved.json").read_text())["metrics"], 1e-5)

    # Another split gives other metrics: the command does evaluate what it is asked to.
    assert eval_cli.main([str(trained), "--split", "train", "--out", str(tmp_path / "train.json")]) == 0
    assert json.loads((tmp_path / "train.json").read_text())["images"] == 4 * PER_CLASS


def test_eval_weights_last_skips_the_best_epochs_weights(trained, tmp_path, capsys):
    # A copy of the run whose best.weights.h5 differs from its last epoch (the run trained one epoch, so its
    # metrics.json is the last epoch's): the default takes best, --weights last ignores it.
    import shutil

    import keras

    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir, ignore=shutil.ignore_patterns("saved_model", "retrieval_model"))
    model = keras.models.load_model(run_dir / "checkpoints" / "last.keras", compile=False)
    rng = np.random.default_rng(1)
    model.set_weights([w + rng.normal(0, 0.5, w.shape).astype(w.dtype) if w.dtype.kind == "f" else w
                       for w in model.get_weights()])
    model.save_weights(run_dir / "checkpoints" / "best.weights.h5")
    expected = json.loads((trained / "metrics.json").read_text())["test"]

    assert eval_cli.main([str(run_dir), "--weights", "last"]) == 0
    last = json.loads((run_dir / "eval_csv_test_last.json").read_text())
    assert last["weights"] == "last" and "its last epoch's weights" in capsys.readouterr().out
    for name, value in last["metrics"].items():
        assert value == pytest.approx(expected[name], abs=1e-6), name
    assert eval_cli.main([str(run_dir)]) == 0
    best = json.loads((run_dir / "eval_csv_test.json").read_text())
    assert best["weights"] == "best" and best["metrics"]["map@r"] != pytest.approx(expected["map@r"], abs=1e-3)

    # A SavedModel has one set of weights: one line saying so, nothing written.
    assert eval_cli.main([str(trained / "saved_model"), "--dataset", str(trained / "config.yaml"),
                          "--weights", "last", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a SavedModel" in err[0] and "RUN_DIR" in err[0], err
    assert not (tmp_path / "x.json").exists()


def test_eval_worst_lists_and_draws_the_queries_of_lowest_average_precision(trained, tmp_path, capsys):
    png = tmp_path / "worst.png"
    assert eval_cli.main([str(trained), "--worst", "3", "--png", str(png), "--out", str(tmp_path / "w.json")]) == 0
    worst = json.loads((tmp_path / "w.json").read_text())["worst"]
    # The truth by brute force on the run's own test embeddings: queries search the gallery rows (In-Shop).
    saved = np.load(trained / "test_embeddings.npz")
    names = [e["class_name"] for e in json.loads((trained / "retrieval_model" / "manifest.json").read_text())["gallery"]]
    unit = saved["embeddings"] / np.linalg.norm(saved["embeddings"], axis=1, keepdims=True)
    ap, relevant = {}, {}
    for q in np.flatnonzero(saved["is_query"]):
        gallery = [g for g in np.flatnonzero(saved["is_gallery"]) if g != q]
        ranked = [g for g in sorted(gallery, key=lambda g: -unit[q] @ unit[g])]
        hits = np.array([names[g] == names[q] for g in ranked])
        r = relevant[q] = int(hits.sum())
        ap[q] = sum(hits[:i + 1].sum() / (i + 1) for i in range(r) if hits[i]) / r
    lowest = sorted(ap, key=ap.get)[:3]  # ties in query order, as tfdml-eval breaks them
    assert [w["ap"] for w in worst] == pytest.approx([ap[q] for q in lowest], abs=1e-6)
    assert np.mean(list(ap.values())) == pytest.approx(json.loads((trained / "metrics.json").read_text())["test"]["map@r"])
    assert [w["label"] for w in worst] == [names[q] for q in lowest] and len(worst[0]["matches"]) == 6
    assert [w["relevant"] for w in worst] == [relevant[q] for q in lowest]
    assert [m["label"] for m in worst[0]["matches"]] == [names[g] for g in sorted(
        (g for g in np.flatnonzero(saved["is_gallery"]) if g != lowest[0]), key=lambda g: -unit[lowest[0]] @ unit[g])][:6]
    printed = capsys.readouterr().out
    assert "the 3 worst queries by AP@R (lowest first):" in printed and f"AP@R {worst[0]['ap']:.4f}" in printed

    grid = tf.io.decode_png(tf.io.read_file(str(png))).numpy()
    assert grid.shape == (3 * CELL_H, 7 * CELL, 3)  # each query, then its 6 matches
    first = worst[0]["matches"][0]
    assert tuple(grid[CELL // 2, 3]) == (40, 90, 210)  # the query's blue frame
    assert tuple(grid[CELL // 2, CELL + 3]) == (GREEN if first["label"] == worst[0]["label"] else RED)


def test_search_finds_a_gallery_image_itself_and_draws_the_grid(trained, tmp_path, capsys):
    gallery = json.loads((trained / "retrieval_model" / "manifest.json").read_text())["gallery"]
    query, other = gallery[3]["path"], gallery[10]["path"]
    png = tmp_path / "grid" / "matches.png"
    assert search_cli.main([str(trained / "retrieval_model"), "--query", query, other, "--k", "3",
                            "--png", str(png)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"query 1: {query} (label: {gallery[3]['class_name']})"
    rank, score, path, label = lines[1].split()
    assert (rank, path, label) == ("1", query, gallery[3]["class_name"]) and float(score) == pytest.approx(1, abs=1e-4)
    assert sum(line.startswith("query ") for line in lines) == 2 and len(lines) == 2 * (1 + 3) + 1

    grid = tf.io.decode_png(tf.io.read_file(str(png))).numpy()
    assert grid.shape == (2 * CELL_H, 4 * CELL, 3)
    assert tuple(grid[CELL // 2, CELL + 3]) == GREEN  # the first match (itself) has the query's label
    if CELL_H > CELL:  # each tile is captioned (query; rank, score and class): dark text below its frame
        bands = [grid[CELL_H + CELL - 2:2 * CELL_H, c * CELL:(c + 1) * CELL] for c in range(4)]
        assert all((band < 100).any() for band in bands)
        assert len({band.tobytes() for band in bands}) == 4  # four different captions

    # An embedding SavedModel searches a folder embedded on the spot; --query-label sets the query's label.
    folder = Path(query).parents[1]
    assert search_cli.main([str(trained / "saved_model"), "--gallery", str(folder), "--query", query, "--k", "2",
                            "--query-label", "class00", "--png", str(png)]) == 0
    rank, score, path, label = capsys.readouterr().out.splitlines()[1].split()
    assert Path(path) == Path(query) and float(score) == pytest.approx(1, abs=1e-4)
    grid = tf.io.decode_png(tf.io.read_file(str(png))).numpy()
    assert grid.shape == (CELL_H, 3 * CELL, 3) and tuple(grid[CELL // 2, CELL + 3]) == RED


def test_a_gallery_held_in_memory_keeps_its_pixels_for_the_grid(trained, tmp_path, make_table, capsys):
    from tfdml.export import export_retrieval_model
    from tfdml.training import load_run

    config, model = load_run(trained)
    table = make_table([3, 2, 4], image_size=8, channels=4)  # random RGBA pixels, paths "img/0"...: no files
    path = export_retrieval_model(model, table, tmp_path / "memory", image_size=16)
    query = tmp_path / "query.png"
    tf.io.write_file(str(query), tf.io.encode_png(table.images[4]))
    assert search_cli.main([str(path), "--query", str(query), "--k", "2", "--query-label", "1",
                            "--png", str(tmp_path / "grid.png")]) == 0
    rank, score, found, label = capsys.readouterr().out.splitlines()[1].split()
    assert (found, label) == ("img/4", "1") and float(score) == pytest.approx(1, abs=1e-4)
    grid = tf.io.decode_png(tf.io.read_file(str(tmp_path / "grid.png"))).numpy().astype(int)
    query_tile, match_tile = grid[6:70, 6:70], grid[6:70, CELL + 6:CELL + 70]
    assert tuple(grid[CELL // 2, CELL + 3]) == GREEN and match_tile.std() > 20  # the image, not a grey placeholder
    np.testing.assert_allclose(match_tile, query_tile, atol=2)


def _garbage_folder(tmp_path: Path, name: str, truncated: bool) -> Path:
    folder = tmp_path / name
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    good = tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy()
    for path in (folder / "a" / "ok.png", folder / "b" / "ok.png"):
        path.write_bytes(good)
    big = tf.io.encode_png(np.random.default_rng(0).integers(0, 256, (30, 30, 3), np.uint8)).numpy()
    (folder / "b" / "broken.png").write_bytes(big[: len(big) // 2] if truncated else b"not an image at all")
    return folder


@pytest.mark.parametrize("command, args, expected", [
    ("export", ["{tmp}/nowhere"], "nowhere does not exist"),
    ("export", ["{tmp}"], "is not a run directory: it has no config.yaml"),
    ("export", ["{norun}"], "has no checkpoint"),
    ("export", ["{run}", "--gallery", "{empty}"], "holds no images (found 1 .txt)"),
    ("export", ["{run}", "--gallery", "{garbage}"], "broken.png (not a JPEG, PNG, GIF or BMP file)"),
    ("export", ["{run}", "--gallery", "{truncated}"], "broken.png (cannot be decoded"),
    ("eval", ["{run}/saved_model"], "is a SavedModel, which does not record its dataset: pass --dataset"),
    ("eval", ["{run}/saved_model", "--dataset", "no_such_dataset"], "'no_such_dataset' is not a folder, a YAML"),
    ("eval", ["{run}", "--png", "{tmp}/worst.png"], "--png draws the worst queries: give --worst N too"),
    ("eval", ["{run}", "--worst", "0"], "--worst 0: give how many queries to show, at least 1"),
    ("search", ["{run}/saved_model", "--query", "{image}"], "is an embedding SavedModel: it holds no gallery"),
    ("search", ["{run}/checkpoints/last.keras", "--query", "{image}"], "last.keras is a Keras file, not a SavedModel"),
    ("search", ["{empty}", "--query", "{image}"], "empty is not a SavedModel (it has no saved_model.pb)"),
    ("search", ["{run}", "--query", "{image}"], "is a run directory, not a SavedModel"),
    ("search", ["{run}/retrieval_model", "--query", "{image}", "--k", "25"],
     f"--k 25 is larger than the gallery, which has {TEST_IMAGES} images"),
    ("search", ["{run}/saved_model", "--gallery", "{empty}", "--query", "{image}"], "holds no images"),
    ("search", ["{run}/retrieval_model", "--query", "{image}", "{garbage}/b/broken.png"],
     "cannot read the query image {garbage}/b/broken.png (not a JPEG"),
])
def test_bad_input_gives_one_clear_line_and_exit_code_2(trained, tmp_path, capsys, command, args, expected):
    norun = tmp_path / "norun"
    norun.mkdir()
    (norun / "config.yaml").write_text((trained / "config.yaml").read_text())
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    names = {"tmp": tmp_path, "run": trained, "norun": norun, "empty": empty,
             "garbage": _garbage_folder(tmp_path, "garbage", truncated=False),
             "truncated": _garbage_folder(tmp_path, "truncated", truncated=True),
             "image": trained.parents[1] / "data" / "class07" / "0.png"}
    main = {"export": export_cli.main, "eval": eval_cli.main, "search": search_cli.main}[command]
    assert main([a.format(**names) for a in args]) == 2
    errors = errors_of(capsys, f"tfdml-{command}")
    assert len(errors) == 1 and expected.format(**names) in errors[0], errors


def test_bin_shim_reports_an_error_in_one_line(trained):
    image = trained.parents[1] / "data" / "class07" / "0.png"
    proc = subprocess.run([str(ROOT / "bin" / "tfdml-search"), str(trained / "retrieval_model"), "--query",
                           str(image), "--k", "0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "tfdml-search: error: --k 0: k must be at least 1" in proc.stderr.splitlines(), proc.stderr
