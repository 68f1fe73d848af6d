"""Every loss against an independent numpy formula (value and gradient), hand-computed cases, and bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference_losses as ref
from tfdml.losses import (ArcFaceLoss, CircleLoss, ContrastiveLoss, CrossBatchMemory, MultiSimilarityLoss,
                          NormalizedSoftmaxLoss, ProxyAnchorLoss, ProxyNCAPlusPlusLoss, References, SoftTripleLoss,
                          TripletLoss, core, get_loss)

rng = np.random.default_rng(0)
C, K = 4, 2  # classes and proxies per class of the proxy cases

# id -> (tfdml loss factory, numpy formula f(emb, labels, proxies))
CASES = {
    "contrastive_c2": (lambda: ContrastiveLoss(0.1, 0.9), lambda e, y, p: ref.contrastive_c2(e, y, 0.1, 0.9)),
    "contrastive_c1": (lambda: ContrastiveLoss.c1(0.3), lambda e, y, p: ref.contrastive_c1(e, y, 0.3)),
    "triplet_all": (lambda: TripletLoss(0.4), lambda e, y, p: ref.triplet(e, y, 0.4)),
    "triplet_semihard": (lambda: TripletLoss(0.4, mining="semihard"), lambda e, y, p: ref.triplet(e, y, 0.4, "semihard")),
    "triplet_hard": (lambda: TripletLoss(0.4, mining="hard"), lambda e, y, p: ref.triplet(e, y, 0.4, "hard")),
    "multi_similarity": (lambda: MultiSimilarityLoss(2.0, 10.0, 0.5, mining_epsilon=None),
                         lambda e, y, p: ref.multi_similarity(e, y, 2.0, 10.0, 0.5)),
    "multi_similarity_mined": (lambda: MultiSimilarityLoss(2.0, 10.0, 0.5, mining_epsilon=0.1),
                               lambda e, y, p: ref.multi_similarity(e, y, 2.0, 10.0, 0.5, eps=0.1)),
    "circle": (lambda: CircleLoss(16.0, 0.25), lambda e, y, p: ref.circle(e, y, 16.0, 0.25)),
    "proxy_anchor": (lambda: ProxyAnchorLoss(C, K, alpha=8.0), lambda e, y, p: ref.proxy_anchor(e, y, p, 8.0, 0.1, C)),
    "normalized_softmax": (lambda: NormalizedSoftmaxLoss(C, K, temperature=0.5),
                           lambda e, y, p: ref.normalized_softmax(e, y, p, 0.5, C)),
    "proxy_nca_pp": (lambda: ProxyNCAPlusPlusLoss(C, K, temperature=0.5),
                     lambda e, y, p: ref.proxy_nca_pp(e, y, p, 0.5, C)),
    "arcface": (lambda: ArcFaceLoss(C, scale=4.0, margin=0.3), lambda e, y, p: ref.arcface(e, y, p, 4.0, 0.3)),
    "soft_triple": (lambda: SoftTripleLoss(C, 3, scale=5.0, gamma=0.5, tau=0.2, margin=0.1),
                    lambda e, y, p: ref.soft_triple(e, y, p, C, 3, 5.0, 0.5, 0.2, 0.1)),
}


def make(case, dim=4, seed=0):
    """A loss, embeddings (unit rows, as the model gives), labels, and proxies set to known values."""
    r = np.random.default_rng(seed)
    loss = CASES[case][0]()
    emb = ref.unit(r.normal(size=(12, dim)))
    labels = np.repeat(np.arange(C), 3)
    proxies = None
    if hasattr(loss, "proxies_per_class"):
        loss.build((None, dim))
        proxies = r.normal(size=tuple(loss.proxies.shape))
        loss.proxies.assign(proxies.astype("float32"))
    return loss, emb, labels, proxies


def tf_value_and_grads(loss, emb, labels):
    x = tf.Variable(emb.astype("float32"))
    with tf.GradientTape() as tape:
        value = loss(x, labels)
    variables = [x] + list(loss.trainable_variables)
    return float(value), [g.numpy() for g in tape.gradient(value, variables)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_value_and_gradient_match_numpy_formula(case):
    loss, emb, labels, proxies = make(case)
    formula = CASES[case][1]
    value, grads = tf_value_and_grads(loss, emb, labels)
    assert value == pytest.approx(formula(emb, labels, proxies), rel=1e-4, abs=1e-6)
    assert value > 0  # the random case is not trivially zero
    numeric = ref.numeric_gradient(lambda e: formula(e, labels, proxies), emb)
    np.testing.assert_allclose(grads[0], numeric, rtol=2e-3, atol=2e-4)
    if proxies is not None:
        numeric = ref.numeric_gradient(lambda p: formula(emb, labels, p), proxies)
        np.testing.assert_allclose(grads[1], numeric, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("case", sorted(CASES))
def test_invariant_to_batch_order(case):
    loss, emb, labels, _ = make(case, seed=1)
    perm = np.random.default_rng(2).permutation(len(emb))
    assert float(loss(emb, labels)) == pytest.approx(float(loss(emb[perm], labels[perm])), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_gradients_are_finite_in_float32_and_mixed_precision(case, dtype):
    loss, emb, labels, _ = make(case, dim=16, seed=3)
    x = tf.Variable((emb * 3.0).astype(dtype))  # off the unit sphere too
    with tf.GradientTape() as tape:
        value = loss(x, labels)
    grad = tape.gradient(value, x)
    assert value.dtype == tf.float32 and grad.dtype == tf.as_dtype(dtype)
    assert np.isfinite(float(value)) and np.isfinite(grad.numpy()).all()


@pytest.mark.parametrize("case", sorted(CASES))
def test_serialisation_round_trip(case):
    loss = CASES[case][0]()
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()


# ----------------------------------------------------------------------------- by hand

COLLINEAR = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], "float32")
TWO_CLASSES = np.array([0, 0, 1, 1])


def test_margin_losses_are_zero_when_margins_hold():
    # Positives coincide and negatives are sqrt(2) apart (cosine 0).
    assert float(ContrastiveLoss(neg_margin=1.0)(COLLINEAR, TWO_CLASSES)) == 0.0
    assert float(ContrastiveLoss.c1(margin=0.5)(COLLINEAR, TWO_CLASSES)) == 0.0
    for mining in ("all", "semihard", "hard"):
        assert float(TripletLoss(margin=1.0, mining=mining)(COLLINEAR, TWO_CLASSES)) == 0.0


@pytest.mark.parametrize("mining", ["all", "semihard"])
@pytest.mark.parametrize("reduction", ["mean_nonzero", "mean", "per_anchor", "sum"])
def test_sorted_triplet_equals_the_full_triplet_tensor_with_soft_weights(mining, reduction):
    # The loss never builds [B, M, M]; here that tensor is built in numpy, with Metrix-style soft
    # weights, zero weights and the distance's own closeness (negated Euclidean distances).
    values = rng.uniform(0.0, 2.0, (7, 9))
    w_pos = rng.uniform(0, 1, (7, 9)) * (rng.random((7, 9)) < 0.5)
    w_neg = rng.uniform(0, 1, (7, 9)) * (rng.random((7, 9)) < 0.7)
    margin = 0.3
    c = -values
    gap = c[:, None, :] - c[:, :, None] + margin  # [a, p, n]
    weights = w_pos[:, :, None] * w_neg[:, None, :]
    if mining == "semihard":
        weights = weights * ((gap > 0) & (gap < margin))
    terms = weights * np.maximum(gap, 0)
    expected = {"sum": terms.sum(), "mean": terms.mean(), "per_anchor": terms.sum() / 7,
                "mean_nonzero": terms.sum() / max((terms > 0).sum(), 1)}[reduction]
    loss = TripletLoss(margin, mining=mining, reduction=reduction)
    got = loss.loss_from_pairs(*(tf.constant(x, tf.float32) for x in (values, w_pos, w_neg)))
    assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_pair_losses_by_hand():
    # Negatives at sqrt(2) with margin 2: every ordered negative pair costs 2 - sqrt(2).
    assert float(ContrastiveLoss(neg_margin=2.0)(COLLINEAR, TWO_CLASSES)) == pytest.approx(2 - np.sqrt(2), rel=1e-6)
    # Orthogonal positives: each anchor pays 1 - cos = 1 once under C1.
    assert float(ContrastiveLoss.c1()(np.eye(2, dtype="float32"), np.array([0, 0]))) == pytest.approx(1.0)
    # Triplet margin 2: each (a, p, n) costs 0 - sqrt(2) + 2; all are semi-hard (0 < sqrt(2) < 0 + 2).
    for mining in ("all", "semihard", "hard"):
        loss = TripletLoss(margin=2.0, mining=mining)
        assert float(loss(COLLINEAR, TWO_CLASSES)) == pytest.approx(2 - np.sqrt(2), rel=1e-6)
    # A hard triplet (negative closer than the positive) is not semi-hard.
    hard = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]], "float32")
    assert float(TripletLoss(margin=0.5, mining="semihard")(hard, np.array([0, 0, 1]))) == 0.0
    assert float(TripletLoss(margin=0.5, mining="hard")(hard, np.array([0, 0, 1]))) > 0
    # Multi-similarity on orthogonal vectors: one positive and two negatives at similarity 0.
    expected = np.log1p(np.exp(2 * 0.5)) / 2 + np.log1p(2 * np.exp(-50 * 0.5)) / 50
    assert float(MultiSimilarityLoss(mining_epsilon=None)(np.eye(4, dtype="float32"), TWO_CLASSES)) == pytest.approx(
        expected, rel=1e-6)


def on_proxies(loss, num_classes=3):
    """Each class's embedding sits on its own orthonormal proxy."""
    loss.build((None, num_classes))
    loss.proxies.assign(np.tile(np.eye(num_classes, dtype="float32"), (loss.proxies_per_class, 1)))
    return float(loss(np.eye(num_classes, dtype="float32"), np.arange(num_classes)))


