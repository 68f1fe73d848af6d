"""Proxy-based losses: learnable class representatives that live with the loss as trainable weights.

- `proxy_anchor`: each proxy is an anchor over the batch (a pair loss with the roles swapped);
- `normalized_softmax`, `proxy_nca_pp`, `arcface`: softmax cross-entropy of each embedding over all
  proxies, differing in the logits (cosine / temperature, negative squared distance / temperature,
  cosine with an additive angular margin);
- `soft_triple`: K centres per class pooled into one class similarity, then a margin softmax.

All take `num_classes`, `proxies_per_class` and `proxy_initializer`; their proxies are a `ProxyBank`
(`tfdml.losses.proxies`), which says which class each proxy belongs to.
"""

from __future__ import annotations

import math
from typing import Any

from keras import ops

from tfdml.losses.base import MetricLoss, PairLoss
from tfdml.losses.capabilities import Capabilities
from tfdml.losses.proxies import DEFAULT_INITIALIZER, HasProxyBank
from tfdml.losses.core import (Distance, References, get_distance, l2_normalize, pair_weights, weighted_log1p_sum_exp,
                               weighted_logsumexp)
from tfdml.losses.reducers import Terms
from tfdml.losses.registry import register_loss


class ProxyLoss(HasProxyBank):
    """Mixin: `proxies_per_class` trainable proxies per class, in a `ProxyBank` of the loss layer.

    Proxies are a weight of this layer, so they belong to the model's `loss` parameter group, are
    saved in checkpoints and can learn faster (`lr_multipliers={"loss": 100.0}`). `proxy_initializer`
    is any Keras initializer (default He uniform). Labels must be dense, `0..num_classes-1` (the
    training pipeline yields them so); others are an error. Mix it in before the loss base class:
    `class MyLoss(ProxyLoss, PairLoss)` or `(ProxyLoss, MetricLoss)`.
    """

    def __init__(self, num_classes: int, proxies_per_class: int = 1, proxy_initializer: Any = DEFAULT_INITIALIZER,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.own_bank(num_classes, proxies_per_class, proxy_initializer)
        self.built = False

    def build(self, input_shape: tuple) -> None:
        self.bank.build(input_shape)
        self.built = True

    def get_config(self) -> dict:
        return {**super().get_config(), **self.bank_config()}


@register_loss("proxy_anchor")
class ProxyAnchorLoss(ProxyLoss, PairLoss):
    """Proxy Anchor loss (Kim et al., CVPR 2020): each proxy is an anchor over the batch.

    `(1/|P+|) sum_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s(x,p) - delta)))
     + (1/|P|) sum_{p in P} log(1 + sum_{x in X_p-} exp(alpha (s(x,p) + delta)))`,
    with `P+` the proxies that have a positive in the batch (the default `reduction="mean_nonzero"`
    counts those in the positive term, and every proxy in the negative term). Paper defaults:
    alpha 32, delta 0.1, proxies learning 100x faster than the backbone.

    Example:
        >>> import numpy as np
        >>> loss = ProxyAnchorLoss(num_classes=3)
        >>> float(loss(np.eye(4, 8, dtype="float32"), np.array([0, 1, 2, 0]))) > 0
        True
    """

    capabilities = Capabilities(pair_based=True, has_proxies=True, mixable=True)

    def __init__(self, num_classes: int, proxies_per_class: int = 1, alpha: float = 32.0, delta: float = 0.1,
                 distance: str = "cosine", reduction: str = "mean_nonzero", mining: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(num_classes, proxies_per_class, distance=distance, reduction=reduction, mining=mining,
                         **kwargs)
        self.alpha, self.delta = float(alpha), float(delta)

    def _compute(self, embeddings: Any, labels: Any, references: References | None) -> Any:
        # Proxies are the anchors and the batch is their reference set: the transpose of the usual pairs.
        proxies = self.proxy_references()
        values = ops.transpose(self.distance(embeddings, proxies.embeddings))
        w_pos, w_neg = pair_weights(proxies.labels, References(embeddings, labels))
        return self.loss_from_pairs(values, w_pos, w_neg)

    def anchors(self, embeddings: Any, labels: Any) -> tuple[Any, Any, Any]:
        proxies = self.proxy_references()
        return proxies.embeddings, proxies.labels, -ops.ones_like(proxies.labels)

    def from_pairs(self, values: Any, w_pos: Any, w_neg: Any) -> tuple[Terms, Terms]:
        pos = weighted_log1p_sum_exp(-self.alpha * (values - self.delta), w_pos)
        neg = weighted_log1p_sum_exp(self.alpha * (values + self.delta), w_neg)
        with_positives = ops.cast(ops.sum(w_pos, axis=1) > 0, "float32")
        return Terms(pos, with_positives), Terms(neg, ops.ones_like(neg))  # the paper's 1/|P+| and 1/|P|

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha, "delta": self.delta}


class SoftmaxLoss(ProxyLoss, MetricLoss):
    """A softmax over classes represented by proxies: not a pair loss (no `reduction=`, `mining=`),
    and Metrix cannot mix it (its targets are classes, not pairs)."""

    capabilities = Capabilities(has_proxies=True)

    def __init__(self, num_classes: int, proxies_per_class: int = 1, distance: str = "cosine", **kwargs: Any) -> None:
        super().__init__(num_classes, proxies_per_class, **kwargs)
        self.distance: Distance = get_distance(distance)

    def get_config(self) -> dict:
        return {**super().get_config(), "distance": self.distance.name}


class ProxySoftmaxLoss(SoftmaxLoss):
    """Softmax cross-entropy of each embedding over all proxies, L2-normalised on both sides.

    Per anchor: `-log( sum_{p of its class} exp(z_p) / sum_p exp(z_p) )` with logits
    `z = closeness / temperature`; with one proxy per class this is the usual cross-entropy.
    Subclasses choose the distance and may reshape the logits (`logits`).
    """

    def __init__(self, num_classes: int, proxies_per_class: int = 1, temperature: float = 0.05,
                 distance: str = "cosine", **kwargs: Any) -> None:
        super().__init__(num_classes, proxies_per_class, distance=distance, **kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        self.temperature = float(temperature)

    def _compute(self, embeddings: Any, labels: Any, references: References | None) -> Any:
        proxies = self.proxy_references()
        values = self.distance(l2_normalize(embeddings), l2_normalize(proxies.embeddings))
        return self.cross_entropy(values, *pair_weights(labels, proxies))

    def logits(self, values: Any, w_pos: Any) -> Any:
        return self.distance.closeness(values) / self.temperature

    def cross_entropy(self, values: Any, w_pos: Any, w_neg: Any) -> Any:
        """Mean over anchors of `-log(sum_own exp(z) / sum_all exp(z))`, `w_pos` marking each anchor's own proxies."""
        logits = self.logits(values, w_pos)
        return ops.mean(weighted_logsumexp(logits, w_pos + w_neg) - weighted_logsumexp(logits, w_pos))

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}


@register_loss("normalized_softmax")
class NormalizedSoftmaxLoss(ProxySoftmaxLoss):
    """Normalised softmax (Zhai & Wu, BMVC 2019): cosine logits over temperature 0.05.

    Example:
        >>> import numpy as np
        >>> loss = NormalizedSoftmaxLoss(num_classes=3)
        >>> float(loss(np.eye(3, 4, dtype="float32"), np.array([0, 1, 2]))) > 0
        True
    """

    def __init__(self, num_classes: int, proxies_per_class: int = 1, temperature: float = 0.05,
                 **kwargs: Any) -> None:
        kwargs.setdefault("distance", "cosine")
        super().__init__(num_classes, proxies_per_class, temperature, **kwargs)


@register_loss("proxy_nca_pp")
class ProxyNCAPlusPlusLoss(ProxySoftmaxLoss):
    """ProxyNCA++ (Teh et al., ECCV 2020): logits `-||x - p||^2 / T` on unit vectors, `T = 0.11`.

    As `||x - p||^2 = 2 - 2 cos` on unit vectors, this is a normalised softmax at temperature `T / 2`;
    the paper's other ingredients (fast proxies, max pooling) are `lr_multipliers` and `model.pooling`.

    Example:
        >>> import numpy as np
        >>> loss = ProxyNCAPlusPlusLoss(num_classes=3)
        >>> float(loss(np.eye(3, 4, dtype="float32"), np.array([0, 1, 2]))) > 0
        True
    """

    def __init__(self, num_classes: int, proxies_per_class: int = 1, temperature: float = 0.11,
                 **kwargs: Any) -> None:
        kwargs.setdefault("distance", "squared_euclidean")
        super().__init__(num_classes, proxies_per_class, temperature, **kwargs)


@register_loss("arcface")
class ArcFaceLoss(ProxySoftmaxLoss):
    """ArcFace (Deng et al., CVPR 2019): `scale * cos(theta + margin)` for the own class, `scale * cos(theta)`
    for the others. Paper defaults: scale 64, margin 0.5 rad.

    Where `theta + margin` would pass pi, the logit continues as `cos(theta) - margin * sin(margin)` so it
    keeps decreasing with the angle (the paper's official implementation does the same).

    Example:
        >>> import numpy as np
        >>> loss = ArcFaceLoss(num_classes=3)
        >>> float(loss(np.eye(3, 4, dtype="float32"), np.array([0, 1, 2]))) > 0
        True
    """

    def __init__(self, num_classes: int, proxies_per_class: int = 1, scale: float = 64.0, margin: float = 0.5,
                 **kwargs: Any) -> None:
        kwargs.pop("temperature", None)  # derived from scale (present in configs saved by the base class)
        super().__init__(num_classes, proxies_per_class, temperature=1.0 / scale, distance="cosine",
                         **{k: v for k, v in kwargs.items() if k != "distance"})
        self.scale, self.margin = float(scale), float(margin)

    def logits(self, values: Any, w_pos: Any) -> Any:
        cos = ops.clip(values, -1.0, 1.0)
        sin = ops.sqrt(ops.maximum(1.0 - ops.square(cos), 1e-12))
        with_margin = cos * math.cos(self.margin) - sin * math.sin(self.margin)
        with_margin = ops.where(cos > math.cos(math.pi - self.margin), with_margin,
                                cos - self.margin * math.sin(self.margin))
        return self.scale * ops.where(w_pos > 0, with_margin, cos)

    def get_config(self) -> dict:
        config = {**super().get_config(), "scale": self.scale, "margin": self.margin}
        config.pop("temperature")
        config.pop("distance")
        return config


@register_loss("soft_triple")
class SoftTripleLoss(SoftmaxLoss):
    """SoftTriple (Qian et al., ICCV 2019): K centres per class pooled into a class similarity.

    `S_c(x) = sum_k softmax_k(s(x, w_c^k) / gamma) s(x, w_c^k)`, then
    `-log( exp(scale (S_y - margin)) / (exp(scale (S_y - margin)) + sum_{c != y} exp(scale S_c)) )`,
    plus `tau * sum_c sum_{t<s} ||w_c^t - w_c^s|| / (C K (K - 1))` on unit centres (it lets centres merge).
    Paper defaults: K 10, scale 20, gamma 0.1, tau 0.2, margin 0.01. The MLRC/CCP tuning is
    scale 78.02, gamma 58.95, tau 0.3754, margin 0.4307.

    Example:
        >>> import numpy as np
        >>> loss = SoftTripleLoss(num_classes=3, proxies_per_class=2)
        >>> float(loss(np.eye(3, 4, dtype="float32"), np.array([0, 1, 2]))) > 0
        True
    """

    def __init__(self, num_classes: int, proxies_per_class: int = 10, scale: float = 20.0, gamma: float = 0.1,
                 tau: float = 0.2, margin: float = 0.01, **kwargs: Any) -> None:
        kwargs.setdefault("distance", "cosine")
        super().__init__(num_classes, proxies_per_class, **kwargs)
        if not self.distance.is_similarity:
            raise ValueError("soft_triple needs a similarity (distance='cosine')")
        self.scale, self.gamma, self.tau, self.margin = float(scale), float(gamma), float(tau), float(margin)

    def _compute(self, embeddings: Any, labels: Any, references: References | None) -> Any:
        c = self.num_classes
        centres = l2_normalize(self.proxies)
        sims = self.bank.class_columns(self.distance(embeddings, centres))  # [B, C, K]
        class_sims = ops.sum(ops.softmax(sims / self.gamma, axis=2) * sims, axis=2)
        logits = self.scale * (class_sims - self.margin * ops.one_hot(labels, c))
        nll = ops.logsumexp(logits, axis=1) - ops.sum(logits * ops.one_hot(labels, c), axis=1)
        return ops.mean(nll) + self.tau * self.centre_spread(self.bank.per_class(centres))

    def centre_spread(self, per_class: Any) -> Any:
        """`sum_c sum_{t<s} ||w_c^t - w_c^s|| / (C K (K-1))` for unit centres `[C, K, D]`."""
        k = self.proxies_per_class
        if k == 1:
            return 0.0
        cos = ops.matmul(per_class, ops.transpose(per_class, (0, 2, 1)))
        dist = ops.sqrt(ops.maximum(2.0 - 2.0 * cos, 1e-12))
        upper = ops.triu(ops.ones((k, k)), 1)
        return ops.sum(dist * upper) / (self.num_classes * k * (k - 1))

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale, "gamma": self.gamma, "tau": self.tau,
                "margin": self.margin}
