"""Pair mining: functions on pair weights that any pair loss applies before computing its terms.

A miner maps `(closeness [A, M], w_pos [A, M], w_neg [A, M])` to new `(w_pos, w_neg)`, usually the
old weights with some pairs zeroed. `closeness` is the distance's output turned so that larger is
closer (similarities as they are, distances negated), so one miner serves every distance. As it
only reweights pairs, a miner works the same on batch, proxy and memory references and on Metrix's
soft targets.

Every pair loss and loss wrapper takes `mining=`: None (no mining), a registered name (`"ms"`,
`"batch_hard"`), a config dict (`{"name": "ms", "epsilon": 0.2}`; in YAML
`loss.args.mining: {name: ms, epsilon: 0.2}`), a `Miner`, or any function with that signature
(register it with `register_miner` to save the loss with the model).

Example:
    >>> import numpy as np
    >>> closeness = np.array([[0.9, 0.2, 0.5, 0.1]], "float32")
    >>> w_pos, w_neg = np.array([[1, 1, 0, 0]], "float32"), np.array([[0, 0, 1, 1]], "float32")
    >>> [np.asarray(w).tolist() for w in get_miner("batch_hard")(closeness, w_pos, w_neg)]
    [[[0.0, 1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0, 0.0]]]
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, TypeVar

from keras import ops

MinerFn = Callable[[Any, Any, Any], "tuple[Any, Any]"]
MINERS: dict[str, Any] = {}  # name -> Miner subclass, or a plain miner function
T = TypeVar("T")
_BIG = 1e4  # outside any closeness range, so masked entries never win a min or max


def register_miner(name: str) -> Callable[[T], T]:
    """Register a `Miner` subclass or a plain miner function under `name` (for `mining=` and configs)."""

    def wrap(miner: T) -> T:
        if name in MINERS:
            raise ValueError(f"mining name {name!r} is already registered")
        MINERS[name] = miner
        if isinstance(miner, type):
            miner.name = name
        return miner

    return wrap


class Miner:
    """A miner with parameters: subclasses implement `__call__` and return them from `get_config`."""

    name: ClassVar[str] = ""

    def __call__(self, closeness: Any, w_pos: Any, w_neg: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


@register_miner("ms")
class MultiSimilarityMiner(Miner):
    """Multi-similarity pair mining (Wang et al., CVPR 2019): keep negatives with
    `c_an > min_p c_ap - epsilon` and positives with `c_ap < max_n c_an + epsilon`, hard pairs relative to
    each other. An anchor without positives keeps no negative, and one without negatives no positive."""

    def __init__(self, epsilon: float = 0.1) -> None:
        self.epsilon = float(epsilon)

    def __call__(self, closeness: Any, w_pos: Any, w_neg: Any) -> tuple[Any, Any]:
        closeness = ops.stop_gradient(closeness)
        min_pos = ops.min(ops.where(w_pos > 0, closeness, _BIG), axis=1, keepdims=True)
        max_neg = ops.max(ops.where(w_neg > 0, closeness, -_BIG), axis=1, keepdims=True)
        keep_neg = ops.cast(closeness + self.epsilon > min_pos, w_neg.dtype)
        keep_pos = ops.cast(closeness - self.epsilon < max_neg, w_pos.dtype)
        return w_pos * keep_pos, w_neg * keep_neg

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


@register_miner("batch_hard")
class BatchHardMiner(Miner):
    """"Batch hard" (Hermans et al. 2017): per anchor, only its least close positive and its closest
    negative, and only for anchors that have both (those that form a triplet)."""

    def __call__(self, closeness: Any, w_pos: Any, w_neg: Any) -> tuple[Any, Any]:
        closeness = ops.stop_gradient(closeness)
        m = ops.shape(closeness)[1]
        hardest_pos = ops.one_hot(ops.argmin(ops.where(w_pos > 0, closeness, _BIG), axis=1), m, dtype=w_pos.dtype)
        hardest_neg = ops.one_hot(ops.argmax(ops.where(w_neg > 0, closeness, -_BIG), axis=1), m, dtype=w_neg.dtype)
        both = ops.cast(ops.any(w_pos > 0, axis=1, keepdims=True) & ops.any(w_neg > 0, axis=1, keepdims=True),
                        w_pos.dtype)
        return w_pos * hardest_pos * both, w_neg * hardest_neg * both


def get_miner(spec: Any) -> MinerFn | None:
    """The miner `spec` names: None, a registered name, `{"name": ..., **args}`, or a callable."""
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"name": spec}
    if isinstance(spec, dict):
        args = dict(spec)
        name = args.pop("name", None)
        if name not in MINERS:
            raise ValueError(f"unknown mining {name!r}; known: {', '.join(MINERS)} (or null for none)")
        if isinstance(MINERS[name], type):
            return MINERS[name](**args)
        if args:
            raise ValueError(f"mining {name!r} takes no arguments; got {', '.join(sorted(args))}")
        return MINERS[name]
    if callable(spec):
        return spec
    raise TypeError(f"mining must be None, a name ({', '.join(MINERS)}), a dict or a function; got {spec!r}")


def miner_config(miner: MinerFn | None) -> dict | None:
    """What `get_miner` rebuilds `miner` from (stored in the loss's config)."""
    if miner is None:
        return None
    if isinstance(miner, Miner):
        return miner.get_config()
    for name, registered in MINERS.items():
        if registered is miner:
            return {"name": name}
    raise ValueError(f"mining={miner!r} is not registered, so the loss cannot be saved; decorate it with "
                     "@tfdml.losses.register_miner('a_name')")