def test_proxy_losses_by_hand_when_embeddings_sit_on_their_proxies():
    assert on_proxies(ProxyAnchorLoss(3, alpha=1.0, delta=0.0)) == pytest.approx(
        np.log1p(np.exp(-1.0)) + np.log1p(2 * np.exp(0.0)), rel=1e-6)
    assert on_proxies(NormalizedSoftmaxLoss(3, temperature=0.5)) == pytest.approx(np.log1p(2 * np.exp(-2.0)), rel=1e-5)
    assert on_proxies(ProxyNCAPlusPlusLoss(3, temperature=0.5)) == pytest.approx(np.log1p(2 * np.exp(-4.0)), rel=1e-5)
    # ArcFace: own angle 0 -> cos(margin); others cos 0.
    assert on_proxies(ArcFaceLoss(3, scale=2.0, margin=0.5)) == pytest.approx(
        np.log1p(2 * np.exp(-2.0 * np.cos(0.5))), rel=1e-5)
    # SoftTriple with identical centres: class similarity 1 (own) or 0, no spread between centres.
    assert on_proxies(SoftTripleLoss(3, 2, scale=2.0, margin=0.1, tau=0.5)) == pytest.approx(
        np.log1p(2 * np.exp(-2.0 * 0.9)), rel=1e-4)


