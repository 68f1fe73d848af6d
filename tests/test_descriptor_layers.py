"""`model.descriptor_layers`: inner feature maps tapped beside the backbone output, joined to the embedding
by the learned whitening at inference only."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdml.config import load_config
from tfdml.errors import ConfigError
from tfdml.evaluation.callback import embed_dataset
from tfdml.losses import MultiSimilarityLoss
from tfdml.models import DMLModel, EmbeddingHead, build_backbone, descriptor_channels, tap_backbone
from tfdml.training import run
from tfdml.training.builders import build_data
from tfdml.training.runner import load_run
from tfdml.training.whiten import describe_raw, with_descriptor_layers

ROOT = Path(__file__).resolve().parents[1]
TINY = ["sampler.batch_size=32", "train.steps_per_epoch=3", "model.backbone_args.widths=[8,16]",
        "model.embedding_dim=16", "eval.batch_size=512", "train.verbose=0", "train.epochs=1"]
IMAGES = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")


@pytest.mark.parametrize("name, args, layer", [
    ("small_cnn", {"widths": [8, 16]}, "block0_relu1"),          # a flat model
    ("keras/MobileNet", {"alpha": 0.25}, "conv_pw_5_relu"),     # nested after `preprocess`
])
def test_taps_are_the_layers_outputs_and_share_the_backbones_weights(name, args, layer):
    backbone = build_backbone(name, (32, 32, 3), **args)
    tapped = tap_backbone(backbone, [layer])
    final, tap = tapped(IMAGES)
    np.testing.assert_allclose(final, backbone(IMAGES), atol=1e-5)
    inner = next((m for m in backbone.layers if isinstance(m, keras.Model)), backbone)
    direct = keras.Model(inner.input, inner.get_layer(layer).output)
    preprocessed = backbone.get_layer("preprocess")(IMAGES) if inner is not backbone else IMAGES
    np.testing.assert_allclose(tap, direct(preprocessed), atol=1e-5)
    assert {id(v) for v in tapped.weights} == {id(v) for v in backbone.weights}  # shared, not copied
    assert descriptor_channels(tapped) == [int(tap.shape[-1])]


def test_tapping_an_unknown_or_flat_layer_fails_with_one_line():
    backbone = build_backbone("small_cnn", (32, 32, 3), widths=[8, 16])
    with pytest.raises(ValueError, match=r"has no layer 'block1_relu'; did you mean .*'block1_relu0'"):
        tap_backbone(backbone, ["block1_relu"])
    inputs = keras.Input((8, 8, 3))
    flat = keras.Model(inputs, keras.layers.Dense(4, name="dense")(keras.layers.Flatten(name="flat")(inputs)))
    with pytest.raises(ValueError, match=r"layer 'flat' .* outputs shape \(None, 192\); a descriptor layer needs a "
                                         r"feature map"):
        tap_backbone(flat, ["flat"])


def tapped_model() -> DMLModel:
    backbone = build_backbone("small_cnn", (32, 32, 3), widths=[8, 16])
    head = EmbeddingHead(16, whitening=True, descriptor_dims=[8])
    model = DMLModel(backbone, head, MultiSimilarityLoss(), descriptor_layers=["block0_relu1"])
    model.build((None, 32, 32, 3))
    return model


def test_unfitted_the_model_serves_its_embedding_and_fitted_the_descriptor():
    model = tapped_model()
    # The embedding alone (the head's `training` only skips the whitening; the backbone's BatchNorm infers).
    trained = model.head(model.features(IMAGES), training=True).numpy()
    served = model(IMAGES).numpy()
    assert trained.shape == (4, 16) and served.shape == (4, 24)
    np.testing.assert_allclose(served[:, :16], trained, atol=1e-5)  # unfitted: the tap is zeroed
    np.testing.assert_allclose(served[:, 16:], 0.0)
    model.head.whitening.set(np.zeros(24, "float32"), np.eye(24, dtype="float32"))
    described = model(IMAGES).numpy() * np.sqrt(2.0)  # two unit blocks, normalised together
    np.testing.assert_allclose(described[:, :16], trained, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(described[:, 16:], axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="takes 1 descriptor feature maps"):
        model.head(model.features(IMAGES))
    with pytest.raises(ValueError, match="need whitening=True"):
        EmbeddingHead(16, descriptor_dims=[8])


def test_a_tapped_model_saves_its_weights_once_and_reloads(tmp_path):
    model = tapped_model()
    plain = DMLModel(build_backbone("small_cnn", (32, 32, 3), widths=[8, 16]), EmbeddingHead(16, whitening=True),
                     MultiSimilarityLoss())
    plain.build((None, 32, 32, 3))
    assert len(model.weights) == len(plain.weights)  # the tapped view adds no variables
    model.head.whitening.set(np.zeros(24, "float32"), np.eye(24, dtype="float32"))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    assert loaded.descriptor_layers == ["block0_relu1"]
    np.testing.assert_allclose(loaded(IMAGES), model(IMAGES), atol=1e-5)


@pytest.mark.parametrize("overrides, message", [
    (["model.descriptor_layers=[block0_relu1]"], r"join the embedding through the learned whitening; set "
                                                 "model.whitening: auto"),
    (["model.whitening=0.2", "model.descriptor_layers=[block9_relu1]"],
     r"model.descriptor_layers: the backbone small_cnn has no layer 'block9_relu1'; did you mean"),
])
def test_bad_descriptor_layers_fail_before_training(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run(load_config(ROOT / "yaml_configs" / "emoji.yaml", [*TINY, f"output_dir={tmp_path}", *overrides]),
            log=lambda _: None)
    assert not list(tmp_path.rglob("*.keras"))


def test_a_run_with_descriptor_layers_selects_on_its_embedding_and_serves_the_whitened_descriptor(tmp_path):
    config = load_config(ROOT / "yaml_configs" / "emoji.yaml",
                         [*TINY, f"output_dir={tmp_path}", "name=d", "model.whitening=0.2",
                          "model.descriptor_layers=[block0_relu1]", "train.epochs=2"])
    messages: list[str] = []
    metrics = run(config, log=messages.append)
    report = json.loads((tmp_path / "d" / "metrics.json").read_text())["whitening"]
    # Validation during training saw the embedding alone: the unfitted whitening zeroes the tap.
    assert report["validation"]["none"] == pytest.approx(metrics["best_val"]["map@r"], abs=1e-6)
    assert any("training embeddings and 1 descriptor layers" in m for m in messages)
    saved = np.load(tmp_path / "d" / "test_embeddings.npz")
    assert saved["embeddings"].shape[1] == 16 + 8
    loaded_config, model = load_run(tmp_path / "d")
    data = build_data(loaded_config, lambda *_: None)
    embeddings, _ = embed_dataset(model, data.eval_dataset(data.test, loaded_config))
    np.testing.assert_allclose(embeddings, saved["embeddings"], atol=1e-4)
    images = next(iter(data.eval_dataset(data.test, loaded_config)))[0][:8]
    exported = tf.saved_model.load(str(tmp_path / "d" / "saved_model"))
    np.testing.assert_allclose(exported.serve(images).numpy(), saved["embeddings"][:8], atol=1e-4)


def test_with_descriptor_layers_taps_a_trained_model_without_retraining():
    plain = DMLModel(build_backbone("small_cnn", (32, 32, 3), widths=[8, 16]), EmbeddingHead(16),
                     MultiSimilarityLoss())
    plain.build((None, 32, 32, 3))
    tapped = with_descriptor_layers(plain, ["block0_relu1"])
    assert tapped.backbone is plain.backbone and tapped.head.descriptor_dims == [8]
    np.testing.assert_allclose(tapped(IMAGES), np.pad(plain(IMAGES), ((0, 0), (0, 8))), atol=1e-5)  # unfitted
    describe_raw(tapped.head)
    described = tapped(IMAGES).numpy() * np.sqrt(2.0)
    np.testing.assert_allclose(described[:, :16], plain(IMAGES), atol=1e-5)
