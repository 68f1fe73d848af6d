"""Circle loss (Sun et al., CVPR 2020) on the pair core: a new pair loss in one file.

Per anchor with cosine similarities `s` to its positives and negatives:
`softplus( logsumexp_p(-gamma a_p (s_p - delta_p)) + logsumexp_n(gamma a_n (s_n - delta_n)) )`,
with `a_p = [1 + margin - s_p]_+`, `a_n = [s_n + margin]_+`, `delta_p = 1 - margin`, `delta_n = margin`.
It is `keras.losses.Circle`'s definition (gamma 80, margin 0.4, similarities clipped at 1, anchors
without a positive or a negative cost 0), value and gradient, and its reduction: the mean over
anchors whose term is non-zero (`reduction="mean_nonzero"`). As in Keras the weights `a_p` and `a_n`
are differentiated through (the paper's code treats them as constants). With Metrix's soft targets
the sums are weighted by `w_pos` and `w_neg`.

Example:
    >>> import numpy as np
    >>> emb = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]], "float32")
    >>> float(CircleLoss()(emb, np.array([0, 0, 1, 1]))) > 0
    True
"""

from __future__ import annotations

from typing import Any

from keras import ops

from tfdml.losses.base import PairLoss
from tfdml.losses.core import weighted_logsumexp
from tfdml.losses.reducers import Terms
from tfdml.losses.registry import register_loss


@register_loss("circle")
class CircleLoss(PairLoss):
    """Circle loss: pairs weighted by how far each is from its optimum (see the module docstring)."""

    def __init__(self, gamma: float = 80.0, margin: float = 0.4, distance: str = "cosine",
                 reduction: str = "mean_nonzero", mining: Any = None, **kwargs: Any) -> None:
        super().__init__(distance=distance, reduction=reduction, mining=mining, **kwargs)
        if not self.distance.is_similarity:
            raise ValueError("circle needs a similarity (distance='cosine')")
        if gamma <= 0:
            raise ValueError(f"circle needs gamma > 0 (Keras and the paper: 80 or 256); got {gamma}")
        self.gamma, self.margin = float(gamma), float(margin)

    def from_pairs(self, values: Any, w_pos: Any, w_neg: Any) -> Terms:
        s = ops.minimum(values, 1.0)  # Keras clips cosine distances at 0
        a_pos = ops.relu(1.0 + self.margin - s)
        a_neg = ops.relu(s + self.margin)
        pos = weighted_logsumexp(-self.gamma * a_pos * (s - (1.0 - self.margin)), w_pos)
        neg = weighted_logsumexp(self.gamma * a_neg * (s - self.margin), w_neg)
        both = ops.any(w_pos > 0, axis=1) & ops.any(w_neg > 0, axis=1)
        return Terms(ops.where(both, ops.softplus(pos + neg), 0.0))

    def get_config(self) -> dict:
        return {**super().get_config(), "gamma": self.gamma, "margin": self.margin}
