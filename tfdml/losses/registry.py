"""The name -> class registry of metric losses that YAML configs resolve (`loss.name`).

Registration order is kept: lists of losses computed from it (e.g. which losses Metrix can mix)
read in the order the losses were defined.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import keras

LOSSES: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_loss(name: str) -> Callable[[T], T]:
    """Register a loss class under `name` (for YAML) and as Keras-serializable (for `.keras` files)."""

    def wrap(cls: T) -> T:
        if name in LOSSES:
            raise ValueError(f"loss name {name!r} is already registered by {LOSSES[name].__name__}")
        LOSSES[name] = cls
        return keras.saving.register_keras_serializable(package="tfdml", name=cls.__name__)(cls)

    return wrap


def get_loss(name: str, **args: Any) -> Any:
    """Instantiate a registered loss, e.g. `get_loss("multi_similarity", alpha=2.0)`."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](**args)
