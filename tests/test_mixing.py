"""Metrix: soft targets, pair selection, the three mixing levels, and utilization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference_losses as ref
from tfdml.evaluation import mix_embeddings, utilization
from tfdml.losses import CircleLoss, ContrastiveLoss, MultiSimilarityLoss, ProxyAnchorLoss, References, TripletLoss
from tfdml.mixing import KINDS, Metrix, mixed_pair_loss, select_pairs, soft_targets
from tfdml.models import DMLModel, EmbeddingHead, build_backbone

rng = np.random.default_rng(0)
LABELS = np.repeat(np.arange(4), 3).astype("int32")


def batch(dim=6, seed=0):
    return ref.unit(np.random.default_rng(seed).normal(size=(len(LABELS), dim))).astype("float32")


def pair_losses():
    pa = ProxyAnchorLoss(4, alpha=8.0)
    pa.build((None, 6))
    return [ContrastiveLoss(0.1, 0.9), ContrastiveLoss.c1(), MultiSimilarityLoss(mining_epsilon=None), TripletLoss(),
            CircleLoss(), pa]


@pytest.mark.parametrize("loss", pair_losses(), ids=lambda l: type(l).__name__)
def test_hard_targets_give_the_clean_loss_and_lambda_one_is_the_first_example(loss):
    emb = batch()
    first = np.array([0, 4, 7, 10, 2], "int32")
    second = np.array([5, 1, 11, 3, 8], "int32")
    # With lambda = 1 the mixture is its first example, and its targets are the hard labels of that example.
    as_first = mixed_pair_loss(loss, emb, LABELS, emb[first], first, second, 1.0)
    as_second = mixed_pair_loss(loss, emb, LABELS, emb[second], first, second, 0.0)
    if isinstance(loss, ProxyAnchorLoss):  # proxies are the anchors; the mixtures are its batch
        clean_first, clean_second = loss(emb[first], LABELS[first]), loss(emb[second], LABELS[second])
    else:
        clean_first = loss.compute(emb, LABELS, References.from_memory(emb[first], LABELS[first], np.ones(5)))
        clean_second = loss.compute(emb, LABELS, References.from_memory(emb[second], LABELS[second], np.ones(5)))
    assert float(as_first) == pytest.approx(float(clean_first), rel=1e-6)
    assert float(as_second) == pytest.approx(float(clean_second), rel=1e-6)


def test_soft_multi_similarity_matches_the_papers_general_form():
    emb, mixtures = batch(), batch(seed=1)[:5]
    first, second = np.array([0, 3, 6, 9, 1]), np.array([4, 8, 2, 5, 10])
    lam = np.array([0.3, 0.5, 0.8, 0.1, 0.6], "float32")
    y = lam * (LABELS[:, None] == LABELS[first]) + (1 - lam) * (LABELS[:, None] == LABELS[second])
    s = emb @ mixtures.T
    expected = np.mean(np.log1p((y * np.exp(-2.0 * (s - 0.5))).sum(1)) / 2.0
                       + np.log1p(((1 - y) * np.exp(10.0 * (s - 0.5))).sum(1)) / 10.0)
    loss = MultiSimilarityLoss(2.0, 10.0, 0.5, mining_epsilon=None)
    value = mixed_pair_loss(loss, emb, LABELS, mixtures, first.astype("int32"), second.astype("int32"), lam)
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_pair_kinds():
    first, second = np.array([0, 3], "int32"), np.array([4, 9], "int32")  # classes (0, 1) and (1, 3)
    anchors = np.arange(len(LABELS))
    w_pos, w_neg = (np.asarray(w) for w in soft_targets(LABELS, anchors, LABELS, first, second, 0.7))
    np.testing.assert_allclose(w_pos[:, 0], [0.7, 0.7, 0.7, 0.3, 0.3, 0.3] + [0.0] * 6, rtol=1e-6)
    np.testing.assert_allclose(w_neg[:, 0], [0.3, 0.3, 0.3, 0.7, 0.7, 0.7] + [1.0] * 6, rtol=1e-6)
    w_pos, w_neg = (np.asarray(w) for w in soft_targets(LABELS, anchors, LABELS, first, second, 0.7, ("neg_neg",)))
    assert not w_pos.any()  # negative-negative mixtures only feed the negative term
    np.testing.assert_array_equal(w_neg[:, 0] > 0, LABELS >= 2)
    w_pos, _ = (np.asarray(w) for w in soft_targets(LABELS, anchors, LABELS, first, second, 0.7, ("anchor_neg",)))
    np.testing.assert_array_equal(np.flatnonzero(w_pos[:, 0]), [0, 4])  # the anchor is a mixed example itself
    # Each (anchor, mixture) pair belongs to exactly one kind.
    total = sum(np.asarray(soft_targets(LABELS, anchors, LABELS, first, second, 0.7, (k,))[1]) for k in KINDS)
    np.testing.assert_allclose(total, np.asarray(soft_targets(LABELS, anchors, LABELS, first, second, 0.7)[1]))


def test_pairs_never_mix_two_examples_of_one_class():
    seed = keras.random.SeedGenerator(3)
    for _ in range(20):
        first, second, valid = (np.asarray(v) for v in select_pairs(LABELS, 64, seed))
        assert (LABELS[first] != LABELS[second]).all() and valid.all()
        assert first.shape == second.shape == (64,)
    _, _, valid = select_pairs(np.zeros(6, "int32"), 8, seed)  # one class: nothing to mix
    assert not np.asarray(valid).any()


def small_model(loss, level, max_mixtures=10):
    keras.utils.set_random_seed(0)
    model = DMLModel(build_backbone("small_cnn", (16, 16, 3), widths=(8, 16)), EmbeddingHead(8), loss,
                     mixing=Metrix(level=level, max_mixtures=max_mixtures, seed=1))
    model.build((None, 16, 16, 3))
    return model


@pytest.mark.parametrize("level", ["input", "feature", "embedding"])
@pytest.mark.parametrize("loss_name", ["contrastive", "multi_similarity", "proxy_anchor"])
def test_each_level_and_loss_mixes_with_gradients_to_every_group(level, loss_name):
    loss = {"contrastive": ContrastiveLoss(), "multi_similarity": MultiSimilarityLoss(mining_epsilon=None),
            "proxy_anchor": ProxyAnchorLoss(4)}[loss_name]
    model = small_model(loss, level, max_mixtures=7)
    images = rng.uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    features = model.features(images, training=True)
    embeddings = model.embed(features, training=True)
    first, second, lam, _ = model.mixing.draw(LABELS)
    mixtures = model.mixing.mix(model, images, features, embeddings, first, second, lam)
    assert tuple(mixtures.shape) == (7, 8)  # the bound on mixtures per batch
    np.testing.assert_allclose(np.linalg.norm(mixtures, axis=1), 1.0, rtol=1e-5)
    with tf.GradientTape() as tape:
        mixed = model.mixing.mixed_loss(model, model.metric_loss, images, model.features(images, True),
                                        model(images, training=True), LABELS)
    groups = model.parameter_groups()
    grads = tape.gradient(mixed, [v for g in groups.values() for v in g])
    offset = 0
    for group, variables in groups.items():
        chunk = grads[offset:offset + len(variables)]
        offset += len(variables)
        if variables:
            assert any(g is not None and np.abs(np.asarray(g)).sum() > 0 for g in chunk), group


def test_lambda_per_pair_and_per_batch():
    labels = LABELS
    per_batch = Metrix(lambda_per="batch", max_mixtures=16, seed=0).draw(labels)[2]
    per_pair = Metrix(lambda_per="pair", max_mixtures=16, seed=0).draw(labels)[2]
    assert len(set(np.asarray(per_batch).round(6))) == 1 and len(set(np.asarray(per_pair).round(6))) > 1


def test_fit_with_mixing_saves_and_reloads(tmp_path):
    model = small_model(MultiSimilarityLoss(), "feature")
    model.compile(optimizer="adam")
    images = rng.uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    history = model.fit(tf.data.Dataset.from_tensors((images, LABELS)).repeat(2), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.mixing.get_config() == model.mixing.get_config()
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)


def test_bad_mixing_settings_are_named():
    with pytest.raises(ValueError, match="choose one of input, feature, embedding"):
        Metrix(level="pixels")
    with pytest.raises(ValueError, match="choose from pos_neg, anchor_neg, neg_neg"):
        Metrix(kinds=("pos_pos",))
    from tfdml.losses import NormalizedSoftmaxLoss
    with pytest.raises(NotImplementedError, match="mixing \\(Metrix\\) supports contrastive"):
        small_model(NormalizedSoftmaxLoss(4), "embedding").mixing.mixed_loss(
            None, NormalizedSoftmaxLoss(4), None, None, batch(), LABELS)


def test_utilization_by_hand_and_against_brute_force():
    assert utilization(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0], [0.6, 0.8]])) == pytest.approx(0.4, rel=1e-5)
    q, x = rng.normal(size=(50, 5)), rng.normal(size=(70, 5))
    brute = ((q[:, None] - x[None]) ** 2).sum(-1).min(1).mean()
    assert utilization(q, x, block_size=7) == pytest.approx(brute, rel=1e-4)
    mixed = mix_embeddings(ref.unit(x), np.arange(70) % 5, 40)
    assert np.allclose(np.linalg.norm(mixed, axis=1), 1.0, atol=1e-5)
    # Adding references can only bring them closer.
    assert utilization(q, np.concatenate([ref.unit(x), mixed])) <= utilization(q, ref.unit(x))
    with pytest.raises(ValueError, match="non-empty"):
        utilization(q, x[:, :3])


@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.7, 2.5])
def test_beta_samples_have_the_right_moments_and_compile_with_xla(alpha):
    from tfdml.mixing import sample_beta

    seed = keras.random.SeedGenerator(0)
    draw = tf.function(lambda: sample_beta((20000,), alpha, seed), jit_compile=True)
    x = np.asarray(draw())
    variance = 1.0 / (4 * (2 * alpha + 1))  # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
    assert x.min() >= 0 and x.max() <= 1
    assert abs(x.mean() - 0.5) < 0.01 and abs(x.var() - variance) < 0.1 * variance


def test_a_jit_compiled_training_step_mixes():
    model = small_model(MultiSimilarityLoss(), "feature")
    model.compile(optimizer="adam", jit_compile=True)
    images = rng.uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    history = model.fit(tf.data.Dataset.from_tensors((images, LABELS)).repeat(2), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_the_utilization_report_mixes_with_the_training_steps_code():
    # mix_embeddings is Metrix's own draw and mix (embedding level, a lambda per pair): same seed, same mixtures.
    x, labels = ref.unit(rng.normal(size=(30, 4))).astype("float32"), np.arange(30) % 3
    metrix = Metrix(level="embedding", alpha=2.0, lambda_per="pair", max_mixtures=12, seed=7)
    first, second, lam, valid = metrix.draw(labels.astype("int32"))
    expected = np.asarray(metrix.mix(None, None, None, x, first, second, lam))[np.asarray(valid) > 0]
    np.testing.assert_allclose(mix_embeddings(x, labels, 12, alpha=2.0, seed=7), expected, atol=1e-6)
    assert len(mix_embeddings(x, labels, 30, seed=7, chunk=8)) == 30  # drawn in chunks, cut to the count
