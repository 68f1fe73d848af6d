"""What a loss can do, declared once on its class and asked one way.

Each loss class sets `capabilities = Capabilities(...)`; a wrapper (cross-batch memory, CCP) reports
its inner loss's, changed where the wrapper changes them. Ask with `supports(loss, "mixable")`, for
a loss, a loss class or a registered name; `losses_supporting("mixable")` lists the registered
losses that do, so error messages that name them follow the registry.

Example:
    >>> from tfdml.losses import ContrastiveLoss, CrossBatchMemory
    >>> supports("arcface", "mixable"), supports(CrossBatchMemory(ContrastiveLoss(), memory_size=8), "mixable")
    (False, True)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from tfdml.losses.registry import LOSSES


@dataclass(frozen=True)
class Capabilities:
    """Flags of a loss class.

    - `pair_based`: written on the pair core (`PairLoss.from_pairs`): takes `reduction=` and `mining=`;
    - `has_proxies`: owns trainable class proxies (sized by `num_classes`, in the `loss` parameter group);
    - `accepts_references`: `compute(embeddings, labels, references)` takes references other than the
      batch (a cross-batch memory, CCP's proxies), so wrappers can feed it;
    - `mixable`: Metrix can mix it (its pair terms take soft targets);
    - `needs_batch_positives`: its positives are other images of the batch, so a batch needs at least
      two images per class (`sampler.m >= 2`).
    """

    pair_based: bool = False
    has_proxies: bool = False
    accepts_references: bool = False
    mixable: bool = False
    needs_batch_positives: bool = False


CAPABILITIES = tuple(f.name for f in fields(Capabilities))
#: How error messages name the losses that have each capability.
DESCRIPTIONS = {
    "pair_based": "a pair loss",
    "has_proxies": "a loss with class proxies",
    "accepts_references": "a pair loss that accepts references",
    "mixable": "a loss that Metrix can mix",
    "needs_batch_positives": "a loss whose positives come from the batch",
}


class Unsupported(NotImplementedError, ValueError):
    """A loss lacks a capability that a component (a wrapper, Metrix, an argument) needs."""


def supports(loss: Any, capability: str) -> bool:
    """Whether `loss` (an instance, a class or a registered name) has `capability`."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}; choose one of {', '.join(CAPABILITIES)}")
    if isinstance(loss, str):
        loss = LOSSES[loss]
    capabilities = getattr(loss, "capabilities", None)
    return isinstance(capabilities, Capabilities) and getattr(capabilities, capability)


def losses_supporting(capability: str) -> list[str]:
    """Registered loss names with `capability`, in registration order."""
    return [name for name, cls in LOSSES.items() if supports(cls, capability)]


def require(loss: Any, capability: str, message: str) -> None:
    """Raise `Unsupported(message)` unless `loss` has `capability`; `message` may name `{supported}`
    (the registered losses that have it) and `{got}` (the loss's class)."""
    if not supports(loss, capability):
        supported = ", ".join(losses_supporting(capability))
        raise Unsupported(message.format(supported=supported, got=type(loss).__name__))
