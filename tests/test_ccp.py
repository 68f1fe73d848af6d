"""CCP: k-center, re-seeding, the proximal term, the round logic, and resume mid-round."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdml.ccp import (CCP, CCPLoss, CCPRounds, ProximalTerm, greedy_k_center, optimizer_slots, reset_slots,
                       table_pool)
from tfdml.config import load_config
from tfdml.evaluation.callback import RetrievalValidation
from tfdml.losses import ContrastiveLoss, MultiSimilarityLoss, TripletLoss
from tfdml.models import DMLModel, EmbeddingHead, build_backbone
from tfdml.training import run

ROOT = Path(__file__).resolve().parents[1]
rng = np.random.default_rng(0)


def test_k_center_picks_the_farthest_points_by_hand():
    # Class 0 on a line with its old proxy at 0: farthest is 10, then 4 (farther from {0, 10} than 1 or 6).
    # Class 1 has only two real points (third row is padding) and K = 3: both, then a repeat.
    pool = np.array([[[1.0], [10.0], [4.0], [6.0]], [[0.0], [3.0], [99.0], [99.0]]])
    valid = np.array([[True] * 4, [True, True, False, False]])
    previous = np.array([[[0.0]], [[0.0]]])
    np.testing.assert_array_equal(greedy_k_center(pool, valid, previous, 3), [[1, 2, 3], [1, 0, 1]])
    # Without previous proxies the first pick is arbitrary (the first row), then farthest-first.
    np.testing.assert_array_equal(greedy_k_center(pool[:1], valid[:1], np.zeros((1, 0, 1)), 2), [[0, 1]])
    with pytest.raises(ValueError, match="classes \\[1\\] have no pool points"):
        greedy_k_center(pool, np.array([[True] * 4, [False] * 4]), previous, 1)


def test_k_center_vectorised_equals_one_class_at_a_time():
    pool, valid = rng.normal(size=(6, 9, 4)), rng.random((6, 9)) < 0.8
    valid[:, 0] = True
    previous = rng.normal(size=(6, 2, 4))
    together = greedy_k_center(pool, valid, previous, 4)
    for c in range(6):
        np.testing.assert_array_equal(together[c], greedy_k_center(pool[c:c + 1], valid[c:c + 1], previous[c:c + 1], 4)[0])


def ccp_model(num_classes=4, k=2):
    keras.utils.set_random_seed(0)
    model = DMLModel(build_backbone("small_cnn", (16, 16, 3), widths=(8,)), EmbeddingHead(8),
                     CCPLoss(ContrastiveLoss(), num_classes=num_classes, proxies_per_class=k), proximal=ProximalTerm())
    model.build((None, 16, 16, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.build_optimizers()
    return model


IMAGES = rng.uniform(0, 255, (16, 16, 16, 3)).astype("float32")
LABELS = np.repeat(np.arange(4), 4).astype("int32")


def test_ccp_objective_is_both_terms_on_unit_ball_projections():
    inner = MultiSimilarityLoss(mining_epsilon=None, distance="cosine")
    loss = CCPLoss(inner, num_classes=4, proxies_per_class=2, w_pair=0.3, w_proxy=0.7)
    emb = rng.normal(size=(16, 6)).astype("float32") * 3
    loss.build((None, 6))
    from tfdml.losses import References
    ball = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1.0)  # noqa: E731
    expected = 0.3 * float(inner(ball(emb), LABELS)) + 0.7 * float(inner.compute(
        ball(emb), LABELS, References.from_proxies(ball(loss.proxies.numpy()), np.tile(np.arange(4), 2))))
    assert float(loss(emb, LABELS)) == pytest.approx(expected, rel=1e-5)
    for wrapped in (ContrastiveLoss(), TripletLoss(), MultiSimilarityLoss()):
        assert np.isfinite(float(CCPLoss(wrapped, num_classes=4)(emb, LABELS)))


def test_proximal_gradient_is_lambda_times_the_gap_on_network_weights_only():
    model = ccp_model()
    network = model.network_variables()
    anchors = [rng.normal(size=v.shape).astype("float32") for v in network]
    model.proximal.set_anchor(anchors)
    model.proximal.lam.assign(0.5)
    with tf.GradientTape() as tape:
        penalty = model.proximal.penalty(network)
    grads = tape.gradient(penalty, network + [model.metric_loss.proxies])
    for g, v, a in zip(grads, network, anchors):
        np.testing.assert_allclose(g, 0.5 * (v.numpy() - a), rtol=1e-5, atol=1e-6)
    assert grads[-1] is None  # proxies are not regularised
    assert all(v is not model.metric_loss.proxies for v in network)


def fixed_pool(embeddings, labels):
    return lambda model, round_: (embeddings, labels)


def test_reseeding_replaces_exactly_the_proxies_and_resets_their_optimizer_slots():
    model = ccp_model()
    model.fit(tf.data.Dataset.from_tensors((IMAGES, LABELS)), epochs=1, verbose=0)
    optimizer, proxies = model.optimizer_for("loss"), model.metric_loss.proxies
    before = {v.path: v.numpy().copy() for v in model.weights if v is not proxies}
    slots_before = [s.numpy().copy() for s in optimizer.variables]

    # A pool with a class (3) that has fewer images than the pool size; K = 2 proxies per class.
    pool_emb = rng.normal(size=(9, 8)).astype("float32")
    pool_labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])
    rounds = CCPRounds(model.metric_loss, model.proximal, RetrievalValidation(None), fixed_pool(pool_emb, pool_labels),
                       log=lambda _: None)
    rounds.set_model(model)
    moved = rounds.reseed(previous=None)
    new = proxies.numpy().reshape(2, 4, 8)  # proxy k*C + c
    ball = pool_emb / np.maximum(np.linalg.norm(pool_emb, axis=1, keepdims=True), 1.0)
    for c in range(4):
        members = ball[pool_labels == c]
        for k in range(2):  # every proxy is one of its class's pool points
            assert np.isclose(members, new[k, c], atol=1e-6).all(axis=1).any()
    np.testing.assert_allclose(new[0, 3], new[1, 3])  # the one-image class repeats it
    assert moved > 0
    for v in model.weights:
        if v is not proxies:
            np.testing.assert_array_equal(v.numpy(), before[v.path])
    # Exactly Adam's two slots of the proxies (momentum, velocity) changed, to zeros; every other optimizer
    # variable (the network's slots, the step count, the rate) is as it was.
    changed = [i for i, (s, b) in enumerate(zip(optimizer.variables, slots_before)) if not np.array_equal(s.numpy(), b)]
    assert len(changed) == 2
    for i in changed:
        assert optimizer.variables[i].shape == proxies.shape and slots_before[i].any()
        assert not optimizer.variables[i].numpy().any()
    assert sorted(id(s) for s in optimizer_slots(optimizer, proxies)) == sorted(id(optimizer.variables[i]) for i in changed)
    assert reset_slots(keras.optimizers.Adam(), proxies) == 0  # an unbuilt optimizer has no slots


class ScriptedValidation(RetrievalValidation):
    """Validation whose metric follows a script (our own callback's double, the framework is real)."""

    def __init__(self, script):
        super().__init__(tf.data.Dataset.from_tensors(0))  # never read (evaluate is scripted); None means no validation
        self.script = list(script)

    def evaluate(self, epoch=-1):
        return {"map@r": self.script[epoch]}


def original_reseed_epochs(script, patience, stop_patience):
    """The original's round trigger (ccp-dml 204b22c, framework/losses/ccp/callback.py:216-242, one
    validation per epoch, MAP@R maximised) in plain Python, with Keras' EarlyStopping (min_delta 0)
    for the stop. Returns (re-seeding epochs, each round's best epoch, stop epoch or None)."""
    best, since, round_best_epoch = 1e16, 0, None  # the original minimises -MAP@R
    global_best, global_wait = -np.inf, 0
    reseeds, anchors = [], []
    for epoch, value in enumerate(script, start=1):
        monitored = -value
        if monitored >= best - 1e-5:  # callback.py:227: no improvement
            since += 1
        else:
            since, best, round_best_epoch = 0, monitored, epoch  # _updateBest: weights and proxies
        if value > global_best:
            global_best, global_wait = value, 0
        else:
            global_wait += 1
        if global_wait >= stop_patience:  # tfdml stops before it would re-seed
            return reseeds, anchors, epoch
        if since == patience:  # ccpUpdate: theta* <- round best; then reset (callback.py:240-242)
            reseeds.append(epoch)
            anchors.append(round_best_epoch)
            best, since = 1e16, 0
    return reseeds, anchors, None


SCRIPT = [0.1, 0.2, 0.2, 0.15, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]


def test_the_reference_reseeds_where_the_issue_says():
    assert original_reseed_epochs(SCRIPT, patience=2, stop_patience=50) == ([4, 7, 10], [2, 5, 8], None)


class RecordingRounds(CCPRounds):
    """CCPRounds that also keeps the proxies each re-seeding starts k-center from."""

    def reseed(self, previous):
        self.starts = [*getattr(self, "starts", []), None if previous is None else np.array(previous)]
        return super().reseed(previous)


class Snapshots(keras.callbacks.Callback):
    """The network's weights and the proxies at the end of each epoch, before any re-seeding."""

    def __init__(self):
        super().__init__()
        self.network, self.proxies = {}, {}

    def on_epoch_end(self, epoch, logs=None):
        self.network[epoch + 1] = [v.numpy().copy() for v in self.model.network_variables()]
        self.proxies[epoch + 1] = self.model.metric_loss.proxies.numpy().copy()


def test_rounds_reseed_as_the_original_and_anchor_to_each_rounds_best():
    model = ccp_model()
    script = SCRIPT + [0.3, 0.3]
    validation = ScriptedValidation(script)
    pool = fixed_pool(rng.normal(size=(16, 8)).astype("float32"), LABELS)
    rounds = RecordingRounds(model.metric_loss, model.proximal, validation, pool, lambda0=1e-3, decay=0.5, patience=2, stop_patience=7,
                             log=lambda _: None)
    seen = Snapshots()
    anchors = []

    class Anchors(keras.callbacks.Callback):  # after `rounds`: theta* as each epoch leaves it
        def on_epoch_end(self, epoch, logs=None):
            anchors.append([a.numpy().copy() for a in model.proximal.anchors])

    data = tf.data.Dataset.from_tensors((IMAGES, LABELS)).repeat()
    history = model.fit(data, epochs=len(script), steps_per_epoch=1, verbose=0,
                        callbacks=[seen, rounds, validation, Anchors()])
    reseeds, best_epochs, stop = original_reseed_epochs(script, patience=2, stop_patience=7)
    assert [e["epoch"] for e in rounds.events] == reseeds == [4, 7, 10]
    assert [e["round"] for e in rounds.events] == [2, 3, 4]
    # lambda0 * decay**(round - 1), as the original's lambda0 * decay**global_step with global_step = round - 1
    assert [e["lambda"] for e in rounds.events] == pytest.approx([5e-4, 2.5e-4, 1.25e-4])
    for reseed, best in zip(reseeds, best_epochs):  # theta* and the k-center start: that round's best epoch
        for anchor, weight in zip(anchors[reseed - 1], seen.network[best]):
            np.testing.assert_array_equal(anchor, weight)
    for start, best in zip(rounds.starts[1:], best_epochs):
        np.testing.assert_array_equal(start, seen.proxies[best])
    assert not np.allclose(seen.network[5][0], seen.network[8][0])  # the two anchors can be told apart
    # The global best (epoch 5) still decides the stop: 7 validations without improving on it.
    assert stop == 12 and len(history.history["loss"]) == 12 and history.history["ccp_round"][-1] == 4
    assert history.history["ccp_lambda"][:4] == [0.0, 0.0, 0.0, pytest.approx(5e-4)]
    assert validation.best_epoch == 5 and len(validation.history) == 12  # each epoch validated once


def test_the_stop_comes_before_a_new_round():
    model = ccp_model()
    validation = ScriptedValidation(SCRIPT)
    ccp = CCP(model.metric_loss, model.proximal, patience=2, stop_patience=5)
    rounds = ccp.rounds(validation, fixed_pool(rng.normal(size=(16, 8)).astype("float32"), LABELS), log=lambda _: None)
    data = tf.data.Dataset.from_tensors((IMAGES, LABELS)).repeat()
    history = model.fit(data, epochs=12, steps_per_epoch=1, callbacks=[rounds, validation], verbose=0)
    reseeds, _, stop = original_reseed_epochs(SCRIPT, patience=2, stop_patience=5)
    assert [e["epoch"] for e in rounds.events] == reseeds == [4, 7] and stop == 10
    assert len(history.history["loss"]) == 10


def test_warmup_trains_the_pair_term_alone_then_round_one_seeds_the_proxies():
    model = ccp_model()
    validation = ScriptedValidation([0.1, 0.2, 0.3, 0.3, 0.3, 0.3])
    pool_embeddings = rng.normal(size=(16, 8)).astype("float32")
    rounds = CCPRounds(model.metric_loss, model.proximal, validation, fixed_pool(pool_embeddings, LABELS), patience=2,
                       stop_patience=50,
                       warmup_epochs=2, log=lambda _: None)
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append((float(model.metric_loss.proxy_term_on.numpy()), model.metric_loss.proxies.numpy().copy()))

    data = tf.data.Dataset.from_tensors((IMAGES, LABELS)).repeat()
    history = model.fit(data, epochs=6, steps_per_epoch=1, callbacks=[rounds, validation, Watch()], verbose=0)
    assert [gate for gate, _ in seen] == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    np.testing.assert_array_equal(seen[0][1], seen[1][1])  # the proxy term is off: the proxies do not move
    seeded = seen[2][1] / np.maximum(1.0, np.linalg.norm(seen[2][1], axis=1, keepdims=True))
    pool_rows = pool_embeddings / np.maximum(1.0, np.linalg.norm(pool_embeddings, axis=1, keepdims=True))
    for proxy, label in zip(seeded, np.tile(np.arange(4), 2)):  # each proxy is a pool point of its class
        gaps = np.linalg.norm(pool_rows[LABELS == label] - proxy, axis=1)
        assert gaps.min() < 1e-5
    # Round 1 after the warm-up's 2 epochs; its patience counts from there: flat epochs 4 and 5 start round 2.
    assert history.history["ccp_round"] == [0, 1, 1, 1, 2, 2]
    assert [e["epoch"] for e in rounds.events] == [5]
    assert len(validation.history) == 6 and "ccp_proxies_moved" in validation.history[4]  # epoch 5's entry
    assert validation.history[4]["ccp_proxies_moved"] == pytest.approx(rounds.events[0]["moved"])


def test_a_run_interrupted_mid_round_resumes_identically(tmp_path):
    tiny = ["sampler.batch_size=32", "train.steps_per_epoch=2", "model.backbone_args.widths=[8,16]",
            "model.embedding_dim=16", "eval.batch_size=512", "train.verbose=0", "export.saved_model=false",
            "ccp.enabled=true", "ccp.proxies_per_class=2", "ccp.pool_size=3", "ccp.patience=1",
            "optimizer.learning_rate=0.0", "optimizer.schedule=constant", "model.freeze_batchnorm=true", "train.epochs=4", "data.reader_args.vendors=[google,twitter]",
            f"output_dir={tmp_path}"]

    def config(name):
        return load_config(ROOT / "yaml_configs" / "emoji_c1.yaml", [*tiny, f"name={name}"])

    messages = []
    run(config("whole"), log=messages.append)
    # A frozen network validates the same every epoch: a round's first validation is its best, the
    # next (patience 1) starts a new round. Round 3 after epoch 4 needs the round best of epoch 3.
    assert any("CCP round 2 after epoch 2" in m for m in messages), messages
    assert any("CCP round 3 after epoch 4" in m for m in messages), messages

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:  # after round 2's best (epoch 3) was recorded and checkpointed
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(config("cut"), log=lambda _: None, callbacks=[Interrupt()])
    run(config("cut"), log=lambda _: None)
    whole = keras.models.load_model(tmp_path / "whole" / "checkpoints" / "last.keras")
    cut = keras.models.load_model(tmp_path / "cut" / "checkpoints" / "last.keras")
    assert whole.proximal.lam.numpy() == cut.proximal.lam.numpy()
    for name in ("round", "best", "since_round", "since_improvement", "round_best"):
        assert getattr(whole.proximal.rounds, name).numpy() == getattr(cut.proximal.rounds, name).numpy(), name
    assert cut.proximal.rounds.current == 3
    w, c = whole.proximal, cut.proximal
    for a, b in zip(w.anchors + w.rounds.round_best_weights + [w.rounds.round_best_proxies],
                    c.anchors + c.rounds.round_best_weights + [c.rounds.round_best_proxies]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    np.testing.assert_allclose(whole.metric_loss.proxies.numpy(), cut.metric_loss.proxies.numpy(), atol=1e-6)


def test_ccp_is_built_once_and_the_model_holds_its_parts():
    from tfdml.training.builders import build_ccp, build_model

    config = tiny_config("ccp.patience=5", "ccp.proxies_per_class=3")
    ccp = build_ccp(config, num_classes=4)
    model = build_model(config, num_classes=4, ccp=ccp)
    assert model.metric_loss is ccp.loss and model.proximal is ccp.proximal
    assert ccp.loss.proxies_per_class == 3 and ccp.proximal.rounds.current == 0
    rounds = ccp.rounds(RetrievalValidation(None), fixed_pool(None, None), log=lambda _: None)
    assert rounds.loss is ccp.loss and rounds.proximal is ccp.proximal and rounds.patience == 5
    assert build_ccp(tiny_config("ccp.enabled=false"), num_classes=4) is None


def test_table_pool_takes_at_most_b_images_per_class(make_table):
    table = make_table([1, 5, 2, 7])
    seen = []

    def dataset_fn(subset):
        seen.append(subset)
        return tf.data.Dataset.from_tensor_slices((np.zeros((len(subset), 2, 2, 3), "float32"), subset.label)).batch(4)

    model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(3)])
    embeddings, labels = table_pool(table, 3, dataset_fn, seed=0)(model, 1)
    assert np.bincount(labels).tolist() == [1, 3, 2, 3] and embeddings.shape == (9, 3)


