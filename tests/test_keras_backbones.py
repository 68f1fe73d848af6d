"""keras.applications backbones by name, their pixel conventions, the shared ImageNet MobileNetV1, frozen
BatchNorm through training, the head warm-up and `jit_compile: auto`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdml.config import load_config
from tfdml.config.schema import Config
from tfdml.errors import ConfigError
from tfdml.models import PixelConvention, build_backbone
from tfdml.models.keras_applications import FAMILY_CONVENTIONS, applications, family
from tfdml.training import run
from tfdml.training.builders import build_model, proxy_rate_warning
from tfdml.training.jit import choose_jit_compile
from tfdml.training.warmup import HeadWarmup

ROOT = Path(__file__).resolve().parents[1]
MOBILENET_WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v1_imagenet_notop.weights.h5"
needs_weights = pytest.mark.skipif(not MOBILENET_WEIGHTS.is_file(),
                                   reason=f"the shared ImageNet MobileNetV1 weights are not at {MOBILENET_WEIGHTS}")
rng = np.random.default_rng(0)


def test_every_keras_family_has_the_pixel_convention_of_its_own_preprocess_input():
    pixels = rng.uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    families = {family(name) for name in applications()}
    assert families <= set(FAMILY_CONVENTIONS), "a new keras.applications family needs its convention"
    for name in families:
        module = sys.modules[f"keras.src.applications.{name}"]
        want = np.asarray(module.preprocess_input(pixels.copy()))
        got = np.asarray(PixelConvention(FAMILY_CONVENTIONS[name])(pixels))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("name, args, channels", [
    ("keras/MobileNet", {"alpha": 0.25}, 256),
    ("keras/ResNet50", {}, 2048),
    ("keras/EfficientNetV2B0", {}, 1280),
])
def test_keras_backbones_take_rgb_pixels_and_return_the_feature_map(name, args, channels):
    backbone = build_backbone(name, (32, 32, 3), **args)
    assert backbone.output_shape == (None, 1, 1, channels)
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    core = backbone.layers[-1]  # the application itself, after the `preprocess` layer
    want = core(backbone.get_layer("preprocess")(images))
    np.testing.assert_allclose(backbone(images), want, rtol=1e-5, atol=1e-5)


def test_config_resolves_keras_names_and_checks_their_arguments():
    config = load_config(ROOT / "yaml_configs" / "emoji.yaml",
                         ["model.backbone=keras/MobileNet", "model.backbone_args={alpha: 0.5}"])
    assert config.model.backbone == "keras/MobileNet"
    with pytest.raises(ConfigError, match=r"`keras/MobileNett` is not a keras.applications model; did you mean "
                                          r"`keras/MobileNet`\?"):
        load_config(ROOT / "yaml_configs" / "emoji.yaml", ["model.backbone=keras/MobileNett"])
    with pytest.raises(ConfigError, match=r"`alpah` is not an argument of backbone `keras/MobileNet`; did you mean "
                                          r"`model.backbone_args.alpha`\?"):
        load_config(ROOT / "yaml_configs" / "emoji.yaml",
                    ["model.backbone=keras/MobileNet", "model.backbone_args={alpah: 0.5}"])
    with pytest.raises(ConfigError, match=r"unknown backbone `smal_cnn`; did you mean `small_cnn`\?"):
        load_config(ROOT / "yaml_configs" / "emoji.yaml", ["model.backbone=smal_cnn"])
    for value, want in (("true", True), ("false", False), ("auto", "auto")):
        assert load_config(None, [f"train.jit_compile={value}"]).train.jit_compile == want
    with pytest.raises(ConfigError, match=r"`train.jit_compile` is 'autp'; allowed values: True, False, 'auto'"):
        load_config(None, ["train.jit_compile=autp"])


@needs_weights
def test_the_shared_imagenet_mobilenet_reproduces_its_known_features():
    backbone = build_backbone("keras/MobileNet", (64, 64, 3), weights=str(MOBILENET_WEIGHTS))
    yy, xx = np.mgrid[0:64, 0:64]
    image = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1).astype("float32")[None]
    pooled = np.asarray(backbone(image)).mean(axis=(1, 2))[0]
    # Computed once from the file (2026-12-01); a random MobileNet gives a norm near 0 here.
    top = np.argsort(-pooled)[:5]
    assert top.tolist() == [618, 160, 885, 130, 777]
    np.testing.assert_allclose(pooled[top], [5.51532, 5.42189, 3.55649, 3.35624, 3.12706], rtol=1e-4)
    assert np.linalg.norm(pooled) == pytest.approx(11.61289, rel=1e-4)


def test_imagenet_weights_offline_fail_in_one_line_naming_the_local_file_alternative(tmp_path):
    code = ("from tfdml.errors import ConfigError\nfrom tfdml.models import build_backbone\n"
            "try:\n    build_backbone('keras/MobileNet', (32, 32, 3), weights='imagenet', alpha=0.25)\n"
            "except ConfigError as err:\n    print('ERROR', err)\n")
    closed = "http://127.0.0.1:9"  # nothing listens on the discard port: a real, immediate network failure
    env = {**os.environ, "HOME": str(tmp_path), "KERAS_HOME": str(tmp_path / "keras"), "https_proxy": closed,
           "HTTPS_PROXY": closed, "http_proxy": closed, "HTTP_PROXY": closed}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    lines = [line for line in out.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 1 and "\n" not in lines[0], out
    assert "could not download the ImageNet weights of keras.applications.MobileNet" in lines[0]
    assert "model.backbone_weights: /path/to/that/file" in lines[0]


def _tiny_model(backbone: str, freeze: bool, freeze_until: str | None = None, **backbone_args) -> keras.Model:
    config = Config()
    config.model.backbone, config.model.backbone_args = backbone, backbone_args
    config.model.freeze_until = freeze_until
    config.model.freeze_batchnorm, config.model.embedding_dim, config.data.image_size = freeze, 8, 32
    keras.utils.set_random_seed(0)
    model = build_model(config, num_classes=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), lr_multipliers={"loss": 1.0})
    return model


def _batches(n: int = 2) -> tf.data.Dataset:
    images = np.random.default_rng(1).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    labels = np.repeat(np.arange(4), 4).astype("int32")
    return tf.data.Dataset.from_tensors((images, labels)).repeat(n)


def _bn_weights(model) -> list[np.ndarray]:
    return [v.numpy().copy() for la in _all_bn(model.backbone) for v in la.weights]


def _all_bn(layer):
    from tfdml.models.registry import all_layers

    return [la for la in all_layers(layer) if isinstance(la, keras.layers.BatchNormalization)]


def test_frozen_batchnorm_reaches_every_batchnorm_of_a_nested_family():
    model = _tiny_model("keras/EfficientNetV2B0", freeze=True)  # BatchNorm inside nested blocks
    norms = _all_bn(model.backbone)
    assert len(norms) > 50 and not any(la.trainable for la in norms)
    assert not any(v.trainable for la in norms for v in la.weights)


def test_frozen_batchnorm_keeps_statistics_and_parameters_through_training():
    backbone, args = "keras/MobileNet", {"alpha": 0.25}
    model = _tiny_model(backbone, freeze=True, **args)
    assert _all_bn(model.backbone) and not any(la.trainable for la in _all_bn(model.backbone))
    bn_before = _bn_weights(model)
    convs = [v for v in model.backbone.trainable_variables if "kernel" in v.path]
    conv_before = convs[0].numpy().copy()
    model.fit(_batches(), epochs=1, verbose=0)
    for a, b in zip(bn_before, _bn_weights(model)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(conv_before, convs[0].numpy())  # the rest of the backbone did train
    # Without freezing, the same training moves them: the test above can fail.
    model = _tiny_model(backbone, freeze=False, **args)
    bn_before = _bn_weights(model)
    model.fit(_batches(), epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(bn_before, _bn_weights(model)))


def test_head_warmup_trains_exactly_the_head_and_proxies_then_the_backbone_with_bn_still_frozen():
    # small_cnn: a randomly initialised MobileNet with frozen BatchNorm has vanishing activations and gradients.
    model = _tiny_model("small_cnn", freeze=True, widths=[4, 8])
    snapshot = lambda part: [v.numpy().copy() for v in part.weights]  # noqa: E731
    changed = lambda a, b: [not np.array_equal(x, y) for x, y in zip(a, b)]  # noqa: E731
    backbone0, head0, bn0 = snapshot(model.backbone), snapshot(model.head), _bn_weights(model)
    model.fit(_batches(), epochs=1, callbacks=[HeadWarmup(1, keep_batchnorm_frozen=True, log=lambda _: None)],
              verbose=0)
    assert not any(changed(backbone0, snapshot(model.backbone))) and all(changed(head0, snapshot(model.head)))
    model.fit(_batches(), initial_epoch=1, epochs=2,
              callbacks=[HeadWarmup(1, keep_batchnorm_frozen=True, log=lambda _: None)], verbose=0)
    assert any(changed(backbone0, snapshot(model.backbone)))
    assert not any(changed(bn0, _bn_weights(model))) and not any(la.trainable for la in _all_bn(model.backbone))
    # A run resumed inside the warm-up (epoch 2 of 3) stays inside it.
    model = _tiny_model("small_cnn", freeze=True, widths=[4, 8])
    backbone0 = snapshot(model.backbone)
    model.fit(_batches(), initial_epoch=1, epochs=2, callbacks=[HeadWarmup(3, log=lambda _: None)], verbose=0)
    assert not any(changed(backbone0, snapshot(model.backbone)))


def test_freeze_until_keeps_the_stem_through_training_and_after_the_head_warmup():
    def stem_and_rest(model):
        weights = {v.path: v.numpy().copy() for v in model.backbone.weights}
        stem = {k: v for k, v in weights.items() if k.split("/")[-2].startswith("block0")}
        return stem, {k: v for k, v in weights.items() if k not in stem}

    moved = lambda a, b: [k for k in a if not np.array_equal(a[k], b[k])]  # noqa: E731
    model = _tiny_model("small_cnn", freeze=True, freeze_until="block0_relu1", widths=[4, 8])
    stem0, rest0 = stem_and_rest(model)
    assert len(stem0) == 10  # two convolutions (kernels) and two BatchNorms (4 weights each)
    warmup = HeadWarmup(1, keep_batchnorm_frozen=True, log=lambda _: None, freeze_until="block0_relu1")
    model.fit(_batches(), epochs=2, callbacks=[warmup], verbose=0)  # epoch 1 head only, epoch 2 unfrozen
    stem1, rest1 = stem_and_rest(model)
    assert not moved(stem0, stem1)
    assert {k.split("/")[-1] for k in moved(rest0, rest1)} == {"kernel"}  # later convolutions train, BatchNorm not
    # The same run without it trains the stem too, so the assertion above can fail.
    model = _tiny_model("small_cnn", freeze=True, widths=[4, 8])
    stem0, _ = stem_and_rest(model)
    model.fit(_batches(), epochs=2, callbacks=[HeadWarmup(1, True, lambda _: None)], verbose=0)
    assert moved(stem0, stem_and_rest(model)[0])


def test_freeze_until_an_unknown_layer_names_close_ones():
    with pytest.raises(ConfigError) as err:
        _tiny_model("keras/MobileNet", freeze=False, freeze_until="conv_pw_5_rel", alpha=0.25)
    message = str(err.value)
    assert "\n" not in message and message.startswith("model.freeze_until:") and "conv_pw_5_relu" in message


def test_jit_auto_measures_both_ways_and_leaves_the_model_as_it_was():
    twin, model = _tiny_model("small_cnn", False, widths=[4]), _tiny_model("small_cnn", False, widths=[4])
    model.build_optimizers()
    logs = []
    report = choose_jit_compile(model, _batches(4), steps=2, log=logs.append)
    assert set(report["ms_per_step"]) == {"xla", "no_xla"} and model.jit_compile == report["chosen"]
    assert len(logs) == 1 and "ms/step without XLA" in logs[0]
    assert int(model.optimizer.iterations.numpy()) == 0
    twin.fit(_batches(), epochs=1, verbose=0)
    model.fit(_batches(), epochs=1, verbose=0)
    for a, b in zip(twin.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_run_records_its_jit_choice_and_warmup(tmp_path):
    logs = []
    config = load_config(ROOT / "yaml_configs" / "emoji.yaml", [
        "sampler.batch_size=32", "train.steps_per_epoch=2", "model.backbone_args.widths=[4]", "model.embedding_dim=8",
        "train.verbose=0", "train.epochs=2", "train.head_warmup_epochs=1", f"output_dir={tmp_path}", "name=jit",
        "export.saved_model=false"])
    run(config, log=logs.append)
    assert any("too few to repay an XLA compile" in line for line in logs)
    assert any("head warm-up done after epoch 1" in line for line in logs)
    assert json.loads((tmp_path / "jit" / "metrics.json").read_text())["jit_compile"] == {"chosen": False}


def test_a_proxy_loss_fine_tuned_with_a_fast_head_is_warned_and_the_proxy_config_is_not():
    weights = "model.backbone_weights=../shared/weights/mobilenet_v1_imagenet_notop.weights.h5"  # not loaded here
    pretrained = ROOT / "yaml_configs" / "emoji_pretrained.yaml"
    warning = proxy_rate_warning(load_config(pretrained, [weights, "loss.name=proxy_anchor", "loss.args={}"]))
    assert warning and "optimizer.lr_multipliers.head=10" in warning and "emoji_pretrained_proxy.yaml" in warning
    assert proxy_rate_warning(load_config(pretrained, [weights])) is None  # multi-similarity has no proxies
    proxy = load_config(ROOT / "yaml_configs" / "emoji_pretrained_proxy.yaml", [weights])
    assert proxy.loss.name == "proxy_anchor" and proxy.train.head_warmup_epochs == 1
    assert proxy_rate_warning(proxy) is None
    # From scratch there is no pretrained backbone to disturb: no warning.
    assert proxy_rate_warning(load_config(ROOT / "yaml_configs" / "emoji_proxy_anchor.yaml",
                                          ["optimizer.lr_multipliers.head=10"])) is None
