"""`ProxyBank`: the class proxies of every proxy loss and of CCP, and their layout, in one place.

A bank holds `K` proxies for each of `C` classes as one trainable `[K*C, D]` weight; proxy `k*C + c`
belongs to class `c` (so the first `C` rows are one proxy per class, as a one-proxy loss expects).
Only this module spells that layout: ask `labels()` for the class of each proxy, `per_class` for a
`[C, K, D]` view, `class_columns` for scores against the proxies grouped by class, and `reseed` to
replace the proxies (CCP's k-center re-seeding).

Example:
    >>> import numpy as np
    >>> bank = ProxyBank(num_classes=3, proxies_per_class=2)
    >>> bank.build((None, 4))
    >>> np.asarray(bank.labels()).tolist()
    [0, 1, 2, 0, 1, 2]
    >>> bank.reseed(np.arange(24, dtype="float32").reshape(3, 2, 4))   # [C, K, D]
    >>> np.asarray(bank.per_class())[1, :, 0].tolist()                # class 1's two proxies
    [8.0, 12.0]
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfdml.losses.core import References

#: What proxies start from unless `proxy_initializer=` says otherwise (what proxy losses always used).
DEFAULT_INITIALIZER = "he_uniform"


@keras.saving.register_keras_serializable(package="tfdml")
class ProxyBank(keras.layers.Layer):
    """`proxies_per_class` trainable proxies for each of `num_classes` classes (see the module docstring).

    `proxy_initializer` is any Keras initializer (a name, a config or an instance). A loss that owns a
    bank (`HasProxyBank`) saves the proxies as its own first weight, as files written before the bank
    existed hold them, so those files still load.
    """

    def __init__(self, num_classes: int, proxies_per_class: int = 1, proxy_initializer: Any = DEFAULT_INITIALIZER,
                 **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")  # proxies stay float32 under a mixed-precision policy
        super().__init__(**kwargs)
        if num_classes is None or num_classes < 1 or proxies_per_class < 1:
            raise ValueError(f"num_classes ({num_classes}) and proxies_per_class ({proxies_per_class}) must be >= 1")
        self.num_classes, self.proxies_per_class = int(num_classes), int(proxies_per_class)
        self.proxy_initializer = keras.initializers.get(proxy_initializer)
        self.saved_by_owner = False

    @property
    def size(self) -> int:
        return self.num_classes * self.proxies_per_class

    def build(self, input_shape: tuple) -> None:
        """`input_shape`: the embeddings' shape `[..., D]`."""
        self.proxies = self.add_weight(shape=(self.size, input_shape[-1]), initializer=self.proxy_initializer,
                                       name="proxies", trainable=True)
        self.built = True

    def labels(self) -> Any:
        """The class of each proxy, `[K*C]` int32: proxy `k*C + c` belongs to class `c`."""
        return ops.tile(ops.arange(self.num_classes, dtype="int32"), [self.proxies_per_class])

    def per_class(self, values: Any = None) -> Any:
        """`[K*C, D]` rows (default: the proxies) as `[C, K, D]`, each class's proxies together."""
        values = self.proxies if values is None else values
        return ops.transpose(ops.reshape(values, (self.proxies_per_class, self.num_classes, -1)), (1, 0, 2))

    def flat(self, values: Any) -> Any:
        """The inverse of `per_class`: `[C, K, D]` -> `[K*C, D]` in the bank's row order."""
        return ops.reshape(ops.transpose(values, (1, 0, 2)), (self.size, -1))

    def class_columns(self, scores: Any) -> Any:
        """Scores against the proxies `[B, K*C]` as `[B, C, K]`, each class's proxies together."""
        return ops.transpose(ops.reshape(scores, (-1, self.proxies_per_class, self.num_classes)), (0, 2, 1))

    def references(self, values: Any = None) -> References:
        """The proxies (or rows `values` laid out as them) with their classes, as references for a loss."""
        return References.from_proxies(self.proxies if values is None else values, self.labels())

    def reseed(self, values: Any) -> None:
        """Replace the proxies by `values`, `[C, K, D]` (per class) or `[K*C, D]` (the bank's rows)."""
        values = ops.convert_to_tensor(values, "float32")
        self.proxies.assign(self.flat(values) if len(values.shape) == 3 else values)

    def save_own_variables(self, store: Any) -> None:
        if not self.saved_by_owner:  # else the owner writes the proxies (see HasProxyBank)
            super().save_own_variables(store)

    def load_own_variables(self, store: Any) -> None:
        if not self.saved_by_owner:
            super().load_own_variables(store)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "proxies_per_class": self.proxies_per_class,
                "proxy_initializer": keras.initializers.serialize(self.proxy_initializer)}


class HasProxyBank:
    """Mixin for a loss layer with a `ProxyBank` as `self.bank` (the proxy losses, CCP's objective).

    Call `own_bank(...)` in `__init__` and build the bank in `build`. The layer saves the proxies as
    its own weight `0`, before its other weights: the file layout of losses that held the proxies
    themselves, so their checkpoints load unchanged.
    """

    bank: ProxyBank

    def own_bank(self, num_classes: int, proxies_per_class: int, proxy_initializer: Any) -> None:
        self.bank = ProxyBank(num_classes, proxies_per_class, proxy_initializer, name="proxy_bank")
        self.bank.saved_by_owner = True

    @property
    def proxies(self) -> Any:
        return self.bank.proxies

    @property
    def num_classes(self) -> int:
        return self.bank.num_classes

    @property
    def proxies_per_class(self) -> int:
        return self.bank.proxies_per_class

    def proxy_references(self) -> References:
        """The proxies with their classes (see `ProxyBank.labels`)."""
        return self.bank.references()

    def save_own_variables(self, store: Any) -> None:
        own: dict = {}
        super().save_own_variables(own)  # type: ignore[misc]
        store["0"] = self.bank.proxies
        for key, value in own.items():
            store[str(int(key) + 1)] = value

    def load_own_variables(self, store: Any) -> None:
        self.bank.proxies.assign(store["0"])
        super().load_own_variables({str(int(k) - 1): store[k] for k in store.keys() if k != "0"})  # type: ignore[misc]

    def bank_config(self) -> dict:
        return {"num_classes": self.num_classes, "proxies_per_class": self.proxies_per_class,
                "proxy_initializer": keras.initializers.serialize(self.bank.proxy_initializer)}
