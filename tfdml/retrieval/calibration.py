"""Pick a similarity threshold from labelled pairs: the lowest score at which matches are precise enough.

A pair is (query, gallery image) with its cosine similarity and whether both have the same class.
`calibrate_threshold` sorts the pairs by score and, for each candidate threshold t (a pair's score),
computes precision and recall of "score >= t means same class" over those pairs.

Example:
    >>> import numpy as np
    >>> cal = calibrate_threshold(np.array([0.9, 0.8, 0.7, 0.2]), np.array([True, True, False, True]),
    ...                           target_precision=1.0)
    >>> float(cal.threshold), cal.precision, cal.recall
    (0.800000011920929, 1.0, 0.6666666666666666)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tfdml.errors import DataError


@dataclass(frozen=True)
class Calibration:
    """A chosen threshold (`score >= threshold` is a match) and its precision, recall and F1 on the calibration pairs.

    `curve` holds every candidate: columns `threshold`, `precision`, `recall`, `f1` (one row per distinct score).
    """

    threshold: float
    precision: float
    recall: float
    f1: float
    objective: str
    pairs: int
    curve: dict[str, np.ndarray] = field(repr=False)

    def __str__(self) -> str:
        return (f"threshold {self.threshold:.4f} ({self.objective}): precision {self.precision:.3f}, "
                f"recall {self.recall:.3f}, F1 {self.f1:.3f} on {self.pairs} pairs")


def calibrate_threshold(scores: np.ndarray, same: np.ndarray, *, target_precision: float | None = None) -> Calibration:
    """The threshold with the best F1, or (with `target_precision`) the lowest one whose precision reaches it.

    Raises DataError when there is no positive pair, or no threshold reaches `target_precision`.
    """
    scores = np.asarray(scores, np.float32).ravel()
    same = np.asarray(same, bool).ravel()
    if scores.shape != same.shape or scores.size == 0:
        raise DataError(f"need one same-class flag per score and at least one pair; got {scores.size} scores and "
                        f"{same.size} flags")
    if not same.any():
        raise DataError("no calibration pair has the same class on both sides; give labelled queries whose classes "
                        "are in the gallery")
    if target_precision is not None and not 0.0 < target_precision <= 1.0:
        raise DataError(f"target_precision must be in (0, 1], got {target_precision}")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    true_pos = np.cumsum(y)
    last = np.r_[s[1:] != s[:-1], True]  # a threshold takes every pair with an equal score
    t, tp, n = s[last], true_pos[last], np.flatnonzero(last) + 1
    precision, recall = tp / n, tp / same.sum()
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    curve = {"threshold": t, "precision": precision, "recall": recall, "f1": f1}
    if target_precision is None:
        best, objective = int(np.argmax(f1)), "best F1"
    else:
        ok = np.flatnonzero(precision >= target_precision - 1e-12)
        if ok.size == 0:
            raise DataError(f"no threshold reaches precision {target_precision} on these {scores.size} pairs (best: "
                            f"{precision.max():.3f}); lower target_precision or calibrate on more pairs")
        best, objective = int(ok[-1]), f"precision >= {target_precision}"
    return Calibration(float(t[best]), float(precision[best]), float(recall[best]), float(f1[best]), objective,
                       int(scores.size), curve)
