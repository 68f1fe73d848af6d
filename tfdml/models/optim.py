"""Parameter groups with learning-rate multipliers.

Adam-like optimizers are invariant to gradient scale, so a multiplier cannot be applied to the
gradients; each group whose multiplier differs from 1 gets its own clone of the optimizer with a
scaled learning rate (schedules included). The clones are tracked by the model, so their state is
saved in `.keras` checkpoints with the main optimizer's.
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="tfdml")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`multiplier * schedule(step)`.

    Example:
        >>> s = ScaledSchedule(keras.optimizers.schedules.CosineDecay(1e-3, 100), 100.0)
        >>> round(float(s(0)), 6)
        0.1
    """

    def __init__(self, schedule: Any, multiplier: float) -> None:
        self.schedule = schedule
        self.multiplier = float(multiplier)

    def __call__(self, step: Any) -> Any:
        base = self.schedule(step) if callable(self.schedule) else self.schedule
        return base * self.multiplier

    def get_config(self) -> dict:
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.saving.serialize_keras_object(schedule)
        return {"schedule": schedule, "multiplier": self.multiplier}

    @classmethod
    def from_config(cls, config: dict) -> "ScaledSchedule":
        schedule = config["schedule"]
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        return cls(schedule, config["multiplier"])


def scaled_clone(optimizer: keras.optimizers.Optimizer, multiplier: float) -> keras.optimizers.Optimizer:
    """A fresh optimizer of the same class and settings whose learning rate is `multiplier` times larger."""
    config = optimizer.get_config()
    rate = config["learning_rate"]  # a float, or a schedule serialised as a dict (schedules are stateless)
    if isinstance(rate, dict):
        schedule = keras.optimizers.schedules.deserialize(rate)
        config["learning_rate"] = ScaledSchedule(schedule, multiplier)
    else:
        config["learning_rate"] = float(config["learning_rate"]) * multiplier
    config["name"] = f"{config.get('name', 'optimizer')}_x{multiplier:g}"
    return optimizer.__class__.from_config(config)
