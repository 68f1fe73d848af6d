"""Learned whitening (`model.whitening`): the fit, the layer in the head, the choice on validation, the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfdml.cli.eval import evaluate
from tfdml.config import load_config
from tfdml.errors import ArtifactError, ConfigError
from tfdml.evaluation import evaluate_retrieval
from tfdml.evaluation.callback import embed_dataset
from tfdml.models import EmbeddingHead, Whitening, apply_whitening, fit_whitening
from tfdml.training import run
from tfdml.training.builders import build_data
from tfdml.training.runner import load_run
from tfdml.training.whiten import WHITENING_FILE, whiten_head

ROOT = Path(__file__).resolve().parents[1]
TINY = ["sampler.batch_size=32", "train.steps_per_epoch=3", "model.backbone_args.widths=[8,16]",
        "model.embedding_dim=16", "eval.batch_size=512", "train.verbose=0", "train.epochs=1"]


def styled(num_classes: int, seed: int, styles: int = 4, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings of `num_classes` classes, one image per style: each style shifts every class by
    the same large offset along 3 directions (the same for every seed), as a vendor's drawing style does."""
    style_offsets = np.zeros((styles, dim))
    style_offsets[:, :3] = 3.0 * np.random.default_rng(99).normal(size=(styles, 3))
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim))
    x = centres[:, None] + style_offsets[None] + 0.3 * rng.normal(size=(num_classes, styles, dim))
    x = x.reshape(-1, dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(num_classes), styles)


def test_whitening_equalises_the_within_class_scatter_and_retrieves_across_styles():
    x, labels = styled(200, seed=0)
    mean, projection = fit_whitening(x, labels, shrinkage=1e-6)
    w = (x - mean) @ projection
    deviations = w - np.stack([w[labels == c].mean(0) for c in labels])
    np.testing.assert_allclose(deviations.T @ deviations / (len(x) - 200), np.eye(16), atol=1e-3)
    # On unseen classes of the same styles, the nearest neighbour stops being the same style's other class.
    test_x, test_labels = styled(150, seed=1)
    raw = evaluate_retrieval(test_x, test_labels, ks=(1,))["recall@1"]
    whitened = evaluate_retrieval(apply_whitening(test_x, *fit_whitening(x, labels, 0.1)), test_labels, ks=(1,))
    assert whitened["recall@1"] > raw + 0.2, (raw, whitened)


def test_shrinkage_one_only_centres():
    x, labels = styled(20, seed=2)
    mean, projection = fit_whitening(x, labels, shrinkage=1.0)
    np.testing.assert_allclose(mean, x.mean(0), atol=1e-6)
    np.testing.assert_allclose(projection, projection[0, 0] * np.eye(16), atol=1e-6)


@pytest.mark.parametrize("args, message", [
    ((np.ones((4, 3)), np.arange(3)), r"embeddings \[N, d\] and N labels, got embeddings of shape \(4, 3\) and 3"),
    ((np.ones((4, 3)), np.arange(4)), "each of the 4 classes has one"),
    ((np.ones((4, 3)), np.array([0, 0, 1, 1])), "identical embeddings"),
    ((np.array([[np.nan, 1.0], [1.0, 1.0]]), np.array([0, 0])), "1 embeddings hold NaN or inf"),
])
def test_fit_rejects_what_it_cannot_whiten_with_one_line(args, message):
    with pytest.raises(ValueError, match=message):
        fit_whitening(*args)
    with pytest.raises(ValueError, match=r"shrinkage must be in \(0, 1\]"):
        fit_whitening(np.eye(4), np.array([0, 0, 1, 1]), shrinkage=0.0)


def test_the_layer_computes_what_numpy_does_and_the_head_skips_it_in_training():
    x, labels = styled(30, seed=3)
    mean, projection = fit_whitening(x, labels)
    layer = Whitening(16)
    np.testing.assert_allclose(np.asarray(layer(x.astype("float32"))), x, atol=1e-6)  # identity until set
    layer.set(mean, projection)
    np.testing.assert_allclose(np.asarray(layer(x.astype("float32"))), apply_whitening(x, mean, projection), atol=1e-5)
    with pytest.raises(ValueError, match=r"16-d: it needs a mean of shape \(16,\)"):
        layer.set(mean[:8], projection)

    head, plain = EmbeddingHead(16, whitening=True), EmbeddingHead(16)
    features = np.random.default_rng(0).normal(size=(5, 2, 2, 8)).astype("float32")
    head.build(features.shape), plain.build(features.shape)
    plain.linear.set_weights(head.linear.get_weights())
    np.testing.assert_allclose(np.asarray(head(features)), np.asarray(plain(features)), atol=1e-6)
    head.whitening.set(*fit_whitening(x, labels))
    assert not np.allclose(np.asarray(head(features)), np.asarray(plain(features)), atol=1e-3)
    np.testing.assert_allclose(np.asarray(head(features, training=True)), np.asarray(plain(features)), atol=1e-6)
    assert EmbeddingHead.from_config(head.get_config()).whitening is not None
    assert len(head.trainable_weights) == 2  # the whitening is fitted, never trained
    with pytest.raises(ValueError, match="needs normalize='l2'"):
        EmbeddingHead(16, normalize="unit_ball", whitening=True)


