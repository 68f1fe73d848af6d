"""Proxies that start from the data (`loss.proxy_init: samples`) instead of random directions.

With classes of a few images each (emoji: 4, SOP: 5), a batch of 32 classes updates a given class's
proxy about once an epoch, so random proxies take many epochs to reach their classes. Seeded from the
data, each class's proxy starts at the normalised mean of its training images' embeddings (with `K`
proxies per class, greedy k-center picks among them, CCP's round-1 rule), computed once before the
first step by the model as it is then (pretrained backbone, new head). A resumed run keeps the proxies
of its checkpoint.

Example:
    >>> import numpy as np
    >>> emb = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-1.0, 0.2]])
    >>> class_seeds(emb, np.array([0, 0, 1, 1]), num_classes=2, k=1).astype(float).round(3).tolist()
    [[[0.707, 0.707]], [[-0.995, 0.099]]]
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from tfdml.ccp.kcenter import greedy_k_center, pack_by_class
from tfdml.ccp.rounds import Pool
from tfdml.evaluation.neighbours import l2_normalise
from tfdml.losses.proxies import ProxyBank

#: Training images per class embedded to seed its proxies (CCP's default pool size).
SEED_POOL_SIZE = 12


def class_seeds(embeddings: np.ndarray, labels: np.ndarray, num_classes: int, k: int) -> np.ndarray:
    """`[C, k, D]` starting proxies: each class's normalised mean embedding (k = 1), or k of its unit
    embeddings picked by greedy k-center (k > 1). `labels` are dense, `0..C-1`."""
    pool, valid = pack_by_class(l2_normalise(embeddings), labels, num_classes)
    if k == 1:
        return l2_normalise((pool * valid[..., None]).sum(axis=1))[:, None]
    chosen = greedy_k_center(pool, valid, np.zeros((num_classes, 0, pool.shape[-1])), k)
    return pool[np.arange(num_classes)[:, None], chosen]


class SeedProxies(keras.callbacks.Callback):
    """Before the first step, replace the proxies of `bank` by `class_seeds` of `pool(model, 0)`.

    Add it to a fresh run's callbacks only (a resumed run's checkpoint holds trained proxies).
    """

    def __init__(self, bank: ProxyBank, pool: Pool, log: Callable[[str], None] = print) -> None:
        super().__init__()
        self.bank, self.pool, self.log = bank, pool, log

    def on_train_begin(self, logs: dict | None = None) -> None:
        embeddings, labels = self.pool(self.model, 0)
        self.bank.reseed(class_seeds(embeddings, labels, self.bank.num_classes, self.bank.proxies_per_class))
        how = "class means" if self.bank.proxies_per_class == 1 else "k-center"
        self.log(f"proxies seeded from the data ({how}): {self.bank.num_classes} classes x "
                 f"{self.bank.proxies_per_class} from {len(labels)} training images")
