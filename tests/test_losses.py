"""The pair core and the first losses against plain numpy formulas and hand-computed cases."""

import numpy as np
import pytest
import tensorflow as tf

from tfdml.losses import ContrastiveLoss, MultiSimilarityLoss, ProxyAnchorLoss, References, core, get_loss

rng = np.random.default_rng(0)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def np_multi_similarity(emb, labels, alpha, beta, base, eps):
    sim = unit(emb) @ unit(emb).T  # cosine similarity normalises, as the loss does
    total = 0.0
    for i in range(len(emb)):
        pos = (labels == labels[i]) & (np.arange(len(emb)) != i)
        neg = labels != labels[i]
        if eps is not None:
            min_pos = sim[i][pos].min() if pos.any() else np.inf
            max_neg = sim[i][neg].max() if neg.any() else -np.inf
            pos, neg = pos & (sim[i] - eps < max_neg), neg & (sim[i] + eps > min_pos)
        total += np.log1p(np.exp(-alpha * (sim[i][pos] - base)).sum()) / alpha
        total += np.log1p(np.exp(beta * (sim[i][neg] - base)).sum()) / beta
    return total / len(emb)


def np_contrastive(emb, labels, pos_margin, neg_margin):
    dist = np.sqrt(np.maximum(((emb[:, None] - emb[None]) ** 2).sum(-1), 0))
    same = labels[:, None] == labels[None]
    off = ~np.eye(len(emb), dtype=bool)
    pos = np.maximum(dist[same & off] - pos_margin, 0)
    neg = np.maximum(neg_margin - dist[~same], 0)
    mean_nz = lambda v: v[v > 0].mean() if (v > 0).any() else 0.0
    return mean_nz(pos) + mean_nz(neg)


@pytest.mark.parametrize("eps", [None, 0.1])
def test_multi_similarity_matches_numpy_formula(eps):
    emb, labels = unit(rng.normal(size=(24, 8))), np.repeat(np.arange(6), 4)
    loss = MultiSimilarityLoss(alpha=2.0, beta=10.0, base=0.5, mining_epsilon=eps)
    expected = np_multi_similarity(emb, labels, 2.0, 10.0, 0.5, eps)
    assert float(loss(emb.astype("float32"), labels)) == pytest.approx(expected, rel=1e-4)


def test_contrastive_matches_numpy_formula():
    emb, labels = unit(rng.normal(size=(20, 6))), np.repeat(np.arange(5), 4)
    loss = ContrastiveLoss(pos_margin=0.2, neg_margin=1.2)
    assert float(loss(emb.astype("float32"), labels)) == pytest.approx(np_contrastive(emb, labels, 0.2, 1.2), rel=1e-5)


def test_gradients_match_finite_differences():
    emb = tf.Variable(unit(rng.normal(size=(8, 4))).astype("float64"))
    labels = np.repeat(np.arange(4), 2)
    loss = MultiSimilarityLoss(mining_epsilon=None, beta=10.0)
    with tf.GradientTape() as tape:
        value = loss.compute(emb, labels)
    grad = tape.gradient(value, emb).numpy()
    x = emb.numpy()
    h = 1e-3
    bump = np.zeros_like(x)
    bump[2, 1] = h
    numeric = (np_multi_similarity(x + bump, labels, 2, 10, 0.5, None) - np_multi_similarity(x - bump, labels, 2, 10, 0.5, None)) / (2 * h)
    assert grad[2, 1] == pytest.approx(numeric, rel=1e-3, abs=1e-5)


def test_contrastive_is_zero_when_margins_hold_and_known_by_hand_otherwise():
    collinear = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], "float32")
    labels = np.array([0, 0, 1, 1])
    assert float(ContrastiveLoss(neg_margin=1.0)(collinear, labels)) == 0.0  # negatives sqrt(2) apart
    # Negatives at sqrt(2) with margin 2: each of the 8 ordered negative pairs costs 2 - sqrt(2).
    assert float(ContrastiveLoss(neg_margin=2.0)(collinear, labels)) == pytest.approx(2 - np.sqrt(2), rel=1e-6)


def test_cosine_contrastive_c1_form_by_hand():
    # Orthogonal positives: each costs 1 - cos = 1 with pos_margin 1 (C1's positive term).
    emb = np.eye(2, dtype="float32")
    loss = ContrastiveLoss(pos_margin=1.0, neg_margin=0.5, distance="cosine")
    assert float(loss(emb, np.array([0, 0]))) == pytest.approx(1.0)


def test_multi_similarity_orthogonal_case_by_hand():
    emb, labels = np.eye(4, dtype="float32"), np.array([0, 0, 1, 1])
    # Each anchor: one positive and two negatives, all at similarity 0.
    expected = np.log1p(np.exp(2 * 0.5)) / 2 + np.log1p(2 * np.exp(-50 * 0.5)) / 50
    assert float(MultiSimilarityLoss(mining_epsilon=None)(emb, labels)) == pytest.approx(expected, rel=1e-6)


