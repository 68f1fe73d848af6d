"""The CCP objective (Gurbuz et al., "Deep metric learning with chance constraints"):

    L = w_pair * l(batch vs batch) + w_proxy * l(batch vs K proxies per class) + (lambda / 2) ||theta - theta*||^2

`CCPLoss` is the first two terms around any pair loss of the library that accepts references (C1, C2,
MS, triplet, circle), a `LossWrapper` whose inner loss is that pair loss, with embeddings and proxies
projected onto the unit ball. `ProximalTerm` is the third, over the network's
weights only (the model's `backbone` and `head` parameter groups, never the proxies); its layer also
carries the round bookkeeping (`tfdml.ccp.state.RoundState`) as non-trainable weights, so a
checkpoint resumes a run in the same round with the same round best. `tfdml.ccp.CCP` builds both.

Example:
    >>> from tfdml.losses import ContrastiveLoss
    >>> loss = CCPLoss(ContrastiveLoss(), num_classes=100, proxies_per_class=8)
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from tfdml.losses.base import LossWrapper, MetricLoss
from tfdml.losses.core import References, unit_ball
from tfdml.losses.proxies import DEFAULT_INITIALIZER, HasProxyBank
from tfdml.ccp.state import RoundState
from tfdml.mixing.metrix import mixed_pair_loss, mixed_proxy_loss


@keras.saving.register_keras_serializable(package="tfdml")
class CCPLoss(HasProxyBank, LossWrapper):
    """`w_pair * inner(batch, batch) + w_proxy * inner(batch, proxies)` on unit-ball projections.

    Proxies (`num_classes * proxies_per_class` of them) are this layer's `ProxyBank`, in the model's
    `loss` parameter group. CCP's defaults: w_pair 0.1,
    w_proxy 1.0; K = 8 (CUB, Cars196) or 4 (SOP, In-Shop). The non-trainable `proxy_term_on` (1 by
    default) switches the proxy term off during a warm-up (`CCPRounds(warmup_epochs=...)`). The
    training step logs the weighted proxy term as `loss_proxy`.
    """

    what = "CCP"
    # The proxies are its own; it takes no outside references, and its proxies supply positives.
    overrides = {"has_proxies": True, "accepts_references": False, "needs_batch_positives": False}
    mixes_itself = True
    part_names = ("proxy",)

    def __init__(self, loss: MetricLoss | dict | str, num_classes: int, proxies_per_class: int = 8,
                 w_pair: float = 0.1, w_proxy: float = 1.0, proxy_initializer: Any = DEFAULT_INITIALIZER,
                 **kwargs: Any) -> None:
        super().__init__(loss, **kwargs)
        self.own_bank(num_classes, proxies_per_class, proxy_initializer)
        self.w_pair, self.w_proxy = float(w_pair), float(w_proxy)

    def build(self, input_shape: tuple) -> None:
        self.bank.build(input_shape)
        self.proxy_term_on = self.add_weight(shape=(), initializer="ones", name="proxy_term_on", trainable=False,
                                             aggregation="only_first_replica")
        self.built = True

    def proxy_labels(self) -> Any:
        return self.bank.labels()

    def with_parts(self, embeddings: Any, labels: Any, training: bool | None = None) -> tuple[Any, dict[str, Any]]:
        pair, proxy = self._pair_and_proxy(*self.checked(embeddings, labels))
        return pair + proxy, {"proxy": proxy}

    def _compute(self, embeddings: Any, labels: Any, references: References | None) -> Any:
        pair, proxy = self._pair_and_proxy(embeddings, labels)
        return pair + proxy

    def _pair_and_proxy(self, embeddings: Any, labels: Any) -> tuple[Any, Any]:
        """The weighted pair term and the weighted (and switchable) proxy term."""
        embeddings = unit_ball(embeddings)
        proxies = self.bank.references(unit_ball(self.proxies))
        return (self.w_pair * self.inner.compute(embeddings, labels),
                self.w_proxy * self.proxy_term_on * self.inner.compute(embeddings, labels, proxies))

    def mixed(self, embeddings: Any, labels: Any, mixtures: Any, first: Any, second: Any, lam: Any,
              kinds: Sequence[str], valid: Any = None) -> Any:
        """Metrix under CCP: this objective with the mixtures under soft targets, on unit-ball projections,
        `w_pair * (batch vs mixtures) + w_proxy * (mixtures vs proxies)` (see `tfdml.mixing.metrix`)."""
        embeddings, mixtures = unit_ball(ops.cast(embeddings, "float32")), unit_ball(ops.cast(mixtures, "float32"))
        pair = mixed_pair_loss(self.inner, embeddings, labels, mixtures, first, second, lam, kinds, valid)
        proxy = mixed_proxy_loss(self.inner, mixtures, unit_ball(self.proxies), self.proxy_labels(), labels, first,
                                 second, lam, kinds, valid)
        return self.w_pair * pair + self.w_proxy * self.proxy_term_on * proxy

    def get_config(self) -> dict:
        return {**super().get_config(), **self.bank_config(), "w_pair": self.w_pair, "w_proxy": self.w_proxy}


@keras.saving.register_keras_serializable(package="tfdml")
class ProximalTerm(keras.layers.Layer):
    """`(lambda / 2) * sum ||theta - theta*||^2` over the network's weights; it keeps CCP's `rounds` too.

    `build_for(variables, proxies)` creates one `theta*` copy per network variable and `lam` (0 in
    the first round), then the `RoundState` (`rounds`): this layer's weights, so checkpoints hold them.

    Example:
        >>> import keras
        >>> term = ProximalTerm()
        >>> term.build_for([keras.Variable([1.0, 2.0])], proxies=keras.Variable([[0.5]]))
        >>> term.set_anchor([[1.0, 0.0]]); _ = term.lam.assign(2.0)
        >>> float(term.penalty([keras.Variable([1.0, 2.0])]))  # (2 / 2) * (0 + 4)
        4.0
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.anchors: list = []
        self.rounds: RoundState | None = None

    def build_for(self, variables: list, proxies: Any = None) -> None:
        state = {"trainable": False, "aggregation": "only_first_replica"}
        self.anchors = [self.add_weight(shape=v.shape, initializer="zeros", name=f"theta_star_{i}", **state)
                        for i, v in enumerate(variables)]
        self.lam = self.add_weight(shape=(), initializer="zeros", name="lambda", **state)
        self.rounds = RoundState.create(self.add_weight, variables, proxies)  # after lambda: the saved order
        self.built = True

    def penalty(self, variables: list) -> Any:
        """`(lam / 2) * sum ||v - v*||^2` over `variables` (0 in the first round, where lam = 0)."""
        total = ops.sum(ops.stack([ops.sum(ops.square(ops.cast(v, "float32") - a))
                                   for v, a in zip(variables, self.anchors)]))
        return 0.5 * self.lam * total

    def set_anchor(self, values: list) -> None:
        """`theta* <- values` (numpy arrays or variables, in the order of `build_for`)."""
        for anchor, value in zip(self.anchors, values):
            anchor.assign(value)
