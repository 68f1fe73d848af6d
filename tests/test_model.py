"""DMLModel: parameter groups with their own learning rates, .keras round trip, SavedModel export."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdml.errors import ConfigError
from tfdml.export import export_saved_model
from tfdml.losses import ContrastiveLoss, MultiSimilarityLoss
from tfdml.models import DMLModel, EmbeddingHead, build_backbone
from tfdml.models.optim import ScaledSchedule

SIZE = 16


def tiny_model(loss=None) -> DMLModel:
    backbone = build_backbone("small_cnn", (SIZE, SIZE, 3), widths=(8, 16))
    model = DMLModel(backbone, EmbeddingHead(8), loss or MultiSimilarityLoss())
    model.build((None, SIZE, SIZE, 3))
    return model


def batch(n=32, classes=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32"), np.repeat(np.arange(classes), n // classes)


def test_embeddings_are_unit_vectors_from_uint8_and_float():
    model = tiny_model()
    images, _ = batch()
    from_float = model.predict(images, verbose=0)
    from_uint8 = model.predict(images.astype("uint8"), verbose=0)
    np.testing.assert_allclose(np.linalg.norm(from_float, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(from_uint8, model.predict(images.astype("uint8").astype("float32"), verbose=0), atol=1e-6)


def test_fit_trains_every_group_and_each_optimizer_owns_only_its_group():
    model = tiny_model()
    model.compile(keras.optimizers.SGD(0.1), lr_multipliers={"head": 10.0})
    images, labels = batch()
    before = {g: [v.numpy().copy() for v in vs] for g, vs in model.parameter_groups().items()}
    history = model.fit(tf.data.Dataset.from_tensor_slices((images, labels)).batch(32), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for group in ("backbone", "head"):
        moved = [not np.allclose(a, v.numpy()) for a, v in zip(before[group], model.parameter_groups()[group])]
        assert any(moved), group
    head_vars = {id(v) for v in model.parameter_groups()["head"]}
    assert len(model.optimizer.variables) >= 1
    assert int(model.group_optimizers["head"].iterations) == 2 == int(model.optimizer.iterations)
    # Plain SGD has no slots: the main optimizer must not have been built on the head's variables.
    assert not head_vars & {id(v) for v in model.optimizer._trainable_variables}


def test_lr_multiplier_scales_the_step_of_its_group_only():
    # With SGD and no momentum a step is exactly -lr * grad: the head's step must be 100x the base lr.
    images, labels = batch()
    steps = {}
    for factor in (1.0, 100.0):
        keras.utils.set_random_seed(1)
        model = tiny_model(ContrastiveLoss(neg_margin=2.0))
        model.compile(keras.optimizers.SGD(1e-3), lr_multipliers={"head": factor})
        kernel = model.head.linear.kernel
        kernel.assign(kernel * 0.01)  # small weights, large steps: float32 keeps the ratio exact
        before = kernel.numpy().copy()
        model.fit(images, labels, batch_size=32, epochs=1, verbose=0, shuffle=False)
        steps[factor] = kernel.numpy() - before
    np.testing.assert_allclose(steps[100.0], 100.0 * steps[1.0], rtol=2e-3, atol=1e-9)


def test_lr_multipliers_scale_schedules_and_reject_unknown_groups():
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, 10)
    scaled = ScaledSchedule.from_config(ScaledSchedule(schedule, 100.0).get_config())
    assert float(scaled(5)) == pytest.approx(100.0 * float(schedule(5)))
    with pytest.raises(ValueError, match="groups are backbone, head, loss"):
        tiny_model().compile("adam", lr_multipliers={"proxies": 100.0})


def test_keras_round_trip_with_optimizer_state(tmp_path):
    model = tiny_model(ContrastiveLoss(neg_margin=0.7))
    model.compile(keras.optimizers.Adam(1e-3), lr_multipliers={"loss": 100.0, "head": 3.0})
    images, labels = batch()
    model.fit(images, labels, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, DMLModel) and isinstance(loaded.metric_loss, ContrastiveLoss)
    assert loaded.metric_loss.neg_margin == 0.7
    assert loaded.lr_multipliers == model.lr_multipliers and int(loaded.optimizer.iterations) == 2
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    # Resume path: a freshly compiled model takes weights *and* every optimizer's slots from the file.
    fresh = tiny_model(ContrastiveLoss(neg_margin=0.7))
    fresh.compile(keras.optimizers.Adam(1e-3), lr_multipliers={"loss": 100.0, "head": 3.0})
    fresh.build_optimizers()
    fresh.load_weights(tmp_path / "m.keras")
    for a, b in zip(model.group_optimizers["head"].variables, fresh.group_optimizers["head"].variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(fresh.optimizer.iterations) == 2


def test_saved_model_matches_keras_and_loads_without_tfdml(tmp_path):
    model = tiny_model()
    images, _ = batch(8)
    path = export_saved_model(model, tmp_path / "saved", image_size=SIZE)
    np.save(tmp_path / "images.npy", images)
    expected = model.predict(images, verbose=0)
    loaded = tf.saved_model.load(str(path))
    np.testing.assert_allclose(loaded.serve(images).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(loaded.serve_uint8(images.astype("uint8")).numpy(),
                               model.predict(images.astype("uint8"), verbose=0), atol=1e-5)
    # A fresh process that never imports tfdml (nor keras) gets the same embeddings.
    code = (
        "import sys, numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({str(path)!r})\n"
        f"out = m.signatures['serving_default'](images=tf.constant(np.load({str(tmp_path / 'images.npy')!r})))\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, list(out.values())[0].numpy())\n"
        "assert 'tfdml' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)


def test_missing_resnet50_weights_file_says_where_to_put_it(tmp_path):
    with pytest.raises(ConfigError, match=r"backbone weights file not found: .*nope.h5.*model.backbone_weights"):
        build_backbone("resnet50", (64, 64, 3), weights=str(tmp_path / "nope.h5"))


def test_resnet50_loads_local_weights_file(tmp_path):
    reference = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    reference.save_weights(tmp_path / "r50.weights.h5")
    backbone = build_backbone("resnet50", (64, 64, 3), weights=str(tmp_path / "r50.weights.h5"))
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    caffe = keras.applications.resnet50.preprocess_input(images.copy())
    np.testing.assert_allclose(backbone(images), reference(caffe), atol=1e-4)


def test_proxies_live_with_the_loss_and_learn_at_their_own_rate(tmp_path):
    from tfdml.losses import ProxyAnchorLoss

    model = tiny_model(ProxyAnchorLoss(num_classes=8))
    groups = model.parameter_groups()
    assert [v.name for v in groups["loss"]] == ["proxies"] and groups["loss"][0].shape == (8, 8)
    model.compile(keras.optimizers.SGD(1e-3), lr_multipliers={"loss": 100.0})
    before = model.metric_loss.proxies.numpy().copy()
    images, labels = batch()
    model.fit(images, labels, batch_size=32, epochs=1, verbose=0)
    assert not np.allclose(before, model.metric_loss.proxies.numpy())
    model.save(tmp_path / "pa.keras")
    loaded = keras.models.load_model(tmp_path / "pa.keras")
    np.testing.assert_array_equal(loaded.metric_loss.proxies.numpy(), model.metric_loss.proxies.numpy())


def test_a_mixed_precision_step_matches_a_float32_step():
    # Under mixed_float16 compile wraps the optimizer in a LossScaleOptimizer, and each group's clone is one;
    # the step scales the loss once and each optimizer unscales by its own scale: the float32 update.
    from tfdml.losses import ProxyAnchorLoss

    images, labels = batch(16, 4)

    def one_step(policy, initial_scale=None, loss_group_scale=None):
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(policy)
        try:
            keras.utils.set_random_seed(0)
            model = tiny_model(ProxyAnchorLoss(4))
            optimizer = keras.optimizers.SGD(0.05)
            if initial_scale is not None:
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=initial_scale)
            model.compile(optimizer=optimizer, lr_multipliers={"loss": 10.0})
            model.build_optimizers()
            if loss_group_scale is not None:  # the groups' scales differ: the gradients must be re-expressed
                model.optimizer_for("loss").dynamic_scale.assign(loss_group_scale)
            before = [v.numpy().copy() for v in model.trainable_variables]
            model.fit(tf.data.Dataset.from_tensors((images, labels)), epochs=1, verbose=0)
            optimizers = (model.optimizer, model.optimizer_for("loss"))
            scales = [float(o.dynamic_scale.numpy()) if isinstance(o, keras.optimizers.LossScaleOptimizer) else None
                      for o in optimizers]
            return [v.numpy() - b for v, b in zip(model.trainable_variables, before)], scales
        finally:
            keras.mixed_precision.set_global_policy(previous)

    full, scales = one_step("float32")
    assert scales == [None, None]
    mixed, scales = one_step("mixed_float16", initial_scale=2.0 ** 8, loss_group_scale=2.0 ** 4)
    assert scales == [2.0 ** 8, 2.0 ** 4] and keras.mixed_precision.global_policy().name == "float32"
    gaps = [np.linalg.norm(b - a) / np.linalg.norm(a) for a, b in zip(full, mixed)]
    assert max(gaps) < 0.1  # every weight moved by the float32 step up to float16 rounding (the proxies too)
    # Keras's default scale (2^15) overflows this network's float16 gradients: the whole step is skipped,
    # the proxies' group too, and every scale halves.
    skipped, scales = one_step("mixed_float16")
    assert scales == [2.0 ** 14, 2.0 ** 14] and not any(np.abs(d).max() for d in skipped)