def test_loss_is_invariant_to_batch_order():
    emb, labels = unit(rng.normal(size=(16, 5))).astype("float32"), np.repeat(np.arange(4), 4)
    perm = rng.permutation(16)
    for loss in (MultiSimilarityLoss(), ContrastiveLoss()):
        assert float(loss(emb, labels)) == pytest.approx(float(loss(emb[perm], labels[perm])), rel=1e-5)


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


def test_loss_against_memory_references_equals_batch_when_memory_is_the_batch_without_self():
    emb, labels = unit(rng.normal(size=(8, 4))).astype("float32"), np.repeat(np.arange(4), 2)
    loss = MultiSimilarityLoss(mining_epsilon=None)
    as_batch = float(loss.compute(emb, labels))
    # The same references seen as a memory include self-pairs as positives at similarity 1,
    # so the two must differ by exactly those terms: check the memory path is really used.
    as_memory = float(loss.compute(emb, labels, References.from_memory(emb, labels, np.ones(8))))
    assert as_memory != pytest.approx(as_batch)


def test_distances_and_normalisations():
    q = np.array([[3.0, 4.0]], "float32")
    r = np.array([[0.0, 0.0], [3.0, 4.0]], "float32")
    np.testing.assert_allclose(core.get_distance("squared_euclidean")(q, r), [[25.0, 0.0]])
    np.testing.assert_allclose(core.get_distance("euclidean")(q, r), [[5.0, 0.0]])
    np.testing.assert_allclose(core.unit_ball(q), [[0.6, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(core.unit_ball(q / 10), q / 10)  # inside the ball: unchanged
    assert core.get_distance("cosine").is_similarity and not core.get_distance("euclidean").is_similarity
    with pytest.raises(ValueError, match="cosine, euclidean, squared_euclidean"):
        core.get_distance("manhattan")


def test_euclidean_gradient_is_finite_at_zero_distance():
    x = tf.Variable(np.array([[1.0, 0.0], [1.0, 0.0]], "float32"))
    with tf.GradientTape() as tape:
        value = ContrastiveLoss(pos_margin=-1.0)(x, np.array([0, 0]))
    assert np.isfinite(tape.gradient(value, x).numpy()).all()


def test_weighted_log1p_sum_exp_is_stable_and_masks_zero_weights():
    logits = np.array([[1000.0, 0.0, -5.0]], "float32")
    weights = np.array([[0.5, 0.0, 1.0]], "float32")
    expected = 1000.0 + np.log(0.5)  # log(1 + 0.5 e^1000 + e^-5) to float precision
    assert float(core.weighted_log1p_sum_exp(logits, weights)[0]) == pytest.approx(expected, rel=1e-6)
    assert float(core.weighted_log1p_sum_exp(logits, np.zeros_like(weights))[0]) == 0.0


def test_registry_and_serialisation():
    loss = get_loss("multi_similarity", alpha=3.0, mining_epsilon=None)
    clone = MultiSimilarityLoss.from_config(loss.get_config())
    assert (clone.alpha, clone.mining_epsilon) == (3.0, None)
    with pytest.raises(ValueError, match="known losses: contrastive, multi_similarity, proxy_anchor"):
        get_loss("arcface_typo")


def np_proxy_anchor(emb, labels, proxies, alpha, delta):
    sim = unit(emb) @ unit(proxies).T  # [B, C]
    pos_terms, neg_terms = [], []
    for c in range(len(proxies)):
        pos = labels == c
        if pos.any():
            pos_terms.append(np.log1p(np.exp(-alpha * (sim[pos, c] - delta)).sum()))
        neg_terms.append(np.log1p(np.exp(alpha * (sim[~pos, c] + delta)).sum()))
    return np.mean(pos_terms) + np.mean(neg_terms)


def test_proxy_anchor_matches_numpy_formula_and_owns_its_proxies():
    emb, labels = unit(rng.normal(size=(12, 6))).astype("float32"), rng.integers(0, 4, 12)  # class 4 absent
    loss = ProxyAnchorLoss(num_classes=5, alpha=8.0, delta=0.1)
    value = float(loss(emb, labels))
    assert [w.name for w in loss.trainable_weights] == ["proxies"] and loss.proxies.shape == (5, 6)
    assert value == pytest.approx(np_proxy_anchor(emb, labels, loss.proxies.numpy(), 8.0, 0.1), rel=1e-5)


def test_proxy_anchor_by_hand_when_embeddings_sit_on_their_proxies():
    loss = ProxyAnchorLoss(num_classes=2, alpha=1.0, delta=0.0)
    loss.build((None, 2))
    loss.proxies.assign(np.eye(2, dtype="float32"))
    # One sample per class exactly on its proxy (s = 1) and orthogonal to the other (s = 0).
    expected = np.log1p(np.exp(-1.0)) + np.log1p(np.exp(0.0))
    assert float(loss(np.eye(2, dtype="float32"), np.array([0, 1]))) == pytest.approx(expected, rel=1e-6)


def test_proxies_per_class_label_proxies_cyclically():
    loss = ProxyAnchorLoss(num_classes=3, proxies_per_class=2)
    loss.build((None, 4))
    assert loss.proxies.shape == (6, 4)
    np.testing.assert_array_equal(loss.proxy_references().labels, [0, 1, 2, 0, 1, 2])