def test_auto_keeps_the_shrinkage_validation_ranks_first_or_none():
    train, val = styled(100, seed=4), styled(40, seed=5)
    head = EmbeddingHead(16, whitening=True)
    head.build((None, 2, 2, 8))

    def map_at_r(x, y):
        return evaluate_retrieval(x, y, ks=(1,))["map@r"]

    report = whiten_head(head, "auto", train, val, map_at_r, log=lambda _: None)
    assert set(report["validation"]) == {"none", "0.5", "0.2", "0.1", "0.05"}
    best = max(report["validation"], key=report["validation"].get)
    assert best != "none" and report["shrinkage"] == float(best)
    np.testing.assert_allclose(np.asarray(head.whitening.projection), report["projection"])

    raw_first = whiten_head(head, "auto", train, val, lambda x, y: float(np.allclose(x, val[0])), log=lambda _: None)
    assert raw_first["shrinkage"] is None and np.allclose(np.asarray(head.whitening.projection), np.eye(16))
    fixed = whiten_head(head, 0.3, train, None, map_at_r, log=lambda _: None)
    assert fixed["shrinkage"] == 0.3 and fixed["validation"] == {}
    with pytest.raises(ValueError, match="chooses on the validation classes"):
        whiten_head(head, "auto", train, None, map_at_r)


@pytest.mark.parametrize("overrides, message", [
    (["model.whitening=often"], "model.whitening is 'often'; expected false, auto"),
    (["model.whitening=1.5"], r"shrinkage in \(0, 1\]"),
    (["model.whitening=auto", "ccp.enabled=true"], "CCP's head projects onto the unit ball"),
    (["model.whitening=auto", "data.val_fraction=0"], "has none: set data.val_fraction > 0, or a shrinkage"),
])
def test_bad_whitening_settings_fail_before_training(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run(load_config(ROOT / "yaml_configs" / "emoji.yaml", [*TINY, f"output_dir={tmp_path}", *overrides]),
            log=lambda _: None)
    assert not list(tmp_path.rglob("*.keras"))  # nothing trained


def test_a_whitened_run_tests_exports_and_reloads_its_whitening(tmp_path):
    config = load_config(ROOT / "yaml_configs" / "emoji.yaml",
                         [*TINY, f"output_dir={tmp_path}", "name=w", "model.whitening=0.2", "train.epochs=2"])
    messages: list[str] = []
    metrics = run(config, log=messages.append)
    report = json.loads((tmp_path / "w" / "metrics.json").read_text())["whitening"]
    assert report == metrics["whitening"] and report["shrinkage"] == 0.2
    assert report["validation"]["none"] == pytest.approx(metrics["best_val"]["map@r"], abs=1e-6)  # raw = validation's
    assert any(m.startswith("whitening: shrinkage 0.2") for m in messages)
    assert (tmp_path / "w" / "checkpoints" / WHITENING_FILE).is_file()
    assert metrics["test"]["map@r"] != report["test_unwhitened"]["map@r"]

    # load_run gives the whitened model the run tested; its SavedModel embeds the same way.
    saved = np.load(tmp_path / "w" / "test_embeddings.npz")
    loaded_config, model = load_run(tmp_path / "w")
    data = build_data(loaded_config, lambda *_: None)
    embeddings, _ = embed_dataset(model, data.eval_dataset(data.test, loaded_config))
    np.testing.assert_allclose(embeddings, saved["embeddings"], atol=1e-4)
    images = next(iter(data.eval_dataset(data.test, loaded_config)))[0][:8]
    exported = tf.saved_model.load(str(tmp_path / "w" / "saved_model"))  # kept: its function needs its variables
    np.testing.assert_allclose(exported.serve(images).numpy(), saved["embeddings"][:8], atol=1e-4)
    messages.clear()  # tfdml-eval of the run says it whitens and gives the run's test metrics
    evaluated = evaluate(tmp_path / "w", log=messages.append, verbose=0)["metrics"]
    assert evaluated["map@r"] == pytest.approx(metrics["test"]["map@r"], abs=1e-6)
    assert any("(with the whitening it fitted)" in m for m in messages)
    _, last = load_run(tmp_path / "w", weights="last")  # the last epoch's weights are not the whitened ones
    assert np.allclose(np.asarray(last.head.whitening.projection), np.eye(16))
    (tmp_path / "w" / "checkpoints" / WHITENING_FILE).write_bytes(b"not an npz")  # damaged: one line, the fix
    with pytest.raises(ArtifactError, match=r"whitening.npz cannot be read as this run's whitening .*; delete it and "
                                            "rerun the training command"):
        load_run(tmp_path / "w")
