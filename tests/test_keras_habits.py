"""Keras habits on a DMLModel either work as a Keras user expects or fail saying what to do instead."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import tensorflow as tf

from tfdml.evaluation import evaluate_retrieval
from tfdml.losses import MultiSimilarityLoss, ProxyAnchorLoss
from tfdml.models import DMLModel, EmbeddingHead, build_backbone

SIZE = 16


def tiny(loss=None) -> DMLModel:
    model = DMLModel(build_backbone("small_cnn", (SIZE, SIZE, 3), widths=(4, 8)), EmbeddingHead(8),
                     loss or MultiSimilarityLoss())
    model.build((None, SIZE, SIZE, 3))
    return model


@pytest.mark.parametrize("argument, hint", [("loss", "DMLModel(backbone, head, loss="),
                                            ("metrics", "RetrievalValidation(val_dataset)")])
def test_compile_refuses_what_it_would_ignore(argument, hint):
    with pytest.raises(ValueError, match=rf"does not take {argument}=.*{re.escape(hint)}"):
        tiny().compile(optimizer="adam", **{argument: "mse" if argument == "loss" else ["accuracy"]})


def test_evaluate_returns_retrieval_metrics():
    model = tiny()
    rng = np.random.default_rng(0)
    images, labels = rng.uniform(0, 255, (24, SIZE, SIZE, 3)).astype("float32"), np.repeat(np.arange(6), 4)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(10)
    expected = evaluate_retrieval(model.predict(images, verbose=0), labels)
    for metrics in (model.evaluate(dataset), model.evaluate(images, labels)):
        assert set(metrics) == set(expected) and "map@r" in metrics
        for name, value in expected.items():
            assert metrics[name] == pytest.approx(value, abs=1e-6), name
    with pytest.raises(ValueError, match="needs labels"):
        model.evaluate(images)


def test_a_first_batch_without_positive_pairs_warns_once_naming_the_sampler():
    images = np.random.default_rng(0).uniform(0, 255, (16, SIZE, SIZE, 3)).astype("float32")
    shuffled = tf.data.Dataset.from_tensor_slices((images, np.arange(16))).batch(8)  # every label once
    model = tiny()
    model.compile(optimizer="adam")
    with pytest.warns(UserWarning, match="no two images of the same class.*MPerClassSampler") as record:
        model.fit(shuffled, epochs=1, verbose=0)
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        model.fit(shuffled, epochs=1, verbose=0)
    assert len([w for w in record if "MPerClassSampler" in str(w.message)]) == 1
    assert not [w for w in again if "MPerClassSampler" in str(w.message)]
    paired = tf.data.Dataset.from_tensor_slices((images, np.repeat(np.arange(8), 2))).batch(8)
    for model_ in (tiny(), tiny(ProxyAnchorLoss(num_classes=16))):  # positives present; proxies need none
        model_.compile(optimizer="adam")
        with warnings.catch_warnings(record=True) as quiet:
            warnings.simplefilter("always")
            model_.fit(paired if model_.metric_loss.__class__ is MultiSimilarityLoss else shuffled, epochs=1,
                       verbose=0)
        assert not [w for w in quiet if "MPerClassSampler" in str(w.message)]


def test_predict_composites_rgba_and_grey_on_white_and_names_other_shapes():
    model = tiny()
    rgba = np.random.default_rng(1).integers(0, 256, (3, SIZE, SIZE, 4)).astype(np.uint8)
    alpha = rgba[..., 3:] / 255.0
    on_white = (rgba[..., :3] * alpha + 255.0 * (1 - alpha)).astype("float32")
    np.testing.assert_allclose(model.predict(rgba, verbose=0), model.predict(on_white, verbose=0), atol=1e-4)
    grey = rgba[..., :1]
    np.testing.assert_allclose(model.predict(grey, verbose=0),
                               model.predict(np.repeat(grey, 3, -1).astype("float32"), verbose=0), atol=1e-4)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError),
                       match=r"1 \(grey\), 2 \(grey\+alpha\), 3 \(RGB\) or 4 \(RGBA\).*5"):
        model.predict(np.zeros((2, SIZE, SIZE, 5), np.float32), verbose=0)
    with pytest.raises(ValueError, match=r"got shape \(2, 16, 16, 5\)"):
        tiny().predict(np.zeros((2, SIZE, SIZE, 5), np.float32), verbose=0)  # a fresh trace: static check
