"""BN-Inception (size, Caffe-style pooling and preprocessing, weights files, frozen BN) and ResNet-50 + avg+max head."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tfdml.config.schema import Config
from tfdml.errors import ConfigError
from tfdml.models import EmbeddingHead, build_backbone
from tfdml.models.bn_inception import pretrainedmodels_to_keras, save_by_name
from tfdml.training.builders import build_model


@pytest.fixture(scope="module")
def bn227() -> keras.Model:
    return build_backbone("bn_inception", (227, 227, 3))


def _weights(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def test_bn_inception_has_the_published_size_and_feature_map(bn227):
    trainable = sum(int(np.prod(w.shape)) for w in bn227.trainable_weights)
    # pretrainedmodels' bninception: 11,295,240 parameters, of which last_linear 1024 * 1000 + 1000.
    assert trainable == 11_295_240 - 1_025_000 == 10_270_240
    convs = [la.name for la in bn227.layers if isinstance(la, keras.layers.Conv2D)]
    assert len(convs) == 69 and convs[:3] == ["conv1_7x7_s2", "conv2_3x3_reduce", "conv2_3x3"]
    assert {"inception_3a_pool_proj", "inception_3c_double_3x3_2", "inception_5b_1x1"} <= set(convs)
    assert all(bn227.get_layer(f"{c}_bn") for c in convs)
    images = np.random.default_rng(0).uniform(0, 255, (2, 227, 227, 3)).astype("float32")
    features = bn227(images)
    assert features.shape == (2, 7, 7, 1024) and np.isfinite(features).all() and float(np.min(features)) >= 0


def test_bn_inception_preprocesses_and_pools_like_caffe(bn227):
    pixel = np.array([[[[10.0, 20.0, 30.0]]]], "float32")  # RGB
    np.testing.assert_allclose(bn227.get_layer("preprocess")(pixel), [[[[30 - 104, 20 - 117, 10 - 128]]]])
    # pool1: 3x3/2 max with ceil_mode on 114 px -> 57, the last window overhanging the border.
    x = np.random.default_rng(1).uniform(0, 1, (1, 114, 114, 2)).astype("float32")
    pool = lambda v: bn227.get_layer("pool1_3x3_s2")(bn227.get_layer("pool1_3x3_s2_pad")(v))  # noqa: E731
    want = np.array([[x[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(0, 1)) for j in range(57)] for i in range(57)])
    np.testing.assert_allclose(pool(x)[0], want)
    # Inception average pools count the zero padding (Caffe / count_include_pad): a corner of ones is 4/9.
    ones = np.ones((1, 28, 28, 1), "float32")
    out = np.asarray(bn227.get_layer("inception_3a_pool")(bn227.get_layer("inception_3a_pool_pad")(ones)))[0, :, :, 0]
    np.testing.assert_allclose([out[0, 0], out[0, 5], out[5, 5]], [4 / 9, 6 / 9, 1.0], rtol=1e-6)


def test_bn_inception_weights_files_load_into_a_fresh_model(tmp_path):
    source = build_backbone("bn_inception", (64, 64, 3))
    source.save_weights(tmp_path / "bn.weights.h5")
    fresh = build_backbone("bn_inception", (96, 96, 3), weights=str(tmp_path / "bn.weights.h5"))
    for name, arrays in _weights(source).items():
        for a, b in zip(arrays, fresh.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    # A converted checkpoint: PyTorch names and layouts, any layer order, plus the classifier.
    rng = np.random.default_rng(0)
    state = {}
    for name, arrays in _weights(source).items():
        if name.endswith("_bn"):
            state.update({f"{name}.{p}": rng.uniform(0.5, 1.5, a.shape).astype("float32")
                          for p, a in zip(("weight", "bias", "running_mean", "running_var"), arrays)})
        else:
            state[f"{name}.weight"] = arrays[0].transpose(3, 2, 0, 1)
            state[f"{name}.bias"] = rng.normal(size=arrays[1].shape).astype("float32")
    state.update({"last_linear.weight": np.zeros((1000, 1024), "float32"), "last_linear.bias": np.zeros(1000, "f4")})
    converted = pretrainedmodels_to_keras(dict(reversed(list(state.items()))))
    save_by_name(converted, tmp_path / "bn_inception.h5")
    loaded = build_backbone("bn_inception", (64, 64, 3), weights=str(tmp_path / "bn_inception.h5"))
    for name, arrays in _weights(loaded).items():
        for a, b in zip(converted[name], arrays):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.get_layer("conv1_7x7_s2").kernel, source.get_layer("conv1_7x7_s2").kernel)
    # A file that misses layers must not leave them random silently.
    save_by_name({k: v for k, v in converted.items() if "5b" not in k}, tmp_path / "partial.h5")
    with pytest.raises(ConfigError, match=r"partial.h5 has no weights for 14 .*inception_5b"):
        build_backbone("bn_inception", (64, 64, 3), weights=str(tmp_path / "partial.h5"))
    with pytest.raises(ConfigError, match=r"not found: .*nope.h5.*bn_inception-52deb4733.pth.*backbone_weights"):
        build_backbone("bn_inception", (64, 64, 3), weights=str(tmp_path / "nope.h5"))


def test_freeze_batchnorm_runs_bn_inception_in_inference_mode():
    config = Config()
    config.model.backbone, config.model.freeze_batchnorm, config.data.image_size = "bn_inception", True, 64
    backbone = build_model(config, num_classes=4).backbone
    bns = [la for la in backbone.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert len(bns) == 69 and not any(bn.trainable for bn in bns)
    assert all(not v.trainable for bn in bns for v in bn.weights)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    before = [v.numpy().copy() for v in bns[0].weights]
    np.testing.assert_allclose(backbone(images, training=True), backbone(images, training=False), atol=1e-5)
    for a, v in zip(before, bns[0].weights):
        np.testing.assert_array_equal(a, v.numpy())  # moving statistics untouched


def test_resnet50_features_with_avg_plus_max_head():
    backbone = build_backbone("resnet50", (64, 64, 3))
    head = EmbeddingHead(16, pooling="avg+max")
    features = backbone(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32"))
    assert features.shape == (2, 2, 2, 2048)
    embeddings = np.asarray(head(features))
    pooled = np.asarray(features).mean(axis=(1, 2)) + np.asarray(features).max(axis=(1, 2))
    want = pooled @ np.asarray(head.linear.kernel) + np.asarray(head.linear.bias)
    np.testing.assert_allclose(embeddings, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-5)


def test_small_cnn_bn_momentum_sets_how_fast_the_moving_statistics_follow_the_batch():
    images = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    moved = {}
    for momentum in (0.9, 0.99):
        keras.utils.set_random_seed(0)  # the same weights for both, so only the momentum differs
        backbone = build_backbone("small_cnn", (16, 16, 3), widths=(4,), bn_momentum=momentum)
        bn = backbone.get_layer("block0_bn0")
        batch_mean = np.asarray(keras.ops.mean(backbone.get_layer("block0_conv0")(
            backbone.get_layer("scale")(images)), axis=(0, 1, 2)))
        backbone(images, training=True)  # one update: moving = momentum * 0 + (1 - momentum) * batch mean
        np.testing.assert_allclose(bn.moving_mean.numpy(), (1 - momentum) * batch_mean, rtol=1e-4, atol=1e-6)
        moved[momentum] = np.abs(bn.moving_mean.numpy()).sum()
    np.testing.assert_allclose(moved[0.9], 10 * moved[0.99], rtol=1e-3)
    with pytest.raises(ValueError, match=r"bn_momentum must be in \[0, 1\)"):
        build_backbone("small_cnn", (16, 16, 3), bn_momentum=1.5)


def test_a_rejected_backbone_or_loss_value_names_its_config_section():
    config = Config()
    config.model.backbone_args = {"widths": [4], "bn_momentum": 1.5}
    with pytest.raises(ConfigError, match=r"^model.backbone_args: bn_momentum must be in \[0, 1\)"):
        build_model(config, num_classes=4)
    config = Config()
    config.model.backbone_args = {"widths": [4]}
    config.loss.args = {"alpha": -1.0}
    with pytest.raises(ConfigError, match=r"^loss.args: multi_similarity needs alpha > 0 and beta > 0"):
        build_model(config, num_classes=4)
