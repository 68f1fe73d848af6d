"""Pair-based losses on the pair core: contrastive (C1, C2), multi-similarity and triplet (circle: `circle.py`).

None of them is an error on a batch without positive pairs, and none returns NaN there: the
positive terms are empty sums. Contrastive and multi-similarity then train on their negative terms
only; triplet has no triplet to form and returns 0 with zero gradient. The m-per-class sampler never
builds such a batch.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from tfdml.losses.base import PairLoss, register_loss
from tfdml.losses.mining import MultiSimilarityMiner
from tfdml.losses.reducers import Terms
from tfdml.losses.core import weighted_log1p_sum_exp


@register_loss("contrastive")
class ContrastiveLoss(PairLoss):
    """Contrastive loss with a positive and a negative margin (Hadsell et al. 2006; PML's form).

    With a distance `d`: positives cost `[d - pos_margin]_+`, negatives `[neg_margin - d]_+`.
    With a similarity `s`: positives cost `[pos_margin - s]_+`, negatives `[s - neg_margin]_+`.
    Each of the two terms is reduced separately (default: mean over its non-zero pair terms), then
    summed. The defaults are CCP's "C2" (Euclidean distance on unit vectors, `m_pos = 0`,
    `m_neg = 0.5`). "C1" (XBM's form, `sum_pos (1 - cos) + sum_neg [cos - m]_+` per anchor, averaged
    over anchors) is `ContrastiveLoss.c1()`, i.e. `distance="cosine", pos_margin=1.0,
    neg_margin=0.5, reduction="per_anchor"`.

    Example:
        >>> import numpy as np
        >>> loss = ContrastiveLoss()
        >>> emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], "float32")
        >>> float(loss(emb, np.array([0, 0, 1])))  # negatives sqrt(2) apart: margin met
        0.0
    """

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = 0.5, distance: str = "euclidean",
                 reduction: str = "mean_nonzero", mining: Any = None, **kwargs: Any) -> None:
        super().__init__(distance=distance, reduction=reduction, mining=mining, **kwargs)
        self.pos_margin, self.neg_margin = float(pos_margin), float(neg_margin)

    @classmethod
    def c1(cls, margin: float = 0.5, **kwargs: Any) -> "ContrastiveLoss":
        """CCP's C1 (the XBM paper's contrastive loss) with negative margin `margin`."""
        return cls(pos_margin=1.0, neg_margin=margin, distance="cosine", reduction="per_anchor", **kwargs)

    def from_pairs(self, values: Any, w_pos: Any, w_neg: Any) -> tuple[Terms, Terms]:
        closeness = self.distance.closeness(values)
        # In closeness space both margins read the same way: positives should be closer than
        # pos_margin allows, negatives farther than neg_margin.
        pos_limit = self.distance.closeness(self.pos_margin)
        neg_limit = self.distance.closeness(self.neg_margin)
        pos = w_pos * ops.relu(pos_limit - closeness)
        neg = w_neg * ops.relu(closeness - neg_limit)
        return Terms.of_pairs(pos), Terms.of_pairs(neg)  # reduced separately (PML's form)

    def get_config(self) -> dict:
        return {**super().get_config(), "pos_margin": self.pos_margin, "neg_margin": self.neg_margin}


@register_loss("multi_similarity")
class MultiSimilarityLoss(PairLoss):
    """Multi-similarity loss (Wang et al., CVPR 2019), with MS pair mining by default.

    Per anchor `a` with similarities `s`:
    `(1/alpha) log(1 + sum_pos exp(-alpha (s - base))) + (1/beta) log(1 + sum_neg exp(beta (s - base)))`,
    averaged over anchors (`reduction="mean"`). `mining_epsilon` is the epsilon of MS mining
    (`mining="ms"`, `tfdml.losses.mining.MultiSimilarityMiner`): negatives with
    `s_an > min_p s_ap - eps` and positives with `s_ap < max_n s_an + eps` are kept; None turns
    mining off, as does `mining=None`; another `mining` replaces it. Paper defaults: alpha 2,
    beta 50, base 0.5, epsilon 0.1.

    Example:
        >>> import numpy as np
        >>> loss = MultiSimilarityLoss(mining_epsilon=None)
        >>> emb = np.eye(4, dtype="float32")
        >>> round(float(loss(emb, np.array([0, 0, 1, 1]))), 4)  # all similarities are 0
        0.6566
    """

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5,
                 mining_epsilon: float | None = 0.1, distance: str = "cosine", reduction: str = "mean",
                 mining: Any = "ms", **kwargs: Any) -> None:
        if mining == "ms":  # the name alone: MS mining with this loss's epsilon (None: off)
            mining = None if mining_epsilon is None else MultiSimilarityMiner(mining_epsilon)
        super().__init__(distance=distance, reduction=reduction, mining=mining, **kwargs)
        if not self.distance.is_similarity:
            raise ValueError("multi_similarity needs a similarity (distance='cosine')")
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"multi_similarity needs alpha > 0 and beta > 0 (the paper: 2 and 50); got {alpha}, {beta}")
        self.alpha, self.beta, self.base = float(alpha), float(beta), float(base)

    @property
    def mining_epsilon(self) -> float | None:
        """The epsilon of MS mining, None when the loss does not use it."""
        return self.mining.epsilon if isinstance(self.mining, MultiSimilarityMiner) else None

    def from_pairs(self, values: Any, w_pos: Any, w_neg: Any) -> Terms:
        pos = weighted_log1p_sum_exp(-self.alpha * (values - self.base), w_pos) / self.alpha
        neg = weighted_log1p_sum_exp(self.beta * (values - self.base), w_neg) / self.beta
        return Terms(pos + neg)

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta, "base": self.base,
                "mining_epsilon": self.mining_epsilon}


TRIPLETS = ("all", "semihard", "hard")


@register_loss("triplet")
class TripletLoss(PairLoss):
    """Triplet margin loss `[d(a, p) - d(a, n) + margin]_+` (Weinberger & Saul 2009; Schroff et al. 2015).

    With a similarity the same reads `[s(a, n) - s(a, p) + margin]_+`. Triplets come from every
    anchor, positive reference and negative reference (`[B, M, M]` terms), selected by `triplets`:

    - `all`: every triplet (CCP's setting), reduced by `reduction` (default: mean over non-zero terms);
    - `semihard`: triplets whose negative is farther than the positive but within the margin,
      `d(a, p) < d(a, n) < d(a, p) + margin` (FaceNet);
    - `hard`: per anchor, its farthest positive and closest negative ("batch hard", Hermans et al.
      2017), one term per anchor, needing no `[B, M, M]` tensor.

    `mining` reweights the pairs first, as for any pair loss (`triplets="all", mining="batch_hard"` is
    `hard` again). The three selections are also accepted as `mining` (`mining: semihard`), the name
    they had before pair mining was a function of its own.

    CCP's margins: 0.0961 CUB, 0.1190 Cars196, 0.0451 SOP and In-Shop (Euclidean on unit vectors).

    Example:
        >>> import numpy as np
        >>> emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], "float32")
        >>> float(TripletLoss(margin=0.1)(emb, np.array([0, 0, 1])))  # d_ap = 0 < d_an - margin
        0.0
    """

    def __init__(self, margin: float = 0.1, mining: Any = None, distance: str = "euclidean",
                 reduction: str = "mean_nonzero", triplets: str = "all", **kwargs: Any) -> None:
        if isinstance(mining, str) and mining in TRIPLETS:  # the selection under its former name
            if triplets != "all" and triplets != mining:
                raise ValueError(f"triplets={triplets!r} and mining={mining!r} select triplets twice; "
                                 "give triplets only")
            triplets, mining = mining, None
        if triplets not in TRIPLETS:
            raise ValueError(f"unknown triplet selection {triplets!r}; choose one of {', '.join(TRIPLETS)}")
        super().__init__(distance=distance, reduction=reduction, mining=mining, **kwargs)
        self.margin, self.triplets = float(margin), triplets

    def from_pairs(self, values: Any, w_pos: Any, w_neg: Any) -> Terms:
        closeness = self.distance.closeness(values)
        if self.triplets == "hard":
            big = 1e4  # outside any closeness range, so masked entries never win
            hardest_pos = ops.min(ops.where(w_pos > 0, closeness, big), axis=1)
            hardest_neg = ops.max(ops.where(w_neg > 0, closeness, -big), axis=1)
            valid = ops.cast(ops.any(w_pos > 0, axis=1) & ops.any(w_neg > 0, axis=1), closeness.dtype)
            return Terms(valid * ops.relu(hardest_neg - hardest_pos + self.margin))
        # Per (anchor, positive) the terms are w_n [c_an - t]_+ with t = c_ap - margin, so sums over
        # the negatives ranked above t give them all: O(B M log M) time and O(B M) memory, no [B, M, M].
        low = closeness - self.margin
        b, m = ops.shape(closeness)[0], ops.shape(closeness)[1]
        if self.triplets == "semihard":  # the negatives in (c_ap - margin, c_ap): above `low`, minus above c_ap
            both = _negatives_above(closeness, w_neg, ops.concatenate([low, closeness], axis=1))
            sums, weights, counts = (x[:, :m] - x[:, m:] for x in both)
        else:
            sums, weights, counts = _negatives_above(closeness, w_neg, low)
        per_anchor = ops.sum(w_pos * (sums - low * weights), axis=1)
        active = ops.sum(ops.cast(w_pos > 0, counts.dtype) * counts, axis=1)
        return Terms(per_anchor, active, b * m * m)

    def get_config(self) -> dict:
        return {**super().get_config(), "margin": self.margin, "triplets": self.triplets}


def _negatives_above(closeness: Any, w_neg: Any, thresholds: Any) -> tuple[Any, Any, Any]:
    """For each anchor row and threshold `t`: over the negatives `n` with `closeness[n] >= t`, the sums of
    `w_neg * closeness`, of `w_neg`, and the count of those with `w_neg > 0`; each `[B, T]`.

    One sort per row of closenesses and thresholds together; exclusive running sums in that order
    give, at each threshold, the sums over everything ranked above it. A negative equal to a
    threshold ranks above it: the sort (TensorFlow's top-k) keeps equal values in index order, and
    the negatives come first. Semi-hard mining needs that: a soft-target reference can be both a
    positive and a negative, and must not fall inside its own window `(c_ap - margin, c_ap)`.
    """
    m = ops.shape(closeness)[1]
    values = ops.concatenate([closeness, thresholds], axis=1)
    weights = ops.concatenate([w_neg, ops.zeros_like(thresholds)], axis=1)  # thresholds add nothing
    order = ops.argsort(-values, axis=1)
    inverse = ops.argsort(order, axis=1)[:, m:]  # where each threshold landed

    def above(x: Any) -> Any:
        ranked = ops.take_along_axis(x, order, axis=1)
        return ops.take_along_axis(ops.cumsum(ranked, axis=1) - ranked, inverse, axis=1)

    active = ops.cast(weights > 0, values.dtype)
    return above(weights * values), above(weights), above(active)