# ---------------------------------------------------------------- CCP's normalisation: the unit ball, not L2


def tiny_config(*overrides):
    return load_config(ROOT / "yaml_configs" / "emoji_ccp.yaml", [
        "model.backbone_args.widths=[8]", "model.embedding_dim=8", "data.image_size=16", *overrides])


def test_head_normalize_option_round_trips_through_config_and_keras_file(tmp_path):
    head = EmbeddingHead(8, normalize="unit_ball")
    assert EmbeddingHead.from_config(head.get_config()).normalize == "unit_ball"
    assert EmbeddingHead(8, normalize=True).normalize == "l2"  # files saved when it was a bool
    with pytest.raises(ValueError, match="normalize must be one of 'l2', 'unit_ball', 'none', got 'ball'"):
        EmbeddingHead(8, normalize="ball")
    model = ccp_model()
    model.head.normalize = "unit_ball"
    model.save(tmp_path / "m.keras")
    assert keras.models.load_model(tmp_path / "m.keras").head.normalize == "unit_ball"


def shrink_head(model):
    """Raw head outputs far inside the unit ball, so the projection leaves them as they are."""
    model.head.linear.kernel.assign(model.head.linear.kernel.numpy() * 1e-3)
    model.head.linear.bias.assign(np.zeros_like(model.head.linear.bias.numpy()))


