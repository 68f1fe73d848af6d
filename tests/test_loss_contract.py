"""The loss contract: reduction and mining on every pair loss, capabilities, wrappers, circle vs Keras,
and the loss terms a training step logs."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference_losses as ref
from tfdml.ccp import CCPLoss, ProximalTerm
from tfdml.config import config_from_dict
from tfdml.errors import ConfigError
from tfdml.losses import (LOSSES, MINERS, REDUCTIONS, ArcFaceLoss, BatchHardMiner, CircleLoss, ContrastiveLoss,
                          CrossBatchMemory, MultiSimilarityLoss, MultiSimilarityMiner, PairLoss, SoftTripleLoss, Terms,
                          TripletLoss, Unsupported, core, losses_supporting, register_miner, supports, unwrap)
from tfdml.losses.reducers import reduce_terms
from tfdml.mixing import Metrix
from tfdml.models import DMLModel, EmbeddingHead, build_backbone

C, DIM = 4, 6
LABELS = np.repeat(np.arange(C), 3).astype("int32")
EMB = ref.unit(np.random.default_rng(0).normal(size=(len(LABELS), DIM))).astype("float32")
PROXIES = np.random.default_rng(1).normal(size=(2 * C, DIM)).astype("float32")


def value(name, **args):
    """The registered loss `name` with `args` on one fixed batch (proxy losses with fixed proxies)."""
    cls = LOSSES[name]
    if supports(cls, "has_proxies"):
        args = {"num_classes": C, "proxies_per_class": 2, **args}
    loss = cls(**args)
    if supports(loss, "has_proxies"):
        loss.build((None, DIM))
        loss.proxies.assign(PROXIES)
    return float(loss(EMB, LABELS))


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_registered_loss_takes_reduction_and_mining_as_its_capabilities_say(name):
    params = inspect.signature(LOSSES[name].__init__).parameters
    if not supports(name, "pair_based"):  # the softmax losses
        assert "reduction" not in params and "mining" not in params
        pair_losses = ", ".join(losses_supporting("pair_based"))
        for arg in ({"reduction": "sum"}, {"mining": "ms"}):
            with pytest.raises(ValueError, match=f"not a pair loss.*the pair losses do: {pair_losses}"):
                value(name, **arg)
        return
    assert "reduction" in params and "mining" in params  # named, so `loss.args.mining` passes the config check
    default = value(name)
    assert np.isfinite(default) and default > 0
    by_reduction = {r: value(name, reduction=r) for r in REDUCTIONS}
    assert default == pytest.approx(by_reduction[params["reduction"].default], rel=1e-6)  # the declared default
    assert by_reduction["sum"] > max(by_reduction[r] for r in REDUCTIONS if r != "sum")  # many terms, all >= 0
    with pytest.raises(ValueError, match="unknown reduction 'avg'; choose one of mean, mean_nonzero"):
        value(name, reduction="avg")
    unmined = value(name, mining=None)
    assert value(name, mining="batch_hard") != pytest.approx(unmined, rel=1e-4)
    assert value(name, mining=lambda closeness, w_pos, w_neg: (w_pos, w_neg)) == pytest.approx(unmined, rel=1e-6)
    assert np.isfinite(value(name, mining={"name": "ms", "epsilon": 0.05}))


def test_capabilities_are_declared_once_and_asked_one_way():
    softmax = ["normalized_softmax", "proxy_nca_pp", "arcface", "soft_triple"]
    assert losses_supporting("pair_based") == ["contrastive", "multi_similarity", "triplet", "proxy_anchor", "circle"]
    assert losses_supporting("mixable") == losses_supporting("pair_based")
    assert losses_supporting("has_proxies") == ["proxy_anchor", *softmax]
    assert losses_supporting("accepts_references") == ["contrastive", "multi_similarity", "triplet", "circle"]
    assert losses_supporting("needs_batch_positives") == losses_supporting("accepts_references")
    assert not any(issubclass(LOSSES[name], PairLoss) for name in softmax)  # pair losses in form only, no more
    assert supports(ArcFaceLoss(3), "has_proxies") and supports(TripletLoss, "pair_based")
    with pytest.raises(ValueError, match="unknown capability 'mixible'; choose one of pair_based"):
        supports("arcface", "mixible")


def test_wrappers_hold_their_inner_loss_and_pass_its_capabilities_through():
    inner = MultiSimilarityLoss()
    xbm = CrossBatchMemory(inner, memory_size=16)
    assert xbm.inner is inner and unwrap(xbm) is inner and unwrap(inner) is inner
    assert supports(xbm, "pair_based") and supports(xbm, "mixable")  # from the inner loss
    assert not supports(xbm, "accepts_references") and not supports(xbm, "needs_batch_positives")  # its own
    ccp = CCPLoss(ContrastiveLoss(), num_classes=C)
    assert supports(ccp, "has_proxies") and supports(ccp, "mixable") and not supports(ccp, "needs_batch_positives")
    accepting = ", ".join(losses_supporting("accepts_references"))
    for wrapper, what in ((lambda loss: CrossBatchMemory(loss, memory_size=8), "cross-batch memory"),
                          (lambda loss: CCPLoss(loss, num_classes=C), "CCP")):
        with pytest.raises(Unsupported, match=rf"{what} needs a pair loss that accepts references \({accepting}\); "
                                              "got SoftTripleLoss"):
            wrapper(SoftTripleLoss(C, 2))
    assert isinstance(CrossBatchMemory("circle", memory_size=8).inner, CircleLoss)  # a registered name
    with pytest.raises(Unsupported, match=r"mixing \(Metrix\) supports contrastive, multi_similarity, triplet, "
                                          "proxy_anchor, circle; ArcFaceLoss cannot be mixed"):
        Metrix().mixed_loss(None, ArcFaceLoss(C), None, None, EMB, LABELS)


def test_a_wrapper_sets_its_inner_loss_mining_and_reduction_and_saves_them_there():
    xbm = CrossBatchMemory(ContrastiveLoss(), memory_size=16, mining="batch_hard", reduction="sum")
    assert isinstance(xbm.inner.mining, BatchHardMiner) and xbm.inner.reduction == "sum"
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(xbm))
    assert clone.get_config() == xbm.get_config() and isinstance(clone.inner.mining, BatchHardMiner)
    kept = CCPLoss(MultiSimilarityLoss(mining_epsilon=0.2), num_classes=C)  # none given: the inner loss's own
    assert kept.inner.mining_epsilon == 0.2 and kept.inner.reduction == "mean"


def test_ms_mining_is_a_miner_and_mining_epsilon_its_shorthand():
    by_epsilon = MultiSimilarityLoss(mining_epsilon=0.2)
    for loss in (MultiSimilarityLoss(mining={"name": "ms", "epsilon": 0.2}),
                 MultiSimilarityLoss(mining=MultiSimilarityMiner(0.2))):
        assert loss.mining_epsilon == 0.2 and float(loss(EMB, LABELS)) == float(by_epsilon(EMB, LABELS))
    unmined = MultiSimilarityLoss(mining=None)
    assert unmined.mining_epsilon is None and float(unmined(EMB, LABELS)) == float(
        MultiSimilarityLoss(mining_epsilon=None)(EMB, LABELS))
    assert by_epsilon.get_config()["mining"] == {"name": "ms", "epsilon": 0.2}
    # The miner reweights pairs for any pair loss: C1 with MS mining drops the easy positives of clustered classes.
    r = np.random.default_rng(2)
    clustered = ref.unit(r.normal(size=(C, DIM))[LABELS] * 2 + r.normal(size=(len(LABELS), DIM))).astype("float32")
    assert float(ContrastiveLoss.c1(mining="ms")(clustered, LABELS)) < float(ContrastiveLoss.c1()(clustered, LABELS))


@pytest.mark.parametrize("reduction", ["mean_nonzero", "per_anchor", "sum"])
def test_batch_hard_mining_makes_all_triplets_the_hard_ones(reduction):
    mined = TripletLoss(0.3, triplets="all", mining="batch_hard", reduction=reduction)
    hard = TripletLoss(0.3, triplets="hard", reduction=reduction)
    assert float(mined(EMB, LABELS)) == pytest.approx(float(hard(EMB, LABELS)), rel=1e-5)
    assert float(hard(EMB, LABELS)) > 0


def test_triplet_selection_keeps_its_former_name():
    legacy = TripletLoss(mining="semihard")
    assert legacy.triplets == "semihard" and legacy.mining is None
    assert legacy.get_config() == TripletLoss(triplets="semihard", name=legacy.name).get_config()
    with pytest.raises(ValueError, match="select triplets twice"):
        TripletLoss(mining="hard", triplets="semihard")


def test_miners_by_name_function_and_registration():
    with pytest.raises(ValueError, match="unknown mining 'hardest'; known: ms, batch_hard"):
        ContrastiveLoss(mining="hardest")
    identity = ContrastiveLoss(mining=lambda closeness, w_pos, w_neg: (w_pos, w_neg))
    assert float(identity(EMB, LABELS)) == float(ContrastiveLoss()(EMB, LABELS))
    with pytest.raises(ValueError, match="cannot be saved; decorate it with @tfdml.losses.register_miner"):
        identity.get_config()

    def positives_only(closeness, w_pos, w_neg):
        return w_pos, w_neg * 0.0

    try:
        register_miner("positives_only_test")(positives_only)
        loss = ContrastiveLoss(mining="positives_only_test")
        assert loss.get_config()["mining"] == {"name": "positives_only_test"}
        clone = ContrastiveLoss.from_config(loss.get_config())
        assert clone.mining is positives_only and float(clone(EMB, LABELS)) == pytest.approx(
            float(ContrastiveLoss(neg_margin=-10.0)(EMB, LABELS)), rel=1e-6)  # no negative term either way
    finally:
        MINERS.pop("positives_only_test")


def test_terms_reduce_per_anchor_and_each_part_separately():
    pos = np.array([[0.0, 2.0], [4.0, 0.0], [0.0, 0.0]], "float32")
    neg = np.array([[1.0, 1.0], [0.0, 0.0], [0.0, 3.0]], "float32")
    parts = (Terms.of_pairs(pos), Terms.of_pairs(neg))
    expected = {"mean": 6 / 6 + 5 / 6, "mean_nonzero": 6 / 2 + 5 / 3, "per_anchor": 6 / 3 + 5 / 3, "sum": 11.0}
    for mode, total in expected.items():
        assert float(reduce_terms(parts, mode)) == pytest.approx(total, rel=1e-6)
        assert float(core.reduce(pos, mode)) == pytest.approx(float(reduce_terms(parts[0], mode)), rel=1e-6)
    explicit = Terms(np.array([0.0, 2.0, 0.0], "float32"), active=np.array([1.0, 1.0, 0.0], "float32"))
    assert float(reduce_terms(explicit, "mean_nonzero")) == pytest.approx(1.0)  # the loss says what counts


@pytest.mark.parametrize("gamma, margin", [(80.0, 0.4), (16.0, 0.25)])
def test_circle_matches_keras_circle_value_gradient_and_reduction(gamma, margin):
    x = tf.Variable(EMB)
    for reduction, keras_reduction in (("mean_nonzero", "sum_over_batch_size"), ("sum", "sum")):
        with tf.GradientTape(persistent=True) as tape:
            ours = CircleLoss(gamma, margin, reduction=reduction)(x, LABELS)
            theirs = keras.losses.Circle(gamma=gamma, margin=margin, reduction=keras_reduction)(
                LABELS, core.l2_normalize(x))
        assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
        np.testing.assert_allclose(tape.gradient(ours, x), tape.gradient(theirs, x), rtol=1e-4, atol=1e-6)
    # A class with one image: its anchor has no positive and costs 0 (Keras masks it out of the mean).
    single = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4], "int32")
    assert float(CircleLoss(gamma, margin)(EMB, single)) == pytest.approx(
        float(keras.losses.Circle(gamma=gamma, margin=margin)(single, EMB)), rel=1e-5)


def test_sampler_m_1_is_refused_for_every_loss_whose_positives_come_from_the_batch():
    for name in losses_supporting("needs_batch_positives"):
        with pytest.raises(ConfigError, match="no positive pair"):
            config_from_dict({"sampler": {"m": 1, "batch_size": 32}, "loss": {"name": name}})
    config_from_dict({"sampler": {"m": 1, "batch_size": 32}, "loss": {"name": "normalized_softmax"}})


def fit_logs(loss, mixing=None, proximal=None):
    keras.utils.set_random_seed(0)
    model = DMLModel(build_backbone("small_cnn", (16, 16, 3), widths=(8,)), EmbeddingHead(8), loss, mixing=mixing,
                     proximal=proximal)
    model.build((None, 16, 16, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    images = np.random.default_rng(0).uniform(0, 255, (12, 16, 16, 3)).astype("float32")
    data = tf.data.Dataset.from_tensors((images, LABELS)).repeat(2)
    history = model.fit(data, validation_data=data.take(1), epochs=1, verbose=0).history
    return {name: values[-1] for name, values in history.items()}


def test_training_steps_log_each_loss_term():
    plain = fit_logs(MultiSimilarityLoss())
    assert set(plain) == {"loss", "loss_pair", "val_loss"} and plain["loss"] == plain["loss_pair"]
    mixed = fit_logs(MultiSimilarityLoss(), mixing=Metrix(level="embedding", max_mixtures=8, seed=1))
    assert set(mixed) == {"loss", "loss_pair", "loss_mix", "val_loss"}
    assert mixed["loss"] == pytest.approx(mixed["loss_pair"] + mixed["loss_mix"], rel=1e-5) and mixed["loss_mix"] > 0
    ccp = fit_logs(CCPLoss(ContrastiveLoss(), num_classes=C, proxies_per_class=2),
                   mixing=Metrix(level="embedding", max_mixtures=8, seed=1), proximal=ProximalTerm())
    assert set(ccp) == {"loss", "loss_pair", "loss_proxy", "loss_mix", "proximal", "val_loss"}
    assert 0 < ccp["loss_proxy"] < ccp["loss_pair"] and ccp["proximal"] == 0.0  # lambda is 0 in round 1
    assert ccp["loss"] == pytest.approx(ccp["loss_pair"] + ccp["loss_mix"], rel=1e-5)  # `loss` leaves out proximal
    xbm = fit_logs(CrossBatchMemory(ContrastiveLoss.c1(), memory_size=24, start_step=0))
    assert set(xbm) == {"loss", "loss_pair", "loss_memory", "val_loss"} and 0 < xbm["loss_memory"] < xbm["loss_pair"]
