"""ProxyBank: the one proxy layer of proxy losses and CCP, its layout, initialiser and file layout."""

import keras
import numpy as np
import pytest

from tfdml.ccp import CCPLoss
from tfdml.losses import ContrastiveLoss, ProxyAnchorLoss, ProxyBank, SoftTripleLoss


def test_layout_helpers_agree_with_each_other():
    bank = ProxyBank(num_classes=3, proxies_per_class=2)
    bank.build((None, 4))
    per_class = np.arange(24, dtype="float32").reshape(3, 2, 4)
    bank.reseed(per_class)
    rows = bank.proxies.numpy()
    np.testing.assert_array_equal(np.asarray(bank.per_class()), per_class)
    for row, label in zip(rows, np.asarray(bank.labels())):  # each row is one of its class's proxies
        assert any((row == p).all() for p in per_class[label])
    scores = rows[:, 0][None]  # [1, K*C]: a score per proxy
    np.testing.assert_array_equal(np.asarray(bank.class_columns(scores))[0], per_class[:, :, 0])
    bank.reseed(rows[::-1].copy())  # [K*C, D] rows are taken as they are
    np.testing.assert_array_equal(bank.proxies.numpy(), rows[::-1])


def test_every_proxy_loss_and_ccp_use_a_bank_with_the_given_initializer():
    for loss in (ProxyAnchorLoss(3, proxy_initializer="zeros"), SoftTripleLoss(3, 2, proxy_initializer="zeros"),
                 CCPLoss(ContrastiveLoss(), num_classes=3, proxies_per_class=2, proxy_initializer="zeros")):
        loss.build((None, 4))
        assert isinstance(loss.bank, ProxyBank) and loss.proxies is loss.bank.proxies
        assert not loss.proxies.numpy().any()
        clone = type(loss).from_config(loss.get_config())
        assert isinstance(clone.bank.proxy_initializer, keras.initializers.Zeros)
    default = ProxyAnchorLoss(3)
    assert isinstance(default.bank.proxy_initializer, keras.initializers.HeUniform)  # what proxy losses always used
    with pytest.raises(ValueError, match="must be >= 1"):
        ProxyBank(0)


def test_the_loss_saves_the_proxies_as_its_own_first_weight():
    # The layout of files written before the bank existed: they load unchanged.
    loss = CCPLoss(ContrastiveLoss(), num_classes=3, proxies_per_class=2)
    loss.build((None, 4))
    store = {}
    loss.save_own_variables(store)
    assert sorted(store) == ["0", "1"] and store["0"] is loss.proxies and store["1"] is loss.proxy_term_on
    other = CCPLoss(ContrastiveLoss(), num_classes=3, proxies_per_class=2)
    other.build((None, 4))
    other.load_own_variables({"0": np.ones((6, 4), "float32"), "1": np.float32(0.0)})
    assert other.proxies.numpy().all() and float(other.proxy_term_on.numpy()) == 0.0
    bank_store = {}
    loss.bank.save_own_variables(bank_store)
    assert bank_store == {}  # its owner wrote them