def test_ccp_model_outputs_the_unit_ball_projection_and_exports_unit_vectors(tmp_path):
    from tfdml.export import export_saved_model
    from tfdml.training.builders import build_model

    ccp, plain = build_model(tiny_config(), num_classes=4), build_model(tiny_config("ccp.enabled=false"), num_classes=4)
    assert ccp.head.normalize == "unit_ball" and plain.head.normalize == "l2"
    shrink_head(ccp)
    norms = np.linalg.norm(ccp(IMAGES, training=False).numpy(), axis=1)
    assert (norms < 0.5).all() and (norms > 0).all()
    exported = tf.saved_model.load(str(export_saved_model(ccp, tmp_path / "saved", image_size=16)))
    served = exported.serve(tf.constant(IMAGES)).numpy()
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(served, ccp(IMAGES).numpy() / norms[:, None], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(exported.serve_uint8(tf.constant(IMAGES.astype("uint8"))).numpy(),
                                              axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------- Metrix x CCP


def composed_model(mixing, proximal):
    """The same initial weights every call; SGD, so a step moves the weights by the gradient itself."""
    keras.utils.set_random_seed(0)
    from tfdml.mixing import Metrix
    metrix = Metrix(level="feature", max_mixtures=8, seed=1) if mixing else None
    model = DMLModel(build_backbone("small_cnn", (16, 16, 3), widths=(8,)), EmbeddingHead(8, normalize="unit_ball"),
                     CCPLoss(ContrastiveLoss(), num_classes=4,
                             proxies_per_class=2), mixing=metrix, proximal=ProximalTerm())
    model.build((None, 16, 16, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.build_optimizers()
    if proximal:  # theta* away from the weights, and lambda on
        model.proximal.set_anchor([np.ones(v.shape, "float32") for v in model.network_variables()])
        model.proximal.lam.assign(0.05)
    return model


def one_step(model):
    before = [v.numpy().copy() for v in model.trainable_variables]
    model.fit(tf.data.Dataset.from_tensors((IMAGES, LABELS)), epochs=1, verbose=0)
    return np.concatenate([(v.numpy() - b).ravel() for v, b in zip(model.trainable_variables, before)])


def test_metrix_and_ccp_both_act_in_one_training_step():
    both = composed_model(mixing=True, proximal=True)
    features = both.features(IMAGES, training=True)
    embeddings = both.embed(features, training=True)
    mixed = float(both.mixing.mixed_loss(both, both.metric_loss, IMAGES, features, embeddings, LABELS))
    penalty = float(both.proximal.penalty(both.network_variables()))
    assert mixed > 0 and penalty > 0
    steps = {(m, p): one_step(composed_model(m, p)) for m in (False, True) for p in (False, True)}
    assert not np.allclose(steps[True, True], steps[False, True]) and not np.allclose(steps[True, True], steps[True, False])
    # SGD: the step is the sum of the three terms' gradients; each acts once, and on the same weights.
    np.testing.assert_allclose(steps[True, True] + steps[False, False], steps[True, False] + steps[False, True],
                               atol=1e-5)


def test_metrix_under_ccp_is_ccps_objective_with_soft_targets():
    from tfdml.mixing import mixed_pair_loss, mixed_proxy_loss
    model = composed_model(mixing=True, proximal=False)
    loss, ball = model.metric_loss, (lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1.0))
    emb = rng.normal(size=(16, 8)).astype("float32") * 2
    mixtures = rng.normal(size=(5, 8)).astype("float32") * 2
    first, second = np.array([0, 1, 4, 8, 12], "int32"), np.array([4, 8, 12, 0, 1], "int32")
    lam, kinds = np.full(5, 0.3, "float32"), ("pos_neg", "anchor_neg")
    expected = (0.1 * float(mixed_pair_loss(loss.inner, ball(emb), LABELS, ball(mixtures), first, second, lam, kinds))
                + 1.0 * float(mixed_proxy_loss(loss.inner, ball(mixtures), ball(loss.proxies.numpy()),
                                               loss.proxy_labels(), LABELS, first, second, lam, kinds)))
    got = float(loss.mixed(emb, LABELS, mixtures, first, second, lam, kinds))
    assert got == pytest.approx(expected, rel=1e-5) and expected > 0


def test_mixed_proxy_term_by_hand():
    from tfdml.mixing import mixed_proxy_loss
    # One mixture 0.3 * class 0 + 0.7 * class 1 against proxies of classes 0, 1, 2 (C1: 1 - cos, [cos - 0.5]_+).
    mixture = np.array([[1.0, 0.0]], "float32")
    proxies = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]], "float32")
    labels, first, second = np.array([0, 1, 2], "int32"), np.array([0], "int32"), np.array([1], "int32")
    # Proxy 0: y 0.3, cos 1 -> pos 0.3 * 0, neg 0.7 * 0.5; proxy 1: y 0.7, cos 0 -> pos 0.7 * 1, neg 0.3 * 0;
    # proxy 2 (neither class, neg_neg): cos 0.8 -> neg 1 * 0.3 when neg_neg counts. One anchor: the sum.
    c1 = ContrastiveLoss.c1()
    with_nn = float(mixed_proxy_loss(c1, mixture, proxies, labels, labels, first, second, np.array([0.3], "float32")))
    without = float(mixed_proxy_loss(c1, mixture, proxies, labels, labels, first, second, np.array([0.3], "float32"),
                                     kinds=("pos_neg", "anchor_neg")))
    assert without == pytest.approx(0.7 + 0.35, rel=1e-5) and with_nn == pytest.approx(0.7 + 0.35 + 0.3, rel=1e-5)
