"""`RoundState`: CCP's round bookkeeping (round, patience counters, global best, the round's best).

The variables are weights of the model's `ProximalTerm` layer (so a checkpoint holds them and a run
resumes in the same round with the same round best, and files keep the layout they always had);
this object names them and owns the bookkeeping `CCPRounds` does with them.

Example:
    >>> import keras
    >>> from tfdml.ccp import ProximalTerm
    >>> term = ProximalTerm()
    >>> term.build_for([keras.Variable([1.0, 2.0])], proxies=keras.Variable([[0.5]]))
    >>> state = term.rounds
    >>> state.track_round(0.3, [keras.Variable([3.0, 4.0])], keras.Variable([[1.0]]))  # a round's first validation
    True
    >>> float(state.round_best.numpy()), state.round_best_weights[0].numpy().tolist()
    (0.30000001192092896, [3.0, 4.0])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras

#: The round best a round starts from: below any metric, so a round's first validation is its best
#: (the original resets its best to 1e16 on a minimised quantity, callback.py:242).
ROUND_START = -1e16
#: A round-best improvement must exceed this (the original's `min_improvement_margin`, callback.py:69).
ROUND_MARGIN = 1e-5


@dataclass
class RoundState:
    """CCP's round state as variables: `round` (0 during a warm-up), `best` (the global best metric),
    `since_improvement` (validations since it improved: the stop), `since_round` (validations since
    the round best improved: a new round), and the round best's metric, network weights and proxies."""

    round: keras.Variable
    best: keras.Variable
    since_improvement: keras.Variable
    since_round: keras.Variable
    round_best: keras.Variable
    round_best_weights: list
    round_best_proxies: keras.Variable | None

    @classmethod
    def create(cls, add_weight: Callable[..., Any], variables: list, proxies: Any = None) -> "RoundState":
        """New state variables made by `add_weight` (a layer's), in the order checkpoints store them."""
        state = {"trainable": False, "aggregation": "only_first_replica"}
        round_ = add_weight(shape=(), initializer="zeros", dtype="int32", name="round", **state)
        best = add_weight(shape=(), initializer=keras.initializers.Constant(-1.0), name="best", **state)
        since_improvement = add_weight(shape=(), initializer="zeros", dtype="int32", name="since_improvement",
                                       **state)
        since_round = add_weight(shape=(), initializer="zeros", dtype="int32", name="since_round", **state)
        round_best = add_weight(shape=(), initializer=keras.initializers.Constant(ROUND_START), name="round_best",
                                **state)
        weights = [add_weight(shape=v.shape, initializer="zeros", name=f"round_best_{i}", **state)
                   for i, v in enumerate(variables)]
        best_proxies = (add_weight(shape=proxies.shape, initializer="zeros", name="round_best_proxies", **state)
                        if proxies is not None else None)
        return cls(round_, best, since_improvement, since_round, round_best, weights, best_proxies)

    @property
    def current(self) -> int:
        """The round number: 0 before round 1 (a warm-up), then 1, 2, ..."""
        return int(self.round.numpy())

    def track_global(self, improved: bool, best_value: float) -> None:
        """Patience for the stop: validations since the global best improved."""
        if improved:
            self.since_improvement.assign(0)
        else:
            self.since_improvement.assign_add(1)
        self.best.assign(best_value)

    def track_round(self, value: float, variables: list, proxies: Any = None) -> bool:
        """Patience for a new round: a value above the round best by more than ROUND_MARGIN becomes the
        round best (with the network's weights and the proxies now); return whether it did."""
        if value > float(self.round_best.numpy()) + ROUND_MARGIN:
            self.round_best.assign(value)
            for copy, variable in zip(self.round_best_weights, variables):
                copy.assign(variable)
            if proxies is not None:
                self.round_best_proxies.assign(proxies)
            self.since_round.assign(0)
            return True
        self.since_round.assign_add(1)
        return False

    def start_round(self, round_: int) -> None:
        """Round `round_` starts: its first validation will be its best (the copies are overwritten then)."""
        self.round.assign(round_)
        self.round_best.assign(ROUND_START)
        self.since_round.assign(0)