# ----------------------------------------------------------------------------- the pair core


def test_pair_weights_for_batch_proxies_and_memory():
    labels = np.array([0, 1, 0])
    emb = np.eye(3, dtype="float32")
    w_pos, w_neg = core.pair_weights(labels, References.from_batch(emb, labels))
    np.testing.assert_array_equal(w_pos, [[0, 0, 1], [0, 0, 0], [1, 0, 0]])  # diagonal excluded
    np.testing.assert_array_equal(w_neg, [[0, 1, 0], [1, 0, 1], [0, 1, 0]])
    proxies = References.from_proxies(np.eye(2, 3, dtype="float32"), np.array([0, 1]))
    w_pos, _ = core.pair_weights(labels, proxies)
    np.testing.assert_array_equal(w_pos, [[1, 0], [0, 1], [1, 0]])  # no self-exclusion for proxies
    memory = References.from_memory(emb, labels, valid=np.array([1, 0, 1]))
    w_pos, w_neg = core.pair_weights(labels, memory)
    np.testing.assert_array_equal(w_pos + w_neg, [[1, 0, 1]] * 3)  # the empty slot counts nowhere


def test_distances_reducers_and_normalisations():
    q = np.array([[3.0, 4.0]], "float32")
    r = np.array([[0.0, 0.0], [3.0, 4.0]], "float32")
    np.testing.assert_allclose(core.get_distance("squared_euclidean")(q, r), [[25.0, 0.0]])
    np.testing.assert_allclose(core.get_distance("euclidean")(q, r), [[5.0, 0.0]])
    np.testing.assert_allclose(core.unit_ball(q), [[0.6, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(core.unit_ball(q / 10), q / 10)  # inside the ball: unchanged
    assert core.get_distance("cosine").is_similarity and not core.get_distance("euclidean").is_similarity
    with pytest.raises(ValueError, match="cosine, euclidean, squared_euclidean"):
        core.get_distance("manhattan")
    terms = np.array([[0.0, 2.0], [4.0, 0.0], [0.0, 0.0]], "float32")
    assert [float(core.reduce(terms, m)) for m in core.REDUCTIONS] == pytest.approx([1.0, 3.0, 2.0, 6.0])


def test_euclidean_gradient_is_finite_at_zero_distance():
    x = tf.Variable(np.array([[1.0, 0.0], [1.0, 0.0]], "float32"))
    with tf.GradientTape() as tape:
        value = ContrastiveLoss(pos_margin=-1.0)(x, np.array([0, 0]))
    assert np.isfinite(tape.gradient(value, x).numpy()).all()


def test_weighted_log_sum_exps_are_stable_and_mask_zero_weights():
    logits = np.array([[1000.0, 0.0, -5.0]], "float32")
    weights = np.array([[0.5, 0.0, 1.0]], "float32")
    expected = 1000.0 + np.log(0.5)  # log(1 + 0.5 e^1000 + e^-5) to float precision
    assert float(core.weighted_log1p_sum_exp(logits, weights)[0]) == pytest.approx(expected, rel=1e-6)
    assert float(core.weighted_logsumexp(logits, weights)[0]) == pytest.approx(expected, rel=1e-6)
    assert float(core.weighted_log1p_sum_exp(logits, np.zeros_like(weights))[0]) == 0.0


def test_memory_references_are_really_used():
    emb, labels = ref.unit(rng.normal(size=(8, 4))).astype("float32"), np.repeat(np.arange(4), 2)
    loss = MultiSimilarityLoss(mining_epsilon=None)
    # As a memory, the batch includes self-pairs (positives at similarity 1), so the values differ.
    as_memory = float(loss.compute(emb, labels, References.from_memory(emb, labels, np.ones(8))))
    assert as_memory != pytest.approx(float(loss.compute(emb, labels)))
    no_memory = float(loss.compute(emb, labels, References.from_memory(emb, labels, np.zeros(8))))
    assert no_memory == 0.0


# ----------------------------------------------------------------------------- registry and bad input


def test_registry():
    loss = get_loss("multi_similarity", alpha=3.0, mining_epsilon=None)
    assert (loss.alpha, loss.mining_epsilon) == (3.0, None)
    with pytest.raises(ValueError, match="known losses: arcface, circle, contrastive, multi_similarity, normalized_softmax"):
        get_loss("arcface_typo")


def test_proxies_per_class_label_proxies_cyclically_and_live_in_the_loss():
    loss = ProxyAnchorLoss(num_classes=3, proxies_per_class=2)
    loss.build((None, 4))
    assert [w.name for w in loss.trainable_weights] == ["proxies"] and loss.proxies.shape == (6, 4)
    np.testing.assert_array_equal(loss.proxy_references().labels, [0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("labels, error, message", [
    (np.zeros((4, 1), "int32"), ValueError, r"labels must be a vector \[batch\].*got shape \(4, 1\); squeeze"),
    (np.zeros(4, "float32"), TypeError, "labels must be integer class ids.*got dtype float32"),
    (np.zeros(3, "int32"), ValueError, "4 embeddings but 3 labels"),
])
def test_bad_labels_are_named(labels, error, message):
    for loss in (MultiSimilarityLoss(), ProxyAnchorLoss(2), SoftTripleLoss(2, 2)):
        with pytest.raises(error, match=message):
            loss(np.eye(4, dtype="float32"), labels)


def test_proxy_label_out_of_range_is_an_error():
    for loss in (ProxyAnchorLoss(3), NormalizedSoftmaxLoss(3), SoftTripleLoss(3, 2)):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"outside 0\.\.2, the classes its proxies cover"):
            loss(np.eye(4, dtype="float32"), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="takes no other references"):
        ProxyAnchorLoss(3).compute(np.eye(3, dtype="float32"), np.arange(3), References.from_batch(None, None))


def test_a_batch_without_positive_pairs():
    emb, labels = ref.unit(rng.normal(size=(6, 4))).astype("float32"), np.arange(6)
    # Triplet: no triplet exists -> exactly 0. Contrastive and MS: only their negative terms remain.
    assert float(TripletLoss()(emb, labels)) == 0.0
    c2 = ContrastiveLoss(neg_margin=2.0)
    expected = ref.contrastive_c2(emb, labels, 0.0, 2.0)
    assert expected > 0 and float(c2(emb, labels)) == pytest.approx(expected, rel=1e-5)
    ms = MultiSimilarityLoss(mining_epsilon=0.1)  # mining with no positive keeps no negative either
    assert np.isfinite(float(ms(emb, labels)))


# ----------------------------------------------------------------------------- cross-batch memory


def test_xbm_ring_buffer_wraps_and_starts_after_its_step():
    inner = ContrastiveLoss.c1()
    xbm = CrossBatchMemory(inner, memory_size=10, start_step=2)
    batches = [(ref.unit(rng.normal(size=(4, 3))).astype("float32"), np.array([0, 1, 2, 0])) for _ in range(4)]
    xbm.build((None, 3))
    step = tf.function(lambda e, y: xbm(e, y, training=True))
    for i, (emb, labels) in enumerate(batches):
        expected = float(inner(emb, labels))
        if i >= 2:  # the memory holds the previous batches' last 10 embeddings
            kept = np.concatenate([b[0] for b in batches[:i]])[-10:]
            kept_labels = np.concatenate([b[1] for b in batches[:i]])[-10:]
            expected += float(inner.compute(emb, labels, References.from_memory(kept, kept_labels, np.ones(len(kept)))))
        assert float(step(emb, labels)) == pytest.approx(expected, rel=1e-5)
    assert step.experimental_get_tracing_count() == 1  # fixed shapes: no retracing as the memory fills
    assert int(xbm.pointer.numpy()) == 16 % 10 and int(xbm.steps.numpy()) == 4
    np.testing.assert_allclose(xbm.memory.numpy()[2:6], batches[3][0])  # slots 2..5 got the last batch
    float(xbm(*batches[0]))  # evaluation calls leave the memory alone
    assert int(xbm.steps.numpy()) == 4


def test_xbm_memory_is_saved_with_the_model(tmp_path):
    from tfdml.models import DMLModel, EmbeddingHead, build_backbone

    model = DMLModel(build_backbone("small_cnn", (16, 16, 3), widths=(8,)), EmbeddingHead(8),
                     CrossBatchMemory(MultiSimilarityLoss(), memory_size=32, start_step=0))
    model.build((None, 16, 16, 3))
    model.compile(optimizer="adam")
    images = rng.uniform(0, 255, (16, 16, 16, 3)).astype("float32")
    model.fit(tf.data.Dataset.from_tensors((images, np.repeat(np.arange(4), 4))), epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    for name in ("memory", "memory_labels", "valid", "pointer", "steps"):
        np.testing.assert_array_equal(getattr(loaded.metric_loss, name).numpy(), getattr(model.metric_loss, name).numpy())
    assert int(loaded.metric_loss.valid.numpy().sum()) == 32 and int(loaded.metric_loss.steps.numpy()) == 2


def test_xbm_refuses_losses_without_references_and_small_memories():
    with pytest.raises(ValueError, match="needs a pair loss that accepts references"):
        CrossBatchMemory(ProxyAnchorLoss(3), memory_size=8)
    xbm = CrossBatchMemory(MultiSimilarityLoss(), memory_size=2)
    with pytest.raises(ValueError, match="a batch of 4 does not fit a memory of 2"):
        xbm(np.eye(4, dtype="float32"), np.arange(4), training=True)
