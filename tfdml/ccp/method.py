"""`CCP`: the method built in one place and handed to a run as one object.

It owns its loss wrapper (`CCPLoss` around the inner pair loss, with the proxies), its proximal term
(with the round state) and the settings of its rounds, and builds its round callback. The model
holds the loss and the proximal term (`DMLModel(..., loss=ccp.loss, proximal=ccp.proximal)`, which
`tfdml.training.build_model` does), so they train, save and resume with it.

Example:
    >>> from tfdml.config import load_config
    >>> from tfdml.losses import ContrastiveLoss
    >>> ccp = CCP.from_config(load_config("yaml_configs/emoji_ccp.yaml").ccp, ContrastiveLoss(), num_classes=10)
    >>> ccp.loss.num_classes, ccp.loss.proxies_per_class, ccp.patience
    (10, 8, 3)

With a model that holds them, `ccp.rounds(validation, pool)` is the callback to pass to `fit` after
the validation callback (see `tfdml.ccp.rounds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tfdml.ccp.objective import CCPLoss, ProximalTerm
from tfdml.ccp.rounds import CCPRounds, Pool
from tfdml.evaluation.callback import RetrievalValidation
from tfdml.losses.base import MetricLoss


@dataclass
class CCP:
    """CCP's objective, proximal term and round settings (`tfdml.config.schema.CCPConfig`'s meaning)."""

    loss: CCPLoss
    proximal: ProximalTerm
    lambda0: float = 2e-4
    decay: float = 1.0
    patience: int = 3
    stop_patience: int = 60
    warmup_epochs: int = 0
    pool_size: int = 12

    @classmethod
    def from_config(cls, config: Any, inner: MetricLoss, num_classes: int) -> "CCP":
        """CCP of a config's `ccp` section around `inner`, with proxies for `num_classes` classes."""
        loss = CCPLoss(inner, num_classes=num_classes, proxies_per_class=config.proxies_per_class,
                       w_pair=config.w_pair, w_proxy=config.w_proxy)
        return cls(loss, ProximalTerm(name="proximal"), lambda0=config.lambda0, decay=config.decay,
                   patience=config.patience, stop_patience=config.stop_patience,
                   warmup_epochs=config.warmup_epochs, pool_size=config.pool_size)

    def rounds(self, validation: RetrievalValidation, pool: Pool, log: Callable[[str], None] = print) -> CCPRounds:
        """The round callback: put it after `validation` in `fit`'s callbacks, before checkpointing."""
        return CCPRounds(self.loss, self.proximal, validation, pool, lambda0=self.lambda0, decay=self.decay,
                         patience=self.patience, stop_patience=self.stop_patience,
                         warmup_epochs=self.warmup_epochs, log=log)
