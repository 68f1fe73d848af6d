"""Per-anchor terms and the reductions that turn them into a loss.

A pair loss's `from_pairs` returns `Terms`: one value per anchor (the sum of that anchor's pair or
triplet terms), how many of those terms count as active, and how many entries there were in all.
The base class reduces them with the loss's `reduction`, so every pair loss offers the same four
(as Keras losses return per-sample values and `keras.losses.Loss` reduces them):

- `mean`: the total over the number of entries (pairs for contrastive, triplets for triplet,
  anchors for losses with one term per anchor);
- `mean_nonzero`: the total over the number of active terms (by default the non-zero ones;
  PyTorch Metric Learning's `AvgNonZeroReducer`), 0 when there is none;
- `per_anchor`: the total over the number of anchors;
- `sum`: the total.

A loss with several terms reduced separately (contrastive's positive and negative terms) returns a
tuple of `Terms`; their reductions are added.

Example:
    >>> import numpy as np
    >>> terms = Terms.of_pairs(np.array([[0.0, 2.0], [4.0, 0.0], [0.0, 0.0]], "float32"))
    >>> [float(reduce_terms(terms, mode)) for mode in REDUCTIONS]
    [1.0, 3.0, 2.0, 6.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from keras import ops

REDUCTIONS = ("mean", "mean_nonzero", "per_anchor", "sum")


@dataclass(frozen=True)
class Terms:
    """One loss term per anchor: `values [A]`, `active [A]` (how many of the anchor's terms count in
    `mean_nonzero`; default 1 where the value is non-zero) and `entries` (the number of terms in
    all, which `mean` divides by; default A)."""

    values: Any
    active: Any = None
    entries: Any = None

    @classmethod
    def of_pairs(cls, terms: Any) -> "Terms":
        """Per-anchor terms of a `[A, M]` matrix of pair terms: row sums, non-zero counts, `A * M` entries."""
        terms = ops.convert_to_tensor(terms)
        return cls(ops.sum(terms, axis=1), ops.sum(ops.cast(terms > 0, terms.dtype), axis=1), ops.size(terms))


def check_reduction(reduction: str) -> str:
    """`reduction`, or a ValueError naming the choices."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of {', '.join(REDUCTIONS)}")
    return reduction


def reduce_terms(terms: Terms | Sequence[Terms], mode: str = "mean") -> Any:
    """The loss: each `Terms` reduced by `mode`, then added."""
    if isinstance(terms, Terms):
        return _reduce_one(terms, mode)
    if not isinstance(terms, (tuple, list)) or not all(isinstance(part, Terms) for part in terms):
        raise TypeError(f"a pair loss's from_pairs returns per-anchor Terms or a tuple of them, which its reduction "
                        f"reduces; got {type(terms).__name__} (wrap per-anchor values as Terms(values))")
    total = None
    for part in terms:
        value = _reduce_one(part, mode)
        total = value if total is None else total + value
    return total


def _reduce_one(terms: Terms, mode: str) -> Any:
    check_reduction(mode)
    values = ops.convert_to_tensor(terms.values)
    total = ops.sum(values)
    if mode == "sum":
        return total
    if mode == "mean_nonzero":
        active = ops.cast(values > 0, values.dtype) if terms.active is None else ops.cast(terms.active, values.dtype)
        return total / ops.maximum(ops.sum(active), 1.0)
    if mode == "per_anchor":
        return total / ops.cast(ops.shape(values)[0], values.dtype)
    return total / ops.cast(ops.shape(values)[0] if terms.entries is None else terms.entries, values.dtype)


def reduce(values: Any, mode: str = "mean") -> Any:
    """Reduce a `[A]` vector of per-anchor terms or a `[A, M]` matrix of pair terms by `mode`."""
    values = ops.convert_to_tensor(values)
    return reduce_terms(Terms.of_pairs(values) if len(values.shape) == 2 else Terms(values), mode)
