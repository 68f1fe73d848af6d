"""Metrix (Venkataramanan et al., ICLR 2022): mixup for deep metric learning with interpolated targets.

Mix two batch examples `x_i, x_j` of different classes with `lambda ~ Beta(alpha, alpha)`, at the
input, the backbone's feature map, or the embedding. For an anchor `a` the mixture `v` has the soft
target `y_a(v) = lambda [class(x_i) = class(a)] + (1 - lambda) [class(x_j) = class(a)]`, and the loss's
own `from_pairs` (with its mining and reduction: `loss_from_pairs`) runs on `w_pos = y`, `w_neg = 1 - y`:
the mixed loss *is* the clean loss with soft targets, not a second implementation. Training minimises
`L_clean + weight * L_mix`. Losses declare whether they can be mixed (`supports(loss, "mixable")`):
the pair losses can, the softmax losses (normalised softmax, ProxyNCA++, ArcFace, SoftTriple) cannot.

Which (anchor, mixture) pairs count is chosen by kind:

- `pos_neg`: the anchor shares a class with one of the two mixed examples (target lambda or 1 - lambda);
- `anchor_neg`: the anchor is one of the two mixed examples itself;
- `neg_neg`: the anchor's class is neither (target 0: only the negative term).

Under CCP (`CCPLoss`) the mixed loss is CCP's objective with soft targets (`CCPLoss.mixed`):
`w_pair * (batch anchors vs mixtures) + w_proxy * (mixtures vs proxies)`, on unit-ball projections,
so mixtures meet the proxies, which carry most of CCP's loss, as clean examples do.

Example (a notebook):
    >>> import tfdml
    >>> model = tfdml.models.DMLModel(
    ...     backbone=tfdml.models.build_backbone("small_cnn", (32, 32, 3)),
    ...     head=tfdml.models.EmbeddingHead(128),
    ...     loss=tfdml.losses.MultiSimilarityLoss(mining_epsilon=None),
    ...     mixing=Metrix(level="feature", max_mixtures=64))
    >>> # model.compile("adam"); model.fit(train_ds, epochs=10)
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from tfdml.losses.base import LossWrapper, MetricLoss, PairLoss
from tfdml.losses.capabilities import require
from tfdml.losses.core import l2_normalize

LEVELS = ("input", "feature", "embedding")
KINDS = ("pos_neg", "anchor_neg", "neg_neg")


def sample_beta(shape: tuple, alpha: float, seed: Any, candidates: int = 128) -> Any:
    """`Beta(alpha, alpha)` samples from uniform draws only, so the step also compiles with XLA (which has
    no kernel for the gamma sampler `keras.random.beta` uses).

    An integer `alpha` is exact: the `alpha`-th smallest of `2 alpha - 1` uniforms. Otherwise Johnk's
    method, vectorised: of `candidates` pairs `(u^(1/alpha), v^(1/alpha))` the first with sum <= 1
    gives `x / (x + y)`. Its acceptance rate is `Gamma(alpha + 1)^2 / Gamma(2 alpha + 1)` (1/2 at
    alpha 1, 0.1 at 2.5), so a draw with no accepted candidate (about 1e-6 at alpha 2.5) takes 0.5.
    """
    if float(alpha).is_integer():
        n = int(2 * alpha - 1)
        u = keras.random.uniform((*shape, n), seed=seed)
        return -ops.top_k(-u, int(alpha))[0][..., -1]  # the alpha-th smallest
    u = keras.random.uniform((*shape, candidates, 2), seed=seed)
    xy = ops.power(ops.maximum(u, 1e-12), 1.0 / alpha)
    total = ops.sum(xy, axis=-1)
    accepted = total <= 1.0
    first = ops.argmax(ops.cast(accepted, "int32"), axis=-1)
    ratio = ops.take_along_axis(xy[..., 0] / ops.maximum(total, 1e-12), ops.expand_dims(first, -1), axis=-1)[..., 0]
    return ops.where(ops.any(accepted, axis=-1), ratio, 0.5)


def select_pairs(labels: Any, count: int, seed: Any) -> tuple[Any, Any, Any]:
    """`count` random pairs `(first, second)` of batch indices whose classes differ, and a validity mask.

    `first` is uniform over the batch, `second` uniform over the examples of another class than
    `first`'s; a pair is invalid only when the batch holds a single class.
    """
    n = ops.shape(labels)[0]
    first = keras.random.randint((count,), 0, n, seed=seed, dtype="int32")
    other_class = ops.not_equal(ops.expand_dims(ops.take(labels, first), 1), ops.expand_dims(labels, 0))
    scores = ops.where(other_class, keras.random.uniform((count, n), seed=seed), -1.0)
    second = ops.cast(ops.argmax(scores, axis=1), "int32")
    return first, second, ops.cast(ops.any(other_class, axis=1), "float32")


def soft_targets(anchor_labels: Any, anchor_index: Any, labels: Any, first: Any, second: Any, lam: Any,
                 kinds: Sequence[str] = KINDS) -> tuple[Any, Any]:
    """Pair weights `[A, M]` of anchors against mixtures: `(y * keep, (1 - y) * keep)`.

    `y = lam [class(a) = class(first)] + (1 - lam) [class(a) = class(second)]`; `keep` selects the
    pair kinds in `kinds`. `anchor_index` is each anchor's batch index (-1 for proxies).
    """
    a_labels = ops.expand_dims(ops.cast(anchor_labels, "int32"), 1)
    same_first = ops.equal(a_labels, ops.expand_dims(ops.take(labels, first), 0))
    same_second = ops.equal(a_labels, ops.expand_dims(ops.take(labels, second), 0))
    a_index = ops.expand_dims(ops.cast(anchor_index, "int32"), 1)
    is_part = ops.equal(a_index, ops.expand_dims(first, 0)) | ops.equal(a_index, ops.expand_dims(second, 0))
    masks = {
        "anchor_neg": is_part,
        "pos_neg": (same_first | same_second) & ~is_part,
        "neg_neg": ~(same_first | same_second),
    }
    keep = ops.zeros_like(ops.cast(is_part, "float32"))
    for kind in kinds:
        keep = keep + ops.cast(masks[kind], "float32")  # the kinds are disjoint
    y = lam * ops.cast(same_first, "float32") + (1.0 - lam) * ops.cast(same_second, "float32")
    return y * keep, (1.0 - y) * keep


def mixed_proxy_loss(loss: PairLoss, mixtures: Any, proxies: Any, proxy_labels: Any, labels: Any, first: Any,
                     second: Any, lam: Any, kinds: Sequence[str] = KINDS, valid: Any = None) -> Any:
    """`mixtures [M, D]` as anchors against `proxies [P, D]` with soft targets: a proxy term (batch vs
    proxies, as in CCP) with the mixtures in the batch's place. A proxy is never part of a mixture,
    so its pairs are `pos_neg` (its class is one of the two mixed) or `neg_neg`.

    Example:
        >>> import numpy as np
        >>> from tfdml.losses import ContrastiveLoss
        >>> one = np.array([0], "int32")
        >>> float(mixed_proxy_loss(ContrastiveLoss(), np.eye(2, dtype="float32")[:1], np.eye(2, dtype="float32"),
        ...                        np.array([0, 1]), np.array([0, 1]), one, one + 1, np.array([1.0])))
        0.0
    """
    proxy_index = -ops.ones_like(ops.cast(proxy_labels, "int32"))
    w_pos, w_neg = soft_targets(proxy_labels, proxy_index, ops.cast(labels, "int32"), first, second, lam, kinds)
    w_pos, w_neg = ops.transpose(w_pos), ops.transpose(w_neg)  # [M, P]: the mixtures are the rows
    if valid is not None:
        w_pos, w_neg = w_pos * valid[:, None], w_neg * valid[:, None]
    values = loss.distance(ops.cast(mixtures, "float32"), ops.cast(proxies, "float32"))
    return loss.loss_from_pairs(values, w_pos, w_neg)


def mixed_pair_loss(loss: PairLoss, embeddings: Any, labels: Any, mixtures: Any, first: Any, second: Any,
                    lam: Any, kinds: Sequence[str] = KINDS, valid: Any = None) -> Any:
    """The loss's anchors against `mixtures [M, D]` with soft targets (see `soft_targets`).

    `valid [M]` (0/1) drops mixtures, e.g. those of a batch holding a single class.
    """
    labels = ops.cast(labels, "int32")
    anchors, anchor_labels, anchor_index = loss.anchors(ops.cast(embeddings, "float32"), labels)
    values = loss.distance(anchors, ops.cast(mixtures, "float32"))
    w_pos, w_neg = soft_targets(anchor_labels, anchor_index, labels, first, second, lam, kinds)
    if valid is not None:
        w_pos, w_neg = w_pos * valid, w_neg * valid
    return loss.loss_from_pairs(values, w_pos, w_neg)


@keras.saving.register_keras_serializable(package="tfdml")
class Metrix(keras.layers.Layer):
    """The mixing step: pick pairs, mix at `level`, and return the mixed loss (before `weight`).

    Args:
        level: `input` (images; a second forward pass), `feature` (the backbone's last feature map,
            before pooling; the head runs on the mixture) or `embedding` (renormalised embeddings).
        alpha: `lambda ~ Beta(alpha, alpha)`; the paper uses 2.
        lambda_per: one `lambda` per `batch` (the paper) or per `pair`.
        kinds: which (anchor, mixture) pairs count: any of `pos_neg`, `anchor_neg`, `neg_neg`.
        max_mixtures: mixtures per batch (a bound the public code lacked: it mixed every pair).
        weight: `w` in `L_clean + w * L_mix`; the paper uses 0.4.
        seed: seeds the pair and lambda draws (the state is saved with the model, so resumes repeat).
    """

    def __init__(self, level: str = "feature", alpha: float = 2.0, lambda_per: str = "batch",
                 kinds: Sequence[str] = KINDS, max_mixtures: int = 64, weight: float = 0.4, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if level not in LEVELS:
            raise ValueError(f"unknown mixing level {level!r}; choose one of {', '.join(LEVELS)}")
        if lambda_per not in ("batch", "pair"):
            raise ValueError(f"lambda_per must be 'batch' or 'pair'; got {lambda_per!r}")
        unknown = set(kinds) - set(KINDS)
        if unknown or not kinds:
            raise ValueError(f"mixing kinds {sorted(unknown) or '[]'} are not valid; choose from {', '.join(KINDS)}")
        if alpha <= 0 or max_mixtures < 1 or weight < 0:
            raise ValueError(f"need alpha > 0 ({alpha}), max_mixtures >= 1 ({max_mixtures}) and weight >= 0 ({weight})")
        self.level, self.alpha, self.lambda_per = level, float(alpha), lambda_per
        self.kinds, self.max_mixtures, self.weight, self.seed = tuple(kinds), int(max_mixtures), float(weight), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True

    def draw(self, labels: Any) -> tuple[Any, Any, Any, Any]:
        """Pairs, their lambdas and validity: `(first [M], second [M], lam [M], valid [M])`."""
        first, second, valid = select_pairs(labels, self.max_mixtures, self.seed_generator)
        shape = (self.max_mixtures,) if self.lambda_per == "pair" else (1,)
        lam = sample_beta(shape, self.alpha, self.seed_generator)
        return first, second, ops.broadcast_to(lam, (self.max_mixtures,)), valid

    def mix(self, model: Any, images: Any, features: Any, embeddings: Any, first: Any, second: Any, lam: Any,
            training: bool = True) -> Any:
        """Embeddings `[M, D]` of the mixtures at this level."""
        def interpolate(x: Any) -> Any:
            weights = ops.reshape(ops.cast(lam, x.dtype), (-1,) + (1,) * (len(x.shape) - 1))
            return weights * ops.take(x, first, axis=0) + (1.0 - weights) * ops.take(x, second, axis=0)

        if self.level == "embedding":  # renormalised as the head normalises (L2, or CCP's unit ball)
            project = getattr(getattr(model, "head", None), "project", l2_normalize)  # no EmbeddingHead: L2
            return project(interpolate(ops.cast(embeddings, "float32")))
        if self.level == "feature":
            return model.embed(interpolate(features), training=training)
        return model(interpolate(ops.cast(images, "float32")), training=training)

    def mixed_loss(self, model: Any, loss: MetricLoss, images: Any, features: Any, embeddings: Any,
                   labels: Any, training: bool = True) -> Any:
        """`L_mix` for one batch (multiply by `weight` to add it to the clean loss).

        A wrapper with its own mixed objective (CCP's) computes it; other wrappers (a cross-batch
        memory) are mixed as their inner loss.
        """
        require(loss, "mixable", "mixing (Metrix) supports {supported}; {got} cannot be mixed")
        target = loss
        while isinstance(target, LossWrapper) and not target.mixes_itself:
            target = target.inner
        labels = ops.cast(labels, "int32")
        first, second, lam, valid = self.draw(labels)
        mixtures = self.mix(model, images, features, embeddings, first, second, lam, training)
        if isinstance(target, LossWrapper):
            return target.mixed(embeddings, labels, mixtures, first, second, lam, self.kinds, valid)
        return mixed_pair_loss(target, embeddings, labels, mixtures, first, second, lam, self.kinds, valid)

    def get_config(self) -> dict:
        return {**super().get_config(), "level": self.level, "alpha": self.alpha, "lambda_per": self.lambda_per,
                "kinds": list(self.kinds), "max_mixtures": self.max_mixtures, "weight": self.weight,
                "seed": self.seed}
